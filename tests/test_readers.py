"""Readers: every format from its bytes, rows numbered as the user sees them, unusable files refused."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import zipfile
from datetime import date, datetime

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from app.readers import BrokenRow, SkippedRow, Table, UnusableFile, media_type, read_rows
from app.readers.spreadsheet import MAX_UNCOMPRESSED
from tests.spreadsheets import encrypted_xlsx, ods_bytes, xlsx_bytes, zip_bomb, zip_claiming


class OneWayStream(io.RawIOBase):
    """A stream that cannot seek, as an upload arriving over the network."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def read(data: bytes, seekable: bool = True) -> tuple[Table, list]:
    """The table and all its rows, read as the worker reads a stored file."""
    stream = io.BytesIO(data) if seekable else io.BufferedReader(OneWayStream(data))
    table = read_rows(stream, len(data))
    return table, list(table.records())


def refused(data: bytes) -> str:
    """The message of a file that cannot be imported (its rows are read to the end)."""
    with pytest.raises(UnusableFile) as caught:
        read(data)
    return str(caught.value)


# -- CSV and TSV: encodings, delimiters, quoting ------------------------------------------------

PEOPLE = "Name,Email\nJürgen Müller,juergen@example.de\nCafé Crème,cafe@example.fr\n"


@pytest.mark.parametrize(
    "data",
    [
        PEOPLE.encode("utf-8"),
        codecs.BOM_UTF8 + PEOPLE.encode("utf-8"),
        codecs.BOM_UTF16_LE + PEOPLE.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + PEOPLE.encode("utf-16-be"),
        PEOPLE.encode("cp1252"),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-le", "utf-16-be", "windows-1252"],
)
@pytest.mark.parametrize("seekable", [True, False], ids=["stored", "streamed"])
def test_csv_encodings(data: bytes, seekable: bool):
    table, rows = read(data, seekable)
    assert table.format == "csv"
    assert table.columns == ["Name", "Email"]
    assert rows == [
        (2, {"Name": "Jürgen Müller", "Email": "juergen@example.de"}),
        (3, {"Name": "Café Crème", "Email": "cafe@example.fr"}),
    ]


def test_windows_1252_after_the_sniffed_head_is_still_read():
    """A file that is plain ASCII for its first 64 KB and then has a Windows-1252 byte."""
    filler = "".join(f"Person {i},p{i}@example.com\n" for i in range(4000))
    data = ("Name,Email\n" + filler).encode() + "Müller,m@example.de\n".encode("cp1252")
    assert len(data) > 64 * 1024
    _, rows = read(data)
    assert rows[-1] == (4002, {"Name": "Müller", "Email": "m@example.de"})


@pytest.mark.parametrize(("delimiter", "kind"), [(",", "csv"), (";", "csv"), ("\t", "tsv"), ("|", "csv")])
def test_delimiters_are_sniffed(delimiter: str, kind: str):
    lines = [
        ["Name", "Email", "City"],
        ["Ada", "ada@example.com", "London"],
        ["Bob", "b@example.com", "Paris"],
    ]
    data = "\n".join(delimiter.join(line) for line in lines).encode()
    table, rows = read(data)
    assert table.format == kind
    assert rows[1] == (3, {"Name": "Bob", "Email": "b@example.com", "City": "Paris"})


def test_semicolons_with_commas_in_the_values():
    data = b"Name;Email\nM\xc3\xbcller, Hans;h@example.de\nDoe, Jane;j@example.com\n"
    _, rows = read(data)
    assert rows == [
        (2, {"Name": "Müller, Hans", "Email": "h@example.de"}),
        (3, {"Name": "Doe, Jane", "Email": "j@example.com"}),
    ]


def test_quoted_fields_keep_commas_quotes_and_newlines_and_rows_count_as_in_a_spreadsheet():
    data = (
        b"name,email,note\r\n"
        b'"Smith, John",john@example.com,"said ""hi"""\r\n'
        b'Ada,ada@example.com,"line one\r\nline two\r\nline three"\r\n'
        b"\r\n"
        b"Bob,bob@example.com,last\r\n"
    )
    _, rows = read(data)
    assert rows[0] == (2, {"name": "Smith, John", "email": "john@example.com", "note": 'said "hi"'})
    assert rows[1] == (
        3,
        {"name": "Ada", "email": "ada@example.com", "note": "line one\r\nline two\r\nline three"},
    )
    # the multi-line cell is one spreadsheet row, and the blank line is row 4
    assert rows[-1] == (5, {"name": "Bob", "email": "bob@example.com", "note": "last"})


def test_leading_blank_lines_count_and_short_rows_are_padded():
    _, rows = read(b"\n\nName,Email,Phone\nAda,ada@example.com\n")
    assert rows == [(4, {"Name": "Ada", "Email": "ada@example.com", "Phone": ""})]


def test_excels_separator_line_names_the_delimiter_and_is_not_a_row():
    data = "sep=;\r\nName;Email;Note\r\nMüller, Hans;h@example.de;a,b\r\n".encode("cp1252")
    table, rows = read(data)
    assert table.columns == ["Name", "Email", "Note"]
    assert rows == [(2, {"Name": "Müller, Hans", "Email": "h@example.de", "Note": "a,b"})]


def test_header_only_csv_has_no_rows():
    table, rows = read(b"Name,Email\r\n")
    assert table.columns == ["Name", "Email"]
    assert rows == []


def test_unreadable_csv_row_is_a_broken_row_with_its_number():
    data = b'name,email\nAda,ada@example.com\n"' + b"x" * (1024 * 1024 + 10) + b"\nBob,bob@example.com\n"
    _, rows = read(data)
    assert rows[0] == (2, {"name": "Ada", "email": "ada@example.com"})
    assert isinstance(rows[1][1], BrokenRow) and rows[1][0] == 3


def test_unreadable_csv_header_is_refused():
    message = refused(b'"' + b"x" * (1024 * 1024 + 10) + b"\n")
    assert "header row could not be read" in message


# -- XLSX and ODS -------------------------------------------------------------------------------

SHEET = [
    ["Full Name", "E-Mail", "Phone", "Born"],
    [12345, "ADA@example.com", 4930123456, date(1990, 12, 10)],
    ["Grace Hopper", "grace@example.com", 1.5, datetime(1906, 12, 9, 8, 30)],
    [None, None, None, None],
    ["Bob", "bob@example.com", None, None],
]


@pytest.mark.parametrize("build", [xlsx_bytes, ods_bytes], ids=["xlsx", "ods"])
def test_spreadsheet_rows_numbers_and_dates(build):
    data = build(SHEET)
    table, rows = read(data)
    assert table.format == ("xlsx" if build is xlsx_bytes else "ods")
    assert table.columns == ["Full Name", "E-Mail", "Phone", "Born"]
    numbers = [number for number, _ in rows]
    assert numbers == [2, 3, 4, 5]
    from app.readers import cell_text

    as_text = [{k: cell_text(v) for k, v in record.items()} for _, record in rows]
    assert as_text[0] == {
        "Full Name": "12345",
        "E-Mail": "ADA@example.com",
        "Phone": "4930123456",
        "Born": "1990-12-10",
    }
    assert as_text[1]["Phone"] == "1.5"
    assert as_text[1]["Born"].startswith("1906-12-09")
    assert as_text[3]["Full Name"] == "Bob"


def test_xlsx_header_below_empty_rows_and_right_of_empty_columns():
    data = xlsx_bytes(
        [["Name", "Email"], ["Ada", "ada@example.com"], [None, None], ["Bob", "b@example.com"]], 3, 3
    )
    table, rows = read(data)
    assert table.columns == ["Name", "Email"]
    assert [number for number, _ in rows] == [4, 5, 6]
    assert rows[0][1] == {"Name": "Ada", "Email": "ada@example.com"}
    assert table.total_rows == 3


def test_ods_header_below_empty_rows_and_right_of_empty_columns():
    data = ods_bytes([["Name", "Email"], ["Ada", "ada@example.com"], ["Bob", "b@example.com"]], 2, 2)
    table, rows = read(data, seekable=False)
    assert table.format == "ods"
    assert rows == [
        (4, {"Name": "Ada", "Email": "ada@example.com"}),
        (5, {"Name": "Bob", "Email": "b@example.com"}),
    ]


def test_header_only_spreadsheet_has_no_rows():
    table, rows = read(xlsx_bytes([["Name", "Email"]]))
    assert table.columns == ["Name", "Email"]
    assert rows == []


def test_empty_spreadsheet_is_refused():
    assert "empty" in refused(xlsx_bytes([]))


def test_truncated_xlsx_is_refused_as_damaged():
    data = xlsx_bytes(SHEET)
    assert "damaged or incomplete" in refused(data[: len(data) // 2])


def test_password_protected_xlsx_is_refused_with_what_to_do():
    data = encrypted_xlsx(SHEET)
    assert data.startswith(b"\xd0\xcf\x11\xe0")
    assert "password-protected" in refused(data)


def test_password_protected_file_is_named_so_even_when_the_sniffed_head_missed_it():
    """A big encrypted workbook's OLE directory can lie past the first 64 KB the sniffer sees."""
    from app.readers import spreadsheet

    data = encrypted_xlsx(SHEET)
    with pytest.raises(UnusableFile, match="password-protected"):
        spreadsheet.read(io.BytesIO(data), data[:512], "xls", len(data))


def test_zip_bomb_is_refused_before_it_is_inflated():
    data = zip_bomb()
    assert len(data) < 1024 * 1024
    message = refused(data)
    assert "too large to import safely" in message


def test_zip_claiming_more_than_the_size_limit_is_refused():
    data = zip_claiming(MAX_UNCOMPRESSED + 1)
    assert len(data) < 10_000
    assert "too large to import safely" in refused(data)


def test_zip_understating_what_it_inflates_to_is_refused_as_damaged():
    """The size check reads the zip's headers; a sheet that lies about its size never gets past them."""
    data = zip_claiming(100, rows=2000)
    assert "damaged or incomplete" in refused(data)


def test_zip_that_is_not_a_spreadsheet_is_refused():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("contacts/readme.txt", "the spreadsheet is elsewhere")
    assert "ZIP archive, not a spreadsheet" in refused(out.getvalue())


# -- JSON and NDJSON ----------------------------------------------------------------------------


def test_json_array_items_numbered_from_one():
    data = json.dumps(
        [{"name": "Ada", "email": "ada@example.com"}, 7, {"name": "Bob", "email": "b@example.com"}]
    )
    table, rows = read(data.encode())
    assert table.format == "json"
    assert table.total_rows == 3
    assert rows[0] == (1, {"name": "Ada", "email": "ada@example.com"})
    assert isinstance(rows[1][1], BrokenRow) and rows[1][0] == 2
    assert rows[2][0] == 3


@pytest.mark.parametrize("seekable", [True, False], ids=["stored", "streamed"])
def test_json_object_with_data_as_the_original_files(seekable: bool):
    document = {
        "source": "inside",
        "data": [{"name": "Ada", "email": "ada@example.com"}],
        "meta": {"data": [1]},
    }
    data = codecs.BOM_UTF8 + json.dumps(document, indent=2).encode()
    table, rows = read(data, seekable)
    assert (table.format, table.total_rows) == ("json", 1)
    assert rows == [(1, {"name": "Ada", "email": "ada@example.com"})]


def test_json_numbers_are_not_decimals():
    _, rows = read(b'[{"name": 12345, "email": "a@example.com", "score": 1.5}]')
    assert rows[0][1] == {"name": 12345, "email": "a@example.com", "score": 1.5}


def test_ndjson_broken_line_is_a_row_error_with_its_line_number():
    data = (
        b'{"name": "Ada", "email": "ada@example.com"}\n\n{"name": "Bob", broken\n[1, 2]\n'
        b'{"name": "Cy", "email": "c@example.com"}\n'
    )
    table, rows = read(data)
    assert table.format == "ndjson"
    assert rows[0] == (1, {"name": "Ada", "email": "ada@example.com"})
    assert rows[1][0] == 3 and isinstance(rows[1][1], BrokenRow)
    assert "not valid JSON" in rows[1][1].message and rows[1][1].text == '{"name": "Bob", broken'
    assert rows[2][0] == 4 and isinstance(rows[2][1], BrokenRow)
    assert rows[3] == (5, {"name": "Cy", "email": "c@example.com"})


def test_ndjson_whose_first_line_is_broken_is_still_ndjson():
    data = (
        b'{"name": "Ada", \n{"name": "Bob", "email": "b@example.com"}\n{"name": "Cy", "email": "c@x.com"}\n'
    )
    table, rows = read(data)
    assert table.format == "ndjson"
    assert rows[0][0] == 1 and isinstance(rows[0][1], BrokenRow)
    assert rows[1] == (2, {"name": "Bob", "email": "b@example.com"})
    assert rows[2] == (3, {"name": "Cy", "email": "c@x.com"})


def test_ndjson_line_nested_too_deeply_is_a_row_error():
    data = b'{"name": "Ada", "email": "ada@example.com"}\n{"x": ' + b"[" * 100_000 + b"\n"
    _, rows = read(data)
    assert rows[1][0] == 2 and isinstance(rows[1][1], BrokenRow)


@pytest.mark.parametrize(
    "data",
    [
        b'[{"name": "Ada", "email": "a@example.com"}',
        b'{"data": [{"name": "Ada"',
        b'[{"name": }]',
        b"[1, 2,, 3]",
    ],
    ids=["truncated-array", "truncated-object", "invalid", "double-comma"],
)
def test_invalid_json_is_refused_before_any_row(data: bytes):
    message = refused(data)
    assert message.startswith("The file is not valid JSON")
    assert "------^" not in message  # the parser's drawing is not for business users


def test_deeply_nested_json_is_refused_without_exhausting_memory():
    assert "nested more than" in refused(b"[" * 1_000_000 + b"]" * 1_000_000)
    assert "nested more than" in refused(b'{"data": ' + b"[" * 100_000)


def test_json_object_without_data_is_refused():
    assert 'without a "data" list' in refused(b'{\n  "contacts": []\n}')


def test_empty_json_array_has_no_rows():
    table, rows = read(b"[]")
    assert (table.format, rows) == ("json", [])


# -- Files that cannot be imported at all --------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"   \r\n\t\n  ", codecs.BOM_UTF8, b"\x00\x00\x00"], ids=["empty", "spaces", "bom", "nuls"]
)
def test_empty_files_are_refused(data: bytes):
    assert refused(data) == "The file is empty."


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x06\x00\x00\x00"
        + bytes(range(256)) * 4,
        bytes(range(256)) * 64,
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\x00\x01\x02\x03\x04\x05\x06\x07\x08"
        * 20,
    ],
    ids=["png", "all-bytes", "pdf"],
)
def test_binary_files_are_refused(data: bytes):
    assert "not a file we can read" in refused(data)


