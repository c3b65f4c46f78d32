"""Retries whose due time PostgreSQL holds: they run with no RQ scheduler alive, after a kill -9 of
the whole worker tree, and nothing else a killed worker leaves in Redis strands an import."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
from sqlalchemy import func, select, text

from app.extensions import QUEUE_NAME, db
from app.imports.small import WAKE_KEY
from app.models import Contact, Import, RowError
from tests.conftest import ROOT, wait_for
from tests.test_recovery import (
    FAST,
    ContactFile,
    assert_small_imports_stored_once,
    contact_file,
    post_file,
    post_small_imports,
    process_tree,
    progress,
    status,
)

WORKER_APP = "dataflow-procfile-worker"


@pytest.fixture
def procfile_worker(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start the Procfile's worker line, as a platform would (through a shell); killed after the test."""
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("worker:"))
    command = line.split(":", 1)[1].strip()
    assert shlex.split(command)[:3] == ["flask", "--app", "wsgi"]
    started: list[subprocess.Popen] = []

    def start(**extra: str) -> subprocess.Popen:
        with (tmp_path / f"worker-{len(started) + 1}.log").open("wb") as log:
            process = subprocess.Popen(
                command,
                shell=True,
                cwd=ROOT,
                # The venv's flask first on PATH, as in the deployed image.
                env={
                    **os.environ,
                    **env,
                    **extra,
                    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                },
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            kill_tree(process)


def kill_tree(process: subprocess.Popen) -> None:
    """kill -9 of the process and every descendant, all at once."""
    for pid in process_tree(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)


def assert_counts(files: dict[str, ContactFile], source: str = "crm") -> None:
    """Each import completed once with its exact counters; the source holds each email once."""
    every_email: set[str] = set()
    for job_id, file in files.items():
        imp = status(job_id)
        assert imp.status == "completed", imp.error
        assert imp.processed_rows == file.rows
        assert imp.rejected_rows == file.rejected
        assert db.session.scalar(select(func.count()).where(RowError.import_id == job_id)) == file.rejected
        assert imp.inserted_rows == len(file.emails)
        every_email |= file.emails
    emails = db.session.scalars(select(Contact.email).where(Contact.source == source)).all()
    assert len(emails) == len(set(emails)) == len(every_email)
    assert set(emails) == every_email


def test_the_retry_after_a_killed_worker_tree_runs(client, env, tmp_path, database_url, procfile_worker):
    """The issue's sequence: 300,000 rows, kill -9 of the worker tree, a new worker completes them;
    300,000 more, the database drops the worker's connections, and the retry runs within seconds."""
    # Three seconds before the first retry, so the test sees the import waiting for it.
    worker_env = {**FAST, "WORKER_CONCURRENCY": "2", "RETRY_BACKOFF": "3,1,2"}
    worker_url = f"{database_url}?application_name={WORKER_APP}"
    first = contact_file(tmp_path, rows=300_000)
    first_id = post_file(client, first)
    old = procfile_worker(**worker_env, DATABASE_URL=worker_url)
    wait_for(lambda: progress(first_id, 5_000), timeout=60, interval=0.05)
    kill_tree(old)
    assert 0 < status(first_id).processed_rows < first.rows

    procfile_worker(**worker_env, DATABASE_URL=worker_url)
    wait_for(lambda: status(first_id).status == "completed", timeout=120, interval=0.2)
    assert status(first_id).attempts == 2

    second = contact_file(tmp_path, rows=300_000, first=300_001)
    second_id = post_file(client, second)
    wait_for(lambda: progress(second_id, 5_000), timeout=60, interval=0.05)
    with psycopg.connect(database_url, autocommit=True) as admin:

        def dropped_into_a_retry() -> tuple[str, int, int] | None:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE application_name = '{WORKER_APP}' AND datname = current_database()"
            )
            imp = status(second_id)
            return (imp.status, imp.retries, imp.attempts) if imp.retries else None

        state, retries, attempts = wait_for(dropped_into_a_retry, timeout=60, interval=0.1)
    assert (state, retries) == ("queued", 1)
    # The retry is due three seconds later and runs, with no RQ scheduler.
    wait_for(lambda: status(second_id).attempts > attempts, timeout=20, interval=0.1)
    wait_for(lambda: status(second_id).status == "completed", timeout=120, interval=0.2)
    assert_counts({first_id: first, second_id: second})
    assert not redis_lib.Redis.from_url(env["REDIS_URL"]).zcard(f"rq:scheduled:{QUEUE_NAME}")


