"""Real restarts, not stand-ins: the run's own redis-server and PostgreSQL cluster are stopped and
started again mid-import, and the web process is killed -9 mid-upload. Each ends with every
import final and exact contact counts."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import time
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis as redis_lib
import sqlalchemy.exc
from sqlalchemy import func, select, text
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from app.extensions import QUEUE_NAME, db
from app.models import Import
from tests.conftest import wait_for
from tests.servers import kill_process_tree
from tests.test_recovery import (
    FAST,
    ROWS,
    WORKER_APP,
    SmallImports,
    assert_small_imports_stored_once,
    assert_stored_exactly_once,
    contact_file,
    email_held,
    post_file,
    post_small_imports,
    process_tree,
    progress,
    status,
    stuck_report,
    waiting_on_the_held_email,
)
from tests.test_retries import assert_counts

# A run stuck past the restart (its heartbeat beating) is taken over after 30 s, not 5 minutes, so an
# import still ends within the wait; wait_until_final warns when that happened.
RESTARTS = {**FAST, "STALL_TIMEOUT": "30"}


def api_client(app):
    """A test client of the app that asks for JSON."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT"] = "application/json"
    return client


def final(job_id: str) -> bool:
    """Whether the import has ended; a connection the restart cut fails once and is replaced."""
    try:
        return status(job_id).status in ("completed", "failed", "cancelled")
    except sqlalchemy.exc.OperationalError:
        db.session.remove()
        return False


def wait_until_final(job_ids: list[str], workers: list, timeout: float = 120) -> None:
    """Wait for every import to end; on a timeout, fail with what held each up and where every
    worker process stood (each is made to print its threads' stacks into its log)."""
    try:
        wait_for(lambda: all(final(job_id) for job_id in job_ids), timeout=timeout, interval=0.2)
        for worker in workers:
            if "made no progress" in worker.log_path.read_text(errors="replace"):
                warnings.warn(f"{worker.log_path.name}: a run was stuck and taken over", stacklevel=2)
    except AssertionError:
        report = [f"not every import ended in {timeout:g}s"]
        report += [stuck_report(job_id) for job_id in job_ids if not final(job_id)]
        for worker in workers:
            for pid in process_tree(worker.pid):  # faulthandler prints the stacks on SIGABRT
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGABRT)
        time.sleep(2)
        for worker in workers:
            lines = worker.log_path.read_text(errors="replace").splitlines()[-400:]
            report += [f"--- {worker.log_path.name}", *(line[:400] for line in lines)]
        raise AssertionError("\n".join(report)) from None


def test_redis_restarted_empty_while_imports_are_queued_running_and_waiting_to_retry(
    make_app, worker_process, throwaway_redis, tmp_path
):
    redis_url = throwaway_redis.url
    app = make_app(REDIS_URL=redis_url, **RESTARTS)
    with app.app_context():
        client = api_client(app)
        running = contact_file(tmp_path, rows=ROWS)
        queued = contact_file(tmp_path, rows=5_000, first=1_000_001)
        retrying = contact_file(tmp_path, rows=5_000, first=2_000_001)
        worker = worker_process("--concurrency", "1", REDIS_URL=redis_url, **RESTARTS)
        running_id = post_file(client, running)
        wait_for(lambda: progress(running_id, 5_000), timeout=60, interval=0.05)
        queued_id = post_file(client, queued)  # waits behind the running one: one worker
        retry_id = post_file(client, retrying)
        # What a transient failure leaves: queued, its retry due in PostgreSQL a few seconds from now.
        db.session.execute(
            text(
                "UPDATE imports SET retries = 1, retry_at = now() + interval '3 seconds', "
                "error = 'Waiting to retry after a temporary failure: OperationalError' WHERE id = :id"
            ),
            {"id": retry_id},
        )
        db.session.commit()
        jobs = redis_lib.Redis.from_url(redis_url)
        assert jobs.llen(f"rq:queue:{QUEUE_NAME}") == 2
        assert status(running_id).status == "running"

        throwaway_redis.restart()
        assert jobs.llen(f"rq:queue:{QUEUE_NAME}") == 0  # every queue and job is gone

        wait_until_final([running_id, queued_id, retry_id], [worker])
        assert_counts({running_id: running, queued_id: queued, retry_id: retrying})


