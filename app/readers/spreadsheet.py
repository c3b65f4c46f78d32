"""XLSX, ODS and XLS through python-calamine: the first sheet that holds contacts, its header found."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from itertools import chain, islice
from typing import Any, BinaryIO

import python_calamine

from app.detection import SAMPLE_ROWS, holds_contacts, is_blank, locate_header, read_footer, skipped_above
from app.readers import READ_BUFFER, SkippedRow, Table, UnusableFile, cell_text, unique_columns

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ODS_MIMETYPE = b"mimetypeapplication/vnd.oasis.opendocument.spreadsheet"
# calamine holds a whole sheet in memory, about twice its XML: cap what a workbook may inflate to.
MAX_UNCOMPRESSED = 256 * 1024 * 1024
MAX_RATIO = 200

PROTECTED = (
    "The spreadsheet is password-protected. Save a copy without the password "
    "(in Excel: File, Info, Protect Workbook) and upload that."
)
DAMAGED = (
    "The spreadsheet could not be opened: it looks damaged or incomplete. "
    "Open it in your spreadsheet program, save it again, and upload the new copy."
)


def sniff(head: bytes) -> str | None:
    """``xlsx``, ``ods`` or ``xls`` from the file's signature."""
    if head.startswith(ZIP_MAGIC):
        return "ods" if ODS_MIMETYPE in head[:200] else "xlsx"
    if head.startswith(OLE_MAGIC):
        if "EncryptedPackage".encode("utf-16-le") in head:
            raise UnusableFile(PROTECTED)
        return "xls"
    return None


def _is_encrypted(path: str) -> bool:
    """Whether an OLE file holds an encrypted Office package, wherever its directory lies."""
    marker = "EncryptedPackage".encode("utf-16-le")
    with open(path, "rb") as f:
        if f.read(len(OLE_MAGIC)) != OLE_MAGIC:
            return False
        tail = b""
        while chunk := f.read(READ_BUFFER):
            if marker in tail + chunk:
                return True
            tail = chunk[-len(marker) :]
    return False


