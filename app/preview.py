"""A file's preview: what was detected, the mapping, and its first rows as they would be stored.

It reads only the head of the file (the sample detection takes and the rows shown), so a
1 GB CSV previews about as fast as a 1 KB one. Nothing is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, BinaryIO

import ijson
from sqlalchemy.orm import Session

from app.extensions import settings
from app.fields import Columns
from app.mapping import choose_columns
from app.readers import BrokenRow, SkippedRow, Table, UnusableFile, read_rows
from app.readers.json import NestedTooDeep, parse_error
from app.rows import ContactReader
from app.validation import Contact, Problem, is_blank

SAMPLE_SIZE = 20


def _keys_of(rows: list[tuple[int, Any]]) -> list[str]:
    """The keys of JSON records, in the order they first appear."""
    keys: dict[str, None] = {}
    for _, row in rows:
        if isinstance(row, dict):
            keys.update(dict.fromkeys(str(k) for k in row))
    return list(keys)


def _problem(row: int, problem: Problem, level: str = "error") -> dict[str, object]:
    """A problem as ``GET /imports/<id>/errors`` shows it."""
    return {
        "row": row,
        "level": level,
        "field": problem.field,
        "message": problem.message,
        "value": problem.value,
    }


def _stored(contact: Contact) -> dict[str, object]:
    """A valid row's values as the contact would be stored."""
    return {
        "name": contact.name,
        "email": contact.email,
        "phone": contact.phone,
        "company": contact.company,
        "title": contact.title,
        "attributes": contact.attributes or {},
    }


def _missing(columns: Columns) -> list[Problem]:
    """The fields no column fills, as problems every row has."""
    problems = []
    if not columns.has_name:
        problems.append(Problem("name", "No column is mapped to the name", None))
    if columns.email is None:
        problems.append(Problem("email", "No column is mapped to the email", None))
    return problems


def sample_items(
    headers: list[str], columns: Columns, rows: list[tuple[int, Any]], phone_region: str | None
) -> list[dict[str, object]]:
    """The first rows as they would be stored, each with its problems (errors and warnings)."""
    missing = _missing(columns)
    reader = None if missing else ContactReader(columns, headers, phone_region)
    items = []
    for number, row in rows:
        if isinstance(row, BrokenRow):
            items.append(
                {
                    "row": number,
                    "values": None,
                    "problems": [_problem(number, Problem(None, row.message, row.text))],
                }
            )
            continue
        if reader is None:
            items.append({"row": number, "values": None, "problems": [_problem(number, p) for p in missing]})
            continue
        outcome = reader.read(reader.cells(row) if isinstance(row, dict) else row)
        if isinstance(outcome, Contact):
            warnings = [_problem(number, w, "warning") for w in outcome.warnings]
            items.append({"row": number, "values": _stored(outcome), "problems": warnings})
        else:
            items.append({"row": number, "values": None, "problems": [_problem(number, p) for p in outcome]})
    return items


def _first_rows(table: Table) -> list[tuple[int, Any]]:
    """Up to SAMPLE_SIZE rows with something in them, read from the table's head."""
    rows: list[tuple[int, Any]] = []
    try:
        for number, row in table.records():
            if isinstance(row, SkippedRow) or (isinstance(row, dict) and is_blank(row)):
                continue
            rows.append((number, row))
            if len(rows) == SAMPLE_SIZE:
                break
    except (ijson.JSONError, NestedTooDeep) as exc:
        if rows:  # the head is fine: what comes after it is the import's business
            return rows
        raise UnusableFile(f"The file is not valid JSON ({parse_error(exc)}).") from exc
    return rows


def preview(
    session: Session,
    stream: BinaryIO,
    *,
    size: int | None = None,
    source: str | None = None,
    mapping: Mapping[str, Any] | None = None,
    header_row: int | None = None,
    sheet: str | None = None,
) -> dict[str, object]:
    """The preview of a file, as ``POST /imports/preview`` answers it.

    Raises UnusableFile for a file that cannot be read at all, and MappingError for a given
    mapping that does not fit it; a file whose email or name column cannot be found still
    previews, with those fields unmapped, so a person can map them.
    """
    table = read_rows(stream, size, header_row=header_row, sheet=sheet, head_only=True)
    rows = _first_rows(table)
    headers = table.columns or _keys_of(rows)
    columns, mapping_from = choose_columns(
        session,
        source,
        mapping,
        headers,
        table.data_sample() if table.columns else [],
        headerless=bool(table.columns) and table.header_row is None,
        strict=False,
    )
    return {
        "format": table.format,
        "encoding": table.encoding,
        "delimiter": table.delimiter,
        "sheets": table.sheets,
        "sheet": table.sheet,
        "headerRow": table.header_row,
        "columns": headers,
        "mapping": columns.to_dict(),
        "mappingFrom": mapping_from,
        "sample": sample_items(headers, columns, rows, settings().default_phone_region),
        "unmapped": list(columns.extra),
    }
