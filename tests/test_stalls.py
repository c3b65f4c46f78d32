"""Stuck, not dead: a run whose rows and stage stand still for STALL_TIMEOUT is taken over, and
its work horse, alive but stuck, is killed. The storage read that never returns is a real one:
the stored file is a FIFO that nobody writes to until the new run waits on it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from app.extensions import db
from app.imports.runs import LEFT_BEHIND
from app.models import Import
from tests.conftest import stored_files, wait_for
from tests.test_recovery import (
    FAST,
    ROWS,
    WORKER_APP,
    assert_small_imports_stored_once,
    assert_stored_exactly_once,
    contact_file,
    email_held,
    post_file,
    post_small_imports,
    process_tree,
    progress,
    status,
    waiting_on_the_held_email,
)

STALLS = {**FAST, "STALL_TIMEOUT": "4", "JOB_HEARTBEAT_TIMEOUT": "4"}


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_stuck_on_a_storage_read_is_taken_over_and_its_horse_killed(
    workers, client, app, worker_process, tmp_path
):
    file = contact_file(tmp_path, rows=3_000)
    job_id = post_file(client, file)
    (stored,) = stored_files(app)
    content = stored.read_bytes()
    stored.unlink()
    os.mkfifo(stored)  # opening it for reading blocks until someone opens it for writing

    worker = worker_process("--concurrency", str(workers), **STALLS)
    wait_for(lambda: status(job_id).status == "running", timeout=60)
    stuck_horse = int(status(job_id).run_by.rsplit(":", 1)[1])
    assert _alive(stuck_horse)
    assert status(job_id).heartbeat_at is not None  # alive: its heartbeat thread still beats

    # Taken over: a second run claims the import, and the stuck horse is gone.
    wait_for(lambda: status(job_id).attempts == 2 and status(job_id).status == "running", timeout=60)
    wait_for(lambda: not _alive(stuck_horse), timeout=30)
    assert worker.poll() is None  # the worker lives on; only its stuck horse was killed

    # The new run waits on the same read: this time the file's bytes arrive.
    with open(stored, "wb") as fifo:
        fifo.write(content)
    wait_for(lambda: status(job_id).status in ("completed", "failed"), timeout=60, interval=0.2)
    imp = assert_stored_exactly_once(job_id, file)
    assert imp.attempts == 2
    log = worker.log_path.read_text()
    assert "it made no progress for 4s" in log
    # The horse's heartbeat thread finds the import taken and, a beat later, kills its own process.
    # With one worker that comes well before the worker's own kill, which waits out LEFT_BEHIND's
    # grace; with two, the horse's worker may look first, once the other worker's run has claimed.
    killed_by_itself = "the import was taken from this run, which did not stop: killing its process"
    killed_by_its_worker = "killing a stuck work horse: a newer run took the import over"
    if workers == 1:
        assert killed_by_itself in log, log
    else:
        assert killed_by_itself in log or killed_by_its_worker in log, log


def test_a_live_run_that_moves_is_not_taken_over(app, client):
    """The reconciler leaves alone a run whose heartbeat beats and whose rows move."""
    from sqlalchemy import text

    from app.recovery import reconcile

    job_id = client.post(
        "/import", json={"source": "s", "data": [{"name": "A", "email": "a@example.com"}]}
    ).get_json()["jobId"]
    db.session.execute(
        text(
            "UPDATE imports SET status = 'running', heartbeat_at = now(), "
            "progress_at = now() - interval '1 minute' WHERE id = :id"
        ),
        {"id": job_id},
    )
    db.session.commit()
    reconcile()  # STALL_TIMEOUT is five minutes by default
    assert status(job_id).status == "running"
    db.session.execute(
        text("UPDATE imports SET progress_at = now() - interval '6 minutes' WHERE id = :id"), {"id": job_id}
    )
    db.session.commit()
    reconcile()
    imp = db.session.get(Import, job_id, populate_existing=True)
    assert imp.status == "queued"
    assert imp.error == "Resumed after it made no progress for 5 minutes"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_frozen_work_horse_is_killed_by_its_worker_and_the_import_taken_over(
    workers, client, worker_process, tmp_path
):
    """A horse stopped whole (SIGSTOP: no thread of it runs, as when one holds the GIL) cannot
    kill itself; its heartbeat stops, its worker kills it (releasing any row lock it held mid-batch),
    and a new run takes over. With two workers the other one's run takes the import over first; with
    one, the import waits queued behind the frozen horse until its worker kills it (it waited for
    RQ's six-hour job timeout when the reconciler took it back first)."""
    file = contact_file(tmp_path, rows=ROWS)
    job_id = post_file(client, file)
    worker = worker_process("--concurrency", str(workers), **FAST)
    wait_for(lambda: progress(job_id, 2_000), timeout=60, interval=0.05)
    frozen = int(status(job_id).run_by.rsplit(":", 1)[1])
    os.kill(frozen, signal.SIGSTOP)

    wait_for(lambda: status(job_id).attempts == 2, timeout=60)
    wait_for(lambda: not _alive(frozen), timeout=30)
    wait_for(lambda: status(job_id).status in ("completed", "failed"), timeout=120, interval=0.2)
    assert assert_stored_exactly_once(job_id, file).attempts == 2
    log = worker.log_path.read_text()
    # With one worker the reconciler takes the import back at one heartbeat timeout, and the kill
    # then waits out LEFT_BEHIND's grace; if the worker looks first, at two, it kills at once. With
    # two, the other worker's run usually has the import by then, but the horse's worker may look
    # between the reconciler taking it back and that claim, and see it left behind.
    reasons = [LEFT_BEHIND, "its heartbeat stopped while the process lives"]
    reasons += ["a newer run took the import over"] if workers == 2 else []
    assert any(f"killing a stuck work horse: {reason}" in log for reason in reasons), log


def test_a_worker_frozen_mid_batch_of_small_imports_loses_its_locks_and_they_complete_once(
    client, worker_process, database_url
):
    """Small imports run in the worker itself, in one transaction: a worker stopped whole inside it
    is cut off by PostgreSQL once it sits idle in the transaction for JOB_HEARTBEAT_TIMEOUT, so the
    batch rolls back, its row locks go, and another worker runs the imports."""
    small = post_small_imports(client)
    url = f"{database_url}?application_name={WORKER_APP}"
    with email_held(database_url):
        first = worker_process("--concurrency", "1", DATABASE_URL=url, **FAST)
        wait_for(lambda: waiting_on_the_held_email(database_url), timeout=60, interval=0.05)
        frozen = process_tree(first.pid)[1:]  # the worker (and its scheduler), not their supervisor
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
    # The batch's insert goes on once the holder is gone, then waits for its frozen client.
    try:
        second = worker_process("--concurrency", "1", **FAST)
        wait_for(lambda: all(status(job_id).is_final for job_id in small.ids), timeout=60, interval=0.2)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    imports = assert_small_imports_stored_once(small)
    assert {imp.attempts for imp in imports} == {1}
    assert second.poll() is None
    # Woken, the frozen worker finds its session ended, and stores nothing twice.
    wait_for(lambda: "each will run alone" in first.log_path.read_text(), timeout=30, interval=0.1)
    assert_small_imports_stored_once(small)


def test_what_a_worker_reads_of_its_horse_from_the_import(app, client):
    """lost_by: nothing while the horse's run works the import; at once when a newer run claimed it
    or its heartbeat stopped twice over; LEFT_BEHIND (killed after a grace) when no run works it."""
    from sqlalchemy import text

    from app.imports.runs import UNDO_JOB_PREFIX, lost_by

    job_id = client.post(
        "/import", json={"source": "s", "data": [{"name": "A", "email": "a@example.com"}]}
    ).get_json()["jobId"]

    def as_if(values: str) -> None:
        db.session.execute(text(f"UPDATE imports SET {values} WHERE id = :id"), {"id": job_id})
        db.session.commit()

    as_if("status = 'queued', run_by = 'host:1', heartbeat_at = NULL")  # not claimed yet
    assert lost_by(job_id, "host:2") == LEFT_BEHIND
    as_if("status = 'running', run_by = 'host:2', heartbeat_at = now()")
    assert lost_by(job_id, "host:2") is None
    assert lost_by(job_id, "host:3") == "a newer run took the import over"
    as_if("heartbeat_at = now() - interval '5 minutes'")
    assert lost_by(job_id, "host:2") == "its heartbeat stopped while the process lives"
    as_if("status = 'queued', run_by = NULL, heartbeat_at = NULL")  # taken back by the reconciler
    assert lost_by(job_id, "host:2") == LEFT_BEHIND
    as_if("status = 'completed', run_by = 'host:2'")
    assert lost_by(job_id, "host:2") == LEFT_BEHIND
    # An undo's job: it waits "undoing" with no heartbeat, the import's last run still named.
    as_if("status = 'undoing', heartbeat_at = NULL")
    assert lost_by(UNDO_JOB_PREFIX + job_id, "host:4") == LEFT_BEHIND
    as_if("run_by = 'host:4', heartbeat_at = now()")
    assert lost_by(UNDO_JOB_PREFIX + job_id, "host:4") is None
    assert lost_by("a webhook delivery job", "host:4") is None
