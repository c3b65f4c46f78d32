"""The pages work in Chromium under the Content-Security-Policy: no violation, sign-in to import."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Upload
from tests.conftest import USER_PASSWORD as PASSWORD
from tests.conftest import served_in_thread

pytestmark = [
    pytest.mark.browser,
    # Chromium cancels requests it no longer needs (a favicon while the page moves on); the
    # threaded test server can then drop that static file's handle to the collector instead of
    # closing it. That is the test server's doing, not the app's, so only that warning is let pass.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <_io.FileIO name=.*/static/:pytest.PytestUnraisableExceptionWarning"
    ),
]

# Reported by the page itself, whatever the console shows.
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture
def site(make_app: Callable[..., Flask], users) -> Iterator[tuple[str, Flask]]:
    """The app with authentication on, served on a free loopback port."""
    users()
    app = make_app(API_TOKENS="tok-" + "d" * 28, RATE_LIMITS_ENABLED="false")
    with served_in_thread(app) as url:
        yield url, app


def test_pages_run_under_the_policy_without_violations(site, chromium, tmp_path):
    site, app = site
    csv = tmp_path / "contacts.csv"
    csv.write_text("name,email\nAda Lovelace,ada@example.com\n")
    context = chromium.new_context()
    try:
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.add_init_script(WATCH_VIOLATIONS)
        violations: list[str] = []

        def visit_check() -> None:
            violations.extend(page.evaluate("window.__violations"))

        page.goto(f"{site}/imports")
        assert page.url.startswith(f"{site}/login?next=/imports")
        visit_check()
        page.fill("input[name=email]", "ops@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{site}/imports")
        visit_check()
        assert page.locator("text=ops@example.com").count() == 1

        page.goto(f"{site}/")
        page.set_input_files("input[type=file]", str(csv))
        page.fill("input[name=source]", "browser")
        page.click("button.primary")
        page.wait_for_url(f"{site}/imports/*")
        visit_check()
        assert page.locator(".status").count() >= 1

        page.click("text=Sign out")
        page.wait_for_url(f"{site}/login")
        visit_check()
    finally:
        context.close()
    assert violations == []
    with app.app_context():
        # The drop zone sent the file with tus-js-client, its CSRF token in a header.
        uploads = db.session.scalars(select(Upload).where(Upload.source == "browser")).all()
    assert len(uploads) == 1 and uploads[0].import_id
    assert not [text for text in console if "Content Security Policy" in text or "Refused to" in text]
