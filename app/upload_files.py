"""An upload's bytes on disk: its partial file, its lock shared by every process, and each chunk written."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import text
from werkzeug.exceptions import ClientDisconnected

from app.extensions import db, settings
from app.models import Upload, utcnow
from app.storage import COPY_CHUNK, YIELD_SECONDS, is_no_space

log = logging.getLogger(__name__)

CHECKSUM_ALGORITHMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "md5": hashlib.md5,
    "sha256": hashlib.sha256,
}
CHECKSUM_MISMATCH = 460
LOCKED = 423
INSUFFICIENT_STORAGE = 507


class TusError(Exception):
    """A request the tus server refuses, with the status and a message the client can show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- files and locks ----------------------------------------------------------------------------


def upload_dir() -> Path:
    """The folder where partial uploads grow, inside STORAGE_DIR."""
    return settings().storage_dir / "tus"


def partial_path(upload_id: str) -> Path:
    """The file holding the bytes of an upload received so far."""
    return upload_dir() / f"{upload_id}.part"


def _lock_path(upload_id: str) -> Path:
    return upload_dir() / f"{upload_id}.lock"


def remove_files(upload_id: str) -> None:
    """Delete an upload's partial file and lock file, if they are there."""
    partial_path(upload_id).unlink(missing_ok=True)
    _lock_path(upload_id).unlink(missing_ok=True)


def _advisory_key(upload_id: str) -> int:
    """A signed 64-bit key for pg_try_advisory_lock, derived from the upload id."""
    return int.from_bytes(hashlib.sha256(f"upload:{upload_id}".encode()).digest()[:8], "big", signed=True)


# Connections of the pool a lock may never take: a slow client's PATCH holds its lock's
# connection while its body trickles in, and /health, the pages and the API still need some.
RESERVED_CONNECTIONS = 5


def _keep_connections_for_others() -> None:
    """Refuse with 503 (tus clients retry) when taking a lock would leave the pool nearly empty."""
    pool = db.engine.pool
    size, overflow, checked_out = (
        getattr(pool, name, None) for name in ("size", "_max_overflow", "checkedout")
    )
    if not (callable(size) and callable(checked_out) and isinstance(overflow, int)) or overflow < 0:
        return  # a pool without a bound (or not a QueuePool): nothing to keep
    if checked_out() >= size() + overflow - RESERVED_CONNECTIONS:
        raise TusError(503, "Too many uploads are being written right now; retry in a few seconds")


@contextmanager
def upload_lock(upload_id: str) -> Iterator[bool]:
    """Try to take the upload's lock, shared by every process; yield whether it was taken.

    PostgreSQL: a session advisory lock on a connection of its own, so no transaction stays
    open while a chunk streams in, and a dying process releases it with its connection.
    SQLite (one machine by nature): flock on a lock file, released when the process dies.
    """
    if db.engine.dialect.name == "postgresql":
        key = _advisory_key(upload_id)
        _keep_connections_for_others()
        with db.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            held = bool(connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
            try:
                yield held
            finally:
                if held:
                    connection.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        return
    upload_dir().mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_path(upload_id), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def locked(upload_id: str) -> Iterator[None]:
    """Hold the upload's lock for the block, or refuse with 423 right away."""
    with upload_lock(upload_id) as held:
        if not held:
            raise TusError(LOCKED, "Another request is writing to this upload; try again shortly")
        yield


def new_expiry() -> datetime:
    return utcnow() + timedelta(seconds=settings().upload_expiry)


def receive(upload: Upload, stream: BinaryIO, checksum: tuple[str, bytes] | None) -> None:
    """Append the request body to the upload's partial file, counting bytes as they arrive.

    Commits the new offset. A body that would pass the upload's length, or whose checksum
    does not match, is discarded whole; a body cut short keeps what arrived (unless it was
    checksummed, since then it cannot be trusted).
    """
    upload_id, start, length = upload.id, upload.offset, upload.length
    # The session's connection goes back to the pool while the body streams in, which may take
    # minutes from a slow client (the lock keeps its own); the offset is written after.
    db.session.commit()
    upload_dir().mkdir(parents=True, exist_ok=True)
    fd = os.open(partial_path(upload_id), os.O_RDWR | os.O_CREAT, 0o600)
    # Unbuffered, so a write the full disk refuses leaves no buffer behind to fail again on close.
    with os.fdopen(fd, "r+b", buffering=0) as partial, _no_space_keeps(partial, start):
        on_disk = partial.seek(0, os.SEEK_END)
        if on_disk < start:
            # Bytes acknowledged before a crash never reached the disk: resume from what did.
            upload.offset = on_disk
            db.session.commit()
            raise TusError(409, f"The upload is at offset {on_disk}; send from there (check with HEAD)")
        # Bytes past the offset are from a request that never committed: they do not count.
        partial.truncate(start)
        partial.seek(start)
        digest = CHECKSUM_ALGORITHMS[checksum[0]]() if checksum else None
        received = 0
        cut_short = False
        while True:
            try:
                chunk = stream.read(COPY_CHUNK)
            except (ClientDisconnected, OSError):
                cut_short = True
                break
            if not chunk:
                break
            if start + received + len(chunk) > length:
                partial.truncate(start)
                raise TusError(413, f"The data runs past the upload's length of {length:,} bytes")
            _write_all(partial, chunk)
            if digest:
                digest.update(chunk)
            received += len(chunk)
            time.sleep(YIELD_SECONDS)  # let other requests in between chunks (see app.storage.copy_limited)
        if checksum and (cut_short or digest.digest() != checksum[1]):
            partial.truncate(start)
            if cut_short:
                raise TusError(400, "The request ended early; its checksummed chunk was discarded")
            raise TusError(CHECKSUM_MISMATCH, "Checksum mismatch: the chunk was discarded; send it again")
        partial.flush()
        os.fsync(partial.fileno())  # the offset we commit must never be ahead of the disk
    upload.offset = start + received
    upload.expires_at = new_expiry()
    db.session.commit()
    if cut_short:
        raise TusError(400, f"The request ended early; the upload is at offset {upload.offset}")


def _write_all(out: BinaryIO, chunk: bytes) -> None:
    """Write every byte to an unbuffered file, whose write may take only part of them."""
    view = memoryview(chunk)
    while view:
        view = view[out.write(view) :]


@contextmanager
def _no_space_keeps(partial: BinaryIO, start: int) -> Iterator[None]:
    """A full disk while a chunk is written: the chunk is dropped and the upload stays at ``start``."""
    try:
        yield
    except OSError as exc:
        if not is_no_space(exc):
            raise
        partial.truncate(start)
        log.warning("tus chunk refused, the storage disk is full: %s", exc)
        raise TusError(
            INSUFFICIENT_STORAGE,
            f"Storage is full, so this chunk was not kept; the upload stays at offset {start}. "
            "Resume it once space is freed (ask whoever runs DataFlow).",
        ) from None
