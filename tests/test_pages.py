"""The pages and their fragments, as a browser gets them: rejected rows, retry and cancel, CSRF."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from rq import Queue
from sqlalchemy import func, select, update

from app.extensions import QUEUE_NAME, db, redis, storage
from app.models import Contact, Import, utcnow

HTML = {"Accept": "text/html"}
HTMX = {"Accept": "*/*", "HX-Request": "true"}


def start(client, content: bytes | str, filename: str = "contacts.csv", source: str = "crm") -> str:
    """Start an import through the API, as a client would; return its id."""
    if isinstance(content, str):
        content = content.encode()
    response = client.post(
        "/import",
        data={"file": (io.BytesIO(content), filename), "source": source},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.data
    return response.get_json()["jobId"]


def set_state(job_id: str, **values: object) -> None:
    db.session.execute(update(Import).where(Import.id == job_id).values(**values))
    db.session.commit()


def queued_job_ids() -> list[str]:
    return Queue(QUEUE_NAME, connection=redis()).job_ids


def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data().decode("utf-8-sig"))))


# ---- Download rejected rows -----------------------------------------------------------------


def test_rejected_csv_has_original_columns_and_one_error_column(client, work):
    job_id = start(
        client,
        "Full Name,E-mail,Company\n"
        "Ada Lovelace,ada@example.com,Engines\n"
        'Bad Mail,not-an-email,"Smith, Jones & ""Partners"""\n'
        ",,Nobody Ltd\n"
        "Grace Hopper,grace@example.com,Navy\n",
        filename="fair leads.csv",
    )
    work()
    response = client.get(f"/imports/{job_id}/rejected.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.is_streamed
    assert response.headers["Content-Disposition"] == 'attachment; filename="fair leads-rejected.csv"'
    rows = read_csv(response)
    assert rows[0] == ["Full Name", "E-mail", "Company", "error"]
    # One line per rejected row, even when the row has two problems.
    assert rows[1:] == [
        ["Bad Mail", "not-an-email", 'Smith, Jones & "Partners"', "Not a valid email address: it has no @"],
        ["", "", "Nobody Ltd", "Name is missing; Email is missing"],
    ]


def test_rejected_csv_of_many_rows_comes_in_pieces_with_every_row_once(client, work):
    bad = 3000  # more than one read batch and one flush; every other row has two problems
    lines = [f"{'' if i % 2 else f'Person {i}'},broken-{i}" for i in range(bad)]
    job_id = start(client, "name,email\n" + "\n".join(lines) + "\n")
    work()
    response = client.get(f"/imports/{job_id}/rejected.csv")
    pieces = list(response.response)
    assert len(pieces) > 2
    rows = list(csv.reader(io.StringIO(b"".join(pieces).decode("utf-8-sig"))))
    assert len(rows) == bad + 1
    assert [row[1] for row in rows[1:]] == [f"broken-{i}" for i in range(bad)]
    assert rows[2] == ["", "broken-1", "Name is missing; Not a valid email address: it has no @"]
    response.close()


def test_rejected_csv_neutralises_formulas(client, work):
    job_id = start(
        client,
        "name,email,note\n"
        '"=HYPERLINK(""http://evil.example"",""click"")",bad,+1\n'
        '@SUM(A1),-2,"\ttabbed"\n'
        "Plain,=cmd|' /C calc'!A0,safe\n",
    )
    work()
    rows = read_csv(client.get(f"/imports/{job_id}/rejected.csv"))
    assert rows[1][:3] == ['\'=HYPERLINK("http://evil.example","click")', "bad", "'+1"]
    assert rows[2][:3] == ["'@SUM(A1)", "'-2", "'\ttabbed"]
    assert rows[3][:3] == ["Plain", "'=cmd|' /C calc'!A0", "safe"]
    for row in rows[1:]:
        assert not row[3].startswith(("=", "+", "-", "@"))


def test_rejected_csv_gives_broken_lines_their_text(client, work):
    job_id = start(
        client,
        '{"name": "Ada", "email": "ada@example.com"}\n{"name": "Bob", "email": "nope"}\n{this is not json\n',
        filename="people.ndjson",
    )
    work()
    rows = read_csv(client.get(f"/imports/{job_id}/rejected.csv"))
    assert rows[0] == ["line", "name", "email", "error"]
    assert rows[1] == ["", "Bob", "nope", "Not a valid email address: it has no @"]
    assert rows[2][0] == "{this is not json"
    assert rows[2][3].startswith("This line is not valid JSON")


def test_rejected_csv_of_a_clean_import_is_just_a_header(client, work):
    job_id = start(client, "name,email\nAda,ada@example.com\n")
    work()
    assert read_csv(client.get(f"/imports/{job_id}/rejected.csv")) == [["error"]]
    assert client.get("/imports/nope/rejected.csv").status_code == 404


# ---- Retry and cancel -------------------------------------------------------------------------


def test_cancel_a_queued_import_drops_its_job_and_file(client, work):
    job_id = start(client, "name,email\nAda,ada@example.com\n")
    key = db.session.get(Import, job_id).storage_key
    assert storage().path(key).exists()
    response = client.post(f"/imports/{job_id}/cancel")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "cancelled" and body["finishedAt"]
    assert job_id not in queued_job_ids()
    assert not storage().path(key).exists()
    work()
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 0
    again = client.post(f"/imports/{job_id}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.get_json()["error"]


def test_cancel_a_running_import_stops_it_at_the_next_batch(client, work):
    job_id = start(client, "name,email\n" + "".join(f"P{i},p{i}@example.com\n" for i in range(2000)))
    set_state(job_id, status="running", started_at=utcnow())
    response = client.post(f"/imports/{job_id}/cancel")
    assert response.get_json()["status"] == "cancelled"
    work()  # the job finds its import cancelled and stores nothing
    imp = db.session.get(Import, job_id)
    assert imp.status == "cancelled" and imp.finished_at is not None
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 0


def test_only_failed_imports_can_be_retried(client, work):
    job_id = start(client, "name,email\nAda,ada@example.com\n")
    response = client.post(f"/imports/{job_id}/retry")
    assert response.status_code == 409
    assert response.get_json()["error"] == "Only a failed import can be retried; this one is queued."
    work()
    assert client.post(f"/imports/{job_id}/retry").status_code == 409
    assert client.post(f"/imports/{job_id}/cancel").status_code == 409
    assert client.post("/imports/nope/retry").status_code == 404


def test_retry_continues_a_failed_import_from_its_checkpoint(client, work):
    lines = "".join(f"Person {i},p{i}@example.com\n" for i in range(1, 11))
    job_id = start(client, "name,email\n" + lines)
    # As if a run stored rows 2 and 3 (spreadsheet rows; the header is row 1) and then failed.
    set_state(
        job_id,
        status="failed",
        error="The import could not finish because a service it needs kept failing.",
        checkpoint=3,
        processed_rows=2,
        inserted_rows=2,
        started_at=utcnow() - timedelta(minutes=1),
        finished_at=utcnow(),
    )
    Queue(QUEUE_NAME, connection=redis()).empty()
    response = client.post(f"/imports/{job_id}/retry")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["status"], body["error"], body["finishedAt"]) == ("queued", None, None)
    assert job_id in queued_job_ids()
    work()
    imp = db.session.get(Import, job_id)
    assert imp.status == "completed"
    assert (imp.processed_rows, imp.inserted_rows) == (10, 10)
    emails = db.session.scalars(select(Contact.email)).all()
    assert sorted(emails) == sorted(f"p{i}@example.com" for i in range(3, 11))  # rows 2-3 not read again


def test_retry_of_a_failed_import_whose_file_is_gone_says_so(client):
    job_id = start(client, "name,email\nAda,ada@example.com\n")
    set_state(job_id, status="failed", storage_key=None, finished_at=utcnow())
    response = client.post(f"/imports/{job_id}/retry")
    assert response.status_code == 409
    assert "Upload it again" in response.get_json()["error"]


def test_retry_and_cancel_from_the_page_flash_and_return(make_app):
    app = make_app()
    with app.app_context():
        browser = app.test_client()
        api = app.test_client()
        api.environ_base["HTTP_ACCEPT"] = "application/json"
        job_id = start(api, "name,email\nAda,ada@example.com\n")
        page = browser.get(f"/imports/{job_id}", headers=HTML).get_data(as_text=True)
        assert "Cancel import" in page and "Retry import" not in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        response = browser.post(f"/imports/{job_id}/cancel", data={"csrf_token": token}, headers=HTML)
        assert response.status_code == 303
        assert response.headers["Location"] == f"/imports/{job_id}"
        page = browser.get(f"/imports/{job_id}", headers=HTML).get_data(as_text=True)
        assert "The import is cancelled." in page
        assert "Cancel import" not in page
        response = browser.post(f"/imports/{job_id}/cancel", data={"csrf_token": token}, headers=HTML)
        assert response.status_code == 303
        page = browser.get(f"/imports/{job_id}", headers=HTML).get_data(as_text=True)
        assert "Only an import in review, queued or running can be cancelled; this one is cancelled." in page


# ---- CSRF ---------------------------------------------------------------------------------------


def test_form_posts_without_a_csrf_token_are_refused(make_app):
    app = make_app()
    with app.app_context():
        browser = app.test_client()
        browser.get("/", headers=HTML)  # the visit gives the browser its session cookie
        response = browser.post(
            "/",
            data={"source": "crm", "file": (io.BytesIO(b"name,email\nA,a@example.com\n"), "c.csv")},
            headers=HTML,
        )
        assert response.status_code == 400
        assert "This form has expired or did not come from this site" in response.get_data(as_text=True)
        assert db.session.scalar(select(func.count()).select_from(Import)) == 0

        api = app.test_client()
        api.environ_base["HTTP_ACCEPT"] = "application/json"
        job_id = start(api, "name,email\nAda,ada@example.com\n")
        for action in ("cancel", "retry"):
            refused = browser.post(f"/imports/{job_id}/{action}", headers=HTML)
            assert refused.status_code == 400, action
            # Asking for JSON does not excuse a request that carries the browser's session cookie.
            forged = browser.post(f"/imports/{job_id}/{action}", headers={"Accept": "application/json"})
            assert forged.status_code == 400, action
        assert db.session.get(Import, job_id).status == "queued"
        # An API client with no session cookie needs no token.
        assert api.post(f"/imports/{job_id}/cancel").get_json()["status"] == "cancelled"


def test_the_plain_form_imports_and_redirects_to_the_import(make_app):
    app = make_app()
    with app.app_context():
        browser = app.test_client()
        page = browser.get("/", headers=HTML).get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        response = browser.post(
            "/",
            data={
                "csrf_token": token,
                "source": "fair",
                "file": (io.BytesIO(b"name,email\nA,a@example.com\n"), "leads.csv"),
            },
            headers=HTML,
        )
        assert response.status_code == 303
        job_id = db.session.scalar(select(Import.id))
        assert response.headers["Location"] == f"/imports/{job_id}"
        page = browser.get(response.headers["Location"], headers=HTML).get_data(as_text=True)
        assert "leads.csv is uploaded. Check how its columns are read, then start it." in page
        assert db.session.get(Import, job_id).status == "review"
        # Without JavaScript the review is a plain form: it posts back for a new preview, then starts.
        fields = {"csrf_token": token, "shown": "|1", "headerRow": "1", "name": "name", "email": "email"}
        again = browser.post(f"/imports/{job_id}/review", data={**fields, "email": ""}, headers=HTML)
        assert again.status_code == 200 and "The mapping must name the email column." in again.get_data(
            as_text=True
        )
        started = browser.post(f"/imports/{job_id}/start", data={**fields, "remember": "on"}, headers=HTML)
        assert started.status_code == 303 and started.headers["Location"] == f"/imports/{job_id}"
        db.session.expire_all()
        assert db.session.get(Import, job_id).status == "queued"
        assert (
            browser.get("/sources/fair/mapping", headers={"Accept": "application/json"}).get_json()[
                "mapping"
            ]["email"]
            == "email"
        )
        missing = browser.post("/", data={"csrf_token": token, "source": ""}, headers=HTML)
        assert missing.status_code == 400
        text = missing.get_data(as_text=True)
        assert "Choose a file to import." in text and "Say where these contacts come from." in text


# ---- The import page and its progress fragment --------------------------------------------------


def test_progress_fragment_polls_only_while_the_import_runs(app, client, work):
    job_id = start(client, "name,email\nAda,ada@example.com\nBob,nope\n")
    browser = app.test_client()
    fragment = browser.get(f"/imports/{job_id}/progress", headers=HTMX).get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in fragment and "Waiting for a worker" in fragment
    set_state(job_id, status="running", started_at=utcnow() - timedelta(seconds=10), total_rows=200)
    set_state(job_id, processed_rows=50)
    fragment = browser.get(f"/imports/{job_id}/progress", headers=HTMX).get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in fragment
    assert "<strong>50</strong> of 200 rows" in fragment
    assert "5 rows/s" in fragment and "left" in fragment
    set_state(job_id, status="queued", processed_rows=0, started_at=None, total_rows=None)
    work()
    fragment = browser.get(f"/imports/{job_id}/progress", headers=HTMX).get_data(as_text=True)
    # The progress section stops polling (the rows to fix that come with it have triggers of their own).
    progress = fragment.split("</section>", 1)[0]
    assert "hx-trigger" not in progress and "hx-get" not in progress
    assert "Completed" in fragment and "Download rejected rows" in fragment
    assert 'id="fixes"' in fragment
    # The poll that sees the end also brings the rejected rows up to date.
    assert 'id="errors"' in fragment and 'hx-swap-oob="true"' in fragment and "nope" in fragment
    page = browser.get(f"/imports/{job_id}", headers=HTML).get_data(as_text=True)
    assert page.count('id="errors"') == 1 and page.count('id="progress"') == 1
    assert "hx-trigger" not in page.split('id="errors"')[0].split('id="progress"')[1]


def test_import_page_shows_counts_and_paginated_rejected_rows(app, client, work):
    rows = "".join(f"Person {i},bad-{i}\n" for i in range(60))
    job_id = start(client, "name,email\nAda,ada@example.com\nAda again,ADA@example.com\n" + rows)
    work()
    browser = app.test_client()
    page = browser.get(f"/imports/{job_id}", headers=HTML).get_data(as_text=True)
    assert re.search(r'data-count="inserted">1<', page)
    assert re.search(r'data-count="duplicates">1<', page)
    assert re.search(r'data-count="rejected">60<', page)
    assert "Page 1 of 2" in page and "bad-0" in page and "bad-59" not in page
    second = browser.get(f"/imports/{job_id}/errors?page=2", headers=HTMX).get_data(as_text=True)
    assert second.startswith('<section id="errors"') and "bad-59" in second and "Page 2 of 2" in second
    # Without JavaScript the page link lands on the same page with the second page of rows.
    assert "bad-59" in browser.get(f"/imports/{job_id}?page=2", headers=HTML).get_data(as_text=True)


def test_failed_import_page_says_why_and_offers_retry(app, client, work):
    job_id = start(client, "first,second\n1,2\n")
    work()
    page = app.test_client().get(f"/imports/{job_id}", headers=HTML).get_data(as_text=True)
    assert "The import failed." in page and "No email column was found" in page
    assert "Retry import" in page and "Cancel import" not in page


# ---- The imports list ----------------------------------------------------------------------------


def totals(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-total="(\w+)">([^<]*)<', html))


def test_imports_list_filters_and_totals(app, client, work):
    a1 = start(client, "name,email\nA,a@example.com\nB,b@example.com\nC,bad\n", "a1.csv", "alpha")
    a2 = start(client, "name,email\nD,d@example.com\nD,d@example.com\n", "a2.csv", "alpha")
    b1 = start(client, "name,email\nE,e@example.com\n", "b1.csv", "beta")
    work()
    queued = start(client, "name,email\nF,f@example.com\n", "waiting.csv", "beta")
    browser = app.test_client()
    page = browser.get("/imports", headers=HTML).get_data(as_text=True)
    assert 'hx-get="/imports/table"' in page and 'hx-trigger="every 3s"' in page
    # Newest first.
    positions = [page.index(name) for name in ("waiting.csv", "b1.csv", "a2.csv", "a1.csv")]
    assert positions == sorted(positions)
    assert totals(page) == {"processed": "6", "inserted": "4", "duplicates": "1", "rejected": "1"}

    alpha = browser.get("/imports/table?source=alpha", headers=HTMX).get_data(as_text=True)
    assert "a1.csv" in alpha and "a2.csv" in alpha and "b1.csv" not in alpha
    assert totals(alpha) == {"processed": "5", "inserted": "3", "duplicates": "1", "rejected": "1"}
    assert "Total of 2 imports matching" in alpha
    # The table polls itself with the same filters.
    assert 'hx-get="/imports/table?source=alpha"' in alpha

    waiting = browser.get("/imports?status=queued", headers=HTML).get_data(as_text=True)
    assert "waiting.csv" in waiting and "b1.csv" not in waiting
    none = browser.get("/imports?status=failed&source=alpha", headers=HTML).get_data(as_text=True)
    assert "No imports match these filters." in none
    assert {a1, a2, b1, queued} <= {i["jobId"] for i in client.get("/imports").get_json()["items"]}


def test_imports_list_shows_duration_and_rows_per_second(app, client):
    job_id = start(client, "name,email\nA,a@example.com\n", "timed.csv")
    started = utcnow() - timedelta(minutes=2)
    set_state(
        job_id,
        status="completed",
        started_at=started,
        finished_at=started + timedelta(seconds=40),
        processed_rows=2000,
        inserted_rows=2000,
    )
    html = app.test_client().get("/imports/table", headers=HTMX).get_data(as_text=True)
    row = html.split("timed.csv")[1].split("</tr>")[0]
    assert ">40 s<" in row and ">50<" in row  # 2,000 rows in 40 s


# ---- Upload page, error pages --------------------------------------------------------------------


def test_upload_page_says_what_it_takes_and_its_example_imports_cleanly(app, client, work):
    browser = app.test_client()
    page = browser.get("/", headers=HTML).get_data(as_text=True)
    for words in ("CSV", "Excel (.xlsx, .xls)", "OpenDocument (.ods)", "JSON", "email", "First name"):
        assert words in page
    assert 'role="button"' not in page  # the drop zone becomes a button only when its script runs
    assert "<script>" not in page and " onclick=" not in page
    example = re.search(r'href="([^"]+\.csv)" download', page).group(1)
    with browser.get(example) as download:
        content = download.data
    job_id = start(client, content, "contacts-example.csv")
    work()
    status = client.get(f"/imports/{job_id}").get_json()
    assert (status["status"], status["rejectedRows"]) == ("completed", 0)
    assert status["insertedRows"] >= 3


def test_error_pages(make_app):
    app = make_app()

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("kaput")

    with app.app_context():
        browser = app.test_client()
        missing = browser.get("/imports/does-not-exist", headers=HTML)
        assert missing.status_code == 404
        assert "Page not found" in missing.get_data(as_text=True)
        broken = browser.get("/boom", headers=HTML)
        assert broken.status_code == 500
        text = broken.get_data(as_text=True)
        assert "Something went wrong" in text and "kaput" not in text


@pytest.mark.parametrize(
    "path", ["/", "/imports", "/imports/table", "/static/js/upload.js", "/static/css/app.css"]
)
def test_pages_and_assets_answer(app, path):
    with app.test_client().get(path, headers=HTML) as response:
        assert response.status_code == 200


def test_a_huge_rejected_row_is_kept_cut_and_the_pages_never_load_it(client, work):
    from sqlalchemy import event

    from app.contacts import RAW_LIMIT
    from app.models import RowError

    huge = "x" * 5_000_000
    lines = [json.dumps({"name": "Ada", "email": "ada@example.com"})]  # a first line that reads as NDJSON
    lines += [json.dumps({"name": huge, "email": "not-an-email", "note": "n"}) for _ in range(3)]
    body = ("\n".join(lines) + "\n").encode()
    # As a stream: a multipart part this large is spooled by the test client to a file it leaves open.
    job_id = client.post("/import", data=body, headers={"X-Source": "crm"}).get_json()["jobId"]
    work()
    stored = db.session.scalars(select(RowError.raw).where(RowError.import_id == job_id)).all()
    assert len(stored) == 6  # two problems a row (the name is too long, the email wrong), the row with each
    assert all(len(json.dumps(raw)) < RAW_LIMIT + 1000 for raw in stored)

    rows = read_csv(client.get(f"/imports/{job_id}/rejected.csv"))
    assert rows[0] == ["name", "email", "note", "error"]
    assert rows[1][0].startswith("x" * 1000)
    assert rows[1][0].endswith("… [cut: 5,000,000 characters in all]")
    assert rows[1][1:] == [
        "not-an-email",
        "n",
        "Name is longer than 255 characters; Not a valid email address: it has no @",
    ]

    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # noqa: ANN001 - SQLAlchemy's event signature
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert client.get(f"/imports/{job_id}/errors").get_json()["total"] == 6
        assert client.get(f"/imports/{job_id}", headers={"Accept": "text/html"}).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    reads = [s for s in statements if "import_errors" in s]
    raw_reads = [s for s in reads if "import_errors.raw" in s]
    assert reads and len(raw_reads) < len(reads)
    # Only the rows to fix read their cells, to edit them: one page of row numbers, each row cut to
    # RAW_LIMIT characters, never the whole column.
    assert all("import_errors.row IN" in s for s in raw_reads)


@pytest.mark.parametrize(
    "lead", [" ", "  ", "\u00a0", "\u200b", "\ufeff", "\n", "\r\n", "\t", " \u200b\u00a0", "\u3000", "\u2003"]
)
def test_rejected_csv_neutralises_formulas_behind_leading_whitespace(client, work, lead):
    cells = [f"{lead}{start}1+1" for start in "=+-@"]
    body = io.StringIO()
    csv.writer(body).writerows([["name", "email", "a", "b", "c"], [cells[0], "bad", *cells[1:]]])
    job_id = start(client, body.getvalue())
    work()
    rows = read_csv(client.get(f"/imports/{job_id}/rejected.csv"))
    for cell in (rows[1][0], *rows[1][2:5]):
        assert cell.startswith("'") and cell[1:].lstrip(" \u00a0\u200b\ufeff\n\r\t\u3000\u2003")[0] in "=+-@"
    assert rows[1][1] == "bad"  # a plain cell is left as it is
