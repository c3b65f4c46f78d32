"""The import pipeline against the real PostgreSQL and Redis, run by real worker processes."""

from __future__ import annotations

import io
import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import sqlalchemy.exc
from flask.testing import FlaskClient
from rq.job import Job
from sqlalchemy import func, select, update

from app.extensions import db, redis
from app.imports import committer, pipeline, runs
from app.models import Contact, Import, RowError
from tests.conftest import shared_file, wait_for
from tests.spreadsheets import ods_bytes, xlsx_bytes

MIXED = (
    b"Full Name;E-Mail;Phone\r\n"
    b"Ada Lovelace;ADA@Example.com;123\r\n"  # 2 inserted
    b"Grace Hopper;not-an-email;456\r\n"  # 3 rejected: email
    b";nameless@example.com;\r\n"  # 4 rejected: name
    b"\r\n"  # 5 blank: skipped, not counted
    b"Ada Again;ada@example.com;789\r\n"  # 6 duplicate within the file, whatever the case
    b'"Hopper, Grace";grace@example.com;\r\n'  # 7 inserted
    b"X;;\r\n"  # 8 rejected: email missing (after a blank row, at the end, it would be a footer line)
    b";;\r\n"  # 9 blank
)


def post_file(client: FlaskClient, data: bytes, source: str = "crm", filename: str | None = None) -> str:
    """Send a file as a raw stream; return the job id."""
    headers = {"X-Source": source, **({"X-Filename": filename} if filename else {})}
    response = client.post("/import", data=data, headers=headers, content_type="application/octet-stream")
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["jobId"]


def finished(client: FlaskClient, job_id: str, timeout: float = 60) -> dict:
    """Wait until the import has ended; return its JSON status."""

    def ended() -> dict | None:
        db.session.remove()  # the test's app context keeps one session: see the worker's commits
        status = client.get(f"/imports/{job_id}").get_json()
        return status if status["status"] in ("completed", "failed", "cancelled") else None

    return wait_for(ended, timeout=timeout)  # type: ignore[return-value]


def contacts(source: str) -> list[tuple[str, str]]:
    db.session.rollback()
    return [
        tuple(row)
        for row in db.session.execute(
            select(Contact.name, Contact.email).where(Contact.source == source).order_by(Contact.email)
        )
    ]


def uploads(env: dict[str, str]) -> list[Path]:
    folder = Path(env["STORAGE_DIR"])
    return sorted(folder.iterdir()) if folder.exists() else []


def test_every_row_is_accounted_for_by_a_real_worker(client, worker_process, env):
    worker_process("--concurrency", "2", BATCH_SIZE="2")
    job_id = post_file(client, MIXED, filename="mixed.csv")
    status = finished(client, job_id)

    assert status["status"] == "completed" and status["error"] is None
    assert status["format"] == "csv"
    assert (status["insertedRows"], status["duplicateRows"], status["rejectedRows"]) == (2, 1, 3)
    assert status["processedRows"] == 6 == status["totalRows"]
    assert (
        status["insertedRows"] + status["duplicateRows"] + status["rejectedRows"] == status["processedRows"]
    )
    assert contacts("crm") == [("Ada Lovelace", "ada@example.com"), ("Hopper, Grace", "grace@example.com")]

    errors = client.get(f"/imports/{job_id}/errors?level=error").get_json()
    assert errors["total"] == 3
    assert errors["items"] == [
        {
            "row": 3,
            "level": "error",
            "field": "email",
            "message": "Not a valid email address: it has no @",
            "value": "not-an-email",
        },
        {"row": 4, "level": "error", "field": "name", "message": "Name is missing", "value": ""},
        {"row": 8, "level": "error", "field": "email", "message": "Email is missing", "value": ""},
    ]
    # "123" and "789" are no phone numbers: their rows are stored (or a duplicate) with a warning
    assert status["warningRows"] == 2
    warnings = client.get(f"/imports/{job_id}/errors?level=warning").get_json()["items"]
    assert [(w["row"], w["level"], w["field"], w["value"]) for w in warnings] == [
        (2, "warning", "phone", "123"),
        (6, "warning", "phone", "789"),
    ]
    assert client.get(f"/imports/{job_id}/errors").get_json()["total"] == 5  # both levels
    stored = db.session.scalars(select(RowError).where(RowError.import_id == job_id, RowError.row == 3)).one()
    assert stored.raw == {"Full Name": "Grace Hopper", "E-Mail": "not-an-email", "Phone": "456"}

    # the stored file is gone once the import has completed
    assert uploads(env) == []
    assert db.session.get(Import, job_id).storage_key is None