def test_random_bytes_are_refused():
    data = bytes.fromhex("8f3a00e19c7b11d40000ff02") + os.urandom(4096).replace(b"PK", b"pk")
    assert "not a file we can read" in refused(b"\x01\x02" + data)


# -- Properties: awkward values survive a round trip, random bytes never crash a reader ---------

AWKWARD = st.one_of(
    st.sampled_from(
        ['"', '""', ",", ";", "\t", "|", "\n", "\r\n", " ", "=1+2", "@SUM(A1)", "+1", "-1", "'", "\u2028"]
    ),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
)
CELL = st.lists(AWKWARD, max_size=6).map("".join) | st.text(min_size=300, max_size=2000, alphabet='ab ,"\n')
ROWS = st.lists(st.tuples(CELL, CELL), min_size=1, max_size=15)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS)
def test_awkward_values_survive_a_csv_round_trip(rows: list[tuple[str, str]]):
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["Name", "Email"])
    writer.writerows(rows)
    table, read_back = read(out.getvalue().encode("utf-8"))
    assert table.columns == ["Name", "Email"]
    assert [number for number, _ in read_back] == list(range(2, len(rows) + 2))
    kept = [(number, (r["Name"], r["Email"])) for number, r in read_back if not isinstance(r, SkippedRow)]
    assert kept == [(number, rows[number - 2]) for number, _ in kept]
    _only_a_footer_is_skipped(rows, [number - 2 for number, r in read_back if isinstance(r, SkippedRow)])


