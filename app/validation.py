"""Pure checks of a contact's name and email, and the fast path for rows that are plainly valid."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from app import emails
from app.fields import Columns, find_columns, header_key
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
    """A cleaned email, or the message saying why it is not one (``app.emails.check_email`` explains)."""
    check = emails.check_email(value)
    return check.email, check.error


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


# Domains whose plain addresses need no careful check: each was checked once and had no typo.
# Bounded, so a file of a million distinct domains cannot grow it without end.
CLEAN_DOMAINS: set[str] = set()
CLEAN_DOMAINS_MAX = 100_000


def plain_email(text: str) -> str | None:
    """The address, lower-cased, when it is plain ASCII on a domain already known to have no typo.

    The rest (a display name, ``mailto:``, several addresses, Unicode, a domain not met yet) takes
    ``app.emails.check_email``, which explains what is wrong and suggests what was meant.
    """
    email = text.strip().lower()
    if len(email) <= EMAIL_MAX and EMAIL.fullmatch(email) and email.partition("@")[2] in CLEAN_DOMAINS:
        return email
    return None


def learn_domain(email: str) -> None:
    """Remember the domain of a plain address the careful check found valid and without a suggestion."""
    if len(CLEAN_DOMAINS) < CLEAN_DOMAINS_MAX and EMAIL.fullmatch(email):
        CLEAN_DOMAINS.add(email.partition("@")[2])


# Contact's own constructor is Python code; made in C it costs half (this runs for every row).
_new_contact = tuple.__new__


def plain_contact(raw_name: Any, raw_email: Any) -> Contact | None:
    """The contact from a text name and email that are plainly valid; None sends the row the careful way.

    Most rows are text and valid: they are checked in one go, and only the rest take the path
    that explains what is wrong (or suggests the domain a typo meant).
    """
    if type(raw_name) is str and type(raw_email) is str:
        name, email = raw_name.strip(), raw_email.strip().lower()
        valid = name and len(name) <= NAME_MAX and "\x00" not in name
        if (
            valid
            and len(email) <= EMAIL_MAX
            and EMAIL.fullmatch(email)
            and email.partition("@")[2] in CLEAN_DOMAINS
        ):
            return _new_contact(Contact, (name, email, None, None, None, None, ()))
    return None


def is_blank(record: Mapping[str, Any]) -> bool:
    """A row with nothing in it: skipped, not counted."""
    return all(cell_text(v).strip() == "" for v in record.values())


def shown(value: Any) -> str | None:
    """The value as it came, cut to a length a page can show."""
    if value is None:
        return None
    text = cell_text(value)
    return text if len(text) <= 1000 else text[:1000] + "…"
