"""A small Supabase Storage server for the tests: the REST and tus subset DataFlow uses, strictly.

It answers as the open-source Supabase Storage server does (read from its source and measured
against it), behind the hosted gateway's ``/storage/v1`` prefix:

- REST errors are HTTP 400 (500 for a 500) carrying ``statusCode`` as a string, ``code``
  (``NoSuchKey``, ``NoSuchBucket``, ``KeyAlreadyExists``, ``InvalidKey``, ``EntityTooLarge``,
  ``InvalidMimeType``, ``AccessDenied``, ``InvalidRequest``), ``error`` and ``message``; tus errors
  carry their real status and a text/plain message.
- A wrong bearer key is ``403 AccessDenied`` on every route but the plain object GET, which takes
  a missing or wrong key as anonymous and answers a private bucket's object ``404 Bucket not
  found``; a missing ``Authorization`` is ``400 InvalidRequest`` on the REST routes. The anon key
  is valid but sees nothing of a private bucket (row-level security): its bucket GET is ``404``,
  its object GET ``Object not found``, its uploads ``403``, its bulk delete ``200 []``.
- Object names outside the server's safe set (non-ASCII, ``#``, tab, double quotes, ``%``, so
  an encoded ``%2F`` too) are ``400 InvalidKey``.
- One-request uploads are capped by the upload limit, the bucket's ``file_size_limit`` and the
  global limit (``413 EntityTooLarge``); tus uploads by the bucket's limit and the global limit,
  which ``Tus-Max-Size`` announces (``413 Maximum size exceeded``); a bucket's
  ``allowed_mime_types`` refuses other content types (``415``).
- A PUT to a missing object creates it; a bulk delete in a missing bucket answers ``200 []``.
- tus: ``x-upsert`` is read on every request (the last PATCH decides whether an object may be
  replaced); a PATCH with another content type is ``400 Invalid content-type``; a DELETE of a
  finished upload is ``409``. The hosted platform's rule that every chunk but the last is exactly
  6 MiB (the open-source server does not enforce it) is an option, ``six_mib_chunks``.

Tests can make it fail on purpose and read what it saw.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

MIB = 1024 * 1024
CHUNK = 6 * MIB
# The server's sample configuration: UPLOAD_FILE_SIZE_LIMIT_STANDARD and UPLOAD_FILE_SIZE_LIMIT.
UPLOAD_LIMIT = 50 * MIB
GLOBAL_LIMIT = 500 * MIB
SERVE_PIECE = 64 * 1024
TUS_PATH = "/storage/v1/upload/resumable"
OBJECT_PATH = "/storage/v1/object/"
AUTHENTICATED = "authenticated/"
BUCKET_PATH = "/storage/v1/bucket/"
# The characters the server allows in an object name (its isValidKey).
VALID_KEY = re.compile(r"^[A-Za-z0-9_/!.*'() &$=@;:+,?-]+$")
OCTET_STREAM = "application/octet-stream"


def _jwt(payload: dict[str, str]) -> str:
    """A token shaped like a Supabase JWT (the fake checks it by equality, not by signature)."""
    part = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{part}.c2lnbmF0dXJl"


ANON_KEY = _jwt({"iss": "supabase", "role": "anon"})


@dataclass
class Bucket:
    """A bucket's settings, as ``GET /bucket/<id>`` shows them."""

    public: bool = False
    file_size_limit: int | None = None
    allowed_mime_types: list[str] | None = None


@dataclass
class Upload:
    """A resumable upload under way (or finished: the server keeps it until it expires)."""

    bucket: str
    name: str
    length: int
    metadata: dict[str, str]
    data: bytearray = field(default_factory=bytearray)
    finished: bool = False


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


def mime_allowed(mime_type: str, allowed: list[str] | None) -> bool:
    """The server's validateMimeType: ``type/subtype`` or ``type/*``, compared as whole strings."""
    if not allowed:
        return True
    kind, _, sub = mime_type.partition("/")
    if not sub:
        return False
    for rule in allowed:
        rule_kind, _, rule_sub = rule.partition("/")
        if rule_kind == kind and rule_sub in ("*", sub):
            return True
    return False


