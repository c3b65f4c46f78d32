"""Storage in a Supabase Storage bucket: REST or resumable (tus) uploads, streamed reads."""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote, urljoin

import httpx
import requests
from storage3 import SyncStorageClient
from storage3.exceptions import StorageApiError
from supabase import ClientOptions, create_client
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.request import TusRequest
from tusclient.uploader import Uploader

from app.config import Settings
from app.storage import StorageUnavailable, StoredFile, StoredFileMissing, copy_limited, new_key

log = logging.getLogger(__name__)

T = TypeVar("T")

SPOOL_IN_MEMORY = 1024 * 1024
READ_CHUNK = 256 * 1024
CONTENT_TYPE = "application/octet-stream"
CACHE_SECONDS = "3600"
# Transfers may wait long for a busy server; small JSON calls (the /health check, deletes) may not.
TRANSFER_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
API_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# tuspy sets no timeout on its requests, so a server that stops answering would hang an upload.
TUS_TIMEOUT = (10.0, 120.0)
# Real status codes worth another try: the server or a proxy in front of it was busy or broken.
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
# A tus PATCH refused with these means our offset is stale or another request holds the upload:
# ask the server where it stands and go on from there.
TUS_RESUMABLE = RETRYABLE | {409, 423, 460}


class _Failed(Exception):
    """One attempt failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, error: StorageUnavailable, retryable: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable


def supabase_error(status: int, body: bytes) -> tuple[int, str]:
    """The real status code and message of a Supabase answer.

    The REST API answers most errors as HTTP 400 with the real code as a string in
    ``statusCode``; the tus endpoint answers with the real code and a text/plain message.
    """
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "message" in payload:
        real = str(payload.get("statusCode", status))
        return (int(real) if real.isdigit() else status), str(payload["message"])
    text = body.decode("utf-8", "replace").strip()[:300]
    return status, text or httpx.codes.get_reason_phrase(status) or "no message"


class _ResponseStream(io.RawIOBase):
    """The body of a streaming HTTP response as a raw binary stream, read as it arrives."""

    def __init__(self, response: httpx.Response, describe: str) -> None:
        self._chunks = response.iter_bytes()
        self._pending = memoryview(b"")
        self._describe = describe

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending:
            try:
                self._pending = memoryview(next(self._chunks, b""))
            except httpx.HTTPError as exc:  # the connection broke mid-file: worth a retry
                raise StorageUnavailable(
                    f"reading {self._describe} from Supabase Storage failed: {exc}"
                ) from exc
            if not self._pending:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class _TimedRequest(TusRequest):
    """tuspy's PATCH of one chunk, with a timeout."""

    def perform(self) -> None:
        chunk = self.file.read(self._content_length)
        self.add_checksum(chunk)
        try:
            response = requests.patch(
                self._url, data=chunk, headers=self._request_headers, timeout=TUS_TIMEOUT
            )
        except requests.RequestException as exc:
            raise TusUploadFailed(exc) from exc
        self.status_code = response.status_code
        self.response_content = response.content
        self.response_headers = {k.lower(): v for k, v in response.headers.items()}


class _Uploader(Uploader):
    """tuspy's uploader with a timeout on each request; retries are left to the caller."""

    def create_url(self) -> str:
        """Create the upload on the server and return its URL."""
        try:
            response = requests.post(
                self.client.url, headers=self.get_url_creation_headers(), timeout=TUS_TIMEOUT
            )
        except requests.RequestException as exc:
            raise TusCommunicationError(exc) from exc
        location = response.headers.get("location")
        if response.status_code != 201 or not location:
            raise TusCommunicationError(
                f"creating the upload failed with status {response.status_code}",
                response.status_code,
                response.content,
            )
        return urljoin(self.client.url, location)

    def get_offset(self) -> int:
        """How many bytes of the upload the server holds."""
        try:
            response = requests.head(self.url, headers=self.get_headers(), timeout=TUS_TIMEOUT)
        except requests.RequestException as exc:
            raise TusCommunicationError(exc) from exc
        offset = response.headers.get("upload-offset")
        if offset is None:
            raise TusCommunicationError(
                f"asking for the upload's offset failed with status {response.status_code}",
                response.status_code,
                response.content,
            )
        return int(offset)

    def _do_request(self) -> None:
        self.request = _TimedRequest(self)
        self.request.perform()
        if not 200 <= self.request.status_code < 300:
            raise TusUploadFailed("", self.request.status_code, self.request.response_content)


