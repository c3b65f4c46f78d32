"""Finding where a table starts and ends, and which columns hold the email and name, from a sample.

Everything here reads a bounded sample of a file's first rows (or, for a footer, the few rows after
a blank one), so detection costs the row loop nothing: readers call it once, before the rows flow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from statistics import median
from typing import Any

from app.emails import check_email, split_addresses
from app.fields import Columns, find_columns
from app.readers import UnusableFile, cell_text

# Rows read ahead of the row loop to find the header and judge the columns by their content.
SAMPLE_ROWS = 50
# ...and at most this much text, so a file of enormous lines is not held whole for a sample.
SAMPLE_CHARS = 2 * 1024 * 1024
# A report footer is a few lines; more lines after a blank row than this are data, whatever they hold.
FOOTER_MAX = 25
# A column is an email column by its content when at least this share of its sampled values are addresses.
MOSTLY = 0.6

# An address anywhere in a cell ("Ada <ada@example.com>", "mailto:ada@example.com" too).
_ADDRESS_INSIDE = re.compile(r"[^\s@<>,;:\"']+@[^\s@<>,;:\"']+\.[^\s@<>,;:\"'.]{2,}")
_NUMBERISH = re.compile(r"^[\d\s()+./:-]+$")


class Unreadable(list):
    """A row a reader could not parse, kept in its place among the sampled rows (an empty list)."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


def filled(cells: Sequence[Any]) -> int:
    """How many cells of a row hold something."""
    return sum(1 for cell in cells if cell_text(cell).strip())


def is_blank(cells: Sequence[Any]) -> bool:
    """Whether a row of cells holds nothing at all."""
    return not any(cell_text(cell).strip() for cell in cells)


def holds_address(cells: Sequence[Any]) -> bool:
    """Whether any cell of a row has an email address in it."""
    return any(_ADDRESS_INSIDE.search(cell) for cell in map(cell_text, cells) if "@" in cell)


def is_address(value: Any) -> bool:
    """Whether a cell holds an email address as exports write it (bare, in ``<...>``, after ``mailto:``)."""
    text = cell_text(value).strip()
    if "@" not in text:
        return False
    first = split_addresses(text)
    return bool(first) and check_email(first[0]).email is not None


@dataclass(frozen=True)
class Layout:
    """Where a table lies in its sampled rows: the header's index (None when the file has none) and
    the index of the first row that may hold data."""

    header: int | None
    data: int


