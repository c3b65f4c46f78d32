"""The ops page in Chromium, with real imports run by a real worker behind it, under the security policy."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import Import, RowError
from tests.conftest import USER_PASSWORD, served_in_thread, wait_for
from tests.test_csp_browser import WATCH_VIOLATIONS
from tests.test_pipeline import MIXED

pytestmark = [
    pytest.mark.browser,
    # As in the other browser tests: the threaded test server may leave a cancelled static file to
    # the collector; that is the test server's doing.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <_io.FileIO name=.*/static/:pytest.PytestUnraisableExceptionWarning"
    ),
]
TOKEN = "tok-" + "o" * 28
FILES = {
    "mixed.csv": MIXED,
    "more.csv": b"name,email\nAda,ada@example.org\nBob,not-an-email\nCy,cy@example.org\nDee,\n",
    "broken.csv": b"Name,Phone\nAda,1\n",
}


@pytest.fixture
def site(make_app: Callable[..., Flask], users, worker_process) -> Iterator[tuple[str, Flask]]:
    """The app with authentication on, a real worker, and imports that completed, failed and rejected rows."""
    users()
    app = make_app(API_TOKENS=TOKEN, RATE_LIMITS_ENABLED="false")
    worker_process("--concurrency", "1")
    with served_in_thread(app) as url:
        ids = []
        for name, content in FILES.items():
            response = requests.post(
                f"{url}/import",
                files={"file": (name, content)},
                data={"source": name.split(".")[0]},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["jobId"])

        def ended() -> bool:
            with app.app_context():
                statuses = db.session.scalars(select(Import.status).where(Import.id.in_(ids))).all()
                return all(s in ("completed", "failed") for s in statuses)

        wait_for(ended, timeout=120, interval=0.2)
        yield url, app


def _sign_in(page, site: str) -> None:
    page.goto(f"{site}/ops")
    assert page.url.startswith(f"{site}/login?next=/ops")  # the same rule as /imports
    page.fill("input[name=email]", "ops@example.com")
    page.fill("input[name=password]", USER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site}/ops")


def test_the_ops_page_shows_the_imports_at_both_widths(site, chromium, tmp_path):
    site, app = site
    with app.app_context():
        ended = dict(db.session.execute(select(Import.status, func.count()).group_by(Import.status)).all())
        reasons = db.session.execute(
            select(RowError.field, RowError.message, func.count())
            .where(RowError.level == "error")  # a warning's row was stored, not rejected
            .group_by(RowError.field, RowError.message)
            .order_by(func.count().desc(), RowError.field, RowError.message)
        ).all()
        rejected = db.session.scalar(select(func.sum(Import.rejected_rows)))
    assert ended == {"completed": 2, "failed": 1} and rejected == 5
    violations: list[str] = []
    errors: list[str] = []
    for width, height in ((1280, 900), (375, 812)):
        context = chromium.new_context(viewport={"width": width, "height": height})
        try:
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.add_init_script(WATCH_VIOLATIONS)
            _sign_in(page, site)
            assert page.locator("nav a[aria-current=page]").inner_text() == "Ops"

            # The bars of imports per hour hold the database's counts of each final status.
            bars = page.locator("svg[data-chart=statuses] rect.bar")
            drawn = {
                bars.nth(i).get_attribute("class").split("s-")[1]: int(
                    bars.nth(i).get_attribute("data-value")
                )
                for i in range(bars.count())
            }
            assert drawn == ended
            # The top reason's bar is the rows the database rejected for it, and so is its label.
            top = page.locator("svg[data-chart=reasons] a.bar-link").first
            field, message, count = reasons[0]
            assert top.locator("text.bar-label").text_content() == f"{field}: {message}"
            assert int(top.locator("rect").get_attribute("data-value")) == count
            # The live panel: the worker, and nothing waiting.
            assert page.locator("[data-figure=workers]").inner_text() == "1"
            assert page.locator("[data-figure=waiting]").inner_text() == "0"
            page.screenshot(path=str(tmp_path / f"ops-{width}.png"), full_page=True)
            # Every chart is named for screen readers, and fits the page's width.
            for chart in page.locator("svg.chart").all():
                assert chart.locator("title").first.text_content()
                assert chart.locator("desc").first.text_content()
                box = chart.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
            assert page.evaluate("document.documentElement.scrollWidth") <= width

            # The table view shows the same numbers as the chart.
            page.locator("#chart-reasons summary").click()
            first_row = page.locator("#chart-reasons tbody tr").first
            assert first_row.locator("td").first.inner_text() == str(count)

            # A reason links to the imports that had it; an HTMX refresh keeps the chart.
            page.locator("#chart-reasons tbody tr a").first.click()
            page.wait_for_url(f"{site}/ops/reasons?*")
            assert page.locator("table.imports tbody tr").count() >= 1
            page.go_back()
            page.select_option("#period-reasons", "7d")
            # A locator, not a JavaScript predicate: the strict CSP refuses eval in the page.
            page.locator("#chart-reasons h2", has_text="last 7 days").wait_for()
            assert page.locator("svg[data-chart=reasons] a.bar-link").count() == len(reasons)
            violations.extend(page.evaluate("window.__violations"))
        finally:
            context.close()
    assert violations == [] and errors == []
    assert (tmp_path / "ops-1280.png").stat().st_size > 0 and (tmp_path / "ops-375.png").stat().st_size > 0
