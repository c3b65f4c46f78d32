"""The rejected rows of an import as a CSV file a user can fix and import again, streamed."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import RowError

# Cells that a spreadsheet would run as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# What some spreadsheet settings trim before they look for a formula: any Unicode space or line
# break (NBSP, ideographic space, newline ...) and the zero-width characters str.isspace leaves out.
_TRIMMED = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff\u180e]+")
READ_BATCH = 1000
FLUSH_AT = 64 * 1024  # characters of CSV sent to the client at a time
# Broken lines (bad JSON, an item that is not an object) have no columns: their text goes here.
LINE_COLUMN = "line"
ERROR_COLUMN = "error"


def neutralise(cell: str) -> str:
    """Prefix a cell that a spreadsheet would take for a formula with ``'``, as OWASP advises.

    A formula behind leading whitespace (`` =1+1``, NBSP, zero-width space, a newline) counts too.
    """
    if cell.startswith(FORMULA_STARTS):
        return "'" + cell
    if cell and not cell[0].isalnum():  # most cells start with a letter or digit: nothing to trim
        trimmed = _TRIMMED.match(cell)
        if trimmed and cell[trimmed.end() :].startswith(FORMULA_STARTS[:4]):
            return "'" + cell
    return cell


def _unique(name: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name} {n}"
    return candidate


def _errors(session: Session, import_id: str, *columns: object) -> Iterator:
    """The import's row errors in row order, read a batch at a time from a server-side cursor."""
    query = (
        select(*columns)
        .where(RowError.import_id == import_id, RowError.level == "error")  # warned rows were stored
        .order_by(RowError.row, RowError.id)
        .execution_options(yield_per=READ_BATCH)
    )
    return iter(session.execute(query))


@dataclass(frozen=True)
class Header:
    """The file's columns: the original ones, the column for broken lines if any, the error column."""

    names: list[str]
    line: str | None
    error: str


def header_of(session: Session, import_id: str) -> Header:
    """The original columns of the rejected rows, in the order the file had them, plus our own."""
    columns: dict[str, None] = {}
    broken = False
    for (raw,) in _errors(session, import_id, RowError.raw):
        if raw is None:
            broken = True
        else:
            columns.update(dict.fromkeys(raw))
    names = list(columns)
    line = _unique(LINE_COLUMN, names) if broken else None
    if line:
        names.insert(0, line)
    error = _unique(ERROR_COLUMN, names)
    return Header(names=[*names, error], line=line, error=error)


def rejected_csv(session: Session, import_id: str) -> Iterator[str]:
    """Yield the CSV text of the rejected rows: one line per row, all its problems in the last column.

    The rows are read from a server-side cursor a batch at a time and written as they come, so a
    file with millions of rejected rows never sits in memory whole.
    """
    header = header_of(session, import_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow([neutralise(name) for name in header.names])
    yield "\ufeff" + flush()  # the BOM lets spreadsheet programs read the file as UTF-8

    def write(row: int | None, cells: dict[str, str], problems: list[str]) -> None:
        if row is None:
            return
        cells[header.error] = "; ".join(problems)
        writer.writerow([neutralise(cells.get(name, "")) for name in header.names])

    current: int | None = None
    cells: dict[str, str] = {}
    problems: list[str] = []
    for (error,) in _errors(session, import_id, RowError):
        if error.row != current:
            write(current, cells, problems)
            if buffer.tell() >= FLUSH_AT:
                yield flush()
            current, problems = error.row, []
            if error.raw is not None:
                cells = {str(k): "" if v is None else str(v) for k, v in error.raw.items()}
            else:
                cells = {header.line: error.value or ""} if header.line else {}
        problems.append(error.message)
    write(current, cells, problems)
    yield flush()
