"""Storage in a local directory: the embedded default."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from app.config import Settings
from app.storage import StorageUnavailable, StoredFile, StoredFileMissing, copy_limited, new_key


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
        """Stream into a new file; nothing is left behind if the stream fails or is too large."""
        self.root.mkdir(parents=True, exist_ok=True)
        key = new_key()
        final = self.path(key)
        partial = final.with_suffix(".part")
        try:
            with open(partial, "wb") as out:
                size, sha256 = copy_limited(stream, out.write, limit)
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return StoredFile(key, size, sha256)

    def check_size(self, size: int) -> None:
        """A folder has no limit of its own beyond MAX_UPLOAD_SIZE, which the callers enforce."""

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
