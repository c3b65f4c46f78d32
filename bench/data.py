"""Generated input files: a contact CSV with invalid and duplicate rows, and the same rows as XLSX and ODS."""

from __future__ import annotations

import csv
import json
import os
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Linus", "Frances", "Ken"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Torvalds", "Allen"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example.co.uk"]
# Invalid emails; every one is unique, so raw COPY into a table with the contacts' keys accepts it.
INVALID = ["{}not-an-email", "{}missing-at.example.com", "{}two@@example.com", "{}trailing.@example.com"]
INVALID_SHARE = 0.05
DUPLICATE_SHARE = 0.02


def contact_rows(count: int) -> Iterator[tuple[str, str]]:
    """Name and email pairs: 5% invalid, 2% repeating an earlier valid email in upper case."""
    rng = random.Random(count)
    valid = bytearray(count)
    for i in range(count):
        name = f"{FIRST[i % len(FIRST)]} {LAST[(i // 7) % len(LAST)]}"
        email = f"user.{i:08d}@{DOMAINS[i % len(DOMAINS)]}"
        roll = rng.random()
        if roll < INVALID_SHARE:
            kind = i % (len(INVALID) + 1)
            if kind == len(INVALID):
                name = ""  # a missing name, with a good email
            else:
                email = INVALID[kind].format(i)
        elif roll < INVALID_SHARE + DUPLICATE_SHARE and i > 0:
            j = rng.randrange(i)
            if valid[j] == 1:
                valid[j] = 2  # repeated once at most, so each raw value stays unique
                # A distinct value for COPY, a duplicate once lower-cased.
                email = f"User.{j:08d}@{DOMAINS[j % len(DOMAINS)]}".upper()
            else:
                valid[i] = 1
        else:
            valid[i] = 1
        yield name, email


def write_csv(path: Path, count: int, renamed: str = "") -> Path:
    """A CSV with a header row and ``count`` contacts; a missing name is written quoted (not NULL).

    ``renamed`` is added to each name: the same people, for an import that updates every one.
    """
    if path.exists() and path.stat().st_size > 0:
        return path
    partial = path.with_suffix(".part")
    with open(partial, "w", encoding="utf-8", newline="") as out:
        out.write("name,email\n")
        out.writelines(
            f"{name + renamed if name else chr(34) * 2},{email}\n" for name, email in contact_rows(count)
        )
    os.replace(partial, path)
    return path


WIDE_HEADER = ["name", "email", "phone", "company", "job title", "notes", "city", "customer since"]
COMPANIES = ["Analytical Engines Ltd", "Hopper & Co", "Bletchley Park", "Mathematisch Centrum", "Bell Labs"]
TITLES = ["Engineer", "Rear Admiral", "Cryptanalyst", "Professor", "Researcher", "Head of Data"]
CITIES = ["London", "Arlington", "Wilmslow", "Amsterdam", "Zürich", "São Paulo", "東京"]
BAD_PHONE_EVERY = 100  # one row in a hundred has a phone that is no number: stored with a warning


def wide_rows(count: int) -> Iterator[tuple[list[str], list[str]]]:
    """The rows of ``contact_rows`` with a phone, company, job title and three extra columns.

    Each comes with the same row as the pipeline stores it (phone in E.164, the extra columns as
    the attributes' JSON), which is what ``\\copy`` of "the same rows" loads. Phones are distinct, so
    none is parsed from the cache.
    """
    for i, (name, email) in enumerate(contact_rows(count)):
        digits = f"7{(i // 10000) % 1000:03d}{i % 10000:04d}"
        phone, stored_phone = f"+44 20 {digits[:4]} {digits[4:]}", f"+4420{digits}"
        extra = {
            "notes": f"Met at event {i % 97}, asked about pricing" if i % 3 else "",
            "city": CITIES[i % len(CITIES)],
            "customer since": f"20{10 + i % 16}-0{1 + i % 9}-1{i % 10}",
        }
        attributes = {k: v for k, v in extra.items() if v}
        if i % BAD_PHONE_EVERY == 0:
            phone, stored_phone = "ask reception", ""
            attributes["phone"] = phone
        company, title = COMPANIES[i % len(COMPANIES)], TITLES[i % len(TITLES)]
        stored = [name, email, stored_phone, company, title, json.dumps(attributes, ensure_ascii=False)]
        yield [name, email, phone, company, title, *extra.values()], stored


