"""Where uploaded files wait for their import: one interface, a backend per place."""

from __future__ import annotations

import errno
import hashlib
import importlib
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from app.config import Settings

COPY_CHUNK = 1024 * 1024
YIELD_SECONDS = 0.0001


class UploadTooLarge(Exception):
    """The upload passed MAX_UPLOAD_SIZE; nothing of it was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The file is larger than the limit of {limit:,} bytes")
        self.limit = limit


class StorageFull(Exception):
    """Storage has no room for the file (its disk or quota is full); nothing of it was kept."""

    def __init__(self) -> None:
        super().__init__(
            "Storage is full, so the file could not be stored and nothing was imported. "
            "Free some space (or ask whoever runs DataFlow to), then upload the file again."
        )


# What a write answers when the disk, or the quota on it, is full.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def is_no_space(exc: BaseException) -> bool:
    """Whether an error says the disk (or quota) is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


class StorageUnavailable(Exception):
    """Storage could not be reached or refused us; worth trying again later."""


class StorageRefused(Exception):
    """Storage refuses this file by a rule of its own (a size limit, a bucket's allowed types).

    Trying again will not help: ``status`` is the HTTP answer (413 or 415) and the message names
    the rule and what to do.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StoredFileMissing(FileNotFoundError):
    """The stored file of an import is not in storage (any more); trying again will not help."""

    def __init__(self, key: str) -> None:
        super().__init__(f"The uploaded file ({key}) is no longer in storage. Upload the file again.")
        self.key = key


@dataclass(frozen=True)
class StoredFile:
    """A file safely in storage."""

    key: str
    size: int
    sha256: str


class Storage(Protocol):
    """What every backend does. Keys are generated, never taken from a filename."""

    def save(
        self, stream: BinaryIO, limit: int, use_resumable: bool = False, filename: str | None = None
    ) -> StoredFile:
        """Store a stream under a new key, refusing it past ``limit`` bytes.

        ``filename`` (the user's, never part of the key) only helps name the file's content type.
        Raises StorageRefused when the store's own rules refuse the file.
        """

    def check_size(self, size: int) -> None:
        """Raise StorageRefused if the store's own limits would refuse a file of ``size`` bytes."""

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Open a stored file for reading as a stream."""

    def delete(self, key: str) -> None:
        """Remove a stored file; a missing file is not an error."""

    def check(self) -> list[str]:
        """Raise StorageUnavailable unless the backend works; return what it would refuse, if anything."""


def new_key() -> str:
    """A fresh storage key: hexadecimal and a suffix, so every store takes it as it is."""
    return f"{uuid.uuid4().hex}.upload"


def copy_limited(src: BinaryIO, write: Callable[[bytes], object], limit: int) -> tuple[int, str]:
    """Copy ``src`` through ``write`` chunk by chunk; stop as soon as it passes ``limit``.

    Returns the size and SHA-256 of what was copied.
    """
    size = 0
    digest = hashlib.sha256()
    while chunk := src.read(COPY_CHUNK):
        size += len(chunk)
        if size > limit:
            raise UploadTooLarge(limit)
        digest.update(chunk)
        write(chunk)
        # Let other requests in: under the web's gevent worker a fast client's body is always ready
        # to read, and would hold the worker until its last byte. A timer (not sleep(0)) makes the
        # loop poll its sockets; a tenth of a millisecond a megabyte costs nothing measurable. A
        # short chunk is the last (or the socket made the read wait): a small body never yields.
        if len(chunk) == COPY_CHUNK:
            time.sleep(YIELD_SECONDS)
    return size, digest.hexdigest()


# Backends by STORAGE_BACKEND name, imported only when chosen (the Supabase client is heavy).
BACKENDS = {
    "local": "app.storage.local:LocalStorage",
    "supabase": "app.storage.supabase:SupabaseStorage",
}


def make_storage(settings: Settings) -> Storage:
    """The backend the settings name."""
    module, _, name = BACKENDS[settings.storage_backend].partition(":")
    backend = getattr(importlib.import_module(module), name)
    return backend.from_settings(settings)
