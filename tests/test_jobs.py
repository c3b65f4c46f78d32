"""The import job: transient failures wait for a retry from the checkpoint; the last one says why."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy.exc
from rq import SimpleWorker
from rq.job import Job
from sqlalchemy import func, select, text, update

from app.extensions import QUEUE_NAME, db, queue, redis, settings
from app.imports import committer
from app.maintenance import run_task
from app.models import Contact, Import, utcnow
from app.recovery import queue_due_retries
from tests.test_pipeline import post_file

CSV = ("Name,Email\n" + "".join(f"Person {i},p{i}@example.com\n" for i in range(1, 8))).encode()


@pytest.fixture
def database_drops_once(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The database connection breaks while the second batch is being stored, once."""
    calls = {"count": 0}
    real_store = committer.store_contacts

    def store(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 2:
            raise sqlalchemy.exc.OperationalError("COPY", {}, Exception("server closed the connection"))
        return real_store(*args, **kwargs)

    monkeypatch.setattr(committer, "store_contacts", store)
    return calls


def test_a_transient_failure_waits_for_a_retry_that_continues_from_the_checkpoint(
    make_app, database_drops_once
):
    app = make_app(BATCH_SIZE="3")
    with app.app_context():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"

        def work() -> None:
            SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
            db.session.remove()

        job_id = post_file(client, CSV)
        work()
        status = client.get(f"/imports/{job_id}").get_json()
        assert status["status"] == "queued"
        assert status["error"] == "Waiting to retry after a temporary failure: OperationalError"
        assert (status["processedRows"], status["insertedRows"]) == (3, 3)
        # PostgreSQL holds when the retry is due; Redis holds nothing until then.
        imp = db.session.get(Import, job_id)
        assert imp.retry_at is not None and imp.retries == 1
        assert queue().count == 0 and queue().scheduled_job_registry.count == 0

        db.session.execute(
            update(Import).where(Import.id == job_id).values(retry_at=utcnow())
        )  # backoff over
        db.session.commit()
        run_task(app, queue_due_retries)
        work()
        status = client.get(f"/imports/{job_id}").get_json()
        assert (status["status"], status["error"], status["attempts"]) == ("completed", None, 2)
        assert (status["processedRows"], status["insertedRows"], status["duplicateRows"]) == (7, 7, 0)
        assert db.session.scalar(select(func.count()).select_from(Contact)) == 7


def test_when_the_retries_run_out_the_import_fails_and_says_why(client, work, database_drops_once):
    job_id = post_file(client, CSV * 200)  # several batches of the suite's BATCH_SIZE
    retries = len(settings().retry_backoff)  # every retry used
    db.session.execute(update(Import).where(Import.id == job_id).values(retries=retries))
    db.session.commit()
    work()
    status = client.get(f"/imports/{job_id}").get_json()
    assert status["status"] == "failed"
    assert "kept failing (OperationalError)" in status["error"]
    assert Job.fetch(job_id, connection=redis()).get_status() == "failed"


def test_a_maintenance_task_whose_connection_the_database_dropped_does_not_end_the_loop(app, database_url):
    """PostgreSQL restarted between a task's last statement and the end of its transaction, so the
    task's session cannot be given back cleanly: the worker pool's loop, which runs every task, goes
    on. (It once ended there, and no stopped import was resumed after that restart.)"""

    def drops_its_connection() -> None:
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
        with psycopg.connect(database_url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))

    answers = []
    run_task(app, drops_its_connection)
    run_task(app, lambda: answers.append(db.session.execute(text("SELECT 1")).scalar()))
    assert answers == [1]