def _copying(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as probe:
        return bool(
            probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active' AND query LIKE 'COPY %'"
            ).fetchone()[0]
        )


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgresql_restarted_mid_copy(mode, make_app, worker_process, throwaway_postgres, tmp_path):
    url = throwaway_postgres.database_url
    app = make_app(DATABASE_URL=url, **RESTARTS)
    with app.app_context():
        file = contact_file(tmp_path, rows=ROWS)
        job_id = post_file(api_client(app), file)
        worker = worker_process("--concurrency", "1", DATABASE_URL=url, **RESTARTS)
        wait_for(lambda: progress(job_id, 2_000), timeout=60, interval=0.05)
        wait_for(lambda: _copying(url), timeout=30, interval=0.01)
        throwaway_postgres.restart(mode)

        wait_until_final([job_id], [worker])
        imp = assert_stored_exactly_once(job_id, file)
        assert imp.attempts >= 2


def test_postgresql_unreachable_for_30_seconds(make_app, worker_process, throwaway_postgres, tmp_path):
    url = throwaway_postgres.database_url
    app = make_app(DATABASE_URL=url, **RESTARTS)
    with app.app_context():
        file = contact_file(tmp_path, rows=ROWS)
        job_id = post_file(api_client(app), file)
        worker = worker_process("--concurrency", "1", DATABASE_URL=url, **RESTARTS)
        wait_for(lambda: progress(job_id, 2_000), timeout=60, interval=0.05)
        throwaway_postgres.stop("fast")
        time.sleep(30)  # the fault itself: nothing can reach the database meanwhile
        assert worker.poll() is None  # the worker rides it out
        throwaway_postgres.start()

        wait_until_final([job_id], [worker])
        imp = assert_stored_exactly_once(job_id, file)
        assert imp.attempts >= 2


def _half_sent(base: str, method: str, path: str, headers: dict[str, str], body: bytes) -> socket.socket:
    """Send a request whose body stops short of its last 64 KiB; the connection stays open.

    The server reads a body a MiB at a time, so it writes what arrived but for that last part.
    """
    parts = urlsplit(base)
    connection = socket.create_connection((parts.hostname, parts.port), timeout=10)
    head = f"{method} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    connection.sendall(head.encode() + body[: len(body) - 64 * 1024])
    return connection


def _request(base: str, method: str, path: str, headers: dict[str, str], body: bytes | None = None):
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.headers, response.read()


def _stored(app) -> list[Path]:
    """Files in storage, the tus uploads' folder aside."""
    root = app.config["SETTINGS"].storage_dir
    return [p for p in root.glob("*") if p.is_file()] if root.exists() else []