def test_dedup_across_imports_and_sources_by_a_real_worker(client, worker_process):
    worker_process("--concurrency", "2")
    first = finished(client, post_file(client, MIXED, source="fair"))
    again = finished(client, post_file(client, MIXED.replace(b"ADA@Example.com", b"ada@EXAMPLE.COM"), "fair"))
    elsewhere = finished(client, post_file(client, MIXED, source="webinar"))

    assert (first["insertedRows"], first["duplicateRows"]) == (2, 1)
    assert (again["status"], again["insertedRows"], again["duplicateRows"], again["rejectedRows"]) == (
        "completed",
        0,
        3,
        3,
    )
    assert (elsewhere["insertedRows"], elsewhere["duplicateRows"]) == (2, 1)
    assert len(contacts("fair")) == 2 and len(contacts("webinar")) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "not a file we can read"),
        (b"Name,Phone\nAda,123\n", "No email column was found. The columns are: Name, Phone."),
        (b"Email,Phone\nada@example.com,123\n", "No name column was found"),
        (xlsx_bytes([["Name", "Email"], ["Ada", "ada@example.com"]])[:900], "damaged or incomplete"),
        (b'{"data": [{"name": "Ada", "email": "ada@example.com"}, ', "not valid JSON"),
    ],
    ids=["binary", "no-email-column", "no-name-column", "truncated-xlsx", "truncated-json"],
)
def test_an_unusable_file_fails_once_says_why_and_inserts_nothing(client, work, data, message):
    job_id = post_file(client, data)
    work()
    status = client.get(f"/imports/{job_id}").get_json()
    assert status["status"] == "failed"
    assert message in status["error"]
    assert status["attempts"] == 1
    assert status["insertedRows"] == 0 and contacts("crm") == []
    # the job itself ended: nothing waits to retry it
    assert Job.fetch(job_id, connection=redis()).get_status() == "finished"
    work()
    assert client.get(f"/imports/{job_id}").get_json()["attempts"] == 1


def test_unusable_file_fails_in_a_real_worker_without_retry(client, worker_process):
    worker_process("--concurrency", "1")
    status = finished(client, post_file(client, b"Name,Phone\nAda,123\n"))
    assert status["status"] == "failed" and "No email column" in status["error"]
    assert status["attempts"] == 1


def test_header_only_file_completes_with_nothing(client, work):
    for data in (b"Name,Email\n", xlsx_bytes([["Name", "Email"]]), b"[]", b'{"data": []}'):
        job_id = post_file(client, data)
        work()
        status = client.get(f"/imports/{job_id}").get_json()
        assert (status["status"], status["processedRows"], status["totalRows"]) == ("completed", 0, 0), data


@pytest.mark.parametrize(
    "data",
    [
        xlsx_bytes([["Name", "Email"], [12345, "num@example.com"], ["Ada", "ADA@example.com"]], 3, 2),
        ods_bytes([["Name", "Email"], [12345, "num@example.com"], ["Ada", "ADA@example.com"]], 2, 1),
    ],
    ids=["xlsx", "ods"],
)
def test_spreadsheets_import_with_numbers_as_text(client, work, data):
    job_id = post_file(client, data)
    work()
    status = client.get(f"/imports/{job_id}").get_json()
    assert (status["status"], status["insertedRows"]) == ("completed", 2)
    assert contacts("crm") == [("Ada", "ada@example.com"), ("12345", "num@example.com")]