def write_wide_csv(path: Path, copy_path: Path, count: int) -> tuple[Path, Path]:
    """The wide CSV to import, and the same rows as stored, for ``\\copy`` beside it."""
    if path.exists() and copy_path.exists() and copy_path.stat().st_size > 0:
        return path, copy_path
    partial, copy_partial = path.with_suffix(".part"), copy_path.with_suffix(".part")
    with (
        open(partial, "w", encoding="utf-8", newline="") as out,
        open(copy_partial, "w", encoding="utf-8", newline="") as stored_out,
    ):
        rows = csv.writer(out, lineterminator="\n")
        # Quoted, so that a missing name is an empty text for COPY (as in the import), not NULL.
        stored_rows = csv.writer(stored_out, lineterminator="\n", quoting=csv.QUOTE_ALL)
        rows.writerow(WIDE_HEADER)
        stored_rows.writerow(["name", "email", "phone", "company", "title", "attributes"])
        for row, stored in wide_rows(count):
            rows.writerow(row)
            stored_rows.writerow(stored)
    os.replace(partial, path)
    os.replace(copy_partial, copy_path)
    return path, copy_path


def write_binary(path: Path, size: int) -> Path:
    """Random bytes: an upload that no reader accepts, so its import ends at once."""
    if path.exists() and path.stat().st_size == size:
        return path
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            out.write(chunk)
            left -= len(chunk)
    return path


def _column(index: int) -> str:
    return "AB"[index]


def write_xlsx(path: Path, count: int) -> Path:
    """A one-sheet workbook with inline strings, as spreadsheet programs accept it."""
    if path.exists():
        return path
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            "</Types>",
        )
        book.writestr(
            "_rels/.rels",
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" '
            'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>',
        )
        book.writestr(
            "xl/workbook.xml",
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
            '<sheets><sheet name="Contacts" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        book.writestr(
            "xl/_rels/workbook.xml.rels",
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" '
            'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>',
        )
        with book.open("xl/worksheets/sheet1.xml", "w") as sheet:
            sheet.write(
                b'<?xml version="1.0" encoding="UTF-8"?>'
                b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
            )
            rows = [("name", "email"), *contact_rows(count)]
            for number, cells in enumerate(rows, start=1):
                xml = "".join(
                    f'<c r="{_column(i)}{number}" t="inlineStr"><is><t>{escape(v)}</t></is></c>'
                    for i, v in enumerate(cells)
                )
                sheet.write(f'<row r="{number}">{xml}</row>'.encode())
            sheet.write(b"</sheetData></worksheet>")
    return path


def write_ods(path: Path, count: int) -> Path:
    """An OpenDocument spreadsheet with one table."""
    if path.exists():
        return path
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr(
            zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet", zipfile.ZIP_STORED
        )
        book.writestr(
            "META-INF/manifest.xml",
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
            'manifest:version="1.2">'
            '<manifest:file-entry manifest:full-path="/" '
            'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
            '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
            "</manifest:manifest>",
        )
        with book.open("content.xml", "w") as content:
            content.write(
                b'<?xml version="1.0" encoding="UTF-8"?>'
                b'<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
                b'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
                b'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
                b'<office:body><office:spreadsheet><table:table table:name="Contacts">'
            )
            for cells in [("name", "email"), *contact_rows(count)]:
                xml = "".join(
                    f'<table:table-cell office:value-type="string"><text:p>{escape(v)}</text:p>'
                    "</table:table-cell>"
                    for v in cells
                )
                content.write(f"<table:table-row>{xml}</table:table-row>".encode())
            content.write(b"</table:table></office:spreadsheet></office:body></office:document-content>")
    return path
