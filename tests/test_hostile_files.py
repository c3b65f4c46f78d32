"""Hostile files: zip bombs, XML entity bombs, NUL bytes, bad UTF-8, huge fields, wide headers, MAX_ROWS."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import Contact, Import, RowError
from tests.conftest import ROOT

LAUGHS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""
XLSX_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml"


def xlsx(sheet_xml: str, shared_xml: str | None = None) -> bytes:
    """A minimal workbook with one sheet, written part by part."""
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{XLSX_MAIN}.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{XLSX_MAIN}.worksheet+xml"/>'
            f'<Override PartName="/xl/sharedStrings.xml" ContentType="{XLSX_MAIN}.sharedStrings+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
            '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships/worksheet" Target="worksheets/sheet1.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>'
        ),
        "xl/worksheets/sheet1.xml": sheet_xml,
        "xl/sharedStrings.xml": shared_xml
        or (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"></sst>'
        ),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def sheet(rows: list[list[str]], prolog: str = '<?xml version="1.0" encoding="UTF-8"?>') -> str:
    """Sheet XML with inline strings."""
    body = "".join(
        f'<row r="{r}">'
        + "".join(f'<c r="{chr(65 + c)}{r}" t="inlineStr"><is><t>{v}</t></is></c>' for c, v in enumerate(row))
        + "</row>"
        for r, row in enumerate(rows, start=1)
    )
    return (
        f'{prolog}<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f"<sheetData>{body}</sheetData></worksheet>"
    )


def ods(content_xml: str) -> bytes:
    """A minimal OpenDocument spreadsheet."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr(
            "META-INF/manifest.xml",
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
            '<manifest:file-entry manifest:full-path="/" '
            'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
            '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
            "</manifest:manifest>",
        )
        archive.writestr("content.xml", content_xml, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def ods_content(rows: list[list[str]], prolog: str) -> str:
    cells = "".join(
        "<table:table-row>"
        + "".join(
            f'<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>'
            for v in row
        )
        + "</table:table-row>"
        for row in rows
    )
    return (
        f"{prolog}<office:document-content "
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f'<office:body><office:spreadsheet><table:table table:name="Sheet1">{cells}</table:table>'
        "</office:spreadsheet></office:body></office:document-content>"
    )


@pytest.fixture
def run_file(make_app: Callable[..., Flask], work) -> Callable[..., dict]:
    """Import a file through POST /import and the worker; answer what the import and database show."""
    apps: dict[str, Flask] = {}

    def run(data: bytes, source: str = "hostile", **settings: str) -> dict:
        key = json.dumps(settings, sort_keys=True)
        if key not in apps:
            apps[key] = make_app(RATE_LIMITS_ENABLED="false", **settings)
        app = apps[key]
        with app.app_context():
            answer = app.test_client().post("/import", data=data, headers={"X-Source": source})
            assert answer.status_code == 202, answer.get_data(as_text=True)
            job_id = answer.get_json()["jobId"]
            work()
            imp = db.session.get(Import, job_id)
            errors = db.session.scalars(select(RowError).where(RowError.import_id == job_id)).all()
            contacts = db.session.scalar(
                select(func.count()).select_from(Contact).where(Contact.source == source)
            )
            return {
                "status": imp.status,
                "error": imp.error or "",
                "inserted": imp.inserted_rows,
                "contacts": contacts,
                "errors": [(e.row, e.field, e.message, e.value) for e in errors],
            }

    return run


# --- spreadsheets -------------------------------------------------------------------------------


def test_a_zip_bomb_is_refused_before_it_is_inflated(run_file):
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (40 * 1024 * 1024))
    assert len(bomb.getvalue()) < 100_000  # 40 MB packed into a few kB
    outcome = run_file(bomb.getvalue())
    assert outcome["status"] == "failed"
    assert "too large to import safely" in outcome["error"]
    assert outcome["contacts"] == 0