def test_json_and_ndjson_rows_are_numbered_by_item_and_line(client, work):
    job_id = post_file(client, b'[{"name": "Ada", "email": "ada@example.com"}, {"name": "Bob"}, 3]')
    work()
    errors = client.get(f"/imports/{job_id}/errors").get_json()["items"]
    assert [(e["row"], e["field"]) for e in errors] == [(2, "email"), (3, None)]
    ndjson = b'{"name": "Cy", "email": "cy@x.io"}\n{"name": "Dee", oops\n{"name": "E", "email": "e@x.io"}\n'
    job_id = post_file(client, ndjson, source="nd")
    work()
    status = client.get(f"/imports/{job_id}").get_json()
    assert (status["format"], status["insertedRows"], status["rejectedRows"]) == ("ndjson", 2, 1)
    assert (status["mapping"]["name"], status["mapping"]["email"]) == ("name", "email")
    errors = client.get(f"/imports/{job_id}/errors").get_json()["items"]
    assert errors[0]["row"] == 2 and errors[0]["value"] == '{"name": "Dee", oops'


def _numbered_csv(count: int) -> bytes:
    rows = [f"Person {i},person{i}@example.com" for i in range(1, count + 1)]
    rows[4] = "Bad,not-an-email"  # spreadsheet row 6
    return ("Name,Email\n" + "\n".join(rows) + "\n").encode()


def test_progress_is_committed_per_batch_and_a_rerun_continues_without_doubling(make_app, monkeypatch):
    app = make_app(BATCH_SIZE="3")
    with app.app_context():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        job_id = post_file(client, _numbered_csv(10))

        calls = {"count": 0}
        real_store = committer.store_contacts

        def store_then_lose_the_database(*args, **kwargs):
            calls["count"] += 1
            if calls["count"] == 3:
                raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))
            return real_store(*args, **kwargs)

        monkeypatch.setattr(committer, "store_contacts", store_then_lose_the_database)
        claimed = runs.claim(job_id)
        with pytest.raises(sqlalchemy.exc.OperationalError):
            pipeline.run(claimed)
        db.session.rollback()
        runs.release(job_id, 1, "OperationalError")

        # two batches of three rows were committed before the failure: rows 2-7
        imp = db.session.get(Import, job_id)
        assert (imp.status, imp.checkpoint, imp.processed_rows) == ("queued", 7, 6)
        assert (imp.inserted_rows, imp.rejected_rows) == (5, 1)
        assert db.session.scalar(select(func.count()).select_from(Contact)) == 5

        monkeypatch.setattr(committer, "store_contacts", real_store)
        pipeline.run(runs.claim(job_id))
        db.session.expire_all()
        imp = db.session.get(Import, job_id)
        assert (imp.status, imp.attempts, imp.processed_rows) == ("completed", 2, 10)
        assert (imp.inserted_rows, imp.duplicate_rows, imp.rejected_rows) == (9, 0, 1)
        assert db.session.scalar(select(func.count()).select_from(Contact)) == 9
        assert db.session.scalar(select(func.count()).select_from(RowError)) == 1