def test_the_web_process_killed_mid_upload(make_app, web_server, worker_process, tmp_path):
    app = make_app(**RESTARTS)
    base = web_server(**RESTARTS)
    worker = worker_process("--concurrency", "1", MAINTENANCE_INTERVAL="1", **RESTARTS)
    files = {
        "stream": contact_file(tmp_path, rows=ROWS),
        "multipart": contact_file(tmp_path, rows=ROWS, first=1_000_001),
        "tus": contact_file(tmp_path, rows=ROWS, first=2_000_001),
    }
    stream_body = files["stream"].path.read_bytes()
    boundary, form = encode_multipart(
        {
            "source": "multipart",
            "file": FileStorage(io.BytesIO(files["multipart"].path.read_bytes()), "m.csv"),
        }
    )
    form_type = f"multipart/form-data; boundary={boundary}"
    tus_body = files["tus"].path.read_bytes()
    tus = {"Tus-Resumable": "1.0.0"}
    meta = {"Upload-Metadata": "source " + base64.b64encode(b"tus").decode()}
    _, created, _ = _request(base, "POST", "/uploads", tus | meta | {"Upload-Length": str(len(tus_body))})
    upload = urlsplit(created["Location"]).path
    chunk = {"Content-Type": "application/offset+octet-stream"}
    quarter = len(tus_body) // 4
    _request(base, "PATCH", upload, tus | chunk | {"Upload-Offset": "0"}, tus_body[:quarter])

    # The stream's request carries an idempotency key, which its killed process held.
    stream_headers = {"X-Source": "stream", "Content-Type": "text/csv", "Idempotency-Key": "stream-1"}
    cut = [
        _half_sent(base, "POST", "/import", stream_headers, stream_body),
        _half_sent(base, "POST", "/import", {"Content-Type": form_type}, form),
        _half_sent(base, "PATCH", upload, tus | chunk | {"Upload-Offset": str(quarter)}, tus_body[quarter:]),
    ]
    tus_partial = app.config["SETTINGS"].storage_dir / "tus" / f"{upload.rsplit('/', 1)[1]}.part"
    # The server is writing the stream's and the tus chunk's bytes when it is killed.
    wait_for(lambda: any(p.suffix == ".part" for p in _stored(app)), timeout=30, interval=0.02)
    wait_for(lambda: tus_partial.stat().st_size > quarter, timeout=30, interval=0.02)
    kill_process_tree(base.process.pid)
    base.process.wait(timeout=10)
    for connection in cut:
        connection.close()

    base = web_server(**RESTARTS)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Import)) == 0  # no half-received import
    # The worker's upkeep deletes the stream's half-written file (its writer is gone).
    wait_for(lambda: not _stored(app), timeout=30, interval=0.2)

    _, head, _ = _request(base, "HEAD", upload, tus)
    offset = int(head["Upload-Offset"])
    assert offset == quarter  # the cut chunk never committed; the upload resumes from its offset
    status_code, answer, _ = _request(
        base, "PATCH", upload, tus | chunk | {"Upload-Offset": str(offset)}, tus_body[offset:]
    )
    assert status_code == 204
    ids = {"tus": answer["X-Import-Id"]}
    json_api = {"Accept": "application/json"}
    # The same key again, at once: the killed request's hold on it died with its process.
    _, _, body = _request(base, "POST", "/import", json_api | stream_headers, stream_body)
    ids["stream"] = json.loads(body)["jobId"]
    _, _, body = _request(base, "POST", "/import", json_api | {"Content-Type": form_type}, form)
    ids["multipart"] = json.loads(body)["jobId"]

    with app.app_context():
        wait_until_final(list(ids.values()), [worker])
        for source, job_id in ids.items():
            assert_stored_exactly_once(job_id, files[source], source=source)
        assert db.session.scalar(select(func.count()).select_from(Import)) == 3


def _both(*batches: SmallImports) -> SmallImports:
    return SmallImports(
        [job_id for batch in batches for job_id in batch.ids],
        sum(batch.rows for batch in batches),
        set().union(*(batch.emails for batch in batches)),
    )


def test_redis_restarted_empty_mid_batch_of_small_imports(
    make_app, worker_process, throwaway_redis, database_url
):
    """The batch needs Redis only to find more work: it commits, and imports posted after the
    restart (whose wake-up went with Redis) are run too."""
    redis_url = throwaway_redis.url
    app = make_app(REDIS_URL=redis_url, **RESTARTS)
    with app.app_context():
        client = api_client(app)
        before = post_small_imports(client)
        worker_url = f"{database_url}?application_name={WORKER_APP}"
        with email_held(database_url):
            worker = worker_process(
                "--concurrency", "1", REDIS_URL=redis_url, DATABASE_URL=worker_url, **RESTARTS
            )
            wait_for(lambda: waiting_on_the_held_email(database_url), timeout=60, interval=0.05)
            throwaway_redis.restart()
        after = post_small_imports(client, count=4, first=101)
        small = _both(before, after)
        wait_until_final(small.ids, [worker], timeout=60)
        assert_small_imports_stored_once(small)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgresql_restarted_mid_batch_of_small_imports(mode, make_app, worker_process, throwaway_postgres):
    url = throwaway_postgres.database_url
    app = make_app(DATABASE_URL=url, **RESTARTS)
    with app.app_context():
        small = post_small_imports(api_client(app))
        with email_held(url):
            worker = worker_process(
                "--concurrency", "1", DATABASE_URL=f"{url}?application_name={WORKER_APP}", **RESTARTS
            )
            wait_for(lambda: waiting_on_the_held_email(url), timeout=60, interval=0.05)
            throwaway_postgres.restart(mode)
        wait_until_final(small.ids, [worker])
        imports = assert_small_imports_stored_once(small)
        assert {imp.attempts for imp in imports} == {1}  # the batch's claim was lost with its transaction
