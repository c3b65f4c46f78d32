"""The pages in a real Chromium, against the app on a real HTTP server with real workers."""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from flask import Flask, Response
from sqlalchemy import update
from werkzeug.serving import make_server

from app.extensions import db
from app.models import Import, utcnow
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# What the security policy will allow: our own scripts and styles, nothing inline, no eval.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'"
)


class Server:
    """The app served over HTTP from a thread, on a free port of the loopback interface."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.http = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def start_import(self, content: bytes, filename: str, source: str = "crm") -> str:
        """Start an import through the API, as an API client would."""
        response = requests.post(
            f"{self.url}/import",
            files={"file": (filename, content)},
            data={"source": source},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["jobId"]

    def status(self, job_id: str) -> dict:
        return requests.get(
            f"{self.url}/imports/{job_id}", headers={"Accept": "application/json"}, timeout=10
        ).json()


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Debian's Chromium, driven by Playwright (its own browser download does not work here)."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (make test installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def server(make_app: Callable[..., Flask]) -> Iterator[Server]:
    """The app, CSRF on, behind the strict Content-Security-Policy, on a real HTTP server."""
    app = make_app(UPLOAD_CHUNK_SIZE="64KiB")

    @app.after_request
    def _policy(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        return response

    server = Server(app)
    server.thread.start()
    yield server
    server.http.shutdown()
    server.thread.join(timeout=10)


@pytest.fixture
def worker(worker_process: Callable[..., object]) -> object:
    """A real worker process taking import jobs off the queue."""
    return worker_process("--concurrency", "1")


@pytest.fixture
def new_page(chromium: object) -> Iterator[Callable[..., object]]:
    """Open pages in fresh browser contexts; any script error or policy violation fails the test."""
    contexts = []
    problems: list[str] = []

    def open_page(**context_options: object) -> object:
        context = chromium.new_context(accept_downloads=True, **context_options)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"console: {message.text}")
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert problems == []


def contacts_csv(rows: int, bad: int = 0) -> bytes:
    """A contact list with ``rows`` good rows and ``bad`` rows whose email is broken."""
    lines = ["Name,Email,Company"]
    lines += [f"Person {i},person{i}@example.com,Firm {i % 7}" for i in range(rows)]
    lines += [f"Broken {i},broken-{i}-at-example.com,=1+{i}" for i in range(bad)]
    return ("\n".join(lines) + "\n").encode()


def shoot(page: object, name: str) -> None:
    """Keep a full-page screenshot for people to look at (the folder is not committed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_no_javascript_form_lands_on_the_import_page(server, worker, new_page, tmp_path):
    page = new_page(java_script_enabled=False)
    page.goto(server.url + "/")
    assert page.get_by_role("button", name="Import").is_visible()
    file = tmp_path / "leads.csv"
    file.write_bytes(contacts_csv(5, bad=1))
    page.get_by_label("Source").fill("trade fair")
    page.locator('input[type="file"]').set_input_files(str(file))
    page.get_by_role("button", name="Import").click()
    page.wait_for_url(re.compile(r"/imports/[0-9a-f-]{36}$"))
    assert page.get_by_text("leads.csv is uploaded and queued for import.").is_visible()
    job_id = page.url.rsplit("/", 1)[1]
    wait_for(lambda: server.status(job_id)["status"] == "completed")
    page.reload()  # without JavaScript nothing polls: the person reloads
    assert page.locator("[data-status]").inner_text() == "Completed"
    assert page.locator('[data-count="inserted"]').inner_text() == "5"
    assert page.locator('[data-count="rejected"]').inner_text() == "1"


def test_rejected_rows_are_shown_and_downloaded(server, worker, new_page):
    job_id = server.start_import(contacts_csv(3, bad=2), "partners.csv")
    page = new_page()
    page.goto(f"{server.url}/imports/{job_id}")
    # The page polls until the import ends, then shows the rejected rows without a reload.
    page.locator('[data-status="completed"]').wait_for()
    table = page.locator("#errors table")
    table.wait_for()
    assert table.locator("tbody tr").count() == 2
    assert "broken-0-at-example.com" in table.inner_text()
    assert "Not a valid email address" in table.inner_text()
    with page.expect_download() as info:
        page.get_by_role("link", name="Download rejected rows").click()
    download = info.value
    assert download.suggested_filename == "partners-rejected.csv"
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text("utf-8-sig"))))
    assert rows == [
        ["Name", "Email", "Company", "error"],
        ["Broken 0", "broken-0-at-example.com", "'=1+0", "Not a valid email address"],
        ["Broken 1", "broken-1-at-example.com", "'=1+1", "Not a valid email address"],
    ]


def test_cancel_from_the_page(server, new_page):
    job_id = server.start_import(contacts_csv(3), "later.csv")  # no worker: it stays queued
    page = new_page()
    page.goto(f"{server.url}/imports/{job_id}")
    page.get_by_role("button", name="Cancel import").click()
    page.get_by_text("The import is cancelled.").wait_for()
    assert page.locator("[data-status]").inner_text() == "Cancelled"
    assert server.status(job_id)["status"] == "cancelled"


def test_screenshots_of_every_page(server, worker, new_page):
    """Each page in its states, for people to look at; each also checked for what it must show."""
    page = new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.url + "/")
    page.get_by_label("Source").fill("Trade fair 2026")
    assert page.locator("[data-dropzone]").get_attribute("role") == "button"
    shoot(page, "upload")

    finished = server.start_import(contacts_csv(40, bad=6), "trade-fair-leads.csv", "Trade fair 2026")
    wait_for(lambda: server.status(finished)["status"] == "completed")
    page.goto(f"{server.url}/imports/{finished}")
    page.locator("#errors table").wait_for()
    shoot(page, "import-finished")

    with server.app.app_context():
        running = server.start_import(contacts_csv(10), "newsletter-signups.xlsx", "Website")
        wait_for(lambda: server.status(running)["status"] == "completed")
        # Shown as it looks halfway through a large file.
        db.session.execute(
            update(Import)
            .where(Import.id == running)
            .values(
                status="running",
                finished_at=None,
                started_at=utcnow() - timedelta(seconds=42),
                total_rows=250_000,
                processed_rows=118_500,
                inserted_rows=112_040,
                duplicate_rows=5_911,
                rejected_rows=549,
            )
        )
        db.session.commit()
    page.goto(f"{server.url}/imports/{running}")
    assert page.locator("#progress").get_attribute("hx-trigger") == "every 1s"
    shoot(page, "import-running")

    page.goto(server.url + "/imports")
    page.locator("tfoot").wait_for()
    shoot(page, "imports-list")

    page.goto(server.url + "/no/such/page")
    assert page.get_by_role("heading", name="Page not found").is_visible()
    shoot(page, "not-found")

    phone = new_page(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    phone.goto(server.url + "/")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    shoot(phone, "upload-phone")
    phone.goto(f"{server.url}/imports/{finished}")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    shoot(phone, "import-phone")
    phone.goto(server.url + "/imports")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    shoot(phone, "imports-list-phone")