def _close_in(pid: int, *clients: httpx.Client) -> None:
    """Close clients' pooled connections, but only in the process that opened them."""
    if os.getpid() == pid:
        for client in clients:
            client.close()


class SupabaseStorage:
    """Files as objects in one Supabase Storage bucket, under generated keys."""

    # Pauses between attempts of an upload; the last failure is reported as StorageUnavailable.
    retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)

    def __init__(self, url: str, key: str, bucket: str, chunk_size: int) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.bucket = bucket
        self.chunk_size = chunk_size
        self._pid: int | None = None
        self._http: httpx.Client | None = None
        self._api: httpx.Client | None = None
        self._storage: SyncStorageClient | None = None
        self._inherited: list[httpx.Client] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> SupabaseStorage:
        """The backend for SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY and SUPABASE_BUCKET."""
        assert settings.supabase_url and settings.supabase_service_role_key  # checked by load_settings
        return cls(
            settings.supabase_url,
            settings.supabase_service_role_key,
            settings.supabase_bucket,
            settings.upload_chunk_size,
        )

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "apikey": self.key}

    def _clients(self) -> tuple[httpx.Client, SyncStorageClient]:
        """This process's HTTP client and Supabase storage client.

        Made anew in each process: RQ forks a process per job, and a forked child must not
        use (or close) the pooled connections it inherited from its parent.
        """
        if self._pid != os.getpid() or self._http is None or self._storage is None:
            # The parent's clients: kept referenced, never used or closed here.
            self._inherited.extend(client for client in (self._http, self._api) if client)
            self._http = httpx.Client(headers=self._auth, timeout=TRANSFER_TIMEOUT)
            self._api = httpx.Client(timeout=API_TIMEOUT)
            weakref.finalize(self, _close_in, os.getpid(), self._http, self._api)
            options = ClientOptions(httpx_client=self._api, auto_refresh_token=False, persist_session=False)
            self._storage = create_client(self.url, self.key, options=options).storage
            self._pid = os.getpid()
        return self._http, self._storage

    def _object_url(self, key: str) -> str:
        return f"{self.url}/storage/v1/object/{quote(self.bucket)}/{quote(key)}"

    def _refused(self, status: int, message: str, doing: str) -> StorageUnavailable:
        """A StorageUnavailable that says what Supabase refused and what to check."""
        if status in (401, 403):
            return StorageUnavailable(
                f"Supabase Storage refused the service role key while {doing} ({message}); "
                "check SUPABASE_SERVICE_ROLE_KEY"
            )
        if status == 404 and "bucket" in message.lower():
            return StorageUnavailable(
                f"Supabase Storage has no bucket {self.bucket!r} ({message}); "
                "create it, or set SUPABASE_BUCKET"
            )
        return StorageUnavailable(f"Supabase Storage answered {status} while {doing}: {message}")

    def _unreachable(self, exc: Exception, doing: str) -> StorageUnavailable:
        return StorageUnavailable(f"Supabase Storage at {self.url} cannot be reached while {doing}: {exc}")

    def _with_retries(self, doing: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` until it succeeds, a failure is final, or the retries are spent."""
        for delay in (*self.retry_delays, None):
            try:
                return attempt()
            except _Failed as failed:
                if not failed.retryable or delay is None:
                    raise failed.error from failed
                log.warning("%s; trying again in %ss", failed.error, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def save(self, stream: BinaryIO, limit: int, use_resumable: bool = False) -> StoredFile:
        """Spool the stream (refusing it past ``limit``), then upload it in one request or resumably."""
        key = new_key()
        with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) as spool:
            size, sha256 = copy_limited(stream, spool.write, limit)
            if use_resumable:
                self._upload_resumable(spool, key, size)
            else:
                self._upload_rest(spool, key, size)
        return StoredFile(key, size, sha256)

    def _upload_rest(self, spool: BinaryIO, key: str, size: int) -> None:
        """One POST of the whole file, streamed from the spool; repeated whole on a transient failure."""
        http, _ = self._clients()
        doing = "uploading a file"
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Content-Length": str(size),
            "Cache-Control": f"max-age={CACHE_SECONDS}",
            # The key is new, so an object under it can only be our own earlier attempt.
            "x-upsert": "true",
        }

        def attempt() -> None:
            spool.seek(0)
            body = iter(lambda: spool.read(READ_CHUNK), b"")
            try:
                response = http.post(self._object_url(key), content=body, headers=headers)
            except httpx.TransportError as exc:
                raise _Failed(self._unreachable(exc, doing), retryable=True) from exc
            if response.status_code != 200:
                status, message = supabase_error(response.status_code, response.content)
                raise _Failed(self._refused(status, message, doing), retryable=status in RETRYABLE)

        self._with_retries(doing, attempt)

    def _upload_resumable(self, spool: BinaryIO, key: str, size: int) -> None:
        """The tus protocol through tuspy, a chunk at a time, going on from the server's offset."""
        doing = "uploading a file resumably"
        client = TusClient(
            f"{self.url}/storage/v1/upload/resumable", headers={**self._auth, "x-upsert": "true"}
        )
        uploader = _Uploader(
            file_stream=spool,
            client=client,
            chunk_size=self.chunk_size,
            metadata={
                "bucketName": self.bucket,
                "objectName": key,
                "contentType": CONTENT_TYPE,
                "cacheControl": CACHE_SECONDS,
            },
        )

        def failure(exc: TusCommunicationError, resumable: set[int]) -> _Failed:
            if exc.status_code is None:  # no answer at all: a network failure
                return _Failed(self._unreachable(exc, doing), retryable=True)
            status, message = supabase_error(exc.status_code, exc.response_content or b"")
            return _Failed(self._refused(status, message, doing), retryable=status in resumable)

        def create() -> None:
            try:
                uploader.set_url(uploader.create_url())
            except TusCommunicationError as exc:
                raise failure(exc, RETRYABLE) from exc
            uploader.offset = 0

        self._with_retries(doing, create)

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
                self._with_retries(doing, send_chunk)
        except StorageUnavailable:
            self._abandon(uploader.url)
            raise

    def _abandon(self, upload_url: str | None) -> None:
        """Ask the server to drop a failed resumable upload; if it cannot, the upload expires there."""
        if not upload_url:
            return
        http, _ = self._clients()
        try:
            http.delete(upload_url, headers={"Tus-Resumable": "1.0.0"}, timeout=10.0)
        except httpx.HTTPError as exc:
            log.info("could not drop the failed resumable upload %s: %s", upload_url, exc)

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """The stored object as a stream read from the HTTP response as the caller reads it."""
        http, _ = self._clients()
        doing = "opening a stored file"
        try:
            with http.stream("GET", self._object_url(key)) as response:
                if response.status_code != 200:
                    status, message = supabase_error(response.status_code, response.read())
                    if status == 404 and "bucket" not in message.lower():
                        raise StoredFileMissing(key)
                    raise self._refused(status, message, doing)
                yield io.BufferedReader(_ResponseStream(response, key), READ_CHUNK)
        except httpx.TransportError as exc:
            raise self._unreachable(exc, doing) from exc

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error (the bulk delete skips it)."""
        _, storage = self._clients()
        doing = "deleting a stored file"
        try:
            storage.from_(self.bucket).remove([key])
        except StorageApiError as exc:
            status = int(str(exc.status)) if str(exc.status).isdigit() else 500
            raise self._refused(status, exc.message, doing) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc, doing) from exc

    def check(self) -> None:
        """The bucket exists and the key may read it."""
        _, storage = self._clients()
        doing = f"reading bucket {self.bucket!r}"
        try:
            storage.get_bucket(self.bucket)
        except StorageApiError as exc:
            status = int(str(exc.status)) if str(exc.status).isdigit() else 500
            raise self._refused(status, exc.message, doing) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc, doing) from exc
