"""Resumable uploads to Supabase Storage over tus: a chunk at a time, going on from the server's offset.

Each chunk gets the storage backend's full set of retries; a stale offset (or another request
holding the upload) is asked of the server before the next attempt; an upload that fails for
good is dropped on the server, or expires there.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, BinaryIO

import httpx
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from app.storage import StorageRefused, StorageUnavailable
from app.storage.supabase_http import RETRYABLE, Failed, TimedUploader, supabase_error

if TYPE_CHECKING:
    from app.storage.supabase import SupabaseStorage

log = logging.getLogger(__name__)

CACHE_SECONDS = "3600"
# A tus PATCH refused with these means our offset is stale or another request holds the upload:
# ask the server where it stands and go on from there.
TUS_RESUMABLE = RETRYABLE | {409, 423, 460}


def upload_resumable(store: SupabaseStorage, spool: BinaryIO, key: str, size: int, content_type: str) -> None:
    """The tus protocol through tuspy, a chunk at a time, going on from the server's offset."""
    doing = "uploading a file resumably"
    # Sent on every request: the server reads x-upsert on each, not once at creation.
    client = TusClient(
        f"{store.url}/storage/v1/upload/resumable", headers={**store.auth_headers, "x-upsert": "true"}
    )
    uploader = TimedUploader(
        file_stream=spool,
        client=client,
        chunk_size=store.chunk_size,
        metadata={
            "bucketName": store.bucket,
            "objectName": key,
            "contentType": content_type,
            "cacheControl": CACHE_SECONDS,
        },
    )

    def failure(exc: TusCommunicationError, resumable: set[int]) -> Failed:
        if exc.status_code is None:  # no answer at all: a network failure
            return Failed(store.unreachable(exc, doing), retryable=True)
        status, _, message = supabase_error(exc.status_code, exc.response_content or b"")
        failed = store.refusal(status, message, doing, size, content_type)
        return Failed(failed.error, retryable=status in resumable)

    def create() -> None:
        try:
            uploader.set_url(uploader.create_url())
        except TusCommunicationError as exc:
            raise failure(exc, RETRYABLE) from exc
        uploader.offset = 0

    store.with_retries(doing, create)

    stale = False

    def send_chunk() -> None:
        nonlocal stale
        # An attempt after a failure first asks the server how much of the file it holds.
        if stale:
            try:
                uploader.offset = uploader.get_offset()
            except TusCommunicationError as exc:
                raise failure(exc, RETRYABLE) from exc
            stale = False
        if uploader.offset < size:
            try:
                uploader.upload_chunk()
            except TusCommunicationError as exc:
                stale = True
                raise failure(exc, TUS_RESUMABLE) from exc

    try:
        while uploader.offset < size:  # each chunk gets the full set of retries
            store.with_retries(doing, send_chunk)
    except (StorageUnavailable, StorageRefused):
        abandon(store, uploader.url)
        raise


def abandon(store: SupabaseStorage, upload_url: str | None) -> None:
    """Ask the server to drop a failed resumable upload; if it cannot, the upload expires there."""
    if not upload_url:
        return
    http, _ = store.clients()
    try:
        http.delete(upload_url, headers={"Tus-Resumable": "1.0.0"}, timeout=10.0)
    except httpx.HTTPError as exc:
        log.info("could not drop the failed resumable upload %s: %s", upload_url, exc)
