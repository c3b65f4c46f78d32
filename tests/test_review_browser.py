"""The review page in a real Chromium: a Google Contacts export reviewed, remembered, and the next one not."""

from __future__ import annotations

import re

import pytest

from tests.exports import google_contacts_csv
from tests.test_browser import drop_files, new_page, server, shoot, worker  # noqa: F401 - the fixtures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <_io.FileIO name=.*/static/:pytest.PytestUnraisableExceptionWarning"
    ),
]

FIRST = [
    {"first": "José", "last": "García", "email": "jose@example.com", "phone": "+44 20 7946 0000",
     "phone2": "+1 212 555 0100"},
    {"first": "王", "last": "芳", "email": "wang.fang@example.cn", "phone": "+44 20 7946 0001",
     "phone2": "+1 212 555 0101"},
    {"first": "Zoë", "last": "Brown", "email": "zoe@example.org", "phone": "+44 20 7946 0002"},
    {"first": "Bad", "last": "Address", "email": "not-an-address"},
]  # fmt: skip
SECOND = [
    {"first": "Jürgen", "last": "Müller", "email": "juergen@example.de", "phone2": "+1 212 555 0199"},
    {"first": "Σωκράτης", "last": "Παππάς", "email": "sokratis@example.gr"},
]


def test_a_google_export_is_reviewed_mapped_and_remembered(server, worker, new_page):  # noqa: F811
    page = new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.url + "/")
    page.get_by_label("Source").fill("Google")
    drop_files(page, {"contacts.csv": google_contacts_csv(FIRST)})
    page.wait_for_url(re.compile(r"/imports/[0-9a-f-]{36}$"))
    review = page.locator("#review")
    review.wait_for()
    job_id = page.url.rsplit("/", 1)[1]
    assert server.status(job_id)["status"] == "review"
    assert page.locator("select[name=email]").input_value() == "E-mail 1 - Value"
    assert page.locator("select[name=phone]").input_value() == "Phone 1 - Value"
    assert page.locator('[data-detected="format"]').inner_text() == "CSV"
    first_row = page.locator('tr[data-row="2"]')
    assert first_row.locator('[data-value="name"]').inner_text() == "José García"
    assert first_row.locator('[data-value="phone"]').inner_text() == "+442079460000"
    assert "not-an-address" in page.locator('tr[data-row="5"] [data-check]').inner_text()
    assert page.get_by_label("Remember this mapping for Google").is_checked()
    # The second email and phone columns stay with the contacts as extra fields.
    assert page.locator('select[data-extra="E-mail 2 - Value"]').input_value() == "keep"
    shoot(page, "review")

    # Choosing another phone column re-renders the preview in place.
    page.locator("select[name=phone]").select_option("Phone 2 - Value")
    page.locator('tr[data-row="2"] [data-value="phone"]', has_text="+12125550100").wait_for()
    assert page.url.endswith(job_id)
    assert page.locator("select[name=phone]").input_value() == "Phone 2 - Value"
    page.locator("[data-start]").click()

    page.locator('[data-status="completed"]').wait_for()
    assert page.locator('[data-count="inserted"]').inner_text() == "3"
    assert page.locator('[data-count="rejected"]').inner_text() == "1"
    status = server.status(job_id)
    assert (status["mappingFrom"], status["mapping"]["phone"]) == ("given", "Phone 2 - Value")

    # The next export from the same source lands straight on its import, with the saved mapping.
    page.goto(server.url + "/")
    page.get_by_label("Source").fill("Google")
    drop_files(page, {"contacts (1).csv": google_contacts_csv(SECOND)})
    page.wait_for_url(re.compile(r"/imports/[0-9a-f-]{36}$"))
    page.locator("#progress").wait_for()
    assert page.locator("#review").count() == 0
    assert "Using the mapping saved for Google" in page.locator("[data-saved-mapping]").inner_text()
    page.locator('[data-status="completed"]').wait_for()
    assert page.locator('[data-count="inserted"]').inner_text() == "2"
    second = server.status(page.url.rsplit("/", 1)[1])
    assert (second["mappingFrom"], second["mapping"]["phone"]) == ("saved", "Phone 2 - Value")