def test_a_job_a_killed_worker_took_before_its_claim_is_queued_again(client, worker_process, tmp_path, env):
    """A worker killed between taking the job and claiming the import leaves it 'started' in RQ."""
    file = contact_file(tmp_path, rows=3_000)
    job_id = post_file(client, file)
    connection = redis_lib.Redis.from_url(env["REDIS_URL"])
    # What RQ holds after a worker took the job and died: off the queue, in the started registry
    # with an expiry minutes away.
    connection.lrem(f"rq:queue:{QUEUE_NAME}", 0, job_id)
    expiry = connection.time()[0] + 600
    connection.zadd(f"rq:wip:{QUEUE_NAME}", {f"{job_id}:dead-execution": expiry})
    assert connection.zscore(f"rq:wip:{QUEUE_NAME}", f"{job_id}:dead-execution")

    worker_process("--concurrency", "1", **FAST)
    wait_for(lambda: status(job_id).status == "completed", timeout=60, interval=0.2)
    assert_counts({job_id: file})


def test_a_retry_waits_for_its_due_time_in_postgresql(app, client, work):
    """An early wake-up (a job left in Redis) does not run a retry before it is due."""
    job_id = client.post(
        "/import", json={"source": "crm", "data": [{"name": "A", "email": "a@example.com"}]}
    ).get_json()["jobId"]
    db.session.execute(
        text("UPDATE imports SET retry_at = now() + interval '1 hour', retries = 1 WHERE id = :id"),
        {"id": job_id},
    )
    db.session.commit()
    work()
    imp = status(job_id)
    assert (imp.status, imp.attempts) == ("queued", 0)

    db.session.execute(text("UPDATE imports SET retry_at = now() WHERE id = :id"), {"id": job_id})
    db.session.commit()
    from tests.test_recovery import run_once_due

    run_once_due(app)
    work()
    assert status(job_id).status == "completed"


def test_a_cancel_cut_short_after_its_commit_leaves_no_file(app, client, tmp_path):
    """A web process killed between the cancel's commit and the file's delete: the sweep deletes it."""
    from app.imports.cleanup import sweep_stored_files
    from app.maintenance import run_task
    from tests.conftest import stored_files

    job_id = post_file(client, contact_file(tmp_path, rows=10))
    # What the cancel commits before it deletes the file.
    db.session.execute(
        text("UPDATE imports SET status = 'cancelled', finished_at = now() WHERE id = :id"), {"id": job_id}
    )
    db.session.commit()
    assert stored_files(app)
    run_task(app, sweep_stored_files)
    assert not stored_files(app)
    assert db.session.get(Import, job_id, populate_existing=True).storage_key is None


def test_the_small_imports_job_a_killed_worker_took_before_its_claim_strands_none(
    client, worker_process, env
):
    """The job of the small imports, taken by a worker that died: its wake-up is still held, so
    no POST queues another, and the reconciler queues each import as a job of its own."""
    small = post_small_imports(client, count=4)
    connection = redis_lib.Redis.from_url(env["REDIS_URL"])
    (job_id,) = [job.decode() for job in connection.lrange(f"rq:queue:{QUEUE_NAME}", 0, -1)]
    connection.lrem(f"rq:queue:{QUEUE_NAME}", 0, job_id)
    connection.zadd(f"rq:wip:{QUEUE_NAME}", {f"{job_id}:dead-execution": connection.time()[0] + 600})
    assert connection.ttl(WAKE_KEY) > 0

    worker_process("--concurrency", "1", **FAST)
    wait_for(lambda: all(status(job_id).is_final for job_id in small.ids), timeout=60, interval=0.2)
    assert {imp.attempts for imp in assert_small_imports_stored_once(small)} == {1}