class FakeSupabase:
    """Supabase Storage's REST API and tus endpoint on 127.0.0.1, on a free port."""

    def __init__(
        self,
        key: str = "test-service-role-key",
        buckets: tuple[str, ...] = ("imports",),
        *,
        anon_key: str = ANON_KEY,
        upload_limit: int = UPLOAD_LIMIT,
        global_limit: int = GLOBAL_LIMIT,
        six_mib_chunks: bool = False,
    ) -> None:
        self.key = key
        self.anon_key = anon_key
        self.upload_limit = upload_limit
        self.global_limit = global_limit
        self.six_mib_chunks = six_mib_chunks
        self.buckets: dict[str, Bucket] = {name: Bucket() for name in buckets}
        self.objects: dict[str, dict[str, bytes]] = {name: {} for name in buckets}
        self.content_types: dict[tuple[str, str], str] = {}
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

    def put(self, bucket: str, name: str, data: bytes, content_type: str = OCTET_STREAM) -> None:
        """Place an object directly."""
        with self.lock:
            self.objects[bucket][name] = bytes(data)
            self.content_types[(bucket, name)] = content_type

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

    def one_request_limit(self, bucket: str) -> int:
        """The largest body a one-request upload to ``bucket`` may have."""
        limit = min(self.upload_limit, self.global_limit)
        rule = self.buckets[bucket].file_size_limit
        return min(limit, rule) if rule else limit

    def resumable_limit(self, bucket: str) -> int:
        """The largest upload the tus endpoint takes into ``bucket``."""
        rule = self.buckets[bucket].file_size_limit
        return min(rule, self.global_limit) if rule else self.global_limit


def rest_error(status: str, code: str, message: str, error: str | None = None) -> tuple[int, dict[str, str]]:
    """Supabase's REST error: HTTP 400 unless the real code is 500, the real code as a string."""
    body = {"statusCode": status, "code": code, "error": error or code, "message": message}
    return (500 if status == "500" else 400), body