def _check_zip(path: str) -> str:
    """Refuse a zip that is no spreadsheet, or that would inflate far beyond its size (a zip bomb)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UnusableFile(DAMAGED) from exc
    names = {m.filename for m in members}
    if "EncryptedPackage" in names:
        raise UnusableFile(PROTECTED)
    if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
        kind = "xlsx"
    elif "content.xml" in names and "mimetype" in names:
        kind = "ods"
    else:
        raise UnusableFile(
            "This is a ZIP archive, not a spreadsheet. Upload the spreadsheet itself (.xlsx, .ods or .csv)."
        )
    inflated = sum(m.file_size for m in members)
    packed = sum(m.compress_size for m in members) or 1
    if inflated > MAX_UNCOMPRESSED or inflated / packed > MAX_RATIO:
        raise UnusableFile(
            f"The spreadsheet unpacks to {inflated / 1e6:,.0f} MB, too large to import safely "
            f"(the limit is {MAX_UNCOMPRESSED / 1e6:,.0f} MB). Split it, or save it as CSV."
        )
    return kind


def read(
    stream: BinaryIO,
    head: bytes,
    kind: str,
    size: int | None,
    header_row: int | None = None,
    sheet: str | None = None,
) -> Table:
    """The rows of the first sheet that holds contacts, numbered as the spreadsheet numbers them."""
    path = getattr(stream, "name", None)
    owned = None
    if not isinstance(path, str) or not os.path.isfile(path):
        owned = tempfile.NamedTemporaryFile(suffix=f".{kind}", delete=False)  # noqa: SIM115
        with owned:
            shutil.copyfileobj(stream, owned, READ_BUFFER)
        path = owned.name
    try:
        if kind != "xls":
            kind = _check_zip(path)
        try:
            workbook = python_calamine.CalamineWorkbook.from_path(path)
            names = [
                m.name for m in workbook.sheets_metadata if m.typ == python_calamine.SheetTypeEnum.WorkSheet
            ]
            chosen = _choose_sheet(workbook, names, sheet)
        except python_calamine.PasswordError as exc:
            raise UnusableFile(PROTECTED) from exc
        except (python_calamine.CalamineError, ValueError, IndexError) as exc:
            # An encrypted workbook is an OLE file whose directory may lie past the sniffed head.
            raise UnusableFile(PROTECTED if _is_encrypted(path) else DAMAGED) from exc
    finally:
        if owned:
            os.unlink(owned.name)
    if chosen is None:
        raise UnusableFile("The spreadsheet is empty: none of its sheets holds anything.")
    name, rows, sampled, end = chosen
    layout = locate_header(sampled, header_row)
    if layout.header is not None:
        columns = unique_columns(sampled[layout.header])
    else:
        columns = unique_columns([None] * max(len(cells) for cells in sampled))
    total = max(0, end[0] + 1 - layout.data)
    return Table(
        kind,
        _rows(chain(sampled[layout.data :], rows), columns, layout.data),
        total,
        columns,
        header_row=None if layout.header is None else layout.header + 1,
        skipped_rows=skipped_above(sampled, layout),
        sample=list(enumerate(sampled, start=1)),
        sheets=names,
        sheet=name,
        data_from=layout.data + 1,
    )


Chosen = tuple[str, Iterator[list[Any]], list[list[Any]], tuple[int, int]]


def _open_sheet(workbook: python_calamine.CalamineWorkbook, name: str) -> Chosen | None:
    """A sheet's rows, its first rows sampled, and its end; None for a sheet with nothing in it."""
    sheet = workbook.get_sheet_by_name(name)
    end = sheet.end
    if not end:
        return None
    # calamine yields rows from the sheet's first row, leading empty ones included (only the
    # leading empty columns are cut), so a row's index plus one is the number the sheet shows.
    rows = sheet.iter_rows()
    sampled = list(islice(rows, SAMPLE_ROWS))
    if all(is_blank(cells) for cells in sampled):
        return None
    return name, rows, sampled, end


def _choose_sheet(
    workbook: python_calamine.CalamineWorkbook, names: list[str], wanted: str | None
) -> Chosen | None:
    """The sheet asked for, else the first that holds contacts, else the first with anything in it."""
    if wanted is not None:
        if wanted not in names:
            raise UnusableFile(f"The workbook has no sheet {wanted!r}. Its sheets are: {', '.join(names)}.")
        chosen = _open_sheet(workbook, wanted)
        if chosen is None:
            raise UnusableFile(f"The sheet {wanted!r} is empty.")
        return chosen
    first = None
    for name in names:
        opened = _open_sheet(workbook, name)
        if opened is None:
            continue
        if holds_contacts(opened[2]):
            return opened
        first = first or opened
    return first


def _rows(
    rows: Iterator[list[Any]], columns: list[str], row_number: int
) -> Iterator[tuple[int, list[Any] | SkippedRow]]:
    """Each row's cells from the one after ``row_number``; a report's footer lines are skipped."""
    width = len(columns)
    while True:
        row_number += 1
        cells = next(rows, None)
        if cells is None:
            return
        # calamine gives every row the sheet's width; padding keeps the promise for narrower ones.
        if len(cells) < width or cells[0] in ("", None):
            if is_blank(cells):
                held, footer = read_footer(rows)
                yield row_number, cells + [None] * (width - len(cells))
                for cells in held:
                    row_number += 1
                    if footer and not is_blank(cells):
                        yield (
                            row_number,
                            SkippedRow(" ".join(cell_text(c) for c in cells if cell_text(c).strip())),
                        )
                    else:
                        yield row_number, cells + [None] * (width - len(cells))
                continue
            if len(cells) < width:
                cells += [None] * (width - len(cells))
        yield row_number, cells