def _open_copies(database_url: str) -> list[str]:
    """The states of the connections whose last statement was a COPY into contacts."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND query LIKE 'COPY contacts %%' ORDER BY state"
        ).fetchall()


def test_a_batch_is_copied_beside_the_one_before_and_commits_after_it(make_app, database_url, monkeypatch):
    """The next batch's new contacts go in by a second connection while the batch before is still
    being stored; it commits only after that one, and gives its copy back if it waits too long."""
    app = make_app(BATCH_SIZE="3")
    monkeypatch.setattr(committer, "OVERLAP_WAIT", 1.5)
    rows = [f"Person {i},person{i}@example.com" for i in range(1, 10)]
    rows[5] = "Second Three,PERSON3@example.com"  # row 7, in batch 2, repeats row 4's email
    data = ("Name,Email\n" + "\n".join(rows) + "\n").encode()
    first_batch_may_commit = threading.Event()
    real_count = committer._count_batch
    counted = []

    def count_the_first_batch_when_let(*args, **kwargs):
        counted.append(args[3].last_row)
        if len(counted) == 1:
            assert first_batch_may_commit.wait(30)
        return real_count(*args, **kwargs)

    monkeypatch.setattr(committer, "_count_batch", count_the_first_batch_when_let)
    with app.app_context():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        job_id = post_file(client, data)
        claimed = runs.claim(job_id)

        def run() -> None:
            with app.app_context():
                pipeline.run(claimed)

        with ThreadPoolExecutor(1) as running:
            ran = running.submit(run)
            # Batch 1 holds its rows uncommitted; batch 2's new contacts are copied beside it.
            both = [("idle in transaction",), ("idle in transaction",)]
            assert wait_for(lambda: _open_copies(database_url) == both, timeout=20)
            db.session.expire_all()
            assert db.session.get(Import, job_id).checkpoint == 0
            assert db.session.scalar(select(func.count()).select_from(Contact)) == 0
            # Past OVERLAP_WAIT batch 2 gives its copy back (its connection's last statement is now
            # the rollback), and is stored again after batch 1.
            assert wait_for(lambda: _open_copies(database_url) == [("idle in transaction",)], timeout=20)
            first_batch_may_commit.set()
            ran.result(timeout=30)
        db.session.expire_all()
        imp = db.session.get(Import, job_id)
        assert (imp.status, imp.processed_rows, imp.checkpoint) == ("completed", 9, 10)
        assert (imp.inserted_rows, imp.duplicate_rows, imp.rejected_rows) == (8, 1, 0)
        assert counted == [4, 7, 10]
        names = dict(db.session.execute(select(Contact.email, Contact.name)).all())
        assert len(names) == 8 and names["person3@example.com"] == "Person 3"  # the first row wins


def test_a_job_run_again_after_its_checkpoint_does_not_double_rows(client, work, env):
    data = _numbered_csv(10)
    job_id = post_file(client, data)
    # keep a copy of the stored file, as a crash before the end would have left it
    stored = uploads(env)[0].read_bytes()
    key = db.session.get(Import, job_id).storage_key
    work()
    assert contacts("crm").__len__() == 9

    # pretend the worker died after committing row 7 and the job comes back
    (Path(env["STORAGE_DIR"]) / key).write_bytes(stored)
    db.session.execute(
        update(Import)
        .where(Import.id == job_id)
        .values(
            status="queued", storage_key=key, checkpoint=7, processed_rows=6, inserted_rows=5, rejected_rows=1
        )
    )
    db.session.commit()
    pipeline.run(runs.claim(job_id))
    db.session.expire_all()
    imp = db.session.get(Import, job_id)
    assert (imp.status, imp.processed_rows, imp.inserted_rows, imp.duplicate_rows) == ("completed", 10, 5, 4)
    assert len(contacts("crm")) == 9
    assert db.session.scalar(select(func.count()).where(RowError.import_id == job_id)) == 1


# -- The original's flows with its 5,003-contact file -----------------------------------------


def _original_requests(path: Path) -> list[tuple[str, dict]]:
    document = json.loads(path.read_text())
    raw = path.read_bytes()
    requests = []
    for resumable in (False, True):
        flag = "true" if resumable else "false"
        requests.append(
            (
                f"json-{flag}",
                {"json": {"source": f"json-{flag}", "data": document["data"], "useResumable": resumable}},
            )
        )
        requests.append(
            (
                f"multipart-{flag}",
                {
                    "data": {
                        "file": (io.BytesIO(raw), "contacts-5003.json"),
                        "source": f"multipart-{flag}",
                        "useResumable": flag,
                    },
                    "content_type": "multipart/form-data",
                },
            )
        )
        requests.append(
            (
                f"stream-{flag}",
                {
                    "data": raw,
                    "content_type": "application/octet-stream",
                    "headers": {"X-Source": f"stream-{flag}", "X-Use-Resumable": flag},
                },
            )
        )
    return requests


def test_the_originals_flows_give_5003_contacts_each(client, worker_process):
    path = shared_file("contacts-5003.json")
    worker_process("--concurrency", "3")
    jobs = {}
    for source, request in _original_requests(path):
        response = client.post("/import", **request)
        assert response.status_code == 202, response.get_data(as_text=True)
        jobs[source] = response.get_json()["jobId"]
    for source, job_id in jobs.items():
        status = finished(client, job_id, timeout=120)
        assert status["status"] == "completed", status
        assert status["insertedRows"] == 5003
        count = db.session.scalar(select(func.count()).select_from(Contact).where(Contact.source == source))
        assert count == 5003, source
    assert {db.session.get(Import, j).use_resumable for j in jobs.values()} == {False, True}


def test_import_timings_log_one_line_per_run_with_its_seconds_per_stage(client, worker_process, env):
    worker = worker_process("--concurrency", "1", BATCH_SIZE="2", IMPORT_TIMINGS="true")
    job_id = post_file(client, MIXED, filename="mixed.csv")
    assert finished(client, job_id)["status"] == "completed"

    lines = [
        json.loads(line) for line in worker.log_path.read_text().splitlines() if "import timings" in line
    ]
    assert [line["import_id"] for line in lines] == [job_id]
    seconds = lines[0]["seconds"]
    assert seconds["batches"] == 4  # 6 rows counted, 2 a batch, and the last batch's blank row
    # Two connections store the batches, a stage counting both: each moment PostgreSQL is busy with
    # the import is in some stage, and the rest of the run is the database's idle time.
    stages = ("contacts", "row_errors", "counters", "commit")
    assert 0 < seconds["database_idle"] < seconds["wall"]
    assert sum(seconds[stage] for stage in stages) + seconds["database_idle"] >= seconds["wall"] - 0.01
    assert seconds["previous"] > 0
    assert seconds["reading"] + seconds["reading_waited"] == pytest.approx(seconds["wall"], abs=0.01)
    # The rejected rows' problems, sent as COPY text made while reading, are stored whole.
    db.session.remove()
    problems = db.session.execute(
        select(RowError.row, RowError.level, RowError.field, RowError.value, RowError.raw)
        .where(RowError.import_id == job_id)
        .order_by(RowError.row)
    ).all()
    assert [tuple(p)[:4] for p in problems] == [
        (2, "warning", "phone", "123"),
        (3, "error", "email", "not-an-email"),
        (4, "error", "name", ""),
        (6, "warning", "phone", "789"),
        (8, "error", "email", ""),
    ]
    assert problems[1].raw == {"Full Name": "Grace Hopper", "E-Mail": "not-an-email", "Phone": "456"}


def test_small_imports_from_concurrent_clients_are_each_counted_by_real_workers(
    make_app, web_server, worker_process
):
    """Small JSON imports posted by 8 clients at once through gunicorn while two workers run them:
    batches claimed side by side in the workers themselves, emails repeated across the imports."""
    app = make_app()
    base = web_server(RATE_LIMITS_ENABLED="false")
    worker_process("--concurrency", "2")
    bodies = [
        [{"name": f"P {n}", "email": f"p{(n * 7 + k) % 150}@example.com"} for k in range(n % 10 + 1)]
        for n in range(160)
    ]

    def post(data: list[dict[str, str]]) -> str:
        request = urllib.request.Request(
            f"{base}/import",
            data=json.dumps({"source": "crm", "data": data}).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
            return json.load(response)["jobId"]

    with ThreadPoolExecutor(8) as clients:
        ids = list(clients.map(post, bodies))

    def ended() -> list[Import] | None:
        db.session.remove()
        imports = db.session.scalars(select(Import).where(Import.id.in_(ids))).all()
        return imports if all(imp.is_final for imp in imports) else None

    with app.app_context():
        _assert_small_imports_counted(ids, bodies, wait_for(ended, timeout=120, interval=0.2))


def _assert_small_imports_counted(ids: list[str], bodies: list[list[dict]], imports: list[Import]) -> None:
    """Each import counts each of its rows once; each email is stored once, by the import that counts it."""
    assert {imp.status for imp in imports} == {"completed"}
    assert {imp.attempts for imp in imports} == {1}
    by_id = {imp.id: imp for imp in imports}
    for job_id, data in zip(ids, bodies, strict=True):
        imp = by_id[job_id]
        assert imp.processed_rows == len(data) == imp.inserted_rows + imp.duplicate_rows
    emails = {item["email"] for data in bodies for item in data}
    stored = db.session.scalars(select(Contact.email).where(Contact.source == "crm")).all()
    assert len(stored) == len(set(stored)) == len(emails) == sum(imp.inserted_rows for imp in imports)
    owners = db.session.execute(select(Contact.import_id, func.count()).group_by(Contact.import_id)).all()
    assert all(by_id[owner].inserted_rows == n for owner, n in owners)
