"""Undo with real faults: kill -9 of every worker process mid-undo, and an undo beside a running import."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import Contact, ContactChange
from tests import test_recovery
from tests.conftest import wait_for
from tests.test_recovery import FAST, contact_file, post_file, status
from tests.test_retries import kill_tree

# The recovery tests' API client, whose app queues jobs with the short retry backoff.
client = test_recovery.client


def contacts_of(import_id: str) -> int:
    """How many contacts the import inserted are still stored."""
    db.session.rollback()
    return db.session.scalar(select(func.count()).where(Contact.import_id == import_id))


def undoing(job_id: str, at_least: int) -> bool:
    imp = status(job_id)
    return imp.status == "undoing" and imp.undone_rows >= at_least


def test_kill_9_mid_undo_then_a_new_worker_finishes_it_removing_each_contact_once(
    client, worker_process, tmp_path
):
    file = contact_file(tmp_path, rows=150_000)
    job_id = post_file(client, file)
    first = worker_process("--concurrency", "1", **FAST)
    wait_for(lambda: status(job_id).status == "completed", timeout=180, interval=0.2)
    inserted = status(job_id).inserted_rows
    assert inserted == len(file.emails)

    assert client.post(f"/imports/{job_id}/undo").status_code == 202
    wait_for(lambda: undoing(job_id, 3_000), timeout=60, interval=0.02)
    kill_tree(first)
    stopped = status(job_id)
    assert stopped.status == "undoing"
    assert 0 < stopped.undone_rows < inserted
    # What the counter says was removed is exactly what is gone: the batch and its count commit together.
    assert contacts_of(job_id) == inserted - stopped.undone_rows

    worker_process("--concurrency", "1", **FAST)
    wait_for(lambda: status(job_id).status == "undone", timeout=120, interval=0.2)
    done = status(job_id)
    assert contacts_of(job_id) == 0
    assert (done.undone_rows, done.kept_rows) == (inserted, 0)
    assert done.attempts >= 3  # the import's claim, the killed undo's, the resumed undo's
    assert client.post(f"/imports/{job_id}/retry").status_code == 409


def renamed_file(tmp_path, emails: list[str]):
    """The same people, each with a new name: an update import of it changes every one."""
    path = tmp_path / "renamed.csv"
    with path.open("w") as out:
        out.write("name,email\n")
        out.writelines(f"Renamed {n},{email}\n" for n, email in enumerate(emails))
    return path


def post_update(client, path) -> str:
    with path.open("rb") as body:
        answer = client.post(
            "/import", data=body, headers={"X-Source": "crm", "X-Merge-Mode": "update", "X-Filename": "r.csv"}
        )
    assert answer.status_code == 202, answer.get_data(as_text=True)
    return answer.get_json()["jobId"]


def renamed() -> int:
    """How many contacts still carry the update import's names."""
    db.session.rollback()
    return db.session.scalar(select(func.count()).where(Contact.name.startswith("Renamed ")))


def test_kill_9_mid_restore_then_a_new_worker_restores_each_contact_once(client, worker_process, tmp_path):
    file = contact_file(tmp_path, rows=40_000)
    first_id = post_file(client, file)
    first = worker_process("--concurrency", "1", **FAST)
    wait_for(lambda: status(first_id).status == "completed", timeout=180, interval=0.2)
    before = {c.email: (c.name, c.updated_at) for c in db.session.scalars(select(Contact))}
    update_id = post_update(client, renamed_file(tmp_path, sorted(file.emails)))
    wait_for(lambda: status(update_id).status == "completed", timeout=300, interval=0.2)
    updated = status(update_id).updated_rows
    assert updated == len(file.emails) == renamed()

    assert client.post(f"/imports/{update_id}/undo").status_code == 202
    wait_for(lambda: undoing(update_id, 3_000), timeout=60, interval=0.02)
    kill_tree(first)
    stopped = status(update_id)
    assert stopped.status == "undoing" and 0 < stopped.undone_rows < updated
    # What the counter says was restored is exactly what was: the batch and its count commit together.
    assert renamed() == updated - stopped.undone_rows

    worker_process("--concurrency", "1", **FAST)
    wait_for(lambda: status(update_id).status == "undone", timeout=180, interval=0.2)
    done = status(update_id)
    assert (done.undone_rows, done.removed_rows, done.kept_rows) == (updated, 0, 0)
    db.session.rollback()
    assert {c.email: (c.name, c.updated_at) for c in db.session.scalars(select(Contact))} == before


def test_undo_beside_an_update_import_of_the_same_source(client, worker_process, tmp_path):
    file = contact_file(tmp_path, rows=30_000)
    first_id = post_file(client, file)
    worker_process("--concurrency", "2", **FAST)
    wait_for(lambda: status(first_id).status == "completed", timeout=120, interval=0.2)
    inserted = status(first_id).inserted_rows

    # Every third contact again with a new name, and as many new ones, in update mode.
    later = tmp_path / "later.csv"
    emails = sorted(file.emails)
    again = emails[::3]
    with later.open("w") as out:
        out.write("name,email\n")
        out.writelines(f"Renamed {n},{email}\n" for n, email in enumerate(again))
        out.writelines(f"Newcomer {n},newcomer{n}@example.com\n" for n in range(len(again)))
    with later.open("rb") as body:
        answer = client.post(
            "/import", data=body, headers={"X-Source": "crm", "X-Merge-Mode": "update", "X-Filename": "l.csv"}
        )
    later_id = answer.get_json()["jobId"]
    assert client.post(f"/imports/{first_id}/undo").status_code == 202
    wait_for(lambda: status(later_id).is_final and status(first_id).is_final, timeout=180, interval=0.2)

    undone, merged = status(first_id), status(later_id)
    assert (undone.status, merged.status) == ("undone", "completed")
    # Each contact of the first import is either gone, or kept because the later import renamed it first.
    kept = contacts_of(first_id)
    assert undone.kept_rows == kept
    assert undone.undone_rows + undone.kept_rows == inserted
    assert (undone.undo_state or {}).get("keptBy", {}) == ({later_id: kept} if kept else {})
    names = db.session.scalars(select(Contact.name).where(Contact.import_id == first_id)).all()
    assert all(name.startswith("Renamed ") for name in names)
    # Every email of the later file is stored once, whichever of the two got to it first.
    stored = set(db.session.scalars(select(Contact.email).where(Contact.source == "crm")))
    assert stored == set(again) | {f"newcomer{n}@example.com" for n in range(len(again))}
    assert merged.updated_rows == kept + db.session.scalar(
        select(func.count()).where(
            ContactChange.import_id == later_id,
            ContactChange.previous.is_not(None),
            ContactChange.contact_id.not_in(select(Contact.id)),
        )
    )
