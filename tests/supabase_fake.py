"""A small Supabase Storage server for the tests: the REST and tus subset DataFlow uses, strictly.

It answers as Supabase Storage does: REST errors as HTTP 400 with the real code as a string in
``statusCode`` (plus ``error`` and ``message``), tus errors with their real status as text/plain,
a bearer key on every request but OPTIONS, ``x-upsert`` honoured, and Supabase's rule that every
resumable chunk but the last is exactly 6 MiB. Tests can make it fail on purpose and read what it saw.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

CHUNK = 6 * 1024 * 1024
SERVE_PIECE = 64 * 1024
TUS_PATH = "/storage/v1/upload/resumable"
OBJECT_PATH = "/storage/v1/object/"
BUCKET_PATH = "/storage/v1/bucket/"


@dataclass
class Upload:
    """A resumable upload under way."""

    bucket: str
    name: str
    length: int
    upsert: bool
    metadata: dict[str, str]
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Failure:
    """A failure to inject: on the ``skip``+1-th matching request, ``count`` times."""

    method: str
    path: str
    # "error": 503 after reading the body; "lost": do the work, then hang up without an answer;
    # "cut": (GET of an object) send half of it, then hang up
    mode: str
    skip: int = 0
    count: int = 1


@dataclass
class Patch:
    """A PATCH the server saw: where it claimed to start, how many bytes, and the answer."""

    upload: str
    offset: int
    length: int
    status: int


class FakeSupabase:
    """Supabase Storage's REST API and tus endpoint on 127.0.0.1, on a free port."""

    def __init__(self, key: str = "test-service-role-key", buckets: tuple[str, ...] = ("imports",)) -> None:
        self.key = key
        self.objects: dict[str, dict[str, bytes]] = {name: {} for name in buckets}
        self.uploads: dict[str, Upload] = {}
        self.patches: list[Patch] = []
        self.heads: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.served: dict[str, int] = {}
        self.failures: list[Failure] = []
        self.lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # --- running ---------------------------------------------------------------------------

    def start(self) -> FakeSupabase:
        """Listen on a free loopback port and serve in a background thread."""
        fake = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request: Any, client_address: Any) -> None:
                with fake.lock:
                    fake._connections.add(request)
                super().process_request(request, client_address)

            def shutdown_request(self, request: Any) -> None:
                with fake.lock:
                    fake._connections.discard(request)
                super().shutdown_request(request)

        self._server = Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a server that went away would."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server = None

    def __enter__(self) -> FakeSupabase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test controls ---------------------------------------------------------------------

    def fail(
        self, method: str, mode: str = "error", *, path: str = "", skip: int = 0, count: int = 1
    ) -> None:
        """Fail the ``skip``+1-th next request of ``method`` (whose path contains ``path``)."""
        with self.lock:
            self.failures.append(Failure(method, path, mode, skip, count))

    def put(self, bucket: str, name: str, data: bytes) -> None:
        """Place an object directly."""
        with self.lock:
            self.objects[bucket][name] = bytes(data)

    def _failure_for(self, method: str, path: str) -> str | None:
        with self.lock:
            for failure in self.failures:
                if failure.method == method and failure.path in path:
                    if failure.skip:
                        failure.skip -= 1
                        return None
                    failure.count -= 1
                    if failure.count <= 0:
                        self.failures.remove(failure)
                    return failure.mode
        return None


def rest_error(status: str, error: str, message: str) -> tuple[int, dict[str, str]]:
    """Supabase's REST error: HTTP 400 unless the real code is 500, the real code as a string."""
    return (500 if status == "500" else 400), {"statusCode": status, "error": error, "message": message}