BOUNDED_READ = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from app.readers import UnusableFile, read_rows
    try:
        table = read_rows(open(sys.argv[1], "rb"))
        rows = list(table.rows)
    except UnusableFile as exc:
        print("unusable:", exc)
    else:
        print("rows:", max((len(str(v)) for _, r in rows for v in r.values()), default=0), len(rows))
    """
)


@pytest.mark.parametrize("kind", ["xlsx-sheet", "xlsx-shared-strings", "ods"])
def test_xml_entity_expansion_is_never_performed(kind, tmp_path, run_file):
    rows = [["name", "email"], ["&lol9;", "ada@example.com"]]
    if kind == "xlsx-sheet":
        data = xlsx(sheet(rows, LAUGHS))
    elif kind == "xlsx-shared-strings":
        shared = (
            LAUGHS + '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            "<si><t>name</t></si><si><t>email</t></si><si><t>&lol9;</t></si><si><t>ada@example.com</t></si></sst>"
        )
        cells = [[0, 1], [2, 3]]
        body = "".join(
            f'<row r="{r}">'
            + "".join(f'<c r="{"AB"[c]}{r}" t="s"><v>{v}</v></c>' for c, v in enumerate(row))
            + "</row>"
            for r, row in enumerate(cells, start=1)
        )
        data = xlsx(
            '<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            f"<sheetData>{body}</sheetData></worksheet>",
            shared,
        )
    else:
        data = ods(ods_content(rows, LAUGHS))
    path = tmp_path / "laughs"
    path.write_bytes(data)
    # Read where memory is capped at 1 GB: expanding &lol9; (a billion "lol"s) could never fit.
    reader = subprocess.run(
        [sys.executable, "-c", BOUNDED_READ, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert reader.returncode == 0, reader.stderr[-2000:]
    said = reader.stdout.strip()
    assert said.startswith("unusable:") or said.startswith("rows:"), said
    if said.startswith("rows:"):
        longest = int(said.split()[1])
        assert longest < 1000  # the entity was left as it was or dropped, never expanded

    outcome = run_file(data)
    assert outcome["status"] in ("failed", "completed")
    assert all(len(value or "") < 1000 for *_, value in outcome["errors"])
    assert outcome["contacts"] <= 1


def test_a_plain_xlsx_still_imports(run_file):
    outcome = run_file(xlsx(sheet([["name", "email"], ["Ada", "ada@example.com"]])))
    assert (outcome["status"], outcome["inserted"]) == ("completed", 1)


# --- bytes --------------------------------------------------------------------------------------


def test_nul_bytes_in_a_value_are_row_errors(run_file):
    rows = "".join(f"Person {i},p{i}@example.com\n" for i in range(300))
    data = ("name,email\n" + rows + "Ada\x00Lovelace,ada@example.com\nBob,b\x00b@example.com\n").encode()
    outcome = run_file(data)
    assert outcome["status"] == "completed"
    assert outcome["inserted"] == 300 and outcome["contacts"] == 300
    assert outcome["errors"] == [
        (302, "name", "Name contains a NUL character, which cannot be stored", "Ada\ufffdLovelace"),
        (
            303,
            "email",
            "Not a valid email address: it has a character that cannot be in an address: U+0000",
            "b\ufffdb@example.com",
        ),
    ]
    in_json = (
        b'[{"name": "Ada\\u0000L", "email": "ada@example.com"}, {"name": "Ok", "email": "ok@example.com"}]'
    )
    outcome = run_file(in_json, source="json")
    assert (outcome["status"], outcome["inserted"]) == ("completed", 1)
    assert outcome["errors"][0][2] == "Name contains a NUL character, which cannot be stored"


def test_a_file_full_of_nul_bytes_is_refused(run_file):
    outcome = run_file(b"name,email\n" + b"\x00" * 5000)
    assert outcome["status"] == "failed"
    assert "not a file we can read" in outcome["error"]
    assert outcome["contacts"] == 0


def test_invalid_utf8(run_file):
    outcome = run_file(b'[{"name": "A\xff\xfe", "email": "a@example.com"}]')
    assert outcome["status"] == "failed"
    assert "not valid JSON" in outcome["error"]
    assert outcome["contacts"] == 0
    # A CSV that is not UTF-8 is read as Windows-1252: nothing is lost, nothing crashes.
    outcome = run_file(b"name,email\nRen\xe9 \xff,rene@example.com\n", source="csv")
    assert (outcome["status"], outcome["inserted"]) == ("completed", 1)


def test_a_5_mb_field_is_a_row_error_and_the_rest_imports(run_file):
    rows = b"".join(b"P%d,p%d@example.com\n" % (i, i) for i in range(5))
    outcome = run_file(b"name,email\n" + rows + b"A" * 5_000_000 + b",x@example.com\nLast,last@example.com\n")
    assert outcome["status"] == "completed"
    assert outcome["contacts"] == outcome["inserted"] == 6
    assert outcome["errors"] == [
        (7, None, "This row could not be read: field larger than field limit (1048576)", "")
    ]


def test_a_quote_never_closed_ends_as_bounded_row_errors(run_file):
    quoted = b'name,email\n"' + b"unclosed\n" * 300_000 + b'",a@example.com\n'
    outcome = run_file(quoted)
    assert outcome["status"] == "completed"
    assert outcome["errors"][0][2].startswith("This row could not be read: field larger than field limit")
    assert all(len(value or "") <= 1001 for *_, value in outcome["errors"])  # never the 2.7 MB field


def test_a_line_that_never_ends_fails_without_reading_it_whole(run_file):
    outcome = run_file(b"name,email\n" + b"a" * (9 * 1024 * 1024))
    assert outcome["status"] == "failed"
    assert "a line longer than 8 MB" in outcome["error"]


def test_a_10000_column_header_fails_clearly(run_file):
    header = ",".join(f"c{i}" for i in range(10_000)) + ",name,email\n"
    outcome = run_file((header + "," * 10_000 + "Ada,ada@example.com\n").encode())
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith("The file has 10,002 columns; at most 1,000 are read.")
    assert outcome["contacts"] == 0
    wide_item = json.dumps([{f"k{i}": "v" for i in range(2000)} | {"name": "A", "email": "a@example.com"}])
    outcome = run_file(wide_item.encode(), source="json")
    assert outcome["status"] == "completed" and outcome["contacts"] == 0
    assert outcome["errors"] == [(1, None, "This item has 2,002 fields; at most 1,000 are read", "")]


# --- MAX_ROWS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["csv", "json"])
def test_max_rows_stops_the_import_at_the_limit(form, run_file):
    people = [(f"Person {i}", f"p{i}@example.com") for i in range(1, 9)]
    if form == "csv":
        data = ("name,email\n" + "".join(f"{n},{e}\n" for n, e in people)).encode()
        first_refused = 7  # row 1 is the header
    else:
        data = json.dumps([{"name": n, "email": e} for n, e in people]).encode()
        first_refused = 6
    outcome = run_file(data, MAX_ROWS="5", BATCH_SIZE="2")
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith("The file has more than 5 rows, the most one import takes (MAX_ROWS).")
    assert f"nothing from row {first_refused} on was" in outcome["error"]
    assert outcome["inserted"] == outcome["contacts"] == 5


def test_max_rows_on_a_batch_boundary_counts_blank_lines_as_nothing(run_file):
    people = "".join(f"Person {i},p{i}@example.com\n" for i in range(1, 7))
    exactly = run_file(f"name,email\n{people},\n\n".encode(), MAX_ROWS="6", BATCH_SIZE="3")
    assert (exactly["status"], exactly["contacts"], exactly["errors"]) == ("completed", 6, [])
    one_more = run_file(
        f"name,email\n{people},\n\nPerson 7,p7@example.com\n".encode(),
        source="more",
        MAX_ROWS="6",
        BATCH_SIZE="3",
    )
    assert one_more["status"] == "failed"
    assert "The first 6 were imported; nothing from row 10 on was." in one_more["error"]
    assert one_more["contacts"] == 6
