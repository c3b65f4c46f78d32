"""Talking to Supabase Storage over HTTP: its error answers, its keys, streamed bodies, tus with timeouts."""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
from typing import Any
from urllib.parse import urljoin

import httpx
import requests
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.request import TusRequest
from tusclient.uploader import Uploader

from app.storage import StorageRefused, StorageUnavailable

# Real status codes worth another try: the server or a proxy in front of it was busy or broken.
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
# tuspy sets no timeout on its requests, so a server that stops answering would hang an upload.
TUS_TIMEOUT = (10.0, 120.0)


class Failed(Exception):
    """One attempt failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, error: StorageUnavailable | StorageRefused, retryable: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable


def supabase_error(status: int, body: bytes) -> tuple[int, str, str]:
    """The real status code, error code (``NoSuchKey``...; empty if none) and message of an answer.

    The REST API answers most errors as HTTP 400 with the real code as a string in
    ``statusCode`` and a ``code``; the tus endpoint answers with the real code and a text/plain message.
    """
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "message" in payload:
        real = str(payload.get("statusCode", status))
        code = str(payload.get("code") or "")
        return (int(real) if real.isdigit() else status), code, str(payload["message"])
    text = body.decode("utf-8", "replace").strip()[:300]
    return status, "", text or httpx.codes.get_reason_phrase(status) or "no message"


def key_role(key: str) -> str | None:
    """The role a Supabase key carries, read from the key itself (``anon``, ``service_role``), if it says.

    Legacy keys are JWTs whose payload names the role; new keys say it in their prefix.
    """
    if key.startswith("sb_publishable_"):
        return "anon"
    if key.startswith("sb_secret_"):
        return "service_role"
    parts = key.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    role = payload.get("role") if isinstance(payload, dict) else None
    return role if isinstance(role, str) else None


class ResponseStream(io.RawIOBase):
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


class TimedRequest(TusRequest):
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


class TimedUploader(Uploader):
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
        self.request = TimedRequest(self)
        self.request.perform()
        if not 200 <= self.request.status_code < 300:
            raise TusUploadFailed("", self.request.status_code, self.request.response_content)


def close_in(pid: int, *clients: httpx.Client) -> None:
    """Close clients' pooled connections, but only in the process that opened them."""
    if os.getpid() == pid:
        for client in clients:
            client.close()