def _bucket_json(name: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "id": name,
        "name": name,
        "owner": "",
        "public": False,
        "created_at": now,
        "updated_at": now,
        "file_size_limit": None,
        "allowed_mime_types": None,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSupabaseStorage/1"

    @property
    def fake(self) -> FakeSupabase:
        return self.server.fake  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: the tests read what the fake saw from its records."""

    # --- plumbing --------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _rest_error(self, status: str, error: str, message: str) -> None:
        code, payload = rest_error(status, error, message)
        self._json(code, payload)

    def _tus(self, status: int, headers: dict[str, str] | None = None, text: str = "") -> None:
        self._send(
            status,
            text.encode(),
            {"Tus-Resumable": "1.0.0", **({"Content-Type": "text/plain"} if text else {}), **(headers or {})},
        )

    def _authorized(self) -> bool:
        """Storage checks the bearer JWT first and answers a bad one as a 403 inside an HTTP 400."""
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        if token == self.fake.key:
            return True
        self._body()
        message = "Invalid Compact JWS" if not token else "signature verification failed"
        self._rest_error("403", "Unauthorized", message)
        return False

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        with self.fake.lock:
            self.fake.requests.append((self.command, path))
        failure = self.failure = self.fake._failure_for(self.command, path)
        if failure == "error":
            self._body()
            self.close_connection = True
            self._send(503, b"Service Unavailable", {"Content-Type": "text/plain", "Connection": "close"})
            return
        if failure == "lost":  # the work is done, but the answer never arrives
            self.wfile = io.BytesIO()
        if path == TUS_PATH or path.startswith(TUS_PATH + "/"):
            self._tus_request(path)
        elif self.command == "OPTIONS":
            self._send(204)
        elif not self._authorized():
            pass
        elif path.startswith(BUCKET_PATH) and self.command == "GET":
            self._get_bucket(unquote(path[len(BUCKET_PATH) :]))
        elif path.startswith(OBJECT_PATH):
            bucket, _, name = unquote(path[len(OBJECT_PATH) :]).partition("/")
            self._object(bucket, name)
        else:
            self._rest_error("404", "Not Found", f"Route {self.command}:{path} not found")
        if failure == "lost":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _dispatch

    # --- REST ------------------------------------------------------------------------------

    def _get_bucket(self, bucket: str) -> None:
        if bucket not in self.fake.objects:
            self._rest_error("404", "Bucket not found", "Bucket not found")
            return
        self._json(200, _bucket_json(bucket))

    def _object(self, bucket: str, name: str) -> None:
        objects = self.fake.objects.get(bucket)
        if self.command == "DELETE" and not name:
            self._delete_many(bucket)
            return
        if objects is None:
            self._body()
            self._rest_error("404", "Bucket not found", "Bucket not found")
            return
        if self.command in ("POST", "PUT"):
            self._store(bucket, name, objects)
        elif self.command == "GET":
            self._serve(name, objects)
        elif self.command == "DELETE":
            with self.fake.lock:
                gone = objects.pop(name, None)
            if gone is None:
                self._rest_error("404", "not_found", "Object not found")
            else:
                self._json(200, {"message": "Successfully deleted"})
        else:
            self._rest_error("405", "Method Not Allowed", "Method not allowed")

    def _store(self, bucket: str, name: str, objects: dict[str, bytes]) -> None:
        if self.headers.get_content_type() == "multipart/form-data":
            self._body()
            self._rest_error("400", "InvalidRequest", "this fake takes raw request bodies only")
            return
        data = self._body()
        upsert = self.headers.get("x-upsert") == "true"
        with self.fake.lock:
            exists = name in objects
            if self.command == "POST" and exists and not upsert:
                conflict = True
            elif self.command == "PUT" and not exists:
                conflict = None
            else:
                conflict = False
                objects[name] = data
        if conflict:
            self._rest_error("409", "Duplicate", "The resource already exists")
        elif conflict is None:
            self._rest_error("404", "not_found", "Object not found")
        else:
            self._json(200, {"Key": f"{bucket}/{name}", "Id": str(uuid.uuid4())})

    def _serve(self, name: str, objects: dict[str, bytes]) -> None:
        data = objects.get(name)
        if data is None:
            self._rest_error("404", "not_found", "Object not found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        view = memoryview(data)
        with self.fake.lock:
            self.fake.served[name] = 0
        # Written a piece at a time: a client that stops reading holds the rest back here.
        for start in range(0, len(view), SERVE_PIECE):
            if self.failure == "cut" and start >= len(view) // 2:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(view[start : start + SERVE_PIECE])
            with self.fake.lock:
                self.fake.served[name] = min(start + SERVE_PIECE, len(view))

    def _delete_many(self, bucket: str) -> None:
        try:
            prefixes = json.loads(self._body())["prefixes"]
            assert isinstance(prefixes, list) and prefixes
        except (ValueError, KeyError, TypeError, AssertionError):
            self._rest_error("400", "Bad Request", "body/prefixes must be a non-empty array")
            return
        objects = self.fake.objects.get(bucket)
        if objects is None:
            self._rest_error("404", "Bucket not found", "Bucket not found")
            return
        deleted = []
        with self.fake.lock:
            for name in prefixes:
                if objects.pop(name, None) is not None:
                    deleted.append({"name": name, "bucket_id": bucket, "id": str(uuid.uuid4())})
        self._json(200, deleted)

    # --- tus -------------------------------------------------------------------------------

    def _tus_request(self, path: str) -> None:
        if self.command == "OPTIONS":
            self._tus(
                204,
                {
                    "Tus-Version": "1.0.0",
                    "Tus-Extension": "creation,creation-with-upload,termination",
                    "Tus-Max-Size": str(50 * 1024**3),
                },
            )
            return
        if not self._authorized():
            return
        if self.headers.get("Tus-Resumable") != "1.0.0":
            self._body()
            self._tus(412, {"Tus-Version": "1.0.0"}, "Unsupported version")
            return
        upload_id = path[len(TUS_PATH) :].strip("/")
        if not upload_id:
            if self.command == "POST":
                self._tus_create()
            else:
                self._tus(405, text="Method not allowed")
            return
        with self.fake.lock:
            upload = self.fake.uploads.get(upload_id)
        if upload is None:
            self._body()
            self._tus(404, text="The file for this url was not found")
        elif self.command == "HEAD":
            with self.fake.lock:
                self.fake.heads.append(upload_id)
                offset = len(upload.data)
            self._tus(
                200,
                {
                    "Upload-Offset": str(offset),
                    "Upload-Length": str(upload.length),
                    "Cache-Control": "no-store",
                },
            )
        elif self.command == "PATCH":
            self._tus_patch(upload_id, upload)
        elif self.command == "DELETE":
            with self.fake.lock:
                self.fake.uploads.pop(upload_id, None)
            self._tus(204)
        else:
            self._body()
            self._tus(405, text="Method not allowed")

    def _tus_create(self) -> None:
        self._body()
        try:
            length = int(self.headers["Upload-Length"])
            assert length >= 0
        except (KeyError, TypeError, ValueError, AssertionError):
            self._tus(400, text="Upload-Length or Upload-Defer-Length header required")
            return
        metadata: dict[str, str] = {}
        for pair in filter(None, (self.headers.get("Upload-Metadata") or "").split(",")):
            key, _, value = pair.strip().partition(" ")
            try:
                metadata[key] = base64.b64decode(value, validate=True).decode()
            except ValueError:
                self._tus(400, text="Invalid Upload-Metadata header")
                return
        bucket, name = metadata.get("bucketName", ""), metadata.get("objectName", "")
        if not bucket or not name:
            self._tus(400, text="Metadata header is required")
            return
        objects = self.fake.objects.get(bucket)
        if objects is None:
            self._tus(404, text="Bucket not found")
            return
        upsert = self.headers.get("x-upsert") == "true"
        if name in objects and not upsert:
            self._tus(409, text="The resource already exists")
            return
        version = str(uuid.uuid4())
        upload_id = base64.urlsafe_b64encode(f"{bucket}/{name}/{version}".encode()).decode().rstrip("=")
        upload = Upload(bucket, name, length, upsert, metadata)
        with self.fake.lock:
            self.fake.uploads[upload_id] = upload
            if length == 0:
                self._finish(upload_id, upload)
        host = self.headers.get("Host", "")
        self._tus(201, {"Location": f"http://{host}{TUS_PATH}/{upload_id}", "Upload-Offset": "0"})

    def _tus_patch(self, upload_id: str, upload: Upload) -> None:
        chunk = self._body()

        def answer(status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
            with self.fake.lock:
                self.fake.patches.append(Patch(upload_id, claimed, len(chunk), status))
            self._tus(status, headers, text)

        try:
            claimed = int(self.headers["Upload-Offset"])
        except (KeyError, TypeError, ValueError):
            claimed = -1
            answer(400, "Upload-Offset header required")
            return
        if self.headers.get("Content-Type") != "application/offset+octet-stream":
            answer(415, "Content-Type must be application/offset+octet-stream")
            return
        with self.fake.lock:
            offset = len(upload.data)
        if claimed != offset:
            answer(409, "Upload-Offset conflict")
            return
        end = offset + len(chunk)
        if end > upload.length:
            answer(413, "Upload-Length exceeded")
            return
        if end < upload.length and len(chunk) != CHUNK:
            # Supabase Storage takes 6 MiB chunks only, apart from the last one.
            answer(400, f"Chunk size must be {CHUNK} bytes except for the last chunk, got {len(chunk)}")
            return
        with self.fake.lock:
            upload.data += chunk
            conflict = self._finish(upload_id, upload) if end == upload.length else False
        if conflict:
            answer(409, "The resource already exists")
        else:
            answer(204, headers={"Upload-Offset": str(end)})

    def _finish(self, upload_id: str, upload: Upload) -> bool:
        """Turn a complete upload into an object; True if an object is in the way. Lock held."""
        objects = self.fake.objects[upload.bucket]
        if upload.name in objects and not upload.upsert:
            return True
        objects[upload.name] = bytes(upload.data)
        return False