def decode_name(path: str) -> str:
    """An object name from its URL path as the server sees it: escapes decoded, but not ``%2F``."""
    return "%2F".join(unquote(part) for part in re.split("%2[fF]", path))


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
        if getattr(self, "_read", False):
            return b""
        self._read = True
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

    def _rest_error(self, status: str, code: str, message: str, error: str | None = None) -> None:
        http_status, payload = rest_error(status, code, message, error)
        self._json(http_status, payload)

    def _tus(self, status: int, headers: dict[str, str] | None = None, text: str = "") -> None:
        self._send(
            status,
            text.encode(),
            {"Tus-Resumable": "1.0.0", **({"Content-Type": "text/plain"} if text else {}), **(headers or {})},
        )

    def _role(self) -> str:
        """Who is asking: ``service``, ``anon``, ``missing`` (no header) or ``invalid``."""
        auth = self.headers.get("Authorization")
        if auth is None:
            return "missing"
        token = auth[7:] if auth.lower().startswith("bearer ") else auth
        if token == self.fake.key:
            return "service"
        if token == self.fake.anon_key:
            return "anon"
        return "invalid"

    def _refuse_role(self, role: str) -> None:
        """The JWT check: a missing header fails the route's schema, a wrong key is AccessDenied."""
        self._body()
        if role == "missing":
            self._rest_error(
                "400", "InvalidRequest", "headers must have required property 'authorization'", "Bad Request"
            )
            return
        token = (self.headers.get("Authorization") or "")[7:]
        message = "signature verification failed" if token.count(".") == 2 else "Invalid Compact JWS"
        self._rest_error("403", "AccessDenied", message, "Unauthorized")

    def _dispatch(self) -> None:
        self._read = False
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
        role = self._role()
        if path == TUS_PATH or path.startswith(TUS_PATH + "/"):
            self._tus_request(path, role)
        elif self.command == "OPTIONS":
            self._send(204)
        elif path.startswith(OBJECT_PATH) and self.command == "GET":
            rest = path[len(OBJECT_PATH) :]
            if rest.startswith(AUTHENTICATED):
                if role in ("missing", "invalid"):
                    self._refuse_role(role)
                else:
                    self._get_object(rest[len(AUTHENTICATED) :], role)
            else:  # the plain route takes a missing or wrong key as anonymous
                self._get_object(rest, role if role in ("service", "anon") else "anonymous")
        elif role in ("missing", "invalid"):
            self._refuse_role(role)
        elif path.startswith(BUCKET_PATH) and self.command == "GET":
            self._get_bucket(unquote(path[len(BUCKET_PATH) :]), role)
        elif path.rstrip("/") + "/" == BUCKET_PATH or path.startswith(BUCKET_PATH):
            self._manage_bucket(unquote(path[len(BUCKET_PATH) :]), role)
        elif path.startswith(OBJECT_PATH + "list/") and self.command == "POST":
            self._list(unquote(path[len(OBJECT_PATH + "list/") :]), role)
        elif path.startswith(OBJECT_PATH):
            bucket, _, name = path[len(OBJECT_PATH) :].partition("/")
            self._object(unquote(bucket), decode_name(name), role)
        else:
            self._body()
            self._rest_error("404", "NotFound", f"Route {self.command}:{path} not found", "Not Found")
        if failure == "lost":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _dispatch

    # --- REST ------------------------------------------------------------------------------

    def _no_bucket(self) -> None:
        self._body()
        self._rest_error("404", "NoSuchBucket", "Bucket not found", "Bucket not found")

    def _get_bucket(self, bucket: str, role: str) -> None:
        rules = self.fake.buckets.get(bucket)
        if rules is None or (role == "anon" and not rules.public):  # row-level security hides it
            self._no_bucket()
            return
        now = datetime.now(UTC).isoformat()
        self._json(
            200,
            {
                "id": bucket,
                "name": bucket,
                "owner": "",
                "public": rules.public,
                "created_at": now,
                "updated_at": now,
                "file_size_limit": rules.file_size_limit,
                "allowed_mime_types": rules.allowed_mime_types,
            },
        )

    def _manage_bucket(self, bucket: str, role: str) -> None:
        """Create (POST /bucket) or delete (DELETE /bucket/<id>) a bucket: the service role only."""
        body = json.loads(self._body() or b"{}")
        if role != "service":
            self._rest_error(
                "403", "AccessDenied", "new row violates row-level security policy", "Unauthorized"
            )
        elif self.command == "POST" and not bucket:
            name = str(body.get("id") or body.get("name") or "")
            if name in self.fake.buckets:
                self._rest_error("409", "BucketAlreadyExists", "The resource already exists", "Duplicate")
                return
            limit = body.get("file_size_limit")
            with self.fake.lock:
                self.fake.buckets[name] = Bucket(
                    bool(body.get("public")), int(limit) if limit else None, body.get("allowed_mime_types")
                )
                self.fake.objects[name] = {}
            self._json(200, {"name": name})
        elif self.command == "DELETE" and bucket in self.fake.buckets:
            if self.fake.objects[bucket]:
                self._rest_error("409", "ResourceNotEmpty", "The bucket you tried to delete is not empty")
                return
            with self.fake.lock:
                del self.fake.buckets[bucket], self.fake.objects[bucket]
            self._json(200, {"message": "Successfully deleted"})
        elif bucket and bucket not in self.fake.buckets:
            self._no_bucket()
        else:
            self._rest_error("405", "InvalidRequest", "Method not allowed")

    def _list(self, bucket: str, role: str) -> None:
        """The objects of a bucket under a prefix (names only, as far as DataFlow's tests read)."""
        prefix = str(json.loads(self._body() or b"{}").get("prefix") or "")
        if bucket not in self.fake.buckets or role != "service":
            self._json(200, [])
            return
        names = sorted(name for name in self.fake.objects[bucket] if name.startswith(prefix))
        self._json(200, [{"name": name, "id": str(uuid.uuid4()), "metadata": {}} for name in names])

    def _get_object(self, rest: str, role: str) -> None:
        bucket, _, name = rest.partition("/")
        bucket, name = unquote(bucket), decode_name(name)
        rules = self.fake.buckets.get(bucket)
        if rules is None or (role == "anonymous" and not rules.public):
            self._no_bucket()
            return
        data = self.fake.objects[bucket].get(name)
        if data is None or (role == "anon" and not rules.public):
            self._rest_error("404", "NoSuchKey", "Object not found", "not_found")
            return
        self._serve(name, data, self.fake.content_types.get((bucket, name), OCTET_STREAM))

    def _object(self, bucket: str, name: str, role: str) -> None:
        if self.command == "DELETE" and not name:
            self._delete_many(bucket, role)
            return
        if not VALID_KEY.match(name):
            self._body()
            self._rest_error("400", "InvalidKey", f"Invalid key: {name}")
            return
        if bucket not in self.fake.buckets:
            self._no_bucket()
        elif self.command in ("POST", "PUT"):
            self._store(bucket, name, role)
        elif self.command == "DELETE":
            with self.fake.lock:
                gone = None if role == "anon" else self.fake.objects[bucket].pop(name, None)
            if gone is None:
                self._rest_error("404", "NoSuchKey", "Object not found", "not_found")
            else:
                self._json(200, {"message": "Successfully deleted"})
        else:
            self._body()
            self._rest_error("405", "InvalidRequest", "Method not allowed")

    def _store(self, bucket: str, name: str, role: str) -> None:
        rules = self.fake.buckets[bucket]
        content_type = self.headers.get("Content-Type") or OCTET_STREAM
        if content_type.startswith("multipart/form-data"):
            self._body()
            self._rest_error("400", "InvalidRequest", "this fake takes raw request bodies only")
            return
        if role == "anon":
            self._body()
            self._rest_error(
                "403", "AccessDenied", "new row violates row-level security policy", "Unauthorized"
            )
            return
        if not mime_allowed(content_type, rules.allowed_mime_types):
            self._body()
            self._rest_error(
                "415", "InvalidMimeType", f"mime type {content_type} is not supported", "invalid_mime_type"
            )
            return
        limit = self.fake.one_request_limit(bucket)
        declared = self.headers.get("Content-Length")
        if declared is not None and int(declared) > limit:
            # Refused before the body is read; Node then reads and drops the rest of the body.
            self._rest_error(
                "413", "EntityTooLarge", "The object exceeded the maximum allowed size", "Payload too large"
            )
            self._body()
            return
        data = self._body()
        if len(data) > limit:
            self._rest_error(
                "413", "EntityTooLarge", "The object exceeded the maximum allowed size", "Payload too large"
            )
            return
        upsert = self.headers.get("x-upsert") == "true"
        objects = self.fake.objects[bucket]
        with self.fake.lock:
            conflict = self.command == "POST" and name in objects and not upsert
            if not conflict:  # a PUT creates a missing object as well as replacing one
                objects[name] = data
                self.fake.content_types[(bucket, name)] = content_type
        if conflict:
            self._rest_error("409", "KeyAlreadyExists", "The resource already exists", "Duplicate")
        else:
            self._json(200, {"Key": f"{bucket}/{name}", "Id": str(uuid.uuid4())})

    def _serve(self, name: str, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
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

    def _delete_many(self, bucket: str, role: str) -> None:
        try:
            prefixes = json.loads(self._body())["prefixes"]
            assert isinstance(prefixes, list) and prefixes
        except (ValueError, KeyError, TypeError, AssertionError):
            self._rest_error("400", "InvalidRequest", "body/prefixes must NOT have fewer than 1 items")
            return
        deleted = []
        objects = self.fake.objects.get(bucket) if role == "service" else None
        # A missing bucket, or one the key may not see, deletes nothing and says so with [].
        with self.fake.lock:
            for name in prefixes if objects is not None else ():
                if objects.pop(name, None) is not None:
                    deleted.append({"name": name, "bucket_id": bucket, "id": str(uuid.uuid4())})
        self._json(200, deleted)

    # --- tus -------------------------------------------------------------------------------

    def _tus_request(self, path: str, role: str) -> None:
        if self.command == "OPTIONS":
            self._tus(
                204,
                {
                    "Tus-Version": "1.0.0",
                    "Tus-Extension": "creation,creation-with-upload,termination",
                    "Tus-Max-Size": str(self.fake.global_limit),
                },
            )
            return
        if role in ("missing", "invalid"):
            self._refuse_role("invalid")  # the tus routes have no header schema: the JWT check fails
            return
        if self.headers.get("Tus-Resumable") != "1.0.0":
            self._body()
            self._tus(412, {"Tus-Version": "1.0.0"}, "Unsupported version")
            return
        upload_id = path[len(TUS_PATH) :].strip("/")
        if not upload_id:
            if self.command == "POST":
                self._tus_create(role)
            else:
                self._body()
                self._tus(405, text="Method not allowed")
            return
        with self.fake.lock:
            upload = self.fake.uploads.get(upload_id)
        if upload is None:
            self._body()
            self._tus(404, text="The file for this url was not found\n")
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
            self._body()
            with self.fake.lock:
                finished = upload.finished
                if not finished:
                    self.fake.uploads.pop(upload_id, None)
            if finished:
                self._tus(409, text="Cannot terminate an already completed upload")
            else:
                self._tus(204)
        else:
            self._body()
            self._tus(405, text="Method not allowed")

    def _tus_create(self, role: str) -> None:
        self._body()
        try:
            length = int(self.headers["Upload-Length"])
            assert length >= 0
        except (KeyError, TypeError, ValueError, AssertionError):
            self._tus(400, text="Upload-Length or Upload-Defer-Length header required\n")
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
        if not VALID_KEY.match(name):
            self._tus(400, text=f"Invalid key: {name}")
            return
        rules = self.fake.buckets.get(bucket)
        if rules is None:
            self._tus(404, text="Bucket not found")
            return
        if role == "anon":
            self._tus(403, text="new row violates row-level security policy")
            return
        if name in self.fake.objects[bucket] and self.headers.get("x-upsert") != "true":
            self._tus(409, text="The resource already exists")
            return
        if length > self.fake.resumable_limit(bucket):
            self._tus(413, text="Maximum size exceeded\n")
            return
        content_type = metadata.get("contentType")
        if content_type and not mime_allowed(content_type, rules.allowed_mime_types):
            self._tus(415, text=f"mime type {content_type} is not supported")
            return
        version = str(uuid.uuid4())
        upload_id = base64.urlsafe_b64encode(f"{bucket}/{name}/{version}".encode()).decode().rstrip("=")
        upload = Upload(bucket, name, length, metadata)
        with self.fake.lock:
            self.fake.uploads[upload_id] = upload
            if length == 0:
                self._finish(upload)
        host = self.headers.get("Host", "")
        self._tus(201, {"Location": f"http://{host}{TUS_PATH}/{upload_id}", "Upload-Offset": "0"})

    def _tus_patch(self, upload_id: str, upload: Upload) -> None:
        chunk = self._body()
        claimed = -1

        def answer(status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
            with self.fake.lock:
                self.fake.patches.append(Patch(upload_id, claimed, len(chunk), status))
            self._tus(status, headers, text)

        if self.headers.get("Content-Type") != "application/offset+octet-stream":
            answer(400, "Invalid content-type")
            return
        try:
            claimed = int(self.headers["Upload-Offset"])
        except (KeyError, TypeError, ValueError):
            answer(403, "Missing or invalid upload-offset header\n")
            return
        upsert = self.headers.get("x-upsert") == "true"  # read on every request, not kept from the POST
        with self.fake.lock:
            offset = len(upload.data)
            in_the_way = upload.name in self.fake.objects[upload.bucket] and not upsert
        if in_the_way:
            answer(409, "The resource already exists")
            return
        if claimed != offset:
            answer(409, "Upload-Offset conflict\n")
            return
        end = offset + len(chunk)
        if end > upload.length:
            answer(413, "Upload's size exceeded\n")
            return
        if self.fake.six_mib_chunks and end < upload.length and len(chunk) != CHUNK:
            # Supabase's hosted platform takes 6 MiB chunks only, apart from the last one.
            answer(400, f"Chunk size must be {CHUNK} bytes except for the last chunk, got {len(chunk)}")
            return
        with self.fake.lock:
            upload.data += chunk
            if end == upload.length:
                self._finish(upload)
        answer(204, headers={"Upload-Offset": str(end)})

    def _finish(self, upload: Upload) -> None:
        """Turn a complete upload into an object. Lock held."""
        self.fake.objects[upload.bucket][upload.name] = bytes(upload.data)
        self.fake.content_types[(upload.bucket, upload.name)] = upload.metadata.get(
            "contentType", OCTET_STREAM
        )
        upload.finished = True