def _only_a_footer_is_skipped(rows: list[tuple], skipped: list[int]) -> None:
    """Skipped rows hold one value at most, after a blank row, and only such rows follow to the end."""
    if not skipped:
        return
    first = skipped[0]
    assert any(not "".join(map(str, row)).strip() for row in rows[:first])
    for row in rows[first:]:
        assert sum(1 for value in row if str(value).strip()) <= 1 and "@" not in "".join(map(str, row))


def _as_stored_in_xlsx(value: str | int) -> str:
    """What a cell reads back as: XML turns carriage returns into newlines; whole numbers keep every digit."""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        # openpyxl writes whitespace-only text without xml:space="preserve", so the reader
        # drops the XML whitespace (space, tab, newline) at its ends, as Excel would.
        return text.strip(" \t\n")
    return text


XLSX_CELL = CELL.filter(lambda text: not ILLEGAL_CHARACTERS_RE.search(text)) | st.integers(-(2**53), 2**53)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(XLSX_CELL, XLSX_CELL), min_size=1, max_size=10))
def test_awkward_values_survive_an_xlsx_round_trip(rows: list[tuple[str | int, str | int]]):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Name", "Email"])
    for row in rows:
        sheet.append(row)
        for cell in sheet[sheet.max_row]:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # text that looks like a formula stays text, as typed with a quote
    out = io.BytesIO()
    workbook.save(out)
    while rows and rows[-1] == ("", ""):
        rows.pop()  # a sheet ends at its last cell with something in it (whitespace counts)
    expected = [tuple(_as_stored_in_xlsx(v) for v in row) for row in rows]
    _, read_back = read(out.getvalue())
    from app.readers import cell_text

    got = [
        (n, (cell_text(r["Name"]), cell_text(r["Email"])))
        for n, r in read_back
        if not isinstance(r, SkippedRow)
    ]
    assert got == [(number, expected[number - 2]) for number, _ in got]
    _only_a_footer_is_skipped(expected, [number - 2 for number, r in read_back if isinstance(r, SkippedRow)])


