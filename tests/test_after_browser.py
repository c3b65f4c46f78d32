"""Fixing rejected rows and undoing an import in a real Chromium, under the strict security policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_browser import contacts_csv, new_page, server, worker  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <_io.FileIO name=.*/static/:pytest.PytestUnraisableExceptionWarning"
    ),
]


def test_edit_two_cells_dismiss_one_row_import_the_fixed_rows_and_see_the_counts(server, worker, new_page):  # noqa: F811
    job_id = server.start_import(contacts_csv(2, bad=3), "partners.csv")
    page = new_page()
    page.goto(f"{server.url}/imports/{job_id}")
    page.locator('[data-status="completed"]').wait_for()
    # The rows to fix appear as the import ends, without a reload.
    page.locator("#fixes .fix-row").first.wait_for()
    rows = page.locator("#fixes .fix-row")
    assert rows.count() == 3
    third = rows.nth(2)
    assert "Not a valid email address (3)" in page.locator("[data-problem-filter]").inner_text()

    # Each edit is checked as soon as the cell changes: first a still broken address, then a good one.
    def edit(row: int, value: str) -> None:
        cell = page.locator(f'#row-{row} [data-cell="Email"]')
        cell.fill(value)
        with page.expect_response(lambda response: f"/fixes/{row}" in response.url):
            cell.press("Tab")

    edit(4, "broken-0@example")
    state = page.locator("#row-4 [data-state]")
    assert "Not a valid email address" in state.inner_text() and "it has no @" not in state.inner_text()
    edit(4, "fixed-0@example.com")
    page.locator("#row-4 [data-state]", has_text="Ready").wait_for()
    edit(5, "fixed-1@example.com")
    page.locator("#row-5 [data-state]", has_text="Ready").wait_for()
    with page.expect_response(lambda response: "/fixes/6" in response.url):
        third.locator("[data-dismiss]").click()
    page.locator("#row-6 [data-state]", has_text="Dismissed").wait_for()

    page.locator("[data-import-fixes]").click()
    page.locator("[data-fixes-of]").wait_for()
    page.locator('[data-status="completed"]').wait_for()
    assert page.locator('[data-count="inserted"]').inner_text() == "2"
    assert page.locator('[data-count="rejected"]').inner_text() == "0"
    follow_id = page.url.rsplit("/", 1)[1]

    page.locator("[data-fixes-of]").click()
    summary = page.locator("[data-fix-summary]").inner_text()
    assert summary == f"2 fixed in import {follow_id[:8]}, 1 dismissed, 0 left"
    assert server.status(follow_id)["fixes"] == job_id


def test_undo_from_the_page_with_its_confirmation(server, worker, new_page):  # noqa: F811
    job_id = server.start_import(contacts_csv(4), "partners.csv")
    page = new_page()
    page.goto(f"{server.url}/imports/{job_id}")
    page.locator('[data-status="completed"]').wait_for()
    page.locator("[data-undo]").click()
    assert "removes the 4 contacts it inserted" in page.locator("[data-undo-confirm]").inner_text()
    page.locator("[data-undo-submit]").click()
    page.locator('[data-status="undone"]').wait_for()
    assert page.locator("[data-undo-result] [data-undone]").inner_text() == "4"
    assert page.locator("[data-undo]").count() == 0


def test_search_the_contacts_page_and_export_what_it_shows(server, worker, new_page):  # noqa: F811
    extra = "Ada Lovelace,ada@engines.example,=2+2\n徐强,xu.qiang@example.cn,\n".encode()
    job_id = server.start_import(contacts_csv(5) + extra, "partners.csv")
    page = new_page()
    page.goto(f"{server.url}/imports/{job_id}")
    page.locator('[data-status="completed"]').wait_for()
    page.locator("[data-see-contacts]").click()
    assert page.locator("[data-contact]").count() == 7
    page.locator("[data-search]").fill("强")  # one Chinese letter
    page.get_by_role("button", name="Search").click()
    rows = page.locator("[data-contact]")
    assert rows.count() == 1 and "xu.qiang@example.cn" in rows.inner_text()
    page.locator("[data-search]").fill("ENGINES")
    page.get_by_role("button", name="Search").click()
    assert rows.count() == 1 and "ada@engines.example" in rows.inner_text()
    with page.expect_download() as info:
        page.locator("[data-export]").click()
    lines = Path(info.value.path()).read_text("utf-8-sig").splitlines()
    assert len(lines) == 2 and lines[0].startswith("name,email,phone,company")
    assert lines[1].startswith("Ada Lovelace,ada@engines.example,,'=2+2,")
    page.locator("[data-contact] a").first.click()
    assert "ada@engines.example" in page.locator("[data-contact-detail]").inner_text()
    page.get_by_role("link", name="Sources").click()
    assert page.locator('[data-source="crm"] [data-contacts-count]').inner_text() == "7"