def locate_header(rows: Sequence[Sequence[Any]], header_row: int | None = None) -> Layout:
    """Find the header among a file's first rows (indexes into ``rows``, which counts blank rows too).

    The header is the first row as wide as a table's rows (at least two filled cells, or half the
    usual width of the sampled rows) that holds no address: the lines above it (an export's notes,
    a report's title, blank rows) are not part of the table. When that first wide row already holds
    an address, the file has no header and the data starts there. ``header_row`` (the number the
    user sees, 0 for none) overrides the guess.
    """
    if header_row is not None:
        if header_row == 0:
            start = next((i for i, cells in enumerate(rows) if not is_blank(cells)), len(rows))
            return Layout(None, start)
        if header_row > len(rows):
            raise UnusableFile(
                f"Row {header_row} cannot be the header: only the first {len(rows)} rows are looked at "
                "for it. Give a row among them, or 0 for a file without a header row."
            )
        if is_blank(rows[header_row - 1]):
            raise UnusableFile(f"Row {header_row} cannot be the header: it is blank.")
        return Layout(header_row - 1, header_row)
    counts = [filled(cells) for cells in rows]
    wide = [n for n in counts if n >= 2]
    if not wide:  # a one-column file: its first filled row is its header (or its first address)
        first = next((i for i, n in enumerate(counts) if n), None)
        if first is None:
            return Layout(None, len(rows))
        return Layout(None, first) if holds_address(rows[first]) else Layout(first, first + 1)
    threshold = max(2, int(median(wide) + 1) // 2)
    candidates = [i for i, n in enumerate(counts) if n >= threshold]
    if holds_address(rows[candidates[0]]):
        return Layout(None, candidates[0])
    # A title row can be as wide as the table ("Report, 2026"): of the wide rows above the first
    # that holds an address, the header is the one whose cells name the most fields, the first on a tie.
    end = next((i for i in candidates if holds_address(rows[i])), len(rows))
    above = [i for i in candidates if i < end]
    header = max(above, key=lambda i: (_fields_named(rows[i]), -i))
    return Layout(header, header + 1)


def _fields_named(cells: Sequence[Any]) -> int:
    """How many of a row's cells are headers of a contact's fields (Email, First Name, Company...)."""
    return len(find_columns([cell_text(c).strip() for c in cells]).mapped)


def skipped_above(rows: Sequence[Sequence[Any]], layout: Layout) -> int:
    """How many rows with something in them lie above the table (notes, titles): they are skipped."""
    end = layout.header if layout.header is not None else layout.data
    return sum(1 for cells in rows[:end] if not is_blank(cells))


def footer_like(cells: Sequence[Any]) -> bool:
    """Whether a row could be a report's footer line: one filled cell at most, and no address."""
    return filled(cells) <= 1 and not holds_address(cells)


def read_footer(
    rest: Iterator[list[Any]], errors: tuple[type[Exception], ...] = ()
) -> tuple[list[list], bool]:
    """Read the rows after a blank row while they could be a footer: (the rows read, whether they are one).

    They are a footer when the file ends among them. An unreadable row ends the look-ahead as an
    ``Unreadable`` marker in its place, and is no footer.
    """
    held: list[list] = []
    while len(held) <= FOOTER_MAX:
        try:
            cells = next(rest)
        except StopIteration:
            return held, True
        except errors as exc:
            held.append(Unreadable(f"This row could not be read: {exc}"))
            return held, False
        held.append(cells)
        if not footer_like(cells):
            return held, False
    return held, False


def holds_contacts(rows: Sequence[Sequence[Any]]) -> bool:
    """Whether sampled rows look like a contact list: an address in them, or a header naming an email."""
    if any(holds_address(cells) for cells in rows):
        return True
    layout = locate_header(rows)
    if layout.header is None:
        return False
    return find_columns([cell_text(c).strip() for c in rows[layout.header]]).email is not None


def _address_counts(headers: Sequence[str], sample: Sequence[Sequence[Any]]) -> list[tuple[int, int]]:
    """For each column, (addresses, non-empty values) among the sampled rows."""
    counts = []
    for position in range(len(headers)):
        values = [row[position] for row in sample if position < len(row) and cell_text(row[position]).strip()]
        counts.append((sum(1 for value in values if is_address(value)), len(values)))
    return counts


def _name_by_content(headers: Sequence[str], sample: Sequence[Sequence[Any]], email: str) -> str | None:
    """In a file without a header: the first column of mostly words (not numbers, not addresses)."""
    for position, header in enumerate(headers):
        if header == email:
            continue
        values = [cell_text(row[position]).strip() for row in sample if position < len(row)]
        values = [v for v in values if v]
        words = [v for v in values if "@" not in v and not _NUMBERISH.match(v)]
        if values and len(words) >= MOSTLY * len(values):
            return header
    return None


@dataclass(frozen=True)
class Detected:
    """The columns found, and what was looked at, for a message when something is missing."""

    columns: Columns
    headers: list[str]
    sampled: int
    some_addresses: dict[str, tuple[int, int]]


def detect_columns(headers: list[str], sample: Sequence[Sequence[Any]], headerless: bool = False) -> Detected:
    """The name and email columns, by header and, where the headers say nothing, by content.

    A column whose sampled values are mostly addresses is the email column whatever its header
    (``Contact``, ``Correo``, or none); the header synonyms win when one matches.
    """
    columns = find_columns([] if headerless else headers)
    rows = [row for row in sample if type(row) is list and not isinstance(row, Unreadable)]
    counts = _address_counts(headers, rows)
    some = {headers[i]: c for i, c in enumerate(counts) if c[0]}
    if columns.email is None:
        best = max(range(len(headers)), key=lambda i: (counts[i][0], -i), default=None)
        if best is not None and counts[best][0] and counts[best][0] >= MOSTLY * counts[best][1]:
            columns = _with(columns, headers, emails=(headers[best],))
    if headerless and columns.email is not None:
        name = _name_by_content(headers, rows, columns.email)
        if name is not None:
            columns = _with(columns, headers, name=name)
    return Detected(columns, headers, len(rows), some)


def _with(columns: Columns, headers: Sequence[str], **changes: Any) -> Columns:
    """The columns with some fields changed, the rest of the file's columns kept as attributes."""
    changed = replace(columns, **changes)
    taken = set(changed.mapped)
    return replace(changed, extra=tuple(h for h in headers if h not in taken))


def every_column(headers: Sequence[str]) -> str:
    """All the columns, in file order, for a message: never cut, since the one the user needs may be last."""
    return ", ".join(headers) if headers else "(none)"


def missing_columns_message(found: Detected) -> str | None:
    """Why a file cannot be imported as found (no email or no name column), or None if it can."""
    columns = found.columns
    listed = f"The columns are: {every_column(found.headers)}."
    looked = f"the first {found.sampled} rows" if found.sampled != 1 else "the first row"
    if columns.email is None:
        hint = (
            " Considered as the email: every column by its header (Email, E-mail, Email address, Mail) "
            f"and by its content in {looked}"
        )
        if found.some_addresses:
            partly = ", ".join(f"{h} ({a} of {n} values)" for h, (a, n) in found.some_addresses.items())
            hint += f"; some addresses are in {partly}, too few for an email column"
        else:
            hint += "; none holds addresses"
        return (
            f"No email column was found. {listed}{hint}. "
            "Name one column Email (or E-mail, Email address, Mail), or map the columns yourself."
        )
    if not columns.has_name:
        others = [h for h in found.headers if h != columns.email]
        return (
            f"No name column was found. {listed} The email is in {columns.email}; considered as the name: "
            f"{every_column(others)}, and none is named Name, Full name, First name or Last name. "
            "Name one column Name (or Full name), or give First name and Last name, "
            "or map the columns yourself."
        )
    return None
