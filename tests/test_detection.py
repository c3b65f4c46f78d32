"""Detection: the header past notes and titles, headerless files, report footers, columns by content."""

from __future__ import annotations

import io

import openpyxl
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.detection import detect_columns, locate_header, missing_columns_message
from app.extensions import db
from app.models import Contact
from app.readers import SkippedRow, Table, UnusableFile, read_rows
from tests.exports import (
    google_contacts_csv,
    google_contacts_legacy_csv,
    linkedin_connections_csv,
    salesforce_report_csv,
)
from tests.spreadsheets import ods_bytes, xlsx_bytes

PEOPLE = [
    {"first": "Ada", "last": "Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0000"},
    {"first": "Grace", "last": "Hopper", "email": "grace@example.com", "company": "Navy"},
    {"first": "Jürgen", "last": "Müller", "email": "juergen@example.de"},
]


def read(data: bytes, **options: object) -> tuple[Table, list]:
    table = read_rows(io.BytesIO(data), len(data), **options)  # type: ignore[arg-type]
    return table, list(table.records())


def found(table: Table):  # type: ignore[no-untyped-def]
    return detect_columns(table.columns, table.data_sample(), headerless=table.header_row is None)


def workbook(*sheets: tuple[str, list[list[object]]]) -> bytes:
    """An XLSX with the given sheets, in order."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# -- the header row -------------------------------------------------------------------------------


@pytest.mark.parametrize("export", [google_contacts_csv, google_contacts_legacy_csv], ids=["new", "legacy"])
def test_google_contacts_email_column_is_found_however_far_right(export):
    table, rows = read(export(PEOPLE))
    assert table.header_row == 1 and table.skipped_rows == 0
    columns = found(table).columns
    assert columns.email == "E-mail 1 - Value"
    assert table.columns.index("E-mail 1 - Value") >= 10  # past where the old message stopped listing
    assert [number for number, _ in rows] == [2, 3, 4]
    assert rows[0][1]["E-mail 1 - Value"] == "ada@example.com"


def test_linkedin_notes_above_the_header_are_skipped_and_rows_keep_their_numbers():
    table, rows = read(linkedin_connections_csv(PEOPLE))
    assert table.columns[:4] == ["First Name", "Last Name", "URL", "Email Address"]
    assert table.header_row == 4  # "Notes:", the quoted note, a blank line, then the header
    assert table.skipped_rows == 2
    assert [number for number, _ in rows] == [5, 6, 7]
    assert rows[1][1]["Email Address"] == "grace@example.com"
    assert found(table).columns.email == "Email Address"


def test_title_rows_and_blank_rows_above_a_csv_header_are_skipped():
    data = (
        b"Contacts of the fair\r\nExported 2026-12-01\r\n\r\n"
        b"Name,Email,City\r\nAda,ada@example.com,London\r\n"
    )
    table, rows = read(data)
    assert (table.header_row, table.skipped_rows, table.columns) == (4, 2, ["Name", "Email", "City"])
    assert rows == [(5, {"Name": "Ada", "Email": "ada@example.com", "City": "London"})]


def test_a_title_line_does_not_decide_the_delimiter():
    table, rows = read("Salon 2026\n\nNom;Courriel;Société\nAda;ada@example.com;Analytical, Ltd\n".encode())
    assert (table.delimiter, table.header_row, table.columns) == (";", 3, ["Nom", "Courriel", "Société"])
    assert rows[0] == (4, {"Nom": "Ada", "Courriel": "ada@example.com", "Société": "Analytical, Ltd"})


@pytest.mark.parametrize(("build", "first_row"), [(xlsx_bytes, 2), (ods_bytes, 1)], ids=["xlsx", "ods"])
def test_title_rows_above_a_sheet_header_are_skipped(build, first_row):
    # The title lands in row 2 of the sheet either way (the ODS builder counts rows from below its first).
    data = build([["Q4 contacts"], [None], ["Name", "Email"], ["Ada", "ada@example.com"]], first_row, 1)
    table, rows = read(data)
    assert (table.header_row, table.skipped_rows, table.columns) == (4, 1, ["Name", "Email"])
    assert rows == [(5, {"Name": "Ada", "Email": "ada@example.com"})]


def test_a_file_without_a_header_is_read_as_data_with_columns_named_by_position():
    table, rows = read(b"Ada Lovelace,ada@example.com,+44 20 7946 0000\nGrace Hopper,grace@example.com,\n")
    assert table.header_row is None
    assert table.columns == ["Column 1", "Column 2", "Column 3"]
    assert rows[0] == (
        1,
        {"Column 1": "Ada Lovelace", "Column 2": "ada@example.com", "Column 3": "+44 20 7946 0000"},
    )
    columns = found(table).columns
    assert (columns.name, columns.email) == ("Column 1", "Column 2")


def test_a_title_row_as_wide_as_the_table_is_not_its_header():
    table, rows = read(b"Report,2026\nName,Email\nAda,ada@example.com\n")
    assert (table.header_row, table.skipped_rows, table.columns) == (2, 1, ["Name", "Email"])
    assert rows == [(3, {"Name": "Ada", "Email": "ada@example.com"})]


def test_a_chosen_header_row_overrides_the_guess():
    data = b"Report,2026\nName,Email\nAda,ada@example.com\n"
    assert read(data, header_row=1)[0].columns == ["Report", "2026"]
    table, rows = read(data, header_row=2)
    assert table.columns == ["Name", "Email"] and rows == [(3, {"Name": "Ada", "Email": "ada@example.com"})]
    table, rows = read(b"Ada,ada@example.com\n", header_row=0)
    assert table.header_row is None and rows[0][0] == 1


def test_a_header_row_that_cannot_be_is_refused_with_why():
    with pytest.raises(UnusableFile, match="Row 2 cannot be the header: it is blank"):
        read(b"Name,Email\n\nAda,ada@example.com\n", header_row=2)
    with pytest.raises(UnusableFile, match="only the first 3 rows"):
        read(b"Name,Email\n\nAda,ada@example.com\n", header_row=9)


def test_one_line_notes_do_not_hide_a_header_even_with_an_address_in_them():
    layout = locate_header(
        [["Exported by ops@example.com"], [], ["Name", "Email"], ["Ada", "ada@example.com"]]
    )
    assert (layout.header, layout.data) == (2, 3)


# -- the footer -----------------------------------------------------------------------------------


def test_a_salesforce_reports_footer_lines_are_skipped_not_rejected():
    table, rows = read(salesforce_report_csv(PEOPLE))
    skipped = [row for _, row in rows if isinstance(row, SkippedRow)]
    assert [s.text for s in skipped][:3] == [
        "My Contacts",
        "Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved.",
        "Confidential Information - Do Not Distribute",
    ]
    assert len(skipped) == 5
    contacts = [row for _, row in rows if isinstance(row, dict) and any(row.values())]
    assert len(contacts) == 3


def test_single_value_rows_after_a_blank_row_are_data_when_more_data_follows():
    _, rows = read(b"Name,Email\nAda,ada@example.com\n\nBob\nCy,cy@example.com\n")
    assert rows[2] == (4, {"Name": "Bob", "Email": ""})  # rejected later for its missing email
    assert rows[3] == (5, {"Name": "Cy", "Email": "cy@example.com"})


def test_a_footer_in_a_sheet_is_skipped():
    data = xlsx_bytes([["Name", "Email"], ["Ada", "ada@example.com"], [None], ["Generated by CRM"]])
    _, rows = read(data)
    assert rows[-1] == (4, SkippedRow("Generated by CRM"))


# -- columns by content ---------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Contact", "Correo", "Column 2", ""])
def test_a_column_of_addresses_is_the_email_column_whatever_its_header(header):
    data = f"Name,{header},Notes\nAda,ada@example.com,x\nBob,BOB@example.com,y\nCy,not given,z\n".encode()
    table, _ = read(data)
    columns = found(table).columns
    assert columns.email == table.columns[1] and columns.name == "Name"
    assert table.columns[1] not in columns.extra


def test_a_column_with_only_some_addresses_is_not_taken_and_the_message_says_so():
    headers = [f"Field {i}" for i in range(1, 40)] + ["Notes"]
    lines = [",".join(headers)] + [",".join(["x"] * 39 + [note]) for note in ("a@example.com", "-", "-", "-")]
    table, _ = read("\n".join(lines).encode())
    message = missing_columns_message(found(table))
    assert message is not None and message.startswith("No email column was found. The columns are: Field 1,")
    assert "Field 39, Notes." in message  # every column, never cut
    assert "some addresses are in Notes (1 of 4 values)" in message


def test_no_name_column_message_lists_every_column_and_what_was_considered():
    table, _ = read(b"Email,Phone,City\nada@example.com,1,London\n")
    message = missing_columns_message(found(table))
    assert message is not None
    assert "No name column was found. The columns are: Email, Phone, City." in message
    assert "considered as the name: Phone, City" in message


# -- sheets ---------------------------------------------------------------------------------------


def test_the_sheet_that_holds_contacts_is_read_not_simply_the_first():
    data = workbook(
        ("Summary", [["Contacts exported"], ["Total", 2]]),
        ("People", [["Name", "Email"], ["Ada", "ada@example.com"], ["Grace", "grace@example.com"]]),
    )
    table, rows = read(data)
    assert (table.sheet, table.sheets) == ("People", ["Summary", "People"])
    assert rows[0] == (2, {"Name": "Ada", "Email": "ada@example.com"})
    assert read(data, sheet="Summary")[0].sheet == "Summary"
    with pytest.raises(UnusableFile, match="no sheet 'Nope'. Its sheets are: Summary, People"):
        read(data, sheet="Nope")


def test_a_workbook_of_empty_sheets_is_refused():
    with pytest.raises(UnusableFile, match="empty"):
        read(workbook(("One", []), ("Two", [])))


# -- through the pipeline -------------------------------------------------------------------------


def post_file(client: FlaskClient, data: bytes, source: str = "crm") -> str:
    response = client.post("/import", data=data, headers={"X-Source": source}, content_type="text/csv")
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["jobId"]


def stored(source: str) -> list[tuple[str, str]]:
    db.session.rollback()
    rows = db.session.execute(select(Contact.name, Contact.email).where(Contact.source == source))
    return sorted(tuple(row) for row in rows)  # type: ignore[misc]


def test_a_report_with_title_rows_and_a_footer_imports_and_the_counts_add_up(client, work):
    job_id = post_file(client, b"Contacts report\n\n" + salesforce_report_csv(PEOPLE))
    work()
    status = client.get(f"/imports/{job_id}").get_json()
    assert status["status"] == "completed", status["error"]
    assert (status["insertedRows"], status["rejectedRows"], status["skippedRows"]) == (3, 0, 6)
    assert status["processedRows"] == 3
    assert stored("crm") == [
        ("Ada Lovelace", "ada@example.com"),
        ("Grace Hopper", "grace@example.com"),
        ("Jürgen Müller", "juergen@example.de"),
    ]


def test_a_headerless_file_and_a_linkedin_export_import(client, work):
    headerless = post_file(client, b"Ada Lovelace,ada@example.com\nGrace Hopper,grace@example.com\n", "a")
    linkedin = post_file(client, linkedin_connections_csv(PEOPLE), "b")
    work()
    assert client.get(f"/imports/{headerless}").get_json()["insertedRows"] == 2
    assert stored("a") == [("Ada Lovelace", "ada@example.com"), ("Grace Hopper", "grace@example.com")]
    status = client.get(f"/imports/{linkedin}").get_json()
    assert (status["status"], status["insertedRows"], status["skippedRows"]) == ("completed", 3, 2)


def test_a_file_it_cannot_read_fails_listing_every_column(client, work):
    headers = ",".join(f"Column {i}" for i in range(1, 31)) + ",Last One\n"
    job_id = post_file(client, headers.encode() + b"," * 30 + b"x\n")
    work()
    status = client.get(f"/imports/{job_id}").get_json()
    assert status["status"] == "failed"
    assert "Column 29, Column 30, Last One." in status["error"]
    assert "Considered as the email: every column" in status["error"]
