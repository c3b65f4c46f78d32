"""Spreadsheet files built by the tests: XLSX through openpyxl, ODS by hand, and broken ones."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from xml.sax.saxutils import escape

import openpyxl

ODS_MIMETYPE = "application/vnd.oasis.opendocument.spreadsheet"
_ODS_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
)
_MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
    'manifest:version="1.2">'
    f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{ODS_MIMETYPE}"/>'
    '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
    "</manifest:manifest>"
)


def xlsx_bytes(rows: Sequence[Sequence[Any]], first_row: int = 1, first_column: int = 1) -> bytes:
    """An XLSX whose first sheet holds ``rows`` starting at the given (1-based) cell."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None:
                sheet.cell(row=first_row + r, column=first_column + c, value=value)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _ods_cell(value: Any) -> str:
    if value is None:
        return "<table:table-cell/>"
    if isinstance(value, bool):
        raise TypeError("booleans are not needed by the tests")
    if isinstance(value, int | float):
        return (
            f'<table:table-cell office:value-type="float" office:value="{value}">'
            f"<text:p>{value}</text:p></table:table-cell>"
        )
    if isinstance(value, datetime | date):
        return (
            f'<table:table-cell office:value-type="date" office:date-value="{value.isoformat()}">'
            f"<text:p>{value.isoformat()}</text:p></table:table-cell>"
        )
    text = escape(str(value))
    return f'<table:table-cell office:value-type="string"><text:p>{text}</text:p></table:table-cell>'


def ods_bytes(rows: Sequence[Sequence[Any]], leading_rows: int = 0, leading_columns: int = 0) -> bytes:
    """An ODS: a zip with ``mimetype`` stored first, ``content.xml`` and the manifest."""
    body = []
    if leading_rows:
        repeat = f'table:number-rows-repeated="{leading_rows}"'
        body.append(f"<table:table-row {repeat}><table:table-cell/></table:table-row>")
    pad = f'<table:table-cell table:number-columns-repeated="{leading_columns}"/>' if leading_columns else ""
    for row in rows:
        body.append("<table:table-row>" + pad + "".join(_ods_cell(v) for v in row) + "</table:table-row>")
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {_ODS_NS} office:version="1.2">'
        '<office:body><office:spreadsheet><table:table table:name="Contacts">'
        + "".join(body)
        + "</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), ODS_MIMETYPE, compress_type=zipfile.ZIP_STORED)
        archive.writestr("content.xml", content)
        archive.writestr("META-INF/manifest.xml", _MANIFEST)
    return out.getvalue()


def encrypted_xlsx(rows: Sequence[Sequence[Any]], password: str = "secret") -> bytes:
    """An XLSX saved with a password: an OLE file holding an EncryptedPackage stream."""
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(xlsx_bytes(rows))).encrypt(password, out)
    return out.getvalue()


def zip_bomb(inflated: int = 64 * 1024 * 1024) -> bytes:
    """A small XLSX-named zip whose sheet inflates to ``inflated`` bytes of the same character."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            block = b"<" * (1024 * 1024)
            for _ in range(inflated // len(block)):
                sheet.write(block)
    return out.getvalue()


def zip_claiming(inflated: int, rows: int = 1) -> bytes:
    """A real XLSX whose zip headers claim its sheet inflates to ``inflated`` bytes, true or not."""
    sheet = [["Name", "Email"]] + [["Ada", "ada@example.com"]] * rows
    data = bytearray(xlsx_bytes(sheet))
    name = b"xl/worksheets/sheet1.xml"
    # (signature, offset of the uncompressed size, offset of the name length, header length)
    for signature, size_at, name_length_at, header in (
        (b"PK\x01\x02", 24, 28, 46),
        (b"PK\x03\x04", 22, 26, 30),
    ):
        at = data.find(signature)
        while at != -1:
            length = int.from_bytes(data[at + name_length_at : at + name_length_at + 2], "little")
            if data[at + header : at + header + length] == name:
                data[at + size_at : at + size_at + 4] = inflated.to_bytes(4, "little")
            at = data.find(signature, at + 4)
    return bytes(data)
