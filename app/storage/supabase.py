"""Storage in a Supabase Storage bucket: REST or resumable (tus) uploads, streamed reads."""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, TypeVar
from urllib.parse import quote

import httpx
from storage3 import SyncStorageClient
from storage3.exceptions import StorageApiError
from supabase import ClientOptions, create_client

from app.config import SUPABASE_UPLOAD_LIMIT, Settings
from app.readers import SNIFF_BYTES, media_type
from app.storage import (
    StorageRefused,
    StorageUnavailable,
    StoredFile,
    StoredFileMissing,
    copy_limited,
    new_key,
)
from app.storage.supabase_http import RETRYABLE, Failed, ResponseStream, close_in, key_role, supabase_error
from app.storage.supabase_rules import SENT_TYPES, BucketRules, health_warnings, too_large, type_refused
from app.storage.supabase_tus import CACHE_SECONDS, upload_resumable

log = logging.getLogger(__name__)

T = TypeVar("T")

SPOOL_IN_MEMORY = 1024 * 1024
READ_CHUNK = 256 * 1024
# How long a process trusts what it read of the bucket's rules and the server's limit.
RULES_TTL = 60.0
# Transfers may wait long for a busy server; small JSON calls (the /health check, deletes) may not.
TRANSFER_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
API_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class SupabaseStorage:
    """Files as objects in one Supabase Storage bucket, under generated keys."""

    # Pauses between attempts of an upload; the last failure is reported as StorageUnavailable.
    retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)

    def __init__(
        self,
        url: str,
        key: str,
        bucket: str,
        chunk_size: int,
        upload_limit: int = SUPABASE_UPLOAD_LIMIT,
        max_upload_size: int | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.bucket = bucket
        self.chunk_size = chunk_size
        # Files above this go resumably; lowered when the server refuses a smaller one-request upload.
        self.upload_limit = upload_limit
        self.max_upload_size = max_upload_size
        self._rules_cache: tuple[float, BucketRules] | None = None
        self._store_limit_cache: tuple[float, int | None] | None = None
        self._pid: int | None = None
        self._http: httpx.Client | None = None
        self._api: httpx.Client | None = None
        self._storage: SyncStorageClient | None = None
        self._inherited: list[httpx.Client] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> SupabaseStorage:
        """The backend for the SUPABASE_* settings and MAX_UPLOAD_SIZE."""
        assert settings.supabase_url and settings.supabase_service_role_key  # checked by load_settings
        return cls(
            settings.supabase_url,
            settings.supabase_service_role_key,
            settings.supabase_bucket,
            settings.upload_chunk_size,
            upload_limit=settings.supabase_upload_limit,
            max_upload_size=settings.max_upload_size,
        )

    @property
    def auth_headers(self) -> dict[str, str]:
        """The headers that carry the service role key, on every request."""
        return {"Authorization": f"Bearer {self.key}", "apikey": self.key}

    def clients(self) -> tuple[httpx.Client, SyncStorageClient]:
        """This process's HTTP client and Supabase storage client.

        Made anew in each process: RQ forks a process per job, and a forked child must not
        use (or close) the pooled connections it inherited from its parent.
        """
        if self._pid != os.getpid() or self._http is None or self._storage is None:
            # The parent's clients: kept referenced, never used or closed here.
            self._inherited.extend(client for client in (self._http, self._api) if client)
            self._http = httpx.Client(headers=self.auth_headers, timeout=TRANSFER_TIMEOUT)
            self._api = httpx.Client(timeout=API_TIMEOUT)
            weakref.finalize(self, close_in, os.getpid(), self._http, self._api)
            options = ClientOptions(httpx_client=self._api, auto_refresh_token=False, persist_session=False)
            self._storage = create_client(self.url, self.key, options=options).storage
            self._pid = os.getpid()
        return self._http, self._storage

    def _object_url(self, key: str, authenticated: bool = False) -> str:
        # Reads take the authenticated route: the plain one treats a refused key as anonymous.
        route = "object/authenticated" if authenticated else "object"
        return f"{self.url}/storage/v1/{route}/{quote(self.bucket)}/{quote(key)}"

    def _refused(self, status: int, message: str, doing: str) -> StorageUnavailable:
        """A StorageUnavailable that says what Supabase refused and what to check."""
        if status in (401, 403):
            return StorageUnavailable(
                f"Supabase Storage refused the service role key while {doing} ({message}); "
                "check SUPABASE_SERVICE_ROLE_KEY"
            )
        if status == 404 and "bucket" in message.lower():
            if key_role(self.key) not in (None, "service_role"):
                return StorageUnavailable(
                    f"Supabase Storage shows no bucket {self.bucket!r} to this key ({message}): "
                    f"SUPABASE_SERVICE_ROLE_KEY holds a key of role {key_role(self.key)!r}; "
                    "set it to the project's service role (secret) key"
                )
            return StorageUnavailable(
                f"Supabase Storage has no bucket {self.bucket!r} ({message}); "
                "create it, or set SUPABASE_BUCKET"
            )
        return StorageUnavailable(f"Supabase Storage answered {status} while {doing}: {message}")

    def refusal(self, status: int, message: str, doing: str, size: int, content_type: str) -> Failed:
        """The failure of an upload attempt: a permanent refusal (413, 415) or one worth retrying."""
        if status == 413:
            return Failed(self._too_large(size, message), retryable=False)
        if status == 415:
            return Failed(self._type_refused(content_type, message), retryable=False)
        return Failed(self._refused(status, message, doing), retryable=status in RETRYABLE)

    def _too_large(self, size: int, said: str) -> StorageRefused:
        """413 naming the limit the file passed: the bucket's (read again) or the server's."""
        try:
            rules: BucketRules | None = self._rules(fresh=True)
        except StorageUnavailable:
            rules = None
        return too_large(rules, self._store_limit(), size, said)

    def _type_refused(self, content_type: str, said: str) -> StorageRefused:
        """415 naming the bucket's allowed types (read again, since they changed under us)."""
        try:
            return type_refused(self._rules(fresh=True), content_type)
        except StorageUnavailable:
            return StorageRefused(
                415, f"The storage bucket {self.bucket!r} refuses files of type {content_type} ({said})."
            )

    def unreachable(self, exc: Exception, doing: str) -> StorageUnavailable:
        """The failure of a request that got no answer: the server or the network is down."""
        return StorageUnavailable(f"Supabase Storage at {self.url} cannot be reached while {doing}: {exc}")

    def with_retries(self, doing: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` until it succeeds, a failure is final, or the retries are spent."""
        for delay in (*self.retry_delays, None):
            try:
                return attempt()
            except Failed as failed:
                if not failed.retryable or delay is None:
                    raise failed.error from failed
                log.warning("%s; trying again in %ss", failed.error, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # the loop always returns or raises

    # --- what the bucket and the server allow ----------------------------------------------

    def _rules(self, fresh: bool = False) -> BucketRules:
        """The bucket's size limit and allowed types; read again after RULES_TTL, or when ``fresh``."""
        now = time.monotonic()
        if not fresh and self._rules_cache and now - self._rules_cache[0] < RULES_TTL:
            return self._rules_cache[1]
        _, storage = self.clients()
        doing = f"reading bucket {self.bucket!r}"
        try:
            info = storage.get_bucket(self.bucket)
        except StorageApiError as exc:
            status = int(str(exc.status)) if str(exc.status).isdigit() else 500
            raise self._refused(status, exc.message, doing) from exc
        except httpx.TransportError as exc:
            raise self.unreachable(exc, doing) from exc
        rules = BucketRules.of(self.bucket, info)
        self._rules_cache = (now, rules)
        return rules

    def _store_limit(self) -> int | None:
        """The server's own upload limit, as its tus endpoint announces it (Tus-Max-Size); None if unknown."""
        now = time.monotonic()
        if self._store_limit_cache and now - self._store_limit_cache[0] < RULES_TTL:
            return self._store_limit_cache[1]
        http, _ = self.clients()
        try:
            response = http.options(f"{self.url}/storage/v1/upload/resumable", timeout=API_TIMEOUT)
            announced = response.headers.get("Tus-Max-Size", "")
            limit = int(announced) if announced.isdigit() and int(announced) > 0 else None
        except httpx.HTTPError as exc:
            log.info("could not read Supabase Storage's upload limit: %s", exc)
            return None
        self._store_limit_cache = (now, limit)
        return limit

    # --- uploads ---------------------------------------------------------------------------

    def save(
        self, stream: BinaryIO, limit: int, use_resumable: bool = False, filename: str | None = None
    ) -> StoredFile:
        """Spool the stream (refusing it past ``limit``), then upload it in one request or resumably.

        A file the bucket's rules refuse is refused before a byte is sent; a file above the
        one-request limit goes resumably whatever ``use_resumable`` says.
        """
        key = new_key()
        with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) as spool:
            size, sha256 = copy_limited(stream, spool.write, limit)
            spool.seek(0)
            content_type = self._admit(size, media_type(spool.read(SNIFF_BYTES), filename)) or ""
            if use_resumable or size > self.upload_limit:
                upload_resumable(self, spool, key, size, content_type)
            else:
                try:
                    self._upload_rest(spool, key, size, content_type)
                except StorageRefused as refused:
                    rules = self._rules()  # as read again to explain the refusal
                    if refused.status != 413 or (rules.file_size_limit and size > rules.file_size_limit):
                        raise
                    # The server's one-request limit is below ours: tus takes the file in parts.
                    self.upload_limit = min(self.upload_limit, size - 1)
                    log.info("a %s-byte file passed the one-request upload limit; sending it resumably", size)
                    upload_resumable(self, spool, key, size, content_type)
        return StoredFile(key, size, sha256)

    def _admit(self, size: int, true_type: str | None) -> str | None:
        """The content type to send a file of ``true_type`` with; StorageRefused if the bucket refuses it.

        Rules read a while ago are read again before they refuse a file: they may have changed.
        Rules that cannot be read now refuse nothing: the server applies them to the upload itself.
        Without a type, only the size is checked.
        """
        cached = self._rules_cache is not None and time.monotonic() - self._rules_cache[0] < RULES_TTL
        refusal: StorageRefused | None = None
        for fresh in (False, True) if cached else (True,):
            try:
                rules = self._rules(fresh=fresh)
            except StorageUnavailable as exc:
                if refusal:
                    raise refusal from exc
                log.warning("sending the file without checking the bucket's rules: %s", exc)
                return true_type
            content_type = rules.content_type(true_type) if true_type else None
            if rules.file_size_limit and size > rules.file_size_limit:
                refusal = too_large(rules, None, size, "the bucket's file size limit")
            elif true_type and content_type is None:
                refusal = type_refused(rules, true_type)
            else:
                return content_type
        assert refusal is not None  # the loop returns unless a refusal stands
        raise refusal

    def check_size(self, size: int) -> None:
        """Raise StorageRefused if the bucket's file size limit or the server's upload limit refuse ``size``.

        For a file announced before its bytes arrive. A store that cannot be asked now refuses
        nothing here: the complete file meets every rule when it is saved.
        """
        self._admit(size, None)
        limit = self._store_limit()
        if limit and size > limit:
            raise too_large(None, limit, size, "its upload size limit")

    def _upload_rest(self, spool: BinaryIO, key: str, size: int, content_type: str) -> None:
        """One POST of the whole file, streamed from the spool; repeated whole on a transient failure."""
        http, _ = self.clients()
        doing = "uploading a file"
        headers = {
            "Content-Type": content_type,
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
                raise Failed(self.unreachable(exc, doing), retryable=True) from exc
            if response.status_code != 200:
                status, _, message = supabase_error(response.status_code, response.content)
                raise self.refusal(status, message, doing, size, content_type)

        self.with_retries(doing, attempt)

    # --- reads, deletes, health ------------------------------------------------------------

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """The stored object as a stream read from the HTTP response as the caller reads it.

        "Object not found" is believed only once the key is known to see the bucket: a key of
        the wrong role is answered the same way, and must not fail an import for good.
        """
        http, _ = self.clients()
        doing = "opening a stored file"
        try:
            with http.stream("GET", self._object_url(key, authenticated=True)) as response:
                if response.status_code != 200:
                    status, code, message = supabase_error(response.status_code, response.read())
                    if status == 404 and (code == "NoSuchKey" or "bucket" not in message.lower()):
                        self._confirm_key()
                        raise StoredFileMissing(key)
                    raise self._refused(status, message, doing)
                yield io.BufferedReader(ResponseStream(response, key), READ_CHUNK)
        except httpx.TransportError as exc:
            raise self.unreachable(exc, doing) from exc

    def _confirm_key(self) -> None:
        """Raise StorageUnavailable unless the key is the service role's and may read the bucket."""
        role = key_role(self.key)
        if role not in (None, "service_role"):
            raise StorageUnavailable(
                f"SUPABASE_SERVICE_ROLE_KEY holds a key of role {role!r}, which cannot see the files "
                "in a private bucket; set it to the project's service role (secret) key"
            )
        self._rules(fresh=True)

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error (the bulk delete skips it).

        The bulk delete answers a missing bucket, or one the key may not see, with an empty
        list too: an empty answer is believed only once the key is known to see the bucket.
        """
        _, storage = self.clients()
        doing = "deleting a stored file"
        try:
            deleted = storage.from_(self.bucket).remove([key])
        except StorageApiError as exc:
            status = int(str(exc.status)) if str(exc.status).isdigit() else 500
            raise self._refused(status, exc.message, doing) from exc
        except httpx.TransportError as exc:
            raise self.unreachable(exc, doing) from exc
        if not deleted:
            self._confirm_key()

    def check(self) -> list[str]:
        """The bucket exists and the key may use it; what its rules would refuse of DataFlow's uploads."""
        self._confirm_key()
        rules = self._rules()
        if len(rules.refused_types()) == len(SENT_TYPES):
            raise StorageUnavailable(
                f"bucket {self.bucket!r} allows only {', '.join(rules.allowed_mime_types)}: every upload "
                "is refused with 415; add application/octet-stream to its allowed MIME types, or clear them"
            )
        return health_warnings(rules, self._store_limit(), self.max_upload_size)