MAGIC = st.sampled_from(
    [
        b"",
        b"PK\x03\x04",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"[",
        b'{"data": [',
        b"{",
        b"\xef\xbb\xbf",
        b"\xff\xfe",
        b"name,email\n",
        b'{"name": "a"}\n',
    ]
)


@settings(max_examples=100, deadline=None)
@given(data=st.tuples(MAGIC, st.binary(max_size=2048)).map(b"".join))
def test_random_bytes_never_crash_a_reader(data: bytes):
    try:
        table, rows = read(data)
    except UnusableFile as exc:
        assert str(exc)
        return
    for number, record in rows:
        assert isinstance(number, int) and number >= 1
        assert isinstance(record, dict | BrokenRow | SkippedRow)


def test_media_type_comes_from_the_bytes_then_the_filename():
    assert media_type(b"name,email\nAda,ada@example.com\n") == "text/csv"
    assert media_type(b"name\temail\nAda\tada@example.com\n") == "text/tab-separated-values"
    assert media_type(xlsx_bytes([["name"], ["Ada"]])[:4096]) == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert (
        media_type(ods_bytes([["name"], ["Ada"]])[:4096]) == "application/vnd.oasis.opendocument.spreadsheet"
    )
    assert media_type(b'{"data": [{"name": "Ada"}]}') == "application/json"
    assert media_type(b'{"name": "Ada"}\n{"name": "Bob"}\n') == "application/x-ndjson"
    assert media_type(codecs.BOM_UTF8 + b"BEGIN:VCARD\r\nVERSION:4.0\r\n") == "text/vcard"
    # The bytes win over a misleading name; the name helps only when the bytes say nothing.
    assert media_type(b"name,email\n", "people.xlsx") == "text/csv"
    assert media_type(b"", "People.ODS") == "application/vnd.oasis.opendocument.spreadsheet"
    assert media_type(b"", "contacts.vcf") == "text/vcard"
    assert media_type(b"\x00\x01\x02" * 40, "notes") == "application/octet-stream"
    assert media_type(b"\x00\x01\x02" * 40) == "application/octet-stream"


def test_an_ndjson_line_past_the_limit_is_a_rejected_row_read_in_pieces():
    import tracemalloc

    from app.readers.json import LINE_LIMIT

    long_line = b'{"name": "' + b"x" * (6 * LINE_LIMIT) + b'", "email": "x@example.com"}\n'
    data = (
        b'{"name": "Ada", "email": "ada@example.com"}\n' + long_line + b'{"name": "Cy", "email": "c@x.com"}\n'
    )
    tracemalloc.start()
    try:
        table = read_rows(io.BytesIO(data), len(data))
        rows = list(table.rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows[0] == (1, {"name": "Ada", "email": "ada@example.com"})
    assert rows[1][0] == 2 and isinstance(rows[1][1], BrokenRow)
    assert f"This line is {len(long_line):,} bytes long" in rows[1][1].message
    assert rows[1][1].text.startswith('{"name": "xxx') and len(rows[1][1].text) == 1000
    assert rows[2] == (3, {"name": "Cy", "email": "c@x.com"})
    assert peak < 3 * LINE_LIMIT  # a piece or two at a time, never the 48 MB line
