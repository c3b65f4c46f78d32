"""Files as real tools export them, imported end to end: every column arrives in a field or the attributes."""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.extensions import db
from app.fields import describe_mapping, find_columns, mapping_headers
from app.models import Contact
from app.phones import normalise_phone
from app.readers import cell_text, read_rows
from app.rows import ContactReader
from app.validation import Contact as Valid
from tests import exports
from tests.test_pipeline import finished


def _linkedin_columns() -> bytes:
    """LinkedIn's columns without its "Notes:" preamble (finding a header below one is detection's part)."""
    return exports.linkedin_connections_csv()[len(exports.LINKEDIN_PREAMBLE.encode()) :]


EXPORTS: dict[str, Callable[[], bytes]] = {
    "google": exports.google_contacts_csv,
    "google-legacy": exports.google_contacts_legacy_csv,
    "outlook.com": exports.outlook_com_csv,
    "outlook-desktop": exports.outlook_desktop_csv,
    "hubspot": exports.hubspot_csv,
    "mailchimp": exports.mailchimp_csv,
    "linkedin": _linkedin_columns,
    "salesforce": exports.salesforce_report_csv,
    "iphone.vcf": exports.iphone_vcard,
    "google.vcf": exports.google_vcard,
    "android.vcf": exports.android_vcard,
}
# What each layout carries of a person besides the name and the email.
HAS_PHONE = set(EXPORTS) - {"linkedin"}
HAS_COMPANY = set(EXPORTS) - {"mailchimp"}


def _rows(data: bytes) -> list[tuple[list[str], list[Any]]]:
    """Each row of the file with its headers, as the readers give them."""
    table = read_rows(io.BytesIO(data), len(data))
    out = []
    for _, row in table.rows:
        if isinstance(row, dict):
            out.append((list(row), list(row.values())))
        elif isinstance(row, list):
            out.append((table.columns, row))
    return out


def _made(data: bytes) -> list[Valid]:
    contacts = []
    for headers, row in _rows(data):
        outcome = ContactReader(find_columns(headers), headers, None).read(row)
        if isinstance(outcome, Valid):
            contacts.append(outcome)
    return contacts


@pytest.mark.parametrize("layout", list(EXPORTS))
def test_every_cell_arrives_in_a_field_or_the_attributes(layout: str):
    for headers, row in _rows(EXPORTS[layout]()):
        columns = find_columns(headers)
        contact = ContactReader(columns, headers, None).read(row)
        if not isinstance(contact, Valid):
            continue  # a report's footer line
        attributes = contact.attributes or {}
        fields = {columns.company: contact.company, columns.title: contact.title}
        for header, value in zip(headers, row, strict=False):
            text = cell_text(value).strip()
            if not text:
                continue
            if header in attributes:
                assert attributes[header] == text, (layout, header)
            elif header in fields:
                assert fields[header] == text, (layout, header)
            elif header == columns.name:
                assert contact.name == text
            elif header in columns.emails:
                assert contact.email in text.lower() or any(e in text for e in attributes.get("emails", []))
            elif header in columns.phones:
                assert contact.phone == normalise_phone(text, None)[0], (layout, header)
            else:
                raise AssertionError(f"{layout}: {header}={text!r} went nowhere")


@pytest.mark.parametrize("layout", list(EXPORTS))
def test_an_export_imports_end_to_end(client: FlaskClient, work: Callable[[], None], layout: str):
    data = EXPORTS[layout]()
    answer = client.post(
        "/import", data=data, headers={"X-Source": layout, "X-Filename": f"contacts-{layout}"}
    )
    assert answer.status_code == 202, answer.get_data(as_text=True)
    work()
    status = finished(client, answer.get_json()["jobId"])
    assert status["status"] == "completed", status
    counted = ("insertedRows", "updatedRows", "unchangedRows", "duplicateRows", "rejectedRows")
    assert sum(status[k] for k in counted) == status["processedRows"]
    assert status["insertedRows"] == len(exports.PEOPLE)
    # Where every column (or every vCard property) went is recorded and shown, none left unnamed.
    assert set(mapping_headers(status["mapping"])) == {h for headers, _ in _rows(data) for h in headers}
    assert status["mapping"]["email"] and status["mapping"]["name"]
    page = client.get(f"/imports/{answer.get_json()['jobId']}", headers={"Accept": "text/html"})
    assert describe_mapping(status["mapping"]).split("; ")[0] in html.unescape(page.get_data(as_text=True))
    stored = {c.email: c for c in db.session.scalars(select(Contact).where(Contact.source == layout)).all()}
    made = {c.email: c for c in _made(data)}
    assert set(stored) == set(made)
    for email, contact in made.items():
        got = stored[email]
        assert (got.name, got.phone, got.company, got.title) == contact[:1] + contact[2:5]
        assert (got.attributes or {}) == (contact.attributes or {})
    names = {c.name for c in stored.values()}
    if layout != "outlook-desktop":  # Windows-1252 cannot hold them: Outlook writes "?"
        assert {"王芳", "Σωκράτης Παπαδόπουλος"} <= names
    assert {"José García", "Jürgen Müller"} <= names
    ada = stored["ada@example.com"]
    if layout in HAS_PHONE:
        assert ada.phone == "+442079460000"
    if layout in HAS_COMPANY:
        assert (ada.company, ada.title) == ("Analytical Engines", "Mathematician")
    zoe = stored["zoe.obrien@example.ie"]
    if layout in HAS_PHONE:
        assert zoe.phone == "+35312345678;ext=12"
