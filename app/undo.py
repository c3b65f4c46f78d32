"""Undoing an import: remove the contacts it inserted, restore those it updated, batched and fenced.

An undo runs as a job of its own on the import's row: status ``undoing`` (claimed, fenced and kept
alive by the import machinery of ``app.imports.pipeline``), then ``undone``. Its checkpoint is in
``undo_state``: the phase ("restore", then "remove") and the last change or contact id done,
committed with each batch's changes and counters, so a rerun after a crash starts where the last
commit ended and nothing is removed or restored twice.

A contact keeps a later change: an updated contact is restored only while its ``updated_at`` is
still the time this import changed it; an inserted contact is removed only while nothing changed
it since. Each kept contact is counted under the import that changed it (``keptBy``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import redis.exceptions
from sqlalchemy import delete, select, text, update

from app.extensions import db, queue, settings
from app.imports.committer import ImportStopped
from app.imports.pipeline import ImportHandedBack
from app.imports.runs import UNDO_JOB_PREFIX, Heartbeat, handback_requested, ours
from app.imports.service import JOB_TIMEOUT, ActionRefused
from app.merge import MERGED
from app.models import Contact, ContactChange, Import, aware, utcnow
from app.webhooks import record_event

log = logging.getLogger(__name__)

UNDOING = "undoing"
# Where an import can be undone from: it has ended and its rows can no longer change.
UNDOABLE = ("completed", "failed", "cancelled")
_REFUSALS = {
    "queued": "This import is queued and has not stored anything yet. Cancel it instead.",
    "running": "This import is still running. Cancel it or wait for it to finish, then undo it.",
    UNDOING: "This import is already being undone.",
    "undone": "This import is already undone. To import its file again, upload it as a new import.",
}


def undo_job_id(import_id: str) -> str:
    """The RQ job id of an import's undo (the import's own job has the import's id)."""
    return f"{UNDO_JOB_PREFIX}{import_id}"


def request_undo(imp: Import) -> None:
    """Mark a finished import ``undoing``, waiting for its job; the caller commits, then ``enqueue_undo``.

    An undo that was cancelled or stopped kept its checkpoint: this one goes on from there.
    """
    if imp.status not in UNDOABLE:
        raise ActionRefused(_REFUSALS.get(imp.status, f"An import that is {imp.status} cannot be undone."))
    state = dict(imp.undo_state or {})
    state["from"] = imp.status
    result = db.session.execute(
        update(Import)
        .where(Import.id == imp.id, Import.status == imp.status)
        .values(
            status=UNDOING,
            heartbeat_at=None,
            error=None,
            undo_requested_at=utcnow(),
            undo_state=state,
            retries=0,
            retry_at=None,
        )
    )
    if result.rowcount == 0:
        raise ActionRefused("This import changed in the meantime. Reload the page and try again.")


def enqueue_undo(import_id: str) -> bool:
    """Queue the undo's job afresh; False if Redis cannot take it now (the reconciler queues it later)."""
    from app.recovery import forget_job  # the reconciler's module imports this one

    try:
        forget_job(queue(), undo_job_id(import_id))
        queue().enqueue_call(
            "app.jobs.run_undo",
            args=(import_id,),
            job_id=undo_job_id(import_id),
            timeout=JOB_TIMEOUT,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
            description=f"undo of import {import_id}",
        )
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("undo not queued, the reconciler will: %s", exc, extra={"import_id": import_id})
        return False
    return True


def cancel_undo(imp: Import) -> None:
    """Stop an undo: the import goes back to how it ended, its checkpoint kept; the caller commits.

    What the undo did so far stays done, and a second undo finishes the rest.
    """
    state = imp.undo_state or {}
    result = db.session.execute(
        update(Import)
        .where(Import.id == imp.id, Import.status == UNDOING)
        .values(
            status=state.get("from", "completed"),
            heartbeat_at=None,
            error=f"The undo was cancelled after {imp.undone_rows:,} contacts. Undo again to finish it.",
        )
    )
    if result.rowcount == 0:
        raise ActionRefused("This undo has ended in the meantime. Reload the page.")


def stop(import_id: str, attempt: int, error: str) -> None:
    """After an unexpected error: the import goes back to how it ended, so a second undo can finish."""
    db.session.rollback()
    imp = db.session.get(Import, import_id, populate_existing=True)
    back = (imp.undo_state or {}).get("from", "completed") if imp is not None else "completed"
    db.session.execute(
        update(Import).where(*ours(import_id, attempt, UNDOING)).values(status=back, error=error)
    )
    db.session.commit()


