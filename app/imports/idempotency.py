"""Idempotency keys on ``POST /import``: a retried request gets the first one's answer, not a new import.

Stripe's semantics: the same key with the same request answers the same job id; while the first
request runs, the others get 409; the same key with another request gets 422; keys last 24 hours.
The keys live in the database, so every web process agrees, and are kept per principal (token or
user): one client's key never answers another's request. Routes commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import timedelta

from flask import current_app
from sqlalchemy import Engine, and_, create_engine, delete, insert, or_, text, update
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from app.extensions import db
from app.imports.review import ImportOptions
from app.maintenance import every
from app.models import IdempotencyKey, Import, utcnow

HEADER = "Idempotency-Key"
KEY_MAX = 255
KEPT = timedelta(hours=24)
# Without shared locks (SQLite), a first request that has not finished after this long died with
# its process: the key is free. On PostgreSQL a dead first request frees its key at once.
IN_FLIGHT_LIMIT = timedelta(hours=1)


def key_problem(key: str) -> str | None:
    """Why a header value cannot be an idempotency key, or None."""
    if not key.strip():
        return f"The {HEADER} header is empty"
    if len(key) > KEY_MAX:
        return f"The {HEADER} header must be at most {KEY_MAX} characters"
    if not key.isprintable() or not key.isascii():
        return f"The {HEADER} header must be printable ASCII"
    return None


def fingerprint(
    *,
    method: str,
    path: str,
    content_type: str,
    source: str,
    use_resumable: bool,
    sha256: str,
    mode: str = "skip",
    options: ImportOptions | None = None,
) -> str:
    """What makes two requests the same request: their parameters and the SHA-256 of their file.

    How the file is to be read (mapping, header row, sheet, review) is part of the request: a
    replay that maps the columns otherwise would import other contacts. Only the parameters a
    request gives count, so the defaults leave the fingerprints of earlier requests as they were.
    """
    parts: tuple[str, ...] = (
        method,
        path,
        content_type,
        source,
        "true" if use_resumable else "false",
        sha256,
    )
    if mode != "skip":
        parts += (mode,)
    default = asdict(ImportOptions())
    given = {
        name: value for name, value in asdict(options or ImportOptions()).items() if value != default[name]
    }
    if given:  # as JSON with sorted keys: the same mapping written in another order is the same request
        parts += (json.dumps(given, sort_keys=True, separators=(",", ":")),)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _expired() -> object:
    now = utcnow()
    return or_(
        IdempotencyKey.created_at < now - KEPT,
        and_(IdempotencyKey.status == "in_flight", IdempotencyKey.created_at < now - IN_FLIGHT_LIMIT),
    )


def _same(principal: str, key: str) -> tuple[object, object]:
    return IdempotencyKey.principal == principal, IdempotencyKey.key == key


@contextmanager
def key_lock(principal: str, key: str) -> Iterator[bool]:
    """Lock the principal's key for a whole request, across every web process; yield whether it was taken.

    PostgreSQL: a session advisory lock on a connection of its own, taken before the key's row
    is written and released by a process that dies, so an in-flight row found while holding it
    belongs to a request whose process was killed. SQLite (one machine): always taken, and an
    in-flight row waits for IN_FLIGHT_LIMIT.
    """
    if db.engine.dialect.name != "postgresql":
        yield True
        return
    digest = hashlib.sha256(f"idempotency:{principal}:{key}".encode()).digest()
    lock = int.from_bytes(digest[:8], "big", signed=True)
    with _lock_engine().connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        taken = bool(connection.scalar(text("SELECT pg_try_advisory_lock(:lock)"), {"lock": lock}))
        try:
            yield taken
        finally:
            if taken:
                connection.scalar(text("SELECT pg_advisory_unlock(:lock)"), {"lock": lock})


def _lock_engine() -> Engine:
    """An engine without a pool for the key locks: a request holds its lock and a pooled connection
    at once, so locks taken from the pool could leave none for the requests holding them."""
    state = current_app.extensions["dataflow"]
    if "lock_engine" not in state:
        state["lock_engine"] = create_engine(db.engine.url, poolclass=NullPool)
    return state["lock_engine"]


def hold(session: Session, principal: str, key: str) -> None:
    """Insert the row that holds the key for this request; IntegrityError if another holds it.

    Called with the key's lock: on PostgreSQL an in-flight row is then a killed request's.
    """
    expired = _expired()
    if session.get_bind().dialect.name == "postgresql":
        expired = or_(expired, IdempotencyKey.status == "in_flight")
    session.execute(delete(IdempotencyKey).where(*_same(principal, key), expired))
    session.execute(
        insert(IdempotencyKey).values(principal=principal, key=key, status="in_flight", created_at=utcnow())
    )


def complete(session: Session, principal: str, key: str, request_fingerprint: str, imp: Import) -> None:
    """Record the import the key's request started; committed with the import itself."""
    session.flush()
    session.execute(
        update(IdempotencyKey)
        .where(*_same(principal, key), IdempotencyKey.status == "in_flight")
        .values(status="done", fingerprint=request_fingerprint, import_id=imp.id)
    )


def let_go(session: Session, principal: str, key: str) -> None:
    """Free a key whose request started nothing (it was refused), so the client may fix it and retry."""
    session.execute(
        delete(IdempotencyKey).where(*_same(principal, key), IdempotencyKey.status == "in_flight")
    )


@every("maintenance_interval")
def expire_keys() -> None:
    """Delete keys older than 24 hours, and first requests that never finished."""
    db.session.execute(delete(IdempotencyKey).where(_expired()))
    db.session.commit()
