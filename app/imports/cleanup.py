"""Deleting the stored files of ended imports: right away, and periodically until storage takes them."""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from app.extensions import db, storage
from app.maintenance import TASKS
from app.models import Import
from app.storage import StorageUnavailable

log = logging.getLogger(__name__)

SWEEP_BATCH = 100
# Imports whose stored file is no longer needed. A failed import keeps its file, for a retry.
DONE_WITH_FILE = ("completed", "cancelled")


def discard_file(import_id: str, key: str | None) -> bool:
    """Delete an import's stored file and forget its key; on failure keep the key and say so.

    Commits. A failed delete never fails the import: the key stays set, so the periodic
    sweep tries again.
    """
    if key is None:
        return True
    try:
        storage().delete(key)
    except (StorageUnavailable, OSError) as exc:
        log.warning(
            "could not delete stored file %s, the periodic clean-up will try again: %s",
            key,
            exc,
            extra={"import_id": import_id},
        )
        return False
    db.session.execute(
        update(Import).where(Import.id == import_id, Import.storage_key == key).values(storage_key=None)
    )
    db.session.commit()
    return True


def sweep_stored_files() -> None:
    """Delete the files that completed and cancelled imports still hold (an earlier delete failed)."""
    leftovers = db.session.execute(
        select(Import.id, Import.storage_key)
        .where(Import.status.in_(DONE_WITH_FILE), Import.storage_key.is_not(None))
        .order_by(Import.finished_at)
        .limit(SWEEP_BATCH)
    ).all()
    db.session.rollback()  # end the read; each delete commits on its own
    deleted = 0
    for import_id, key in leftovers:
        if not discard_file(import_id, key):
            break  # storage is failing: the rest wait for the next run
        deleted += 1
    if deleted:
        log.info("deleted %d stored files left behind by ended imports", deleted)


def sweep_partial_saves() -> None:
    """Delete what saves cut short by a killed process left in storage (backends that leave any)."""
    discard = getattr(storage(), "discard_partial_saves", None)
    if discard is not None and (deleted := discard()):
        log.info("deleted %d partial files of uploads cut short", deleted)


TASKS.append(sweep_stored_files)
TASKS.append(sweep_partial_saves)
