"""Storage in a local directory: the embedded default."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from app.config import Settings
from app.storage import (
    StorageFull,
    StorageUnavailable,
    StoredFile,
    StoredFileMissing,
    copy_limited,
    is_no_space,
    new_key,
)

log = logging.getLogger(__name__)

# A partial file younger than this may belong to a save that has not taken its lock yet.
PARTIAL_GRACE = 5.0


class LocalStorage:
    """Files under one directory, written to a temporary name and renamed when complete."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalStorage:
        """The backend for STORAGE_DIR."""
        return cls(settings.storage_dir)

    def path(self, key: str) -> Path:
        """Where a key lives; keys are generated, so they never climb out of the root."""
        if "/" in key or key.startswith("."):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key

    def save(
        self, stream: BinaryIO, limit: int, use_resumable: bool = False, filename: str | None = None
    ) -> StoredFile:
        """Stream into a new file; nothing is left behind if the stream fails or is too large.

        The partial file is locked while it grows: one whose process was killed is unlocked, and
        ``discard_partial_saves`` deletes it. A full disk raises StorageFull.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        key = new_key()
        final = self.path(key)
        partial = final.with_suffix(".part")
        try:
            with open(partial, "wb") as out:
                fcntl.flock(out, fcntl.LOCK_EX)
                size, sha256 = copy_limited(stream, out.write, limit)
                out.flush()
                os.replace(partial, final)  # still locked: the sweep never sees it unlocked half-written
        except BaseException as exc:
            partial.unlink(missing_ok=True)
            if is_no_space(exc):
                log.warning("storage directory %s is full: %s", self.root, exc)
                raise StorageFull() from exc
            raise
        return StoredFile(key, size, sha256)

    def check_size(self, size: int) -> None:
        """A folder has no limit of its own beyond MAX_UPLOAD_SIZE, which the callers enforce."""

    def discard_partial_saves(self) -> int:
        """Delete the partial files of saves whose process died (unlocked, and not brand new)."""
        if not self.root.exists():
            return 0
        deleted = 0
        for partial in self.root.glob("*.part"):
            try:
                if time.time() - partial.stat().st_mtime < PARTIAL_GRACE:
                    continue
                with open(partial, "rb") as f:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    partial.unlink()
            except (BlockingIOError, FileNotFoundError):  # a save is writing it, or just finished
                continue
            deleted += 1
        return deleted

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """The stored file, opened for reading."""
        try:
            f = open(self.path(key), "rb")  # noqa: SIM115 - closed below, after the caller's block
        except FileNotFoundError as exc:
            raise StoredFileMissing(key) from exc
        with f:
            yield f

    def delete(self, key: str) -> None:
        """Remove the file if it is there."""
        self.path(key).unlink(missing_ok=True)

    def check(self) -> list[str]:
        """The directory exists and is writable; a folder refuses nothing else."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"storage directory {self.root} cannot be created") from exc
        if not os.access(self.root, os.W_OK):
            raise StorageUnavailable(f"storage directory {self.root} is not writable")
        return []
