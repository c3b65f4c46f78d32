"""CSV and TSV: encoding and delimiter found from the bytes, quoting as spreadsheets write it."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from itertools import chain
from typing import BinaryIO

from app.detection import (
    SAMPLE_CHARS,
    SAMPLE_ROWS,
    Unreadable,
    is_blank,
    locate_header,
    read_footer,
    skipped_above,
)
from app.readers import BrokenRow, SkippedRow, Table, UnusableFile, unique_columns

DELIMITERS = (",", ";", "\t", "|")
FIELD_LIMIT = 1024 * 1024
# A line is read whole before it is split: cap it, so a file with no line breaks cannot fill memory.
LINE_LIMIT = 8 * FIELD_LIMIT
_FALLBACK = "dataflow-cp1252"
_EXCEL_SEPARATOR = re.compile(r"\ufeff?sep=([,;\t|])\r?\n")


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Read bytes that are not UTF-8 as Windows-1252 (Latin-1 for its five unused bytes)."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in bad), exc.end


codecs.register_error(_FALLBACK, _cp1252_fallback)
csv.field_size_limit(FIELD_LIMIT)


def encoding_of(head: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with a BOM, or Windows-1252 as the fallback."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def _decode(head: bytes, encoding: str) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors=_FALLBACK)
    return decoder.decode(head, final=False)


def _looks_binary(sample: str) -> bool:
    """Text files have next to no control characters; binary files are full of them."""
    if not sample:
        return False
    control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\r\n\f")
    return control / len(sample) > 0.01


def delimiter_of(sample: str) -> str:
    """The delimiter that splits the first lines into the same number of columns, most of all.

    Lines that split into one column are left out, so notes or a title above the table (which
    hold no delimiter) do not decide it.
    """
    lines = sample.splitlines(keepends=True)
    if len(lines) > 1:
        lines = lines[:-1]  # the last line of a sample may be cut short
    lines = lines[:50]
    best, best_score = ",", (0, 0)
    for delimiter in DELIMITERS:
        try:
            widths = [len(row) for row in csv.reader(lines, delimiter=delimiter) if len(row) >= 2]
        except csv.Error:
            continue
        if not widths:
            continue
        width = Counter(widths).most_common(1)[0][0]
        score = (widths.count(width), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def sniff(head: bytes) -> str | None:
    """``csv`` or ``tsv`` if the bytes are text, else None."""
    text = _decode(head, encoding_of(head))
    if _looks_binary(text):
        return None
    return "tsv" if delimiter_of(text) == "\t" else "csv"


def read(stream: BinaryIO, head: bytes, kind: str, size: int | None, header_row: int | None = None) -> Table:
    """Rows of a delimited text file, below its header (found past notes, titles and blank lines)."""
    encoding = encoding_of(head)
    sample = _decode(head, encoding)
    excel_hint = _EXCEL_SEPARATOR.match(sample)
    delimiter = excel_hint.group(1) if excel_hint else delimiter_of(sample)
    text = io.TextIOWrapper(stream, encoding=encoding, errors=_FALLBACK, newline="")
    if excel_hint:
        # Excel's "sep=;" line names the delimiter and is hidden when Excel opens the file,
        # so the rows are numbered as if it were not there.
        text.readline(LINE_LIMIT)
    records = csv.reader(_bounded_lines(text), delimiter=delimiter)
    try:
        rows = _sample(records)
        if all(is_blank(cells) for cells in rows):
            raise UnusableFile("The file has no header row: it is empty or holds only blank lines.")
        layout = locate_header(rows, header_row)
    except UnusableFile:
        text.detach()
        raise
    if layout.header is not None:
        columns = unique_columns(rows[layout.header])
    else:
        columns = unique_columns([""] * max(len(cells) for cells in rows))
    ahead = rows[layout.data :]
    total = None
    if size:
        lines = head.count(b"\n") or 1
        total = max(0, round(size * lines / len(head)) - layout.data)
    return Table(
        kind,
        _rows(text, chain(ahead, records), columns, layout.data),
        total,
        columns,
        header_row=None if layout.header is None else layout.header + 1,
        skipped_rows=skipped_above(rows, layout),
        sample=list(enumerate(rows, start=1)),
        encoding=encoding.removesuffix("-sig"),
        delimiter=delimiter,
        data_from=layout.data + 1,
    )


def _sample(records: Iterator[list[str]]) -> list[list[str]]:
    """The file's first rows, blank ones included, for detection: at most SAMPLE_ROWS with something
    in them and SAMPLE_CHARS of text. A row that cannot be read ends the sample as an Unreadable."""
    rows: list[list[str]] = []
    chars = wide = 0
    while wide < SAMPLE_ROWS and chars < SAMPLE_CHARS:
        try:
            cells = next(records)
        except StopIteration:
            break
        except csv.Error as exc:
            if all(is_blank(cells) for cells in rows):
                raise UnusableFile(
                    f"The header row could not be read ({exc}). Check that the file is a CSV whose "
                    "first line names the columns, and that its quotes are closed."
                ) from exc
            rows.append(Unreadable(f"This row could not be read: {exc}"))
            break
        rows.append(cells)
        chars += sum(map(len, cells))
        wide += not is_blank(cells)
    return rows


def _bounded_lines(text: io.TextIOWrapper) -> Iterator[str]:
    """The file's lines, refusing one longer than LINE_LIMIT characters instead of reading it whole."""
    while line := text.readline(LINE_LIMIT):
        if len(line) >= LINE_LIMIT and not line.endswith(("\n", "\r")):
            raise UnusableFile(
                f"The file has a line longer than {LINE_LIMIT // (1024 * 1024)} MB. "
                "Is it really a CSV file? Save it again as CSV and upload that."
            )
        yield line


def _rows(
    text: io.TextIOWrapper, records: Iterator[list[str]], columns: list[str], row_number: int
) -> Iterator[tuple[int, list[str] | BrokenRow | SkippedRow]]:
    """Each row's cells, numbered as a spreadsheet numbers them; a report's footer lines are skipped."""
    width = len(columns)
    try:
        while True:
            row_number += 1
            try:
                cells = next(records)
            except StopIteration:
                return
            except csv.Error as exc:
                yield row_number, BrokenRow(f"This row could not be read: {exc}", "")
                continue
            # Only a short row or one whose first cell is empty can be blank or unreadable: the
            # full rows of a file never take this branch.
            if len(cells) < width or not cells[0]:
                if type(cells) is Unreadable:
                    yield row_number, BrokenRow(cells.message, "")
                    continue
                if is_blank(cells):
                    held, footer = read_footer(records, (csv.Error,))
                    yield row_number, cells + [""] * (width - len(cells))
                    for cells in held:
                        row_number += 1
                        if footer and not is_blank(cells):
                            yield row_number, SkippedRow(" ".join(c for c in cells if c.strip()))
                        elif type(cells) is Unreadable:
                            yield row_number, BrokenRow(cells.message, "")
                        else:
                            yield row_number, cells + [""] * (width - len(cells))
                    continue
                if len(cells) < width:
                    cells += [""] * (width - len(cells))
            yield row_number, cells
    finally:
        # The caller owns the stream and closes it; if it closed it first (the rows were
        # abandoned mid-file), there is nothing left to detach.
        with contextlib.suppress(ValueError):
            text.detach()
