"""Pure checks: which columns hold a contact, and whether a row makes a valid one."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from app.fields import Columns, find_columns, header_key, join_name
from app.readers import cell_text

__all__ = ["Columns", "Contact", "Problem", "find_columns", "header_key"]

NAME_MAX = 255
EMAIL_MAX = 254

# local@domain.tld: no spaces, no leading, trailing or doubled dots, labels of letters, digits, hyphens.
EMAIL = re.compile(
    r"(?!\.)(?!.*\.\.)[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}(?<!\.)"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})"
)


class Problem(NamedTuple):
    """What is wrong with one field of a row."""

    field: str | None
    message: str
    value: str | None


class Contact(NamedTuple):
    """A clean contact, ready to store; ``warnings`` say which values were left out of a field, and why."""

    name: str
    email: str
    phone: str | None = None
    company: str | None = None
    title: str | None = None
    attributes: dict[str, Any] | None = None
    warnings: tuple[Problem, ...] = ()


def check_email(value: Any) -> tuple[str | None, str | None]:
    """A cleaned email, or the message saying why it is not one."""
    email = cell_text(value).strip().lower()
    if not email:
        return None, "Email is missing"
    if len(email) > EMAIL_MAX:
        return None, f"Email is longer than {EMAIL_MAX} characters"
    if not EMAIL.fullmatch(email):
        return None, "Not a valid email address"
    return email, None


def check_name(value: Any) -> tuple[str | None, str | None]:
    """A cleaned name, or the message saying why it is not one."""
    name = cell_text(value).strip()
    if not name:
        return None, "Name is missing"
    if len(name) > NAME_MAX:
        return None, f"Name is longer than {NAME_MAX} characters"
    if "\x00" in name:
        return None, "Name contains a NUL character, which cannot be stored"
    return name, None


# Contact's own constructor is Python code; made in C it costs half (this runs for every row).
_new_contact = tuple.__new__


def plain_contact(raw_name: Any, raw_email: Any) -> Contact | None:
    """The contact from a text name and email that are plainly valid; None sends the row to ``validate``.

    Most rows are text and valid: they are checked in one go, and only the rest take the path
    that explains what is wrong.
    """
    if type(raw_name) is str and type(raw_email) is str:
        name, email = raw_name.strip(), raw_email.strip().lower()
        valid = name and len(name) <= NAME_MAX and "\x00" not in name
        if valid and len(email) <= EMAIL_MAX and EMAIL.fullmatch(email):
            return _new_contact(Contact, (name, email, None, None, None, None, ()))
    return None


def validate(record: Mapping[str, Any], columns: Columns) -> Contact | list[Problem]:
    """A contact from one row, or every problem the row has."""
    if columns.name is not None and columns.email is not None:
        contact = plain_contact(record.get(columns.name), record.get(columns.email))
        if contact is not None:
            return contact
    problems: list[Problem] = []
    if columns.name is not None:
        name_field, raw_name = "name", record.get(columns.name)
    else:
        name_field = "name"
        raw_name = join_name({role: cell_text(record.get(c)).strip() for role, c in columns.parts})
    name, message = check_name(raw_name)
    if message:
        problems.append(Problem(name_field, message, _shown(raw_name)))
    raw_email = record.get(columns.email) if columns.email else None
    email, message = check_email(raw_email)
    if message:
        problems.append(Problem("email", message, _shown(raw_email)))
    if problems:
        return problems
    return Contact(name, email)  # type: ignore[arg-type]


def is_blank(record: Mapping[str, Any]) -> bool:
    """A row with nothing in it: skipped, not counted."""
    return all(cell_text(v).strip() == "" for v in record.values())


def _shown(value: Any) -> str | None:
    """The value as it came, cut to a length a page can show."""
    if value is None:
        return None
    text = cell_text(value)
    return text if len(text) <= 1000 else text[:1000] + "…"
