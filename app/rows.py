"""Making a contact of one row: the name from its parts, the first valid email, the phone, the rest kept."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from app.emails import check_email, split_addresses, typo_warning
from app.fields import Columns, join_name
from app.phones import normalise_phone
from app.readers import cell_text
from app.validation import Contact, Problem, check_name, learn_domain, plain_email, shown


def attribute_text(value: Any) -> str:
    """A value kept in attributes, as text: nested JSON stays JSON; NUL (PostgreSQL cannot hold it) shows."""
    if type(value) is str:
        text = value.strip()
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = cell_text(value).strip()
    return text if "\x00" not in text else text.replace("\x00", "\ufffd")


class ContactReader:
    """Reads contacts out of the rows of one header, the column positions worked out once.

    A row is a list of cells in header order (a record is turned into one by ``cells``).
    """

    def __init__(self, columns: Columns, headers: Sequence[str], phone_region: str | None) -> None:
        at: dict[str, int] = {}
        for position, header in enumerate(headers):
            at.setdefault(header, position)
        self.columns = columns
        self.headers = list(headers)
        self.width = len(headers)
        self.region = phone_region
        self.name_at = at[columns.name] if columns.name else None
        self.parts_at = tuple((role, at[header]) for role, header in columns.parts)
        self.emails_at = tuple(at[header] for header in columns.emails)
        self.phones_at = tuple((at[header], header) for header in columns.phones)
        self.company_at = at[columns.company] if columns.company else None
        self.title_at = at[columns.title] if columns.title else None
        # The name parts stay in attributes too, so nothing of how the file wrote the name is lost.
        kept = [*columns.extra, *(header for _, header in columns.parts)]
        self.kept_at = tuple(sorted((at[header], header) for header in kept))

    def cells(self, record: dict[str, Any]) -> list[Any]:
        """A record's values in header order."""
        return [record.get(header) for header in self.headers]

    def read(self, row: Sequence[Any]) -> Contact | list[Problem]:
        """The contact of a row, with a warning for each value left out of a field; or the row's problems."""
        attributes: dict[str, Any] = {}
        for position, header in self.kept_at:
            value = row[position]
            if value is None or value == "":
                continue
            # Most cells are text without NUL: those are kept without a call.
            text = value.strip() if type(value) is str and "\x00" not in value else attribute_text(value)
            if text:
                attributes[header] = text
        for position in range(self.width, len(row)):  # cells past the header: kept under their position
            text = attribute_text(row[position])
            if text:
                attributes[f"Column {position + 1}"] = text
        warnings: list[Problem] = []
        email, display_name, problem = self._email(row, attributes, warnings)
        if self.name_at is not None:
            raw_name = row[self.name_at]
        else:
            raw_name = join_name({role: cell_text(row[position]).strip() for role, position in self.parts_at})
        name, message = check_name(raw_name)
        if message and display_name and not cell_text(raw_name).strip():
            name, message = check_name(display_name)  # "Ada Lovelace <ada@example.com>" names the contact
        problems = [Problem("name", message, shown(raw_name))] if message else []
        if problem:
            problems.append(problem)
        if problems:
            return problems
        phone = self._phone(row, attributes, warnings) if self.phones_at else None
        return Contact(
            name,  # type: ignore[arg-type]
            email,  # type: ignore[arg-type]
            phone,
            self._text(row, self.company_at),
            self._text(row, self.title_at),
            attributes or None,
            tuple(warnings),
        )

    @staticmethod
    def _text(row: Sequence[Any], position: int | None) -> str | None:
        if position is None:
            return None
        return attribute_text(row[position]) or None

    def _email(
        self, row: Sequence[Any], attributes: dict[str, Any], warnings: list[Problem]
    ) -> tuple[str | None, str | None, Problem | None]:
        """The first valid address of the email columns, its display name, or the problem of the first.

        Every other address of the row goes to ``attributes["emails"]``; an invalid one passed over
        for a later valid one is kept there as written, with a warning.
        """
        email = display_name = None
        first_problem: Problem | None = None
        others: list[str] = []
        for position in self.emails_at:
            text = cell_text(row[position]).strip()
            if not text:
                continue
            if email is None and (plain := plain_email(text)) is not None:
                email = plain
                continue
            for address in split_addresses(text):
                check = check_email(address)
                if email is not None:
                    others.append(check.email or address)
                    continue
                if check.email is None:
                    first_problem = first_problem or Problem("email", check.error or "", shown(row[position]))
                    others.append(address)
                    continue
                email, display_name = check.email, check.display_name
                warning = typo_warning(check)
                if warning:  # stored as written: DataFlow never changes an address by itself
                    warnings.append(Problem("email", warning, check.email))
                else:
                    learn_domain(check.email)
        if email is None:
            return None, None, first_problem or Problem("email", "Email is missing", _first_shown(row, self))
        if first_problem is not None:
            warnings.append(
                first_problem._replace(message=f"{first_problem.message}; kept with the other emails")
            )
        if others:
            attributes["emails"] = others
        return email, display_name, None

    def _phone(self, row: Sequence[Any], attributes: dict[str, Any], warnings: list[Problem]) -> str | None:
        """The first phone column's value that is a phone number, in E.164; the others stay as written."""
        phone = None
        for position, header in self.phones_at:
            text = attribute_text(row[position])
            if not text:
                continue
            if phone is None:
                number, warning = normalise_phone(text, self.region)
                if number:
                    phone = number
                    continue
                if warning:
                    warnings.append(Problem("phone", warning, text))
            attributes[header] = text
        return phone


def _first_shown(row: Sequence[Any], reader: ContactReader) -> str | None:
    """The first email column's value as it came, for a row without an address."""
    return shown(row[reader.emails_at[0]]) if reader.emails_at else None


def validate(
    record: dict[str, Any], columns: Columns, phone_region: str | None = None
) -> Contact | list[Problem]:
    """A contact from one record, or every problem it has (for one-off checks; files use ContactReader)."""
    reader = ContactReader(columns, list(dict.fromkeys([*record, *columns.mapped])), phone_region)
    return reader.read(reader.cells(record))