def _as_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    return aware(datetime.fromisoformat(value))


def _changers(contact_ids: list[uuid.UUID]) -> dict[str, int]:
    """Which imports made the contacts' current values, and how many each (the kept contacts)."""
    counts: dict[str, int] = {}
    if not contact_ids:
        return counts
    rows = db.session.execute(
        select(ContactChange.contact_id, ContactChange.import_id)
        .join(Contact, Contact.id == ContactChange.contact_id)
        .where(ContactChange.contact_id.in_(contact_ids), ContactChange.changed_at == Contact.updated_at)
    ).all()
    found = {contact_id: import_id for contact_id, import_id in rows}
    for contact_id in contact_ids:
        changer = found.get(contact_id, "")  # "" when no import's change is recorded
        counts[changer] = counts.get(changer, 0) + 1
    return counts


def _previous_value(column: str) -> str:
    """SQL for a merged column's previous value in ``b.previous`` (JSON null is SQL NULL, as stored)."""
    if column == "attributes":
        return "NULLIF(b.previous -> 'attributes', 'null'::jsonb)"
    return f"b.previous ->> '{column}'"


# One round trip on PostgreSQL, as _REMOVE below: the batch's range of the (import_id, contact_id)
# key, the restore of the contacts no later import changed (rechecked on the newest row version if
# a concurrent import touches one), the last contact looked at, how many were restored, and the ids
# of those kept.
_RESTORE = text(
    "WITH batch AS (SELECT contact_id, previous, changed_at FROM contact_changes "
    "WHERE import_id = :import_id AND contact_id > :after ORDER BY import_id, contact_id LIMIT :size), "
    "restored AS (UPDATE contacts c SET "
    + ", ".join(f"{column} = {_previous_value(column)}" for column in MERGED)
    + ", updated_at = (b.previous ->> 'updated_at')::timestamptz "
    "FROM batch b WHERE c.id = b.contact_id AND b.previous IS NOT NULL AND c.updated_at = b.changed_at "
    "RETURNING c.id) "
    "SELECT (SELECT contact_id FROM batch ORDER BY contact_id DESC LIMIT 1), "
    "(SELECT count(*) FROM restored), "
    "(SELECT array_agg(contact_id) FROM batch "
    "WHERE previous IS NOT NULL AND contact_id NOT IN (SELECT id FROM restored))"
)


def _batch_in_one_statement(
    statement: Any, import_id: str, after: str | None, size: int
) -> tuple[str | None, int, list[uuid.UUID]]:
    """Run _RESTORE or _REMOVE on the batch after ``after``: the last contact looked at, how many
    were undone, and those kept."""
    last, undone, kept = db.session.execute(
        statement,
        {"import_id": import_id, "after": uuid.UUID(after) if after else uuid.UUID(int=0), "size": size},
    ).one()
    return (None if last is None else str(last)), undone, list(kept or [])


