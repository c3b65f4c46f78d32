"""The pages in a real Chromium, against the app on a real HTTP server with real workers."""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from flask import Flask, Response
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import update
from werkzeug.serving import make_server

from app.extensions import db
from app.models import Import, utcnow
from tests.conftest import ROOT, wait_for
from tests.spreadsheets import xlsx_bytes

pytestmark = [
    pytest.mark.browser,
    # Chromium cancels requests it no longer needs (a favicon while the page moves on); the
    # threaded test server can then drop that static file's handle to the collector instead of
    # closing it. That is the test server's doing, not the app's, so only that warning is let pass.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <_io.FileIO name=.*/static/:pytest.PytestUnraisableExceptionWarning"
    ),
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


def contacts_csv(rows: int, bad: int = 0, who: str = "person") -> bytes:
    """A contact list with ``rows`` good rows and ``bad`` rows whose email is broken."""
    lines = ["Name,Email,Company"]
    lines += [f"{who.title()} {i},{who}{i}@example.com,Firm {i % 7}" for i in range(rows)]
    lines += [f"Broken {i},broken-{i}-at-example.com,=1+{i}" for i in range(bad)]
    return ("\n".join(lines) + "\n").encode()


def drop_files(page: object, files: dict[str, bytes]) -> None:
    """Drop files on the drop zone, as a person dragging them from their desktop would."""
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, data] of files) {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name));
            }
            return transfer;
        }""",
        [[name, base64.b64encode(data).decode()] for name, data in files.items()],
    )
    zone = page.locator("[data-dropzone]")
    zone.dispatch_event("dragenter", {"dataTransfer": transfer})
    zone.dispatch_event("drop", {"dataTransfer": transfer})


def shoot(page: object, name: str) -> None:
    """Keep a full-page screenshot for people to look at (the folder is not committed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_drop_a_spreadsheet_and_watch_its_import_complete(server, worker, new_page):
    rows = [["First name", "Last name", "E-mail"]]
    rows += [[f"Ada{i}", "Lovelace", f"ada{i}@example.com"] for i in range(300)]
    rows += [["Bad", "Row", "not an email"]]
    page = new_page()
    page.goto(server.url + "/")
    page.get_by_label("Source").fill("Trade fair 2026")
    drop_files(page, {"fair.xlsx": xlsx_bytes(rows)})
    # One file: once uploaded, the page goes to its import and follows it there.
    page.wait_for_url(re.compile(r"/imports/[0-9a-f-]{36}$"))
    page.locator('[data-status="completed"]').wait_for()
    assert page.get_by_role("heading", level=1).inner_text() == "fair.xlsx"
    assert page.locator('[data-count="inserted"]').inner_text() == "300"
    assert page.locator('[data-count="rejected"]').inner_text() == "1"
    assert "not an email" in page.locator("#errors table").inner_text()
    job_id = page.url.rsplit("/", 1)[1]
    assert server.status(job_id)["format"] == "xlsx"


def test_several_files_each_get_a_link_to_their_import(server, worker, new_page):
    page = new_page()
    page.goto(server.url + "/")
    page.get_by_label("Source").fill("Partners")
    drop_files(page, {"north.csv": contacts_csv(4, who="north"), "south.csv": contacts_csv(6, who="south")})
    page.get_by_text("All 2 files are uploaded and being imported.").wait_for()
    links = page.get_by_role("link", name="see its import")
    assert links.count() == 2
    ids = [link.get_attribute("href").rsplit("/", 1)[1] for link in links.all()]
    for job_id, inserted in zip(ids, (4, 6), strict=True):
        wait_for(lambda job_id=job_id: server.status(job_id)["status"] == "completed")
        assert server.status(job_id)["insertedRows"] == inserted
        assert server.status(job_id)["source"] == "Partners"


def test_the_drop_zone_asks_for_the_source_first_and_is_keyboard_usable(server, new_page):
    page = new_page()
    # Listening from the start turns on Playwright's file chooser interception before the key is
    # pressed; turned on only by expect_file_chooser, it can lose the race on a loaded machine.
    page.on("filechooser", lambda chooser: None)
    page.goto(server.url + "/")
    zone = page.get_by_role("button", name="Files")
    zone.focus()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(files=[{"name": "leads.csv", "mimeType": "text/csv", "buffer": contacts_csv(2)}])
    assert page.get_by_text("Say where these contacts come from.").is_visible()
    assert page.get_by_label("Source").get_attribute("aria-invalid") == "true"
    assert "waiting for a source" in page.locator(".upload").inner_text()
    page.get_by_label("Source").fill("Website")
    page.get_by_role("button", name="Import").click()
    page.wait_for_url(re.compile(r"/imports/[0-9a-f-]{36}$"))


def test_an_interrupted_upload_resumes_after_a_reload(server, worker, new_page, tmp_path):
    rows = 20_000
    file = tmp_path / "big list.csv"
    file.write_bytes(contacts_csv(rows))
    chunk = 64 * 1024
    patches: list[dict[str, str]] = []

    def cut_the_line(route: object) -> None:
        # Three chunks get through, then the network is gone.
        if route.request.method == "PATCH":
            patches.append(route.request.headers)
            if len(patches) > 3:
                route.abort("internetdisconnected")
                return
        route.continue_()

    page = new_page()
    page.route("**/uploads/*", cut_the_line)
    page.goto(server.url + "/")
    page.get_by_label("Source").fill("Newsletter")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/uploads")) as created:
        page.locator('input[type="file"]').set_input_files(str(file))
    upload_url = created.value.headers["location"]
    deadline = time.monotonic() + 60
    while len(patches) <= 3:  # the browser's events are handled only while Playwright waits
        assert time.monotonic() < deadline, "the upload never got going"
        page.wait_for_timeout(50)

    page.reload()  # the line is still cut: nothing more arrives before the page is gone
    page.unroute("**/uploads/*")
    head = requests.head(upload_url, headers={"Tus-Resumable": "1.0.0"}, timeout=10)
    assert int(head.headers["Upload-Offset"]) == 3 * chunk
    # The page remembers the unfinished upload and how far it came.
    unfinished = page.locator("[data-resumable]")
    unfinished.get_by_text("big list.csv").wait_for()
    unfinished.get_by_text("196.6 KB of").wait_for()  # 3 chunks of 64 KiB
    requests_after: list[tuple[str, str]] = []
    page.on("request", lambda r: requests_after.append((r.method, r.headers.get("upload-offset", ""))))
    # The source field is empty after the reload: the upload keeps the source it began with.
    page.locator('input[type="file"]').set_input_files(str(file))
    page.wait_for_url(re.compile(r"/imports/[0-9a-f-]{36}$"))
    uploads = [(method, offset) for method, offset in requests_after if method in ("POST", "PATCH")]
    assert uploads[0] == ("PATCH", str(3 * chunk))  # no new upload: it continued where it stopped
    job_id = page.url.rsplit("/", 1)[1]
    page.locator('[data-status="completed"]').wait_for()
    status = server.status(job_id)
    assert (status["insertedRows"], status["source"], status["sizeBytes"]) == (
        rows,
        "Newsletter",
        file.stat().st_size,
    )


def test_pause_and_resume_an_upload(server, worker, new_page, tmp_path):
    file = tmp_path / "members.csv"
    file.write_bytes(contacts_csv(8_000, who="member"))
    held: list[object] = []
    offsets: list[str] = []

    def hold_the_second_chunk(route: object) -> None:
        if route.request.method == "PATCH":
            offsets.append(route.request.headers["upload-offset"])
            if len(offsets) == 2:
                held.append(route)  # never answered: the upload waits on it until paused
                return
        route.continue_()

    page = new_page(viewport={"width": 1280, "height": 900})
    page.route("**/uploads/*", hold_the_second_chunk)
    page.goto(server.url + "/")
    page.get_by_label("Source").fill("Members")
    page.locator('input[type="file"]').set_input_files(str(file))
    deadline = time.monotonic() + 60
    while not held:
        assert time.monotonic() < deadline, "the second chunk never came"
        page.wait_for_timeout(50)
    item = page.locator(".upload")
    item.get_by_text("65.5 KB of").wait_for()
    assert item.locator("progress").get_attribute("max") == str(file.stat().st_size)
    shoot(page, "upload-in-progress")
    item.get_by_role("button", name="Pause members.csv").click()
    item.get_by_text("paused").wait_for()
    # Pausing aborts the request in the page, but the browser may still hand the held one on to
    # the server once it is unrouted: fail it here, so the server never gets the second chunk.
    for route in held:
        with contextlib.suppress(PlaywrightError):  # the page's abort got there first
            route.abort()
    page.unroute("**/uploads/*")
    resumed: list[str] = []
    page.on("request", lambda r: resumed.append(r.headers["upload-offset"]) if r.method == "PATCH" else None)
    item.get_by_role("button", name="Resume members.csv").click()
    page.wait_for_url(re.compile(r"/imports/[0-9a-f-]{36}$"))
    page.locator('[data-status="completed"]').wait_for()
    assert page.locator('[data-count="inserted"]').inner_text() == "8,000"
    assert offsets == ["0", "65536"]
    assert resumed[0] == "65536"  # the held chunk is sent again; nothing before it


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
        ["Broken 0", "broken-0-at-example.com", "'=1+0", "Not a valid email address: it has no @"],
        ["Broken 1", "broken-1-at-example.com", "'=1+1", "Not a valid email address: it has no @"],
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
        running = server.start_import(contacts_csv(10), "newsletter-signups.csv", "Website")
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

    failed = server.start_import(b"Company,Phone\nAcme,555-0100\n", "phone-list.csv", "Sales team")
    wait_for(lambda: server.status(failed)["status"] == "failed")
    page.goto(f"{server.url}/imports/{failed}")
    assert page.get_by_role("button", name="Retry import").is_visible()
    shoot(page, "import-failed")

    page.goto(server.url + "/imports")
    page.locator("tfoot").wait_for()
    shoot(page, "imports-list")

    page.goto(server.url + "/no/such/page")
    assert page.get_by_role("heading", name="Page not found").is_visible()
    shoot(page, "not-found")

    plain = new_page(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    plain.goto(server.url + "/")
    assert plain.locator('input[type="file"]').is_visible()
    shoot(plain, "upload-without-javascript")

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
