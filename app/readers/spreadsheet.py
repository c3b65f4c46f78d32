"""XLSX, ODS and XLS through python-calamine: the first sheet, its first non-empty row the header."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO

import python_calamine

from app.readers import READ_BUFFER, BrokenRow, Table, UnusableFile, unique_columns

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


def read(stream: BinaryIO, head: bytes, kind: str, size: int | None) -> Table:
    """The first sheet's rows, numbered as the spreadsheet numbers them."""
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
            sheet = workbook.get_sheet_by_index(0)
            end = sheet.end
            rows = sheet.iter_rows() if end else iter(())
        except python_calamine.PasswordError as exc:
            raise UnusableFile(PROTECTED) from exc
        except (python_calamine.CalamineError, ValueError, IndexError) as exc:
            # An encrypted workbook is an OLE file whose directory may lie past the sniffed head.
            raise UnusableFile(PROTECTED if _is_encrypted(path) else DAMAGED) from exc
    finally:
        if owned:
            os.unlink(owned.name)

    # calamine yields rows from the sheet's first row, leading empty ones included (only the
    # leading empty columns are cut), so a row's index plus one is the number the sheet shows.
    for index, cells in enumerate(rows):
        if any(cell not in ("", None) for cell in cells):
            columns = unique_columns(cells)
            header_row = index + 1
            total = end[0] + 1 - header_row
            return Table(kind, _rows(rows, columns, header_row), total, columns)
    raise UnusableFile("The first sheet of the spreadsheet is empty.")


def _rows(
    rows: Iterator[list[Any]], columns: list[str], header_row: int
) -> Iterator[tuple[int, list[Any] | BrokenRow]]:
    width = len(columns)
    for row_number, cells in enumerate(rows, start=header_row + 1):
        if len(cells) < width:  # calamine gives every row the sheet's width; this keeps the promise
            cells += [None] * (width - len(cells))
        yield row_number, cells