def _restore_batch(import_id: str, after: str | None, size: int) -> tuple[str | None, int, list[uuid.UUID]]:
    """Restore the previous values of a batch of the contacts the import updated.

    Returns the last contact looked at (None when none was left), the contacts restored and those kept.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        return _batch_in_one_statement(_RESTORE, import_id, after, size)
    query = select(ContactChange.contact_id, ContactChange.previous, ContactChange.changed_at).where(
        ContactChange.import_id == import_id
    )
    if after is not None:
        query = query.where(ContactChange.contact_id > uuid.UUID(after))
    # Ordered as the (import_id, contact_id) key is, so each batch is a short range of that index.
    changes = db.session.execute(
        query.order_by(ContactChange.import_id, ContactChange.contact_id).limit(size)
    ).all()
    if not changes:
        return None, 0, []
    restored, kept = 0, []
    for change in changes:
        if change.previous is None:  # the import met the contact and changed nothing
            continue
        previous: dict[str, Any] = change.previous
        values = {column: previous.get(column) for column in MERGED}
        values["updated_at"] = _as_time(previous.get("updated_at"))
        result = db.session.execute(
            update(Contact)
            .where(Contact.id == change.contact_id, Contact.updated_at == change.changed_at)
            .values(values)
        )
        if result.rowcount:
            restored += 1
        else:
            kept.append(change.contact_id)
    return str(changes[-1].contact_id), restored, kept


# One round trip on PostgreSQL: the batch's range of the (import_id, id) index, the delete of those
# nothing changed since (rechecked on the newest row version if a concurrent import touches one), and
# what the undo needs back: the last id looked at, how many went, and the ids of those kept.
_REMOVE = text(
    "WITH batch AS (SELECT id FROM contacts WHERE import_id = :import_id AND id > :after "
    "ORDER BY import_id, id LIMIT :size), "
    "gone AS (DELETE FROM contacts c USING batch b WHERE c.id = b.id AND c.updated_at IS NULL "
    "RETURNING c.id) "
    "SELECT (SELECT id FROM batch ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM gone), "
    "(SELECT array_agg(id) FROM batch WHERE id NOT IN (SELECT id FROM gone))"
)


def _remove_batch(import_id: str, after: str | None, size: int) -> tuple[str | None, int, list[uuid.UUID]]:
    """Remove a batch of the contacts the import inserted that nothing changed since.

    Returns the last contact looked at (None when none was left), the contacts removed and those kept.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        return _batch_in_one_statement(_REMOVE, import_id, after, size)
    query = select(Contact.id).where(Contact.import_id == import_id)
    if after is not None:
        query = query.where(Contact.id > uuid.UUID(after))
    # Ordered as the (import_id, id) index is, so each batch is a short range of it.
    ids = db.session.scalars(query.order_by(Contact.import_id, Contact.id).limit(size)).all()
    if not ids:
        return None, 0, []
    removed = set(
        db.session.scalars(
            delete(Contact)
            .where(Contact.id.in_(ids), Contact.import_id == import_id, Contact.updated_at.is_(None))
            .returning(Contact.id)
        )
    )
    return str(ids[-1]), len(removed), [i for i in ids if i not in removed]


def run(imp: Import) -> None:
    """Undo a claimed import from its checkpoint to the end, one committed batch at a time.

    Raises ImportHandedBack when the worker asks for the job back between two batches.
    """
    import_id, attempt = imp.id, imp.attempts
    config = settings()
    state = dict(imp.undo_state or {})
    state.setdefault("phase", "restore")
    state.setdefault("keptBy", {})
    beat = Heartbeat(db.engine, import_id, attempt, config.job_heartbeat_timeout / 4, status=UNDOING)
    try:
        with beat:
            while state["phase"] != "done":
                if handback_requested.is_set():
                    raise ImportHandedBack(import_id)
                removing = state["phase"] == "remove"
                if removing:
                    last, undone, kept = _remove_batch(import_id, state.get("after"), config.batch_size)
                    state.update(phase="done", after=None) if last is None else state.update(after=last)
                else:
                    last, undone, kept = _restore_batch(import_id, state.get("after"), config.batch_size)
                    state.update(phase="remove", after=None) if last is None else state.update(after=last)
                for changer, count in _changers(kept).items():
                    state["keptBy"][changer] = state["keptBy"].get(changer, 0) + count
                _commit_batch(import_id, attempt, state, undone, len(kept), removed=undone if removing else 0)
    except ImportStopped:
        db.session.rollback()
        log.info("the undo was cancelled or taken over by a newer run", extra={"import_id": import_id})
        return
    finished = db.session.execute(
        update(Import)
        .where(*ours(import_id, attempt, UNDOING))
        .values(status="undone", undone_at=utcnow(), heartbeat_at=None, error=None)
    )
    if finished.rowcount:  # told in the same commit as the final status, as every import's end is
        record_event(db.session, import_id, "import.undone")
    db.session.commit()
    if finished.rowcount:
        log.info("import undone", extra={"import_id": import_id})


def _commit_batch(
    import_id: str, attempt: int, state: dict[str, Any], undone: int, kept: int, removed: int
) -> None:
    """Commit a batch's changes with the counters and checkpoint, or nothing if another run owns the undo.

    ``undone`` counts the contacts removed or restored, ``removed`` those of them removed.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        # As for an import's batches: the changes, counters and checkpoint are lost together or kept
        # together in a database crash, and a rerun redoes the batch from the older checkpoint.
        db.session.execute(text("SET LOCAL synchronous_commit = off"))
    result = db.session.execute(
        update(Import)
        .where(*ours(import_id, attempt, UNDOING))
        .values(
            undone_rows=Import.undone_rows + undone,
            removed_rows=Import.removed_rows + removed,
            kept_rows=Import.kept_rows + kept,
            undo_state=dict(state, keptBy=dict(state["keptBy"])),
            heartbeat_at=utcnow(),
        )
    )
    if result.rowcount == 0:
        db.session.rollback()
        raise ImportStopped(import_id)
    db.session.commit()
