"""Readers turn a stored file into rows, whatever its format; the format comes from the bytes."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

SNIFF_BYTES = 64 * 1024
READ_BUFFER = 1024 * 1024

Record = dict[str, Any]


class UnusableFile(Exception):
    """The file as a whole cannot be imported; the message is written for the person who sent it."""


@dataclass(frozen=True)
class BrokenRow:
    """A row the reader could not make into a record (a bad NDJSON line, a JSON item that is no object)."""

    message: str
    text: str


@dataclass(frozen=True)
class SkippedRow:
    """A row that is read but is no contact and no mistake (a report's footer line): counted as skipped."""

    text: str


@dataclass
class Table:
    """What a reader found: the format, an estimate of the row count, and the rows themselves.

    ``rows`` yields ``(row_number, row)`` where the row number is the one the user sees
    (spreadsheet rows counting the header as 1, the item's position for JSON, the line for
    NDJSON). A tabular format (CSV, TSV, spreadsheets) knows its ``columns``, and each row is
    its list of cells, one at least for every column; a JSON row is a record mapping each key
    to its value. Cells stay positional because building a record for every row costs more
    than validating it: ``records`` gives the keyed form. A ``SkippedRow`` (a footer line) is read
    and counted, never imported.

    What detection found comes along: the header's row number (None when the file has none, its
    columns then named by position), the rows with something in them above the table that were
    skipped, and ``sample``, the first rows of the file as ``(row_number, cells)``, header and
    lines above it included, for the column checks and the preview.
    """

    format: str
    rows: Iterator[tuple[int, list[Any] | Record | BrokenRow | SkippedRow]]
    total_rows: int | None = None
    columns: list[str] = field(default_factory=list)
    header_row: int | None = None
    skipped_rows: int = 0
    sample: list[tuple[int, Any]] = field(default_factory=list)
    encoding: str | None = None
    delimiter: str | None = None
    sheets: list[str] = field(default_factory=list)
    sheet: str | None = None
    # The row number where the data starts: below the header, or the first row of a file without one.
    data_from: int = 1

    def data_sample(self) -> list[Any]:
        """The sampled rows below the header (or from the first data row, in a file without one)."""
        return [row for number, row in self.sample if number >= self.data_from]

    def records(self) -> Iterator[tuple[int, Record | BrokenRow]]:
        """The rows as records keyed by column, whatever the format."""
        columns = self.columns
        for row_number, row in self.rows:
            yield row_number, dict(zip(columns, row, strict=False)) if type(row) is list else row


class _Replay(io.RawIOBase):
    """A stream that gives back the bytes already read for sniffing, then the rest."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def rewind(head: bytes, f: BinaryIO) -> BinaryIO:
    """The whole stream again, from its first byte."""
    if f.seekable():
        f.seek(0)
        return f
    return io.BufferedReader(_Replay(head, f), READ_BUFFER)


def detect_format(head: bytes) -> str:
    """Name the format of a file from its first bytes; raise UnusableFile for what we cannot read."""
    from app.readers import json as json_reader
    from app.readers import spreadsheet, text, vcard

    if not head.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
        raise UnusableFile("The file is empty.")
    for sniff in (spreadsheet.sniff, json_reader.sniff, vcard.sniff, text.sniff):
        kind = sniff(head)
        if kind:
            return kind
    raise UnusableFile(
        "This is not a file we can read. Upload a CSV, TSV, Excel (.xlsx, .xls), "
        "OpenDocument (.ods), JSON or vCard (.vcf) file."
    )


# The content type a store is told for each format: without parameters, since Supabase compares
# the whole subtype with a bucket's allowed types ("text/csv; charset=utf-8" is not "text/csv").
MEDIA_TYPES = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xls": "application/vnd.ms-excel",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "vcard": "text/vcard",
}
UNKNOWN_MEDIA_TYPE = "application/octet-stream"
_EXTENSIONS = {
    "csv": "csv",
    "tsv": "tsv",
    "tab": "tsv",
    "xlsx": "xlsx",
    "xls": "xls",
    "ods": "ods",
    "json": "json",
    "ndjson": "ndjson",
    "jsonl": "ndjson",
    "vcf": "vcard",
    "vcard": "vcard",
}


def media_type(head: bytes, filename: str | None = None) -> str:
    """The content type of a file from its first bytes, else from its filename's extension."""
    kind: str | None
    if head.lstrip(b" \t\r\n\xef\xbb\xbf")[:11].upper() == b"BEGIN:VCARD":
        kind = "vcard"  # text, so the CSV sniffer would claim it
    else:
        try:
            kind = detect_format(head)
        except UnusableFile:
            kind = None
    if kind is None and filename and "." in filename:
        kind = _EXTENSIONS.get(filename.rsplit(".", 1)[1].strip().lower())
    return MEDIA_TYPES.get(kind or "", UNKNOWN_MEDIA_TYPE)


def read_rows(
    f: BinaryIO,
    size: int | None = None,
    *,
    header_row: int | None = None,
    sheet: str | None = None,
    head_only: bool = False,
) -> Table:
    """Open a stored file as a Table; raise UnusableFile if it cannot be imported at all.

    ``header_row`` (the row number the user sees, 0 for a file without one) and ``sheet`` (a
    workbook's sheet by name) override what detection would choose. ``head_only`` is for a
    preview that reads only the first rows: a JSON file is then not checked to its end first.
    """
    from app.readers import json as json_reader
    from app.readers import spreadsheet, text, vcard

    readers: dict[str, Callable[..., Table]] = {
        "csv": text.read,
        "tsv": text.read,
        "xlsx": spreadsheet.read,
        "ods": spreadsheet.read,
        "xls": spreadsheet.read,
        "json": json_reader.read,
        "ndjson": json_reader.read,
        "vcard": vcard.read,
    }
    head = f.read(SNIFF_BYTES)
    kind = detect_format(head)
    options: dict[str, Any] = {}
    if kind in ("csv", "tsv", "xlsx", "ods", "xls"):
        options["header_row"] = header_row
    if kind in ("xlsx", "ods", "xls"):
        options["sheet"] = sheet
    if kind == "json":
        options["head_only"] = head_only
    return readers[kind](rewind(head, f), head, kind, size, **options)


def cell_text(value: Any) -> str:
    """A cell as text: whole numbers lose their ``.0``, dates read as ISO dates."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def unique_columns(cells: list[Any]) -> list[str]:
    """Header cells as column names: blanks get a position, repeats get a number."""
    seen: dict[str, int] = {}
    names = []
    for position, cell in enumerate(cells, start=1):
        name = cell_text(cell).strip() or f"Column {position}"
        if name in seen:
            seen[name] += 1
            name = f"{name} ({seen[name]})"
        else:
            seen[name] = 1
        names.append(name)
    return names


def seekable(stream: BinaryIO) -> BinaryIO:
    """The stream itself if it can seek, else a temporary copy that can (formats read twice)."""
    import shutil
    import tempfile

    if stream.seekable():
        return stream
    copy = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller
    shutil.copyfileobj(stream, copy, READ_BUFFER)
    copy.seek(0)
    return copy
