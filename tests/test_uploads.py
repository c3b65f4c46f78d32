"""The tus server at /uploads, served over real HTTP, driven by tuspy and by raw requests."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import ROOT, wait_for
from flask import Flask
from rq import SimpleWorker
from sqlalchemy import select, text
from tusclient.client import TusClient

from app.cli import upgrade_database
from app.config import ConfigError, load_settings
from app.extensions import QUEUE_NAME, db, redis
from app.maintenance import run_once
from app.models import Import
from app.storage import StorageUnavailable
from tests.conftest import served_in_thread

LIMIT = 1_000_000
ADVISORY_LOCKS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def contacts_csv(rows: int, prefix: str = "person") -> bytes:
    """A CSV of ``rows`` distinct contacts whose emails start with ``prefix``."""
    lines = ["name,email"] + [f"{prefix.title()} {i:05d},{prefix}{i:05d}@example.com" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def metadata(**values: str) -> str:
    """An Upload-Metadata header."""
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


@dataclass
class Answer:
    """What the server answered."""

    status: int
    headers: Message
    body: bytes

    @property
    def error(self) -> str:
        return json.loads(self.body)["error"]


@dataclass
class TusServer:
    """A DataFlow app served over HTTP on a free loopback port."""

    app: Flask
    url: str

    @property
    def endpoint(self) -> str:
        return f"{self.url}/uploads"

    def connect(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def request(
        self,
        method: str,
        path: str = "/uploads",
        body: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        version: str | None = "1.0.0",
    ) -> Answer:
        """One raw HTTP request, with Tus-Resumable unless ``version`` is None."""
        sent = {"Tus-Resumable": version} if version else {}
        sent.update(headers or {})
        connection = self.connect()
        try:
            connection.request(
                method, path, body=body, headers=sent, encode_chunked=not isinstance(body, bytes | None)
            )
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def create(self, length: int, **meta: str) -> str:
        """Create an upload and return its path."""
        answer = self.request(
            "POST",
            headers={"Upload-Length": str(length), "Upload-Metadata": metadata(**({"source": "crm"} | meta))},
        )
        assert answer.status == 201, answer.body
        return urlsplit(answer.headers["Location"]).path

    def patch(self, path: str, offset: int, data: bytes, **headers: str) -> Answer:
        """Send bytes at an offset."""
        sent = {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        return self.request("PATCH", path, data, sent | headers)

    def offset(self, path: str) -> int:
        """The upload's offset, as HEAD reports it."""
        answer = self.request("HEAD", path)
        assert answer.status == 200, answer.status
        return int(answer.headers["Upload-Offset"])

    def get_import(self, job_id: str) -> dict:
        """The import, as the JSON API shows it."""
        answer = self.request("GET", f"/imports/{job_id}", headers={"Accept": "application/json"})
        assert answer.status == 200
        return json.loads(answer.body)


@pytest.fixture
def serve(make_app: Callable[..., Flask]) -> Iterator[Callable[..., TusServer]]:
    """Serve an app (CSRF on, as in production) in a real threaded HTTP server."""
    with ExitStack() as running:

        def start(app: Flask | None = None, **settings: str) -> TusServer:
            app = app or make_app(MAX_UPLOAD_SIZE=str(LIMIT), **settings)
            return TusServer(app, running.enter_context(served_in_thread(app)))

        yield start


@pytest.fixture
def tus(serve: Callable[..., TusServer]) -> TusServer:
    """The tus server with a 1 MB upload limit."""
    return serve()


def run_jobs(app: Flask) -> None:
    """Run the queued import jobs in this process, in the app's context."""
    with app.app_context():
        SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
        db.session.remove()


def partial_files(app: Flask) -> list[str]:
    """Names of the partial upload files the server keeps."""
    folder = Path(app.config["SETTINGS"].storage_dir) / "tus"
    return sorted(p.name for p in folder.glob("*.part")) if folder.exists() else []


# --- tuspy as the client ---------------------------------------------------------------------


def test_tuspy_uploads_a_csv_that_is_imported(tus, work, tmp_path):
    data = contacts_csv(300)
    uploader = TusClient(tus.endpoint).uploader(
        file_stream=io.BytesIO(data),
        chunk_size=4096,
        metadata={"source": "crm", "filename": "contacts.csv", "useResumable": "true"},
        upload_checksum=True,
    )
    uploader.upload()

    job_id = uploader.request.response_headers["x-import-id"]
    assert uploader.url.startswith(tus.endpoint + "/")
    head = tus.request("HEAD", urlsplit(uploader.url).path)
    assert head.headers["X-Import-Id"] == job_id
    assert int(head.headers["Upload-Offset"]) == len(data)
    work()
    imported = tus.get_import(job_id)
    assert imported["status"] == "completed"
    assert imported["filename"] == "contacts.csv"
    assert imported["source"] == "crm"
    assert imported["useResumable"] is True
    assert imported["sizeBytes"] == len(data)
    assert imported["insertedRows"] == 300
    assert imported["rejectedRows"] == 0
    assert partial_files(tus.app) == []


TUSPY_CLIENT = """
import sys
from tusclient.client import TusClient
from tusclient.storage.filestorage import FileStorage

endpoint, path, urls, stop_at = sys.argv[1:]
storage = FileStorage(urls)
uploader = TusClient(endpoint).uploader(
    file_path=path, chunk_size=10_000, metadata={"source": "crm", "filename": "big.csv"},
    store_url=True, url_storage=storage, upload_checksum=True,
)
resumed_at = uploader.offset
uploader.upload(stop_at=int(stop_at) or None)
storage.close()
print(uploader.url, resumed_at, uploader.offset, uploader.request.response_headers.get("x-import-id", "-"))
"""


def tuspy_process(tus: TusServer, path: Path, urls: Path, stop_at: int = 0) -> list[str]:
    """Run tuspy in a process of its own, remembering upload URLs in ``urls``; return what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", TUSPY_CLIENT, tus.endpoint, str(path), str(urls), str(stop_at)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=True,
    )
    return done.stdout.split()


def test_interrupted_upload_is_resumed_by_a_new_client(tus, work, tmp_path):
    data = contacts_csv(2000)
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    urls = tmp_path / "urls.json"

    # A first client sends two chunks and goes away, its URL remembered.
    url, started_at, offset, job_id = tuspy_process(tus, path, urls, stop_at=20_000)
    assert (started_at, offset, job_id) == ("0", "20000", "-")
    upload_path = urlsplit(url).path
    assert tus.offset(upload_path) == 20_000

    # Then a PATCH dies halfway through its body: the bytes that arrived are kept.
    connection = socket.create_connection(("127.0.0.1", urlsplit(tus.url).port))
    chunk = data[20_000:40_000]
    connection.sendall(
        (
            f"PATCH {upload_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
            "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 20000\r\n"
            f"Content-Length: {len(chunk)}\r\n\r\n"
        ).encode()
        + chunk[:7_000]
    )
    connection.close()
    wait_for(lambda: tus.offset(upload_path) == 27_000)

    # A new client, in a new process, finds the URL and finishes from there.
    resumed_url, resumed_at, offset, job_id = tuspy_process(tus, path, urls)
    assert urlsplit(resumed_url).path == upload_path
    assert (resumed_at, offset) == ("27000", str(len(data)))
    assert tus.request("HEAD", upload_path).headers["X-Import-Id"] == job_id
    work()
    imported = tus.get_import(job_id)
    assert imported["status"] == "completed"
    assert imported["sizeBytes"] == len(data)
    assert imported["insertedRows"] == 2000
    assert imported["duplicateRows"] == imported["rejectedRows"] == 0


def test_tuspy_works_while_csrf_protects_the_forms(tus, tmp_path):
    refused = tus.request("POST", "/", b"source=crm", {"Content-Type": "application/x-www-form-urlencoded"})
    assert refused.status == 400
    assert b"CSRF" in refused.body
    uploader = TusClient(tus.endpoint).uploader(
        file_stream=io.BytesIO(contacts_csv(3)), metadata={"source": "crm"}
    )
    uploader.upload()
    assert uploader.request.response_headers["x-import-id"]


# --- the protocol, request by request --------------------------------------------------------


def test_options_advertises_what_the_server_supports(tus):
    for path in ("/uploads", f"/uploads/{uuid.uuid4().hex}"):
        answer = tus.request("OPTIONS", path, version=None)
        assert answer.status == 204
        assert answer.headers["Tus-Resumable"] == "1.0.0"
        assert answer.headers["Tus-Version"] == "1.0.0"
        extensions = answer.headers["Tus-Extension"].split(",")
        assert set(extensions) == {
            "creation",
            "creation-with-upload",
            "termination",
            "expiration",
            "checksum",
        }
        assert answer.headers["Tus-Max-Size"] == str(LIMIT)
        assert set(answer.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "md5", "sha256"}


def test_missing_or_unsupported_version_is_412(tus):
    upload = tus.create(10)
    requests = [
        ("POST", "/uploads", {"Upload-Length": "10", "Upload-Metadata": metadata(source="crm")}),
        ("HEAD", upload, {}),
        ("PATCH", upload, {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}),
        ("DELETE", upload, {}),
    ]
    for version in (None, "0.2.2"):
        for method, path, headers in requests:
            answer = tus.request(method, path, b"", headers, version=version)
            assert answer.status == 412, (method, version)
            assert answer.headers["Tus-Version"] == "1.0.0"
            assert answer.headers["Tus-Resumable"] == "1.0.0"
    assert tus.offset(upload) == 0


def test_creation_answers_a_location_and_expiry(tus):
    before = datetime.now(UTC)
    answer = tus.request(
        "POST",
        headers={"Upload-Length": "42", "Upload-Metadata": metadata(source="crm", filename="a b.csv")},
    )
    assert answer.status == 201
    # An absolute path (PUBLIC_URL is not set): tus clients resolve it against their endpoint.
    assert re.fullmatch(r"/uploads/[0-9a-f]{32}", answer.headers["Location"])
    assert answer.headers["Tus-Resumable"] == "1.0.0"
    expires = parsedate_to_datetime(answer.headers["Upload-Expires"])
    assert before + timedelta(hours=23) < expires <= datetime.now(UTC) + timedelta(hours=24)

    head = tus.request("HEAD", urlsplit(answer.headers["Location"]).path)
    assert head.status == 200
    assert head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == "42"
    assert head.headers["Upload-Metadata"] == metadata(source="crm", filename="a b.csv")
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Tus-Resumable"] == "1.0.0"
    assert "X-Import-Id" not in head.headers


def test_bad_creation_headers_are_400_with_a_reason(tus):
    good = metadata(source="crm")
    cases = [
        ({"Upload-Metadata": good}, "Upload-Length"),
        ({"Upload-Length": "abc", "Upload-Metadata": good}, "Upload-Length"),
        ({"Upload-Length": "-5", "Upload-Metadata": good}, "Upload-Length"),
        ({"Upload-Length": "0", "Upload-Metadata": good}, "empty"),
        ({"Upload-Defer-Length": "1", "Upload-Metadata": good}, "Upload-Defer-Length"),
        ({"Upload-Length": "10", "Upload-Metadata": "source !!!notbase64"}, "base64"),
        ({"Upload-Length": "10", "Upload-Metadata": "source " + base64.b64encode(b"\xff").decode()}, "UTF-8"),
        ({"Upload-Length": "10", "Upload-Metadata": f"{good},{good}"}, "twice"),
        ({"Upload-Length": "10", "Upload-Metadata": metadata(filename="a.csv")}, "source"),
        ({"Upload-Length": "10", "Upload-Metadata": ""}, "source"),
        ({"Upload-Length": "10", "Upload-Metadata": metadata(source="x" * 101)}, "source"),
    ]
    for headers, word in cases:
        answer = tus.request("POST", headers=headers)
        assert answer.status == 400, headers
        assert word in answer.error, (headers, answer.error)
    assert tus.request("POST", headers={"Upload-Length": "10"}).error.startswith(
        "Missing required metadata: source"
    )
    with tus.app.app_context():
        assert db.session.scalar(text("SELECT count(*) FROM uploads")) == 0


def test_creation_above_the_limit_is_413(tus):
    answer = tus.request(
        "POST", headers={"Upload-Length": str(LIMIT + 1), "Upload-Metadata": metadata(source="crm")}
    )
    assert answer.status == 413
    assert f"{LIMIT:,}" in answer.error
    assert (
        tus.request(
            "POST", headers={"Upload-Length": str(LIMIT), "Upload-Metadata": metadata(source="crm")}
        ).status
        == 201
    )


def test_patch_rules_415_409_400(tus):
    upload = tus.create(10)
    wrong_type = tus.request(
        "PATCH", upload, b"abc", {"Upload-Offset": "0", "Content-Type": "application/octet-stream"}
    )
    assert wrong_type.status == 415
    assert "application/offset+octet-stream" in wrong_type.error
    assert tus.patch(upload, 3, b"abc").status == 409
    assert (
        tus.request(
            "PATCH", upload, b"abc", {"Upload-Offset": "x", "Content-Type": "application/offset+octet-stream"}
        ).status
        == 400
    )
    assert (
        tus.request("PATCH", upload, b"abc", {"Content-Type": "application/offset+octet-stream"}).status
        == 400
    )
    assert tus.patch(upload, 0, b"abc", **{"Upload-Checksum": "crc32 AAAA"}).status == 400
    assert tus.patch(upload, 0, b"abc", **{"Upload-Checksum": "sha1 ***"}).status == 400
    assert tus.offset(upload) == 0

    answer = tus.patch(upload, 0, b"abc")
    assert answer.status == 204
    assert answer.headers["Upload-Offset"] == "3"
    assert parsedate_to_datetime(answer.headers["Upload-Expires"]) > datetime.now(UTC)
    assert tus.patch(upload, 0, b"abc").status == 409
    assert tus.offset(upload) == 3


def test_patch_past_the_length_is_413_and_keeps_nothing(tus):
    upload = tus.create(10)
    assert tus.patch(upload, 0, b"12345").status == 204
    too_long = tus.patch(upload, 5, b"6789AB")
    assert too_long.status == 413
    assert tus.offset(upload) == 5

    # Without a Content-Length the server counts the bytes as they arrive.
    def chunks() -> Iterator[bytes]:
        yield b"678"
        yield b"9ABCDEF"

    streamed = tus.request(
        "PATCH", upload, chunks(), {"Upload-Offset": "5", "Content-Type": "application/offset+octet-stream"}
    )
    assert streamed.status == 413
    assert tus.offset(upload) == 5
    assert tus.patch(upload, 5, b"67890").status == 204


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
def test_checksum_mismatch_is_460_and_the_chunk_is_discarded(tus, work, algorithm):
    data = contacts_csv(2)
    upload = tus.create(len(data))
    digest = lambda chunk: f"{algorithm} {base64.b64encode(hashlib.new(algorithm, chunk).digest()).decode()}"  # noqa: E731
    first, rest = data[:10], data[10:]
    assert tus.patch(upload, 0, first, **{"Upload-Checksum": digest(first)}).status == 204

    wrong = tus.patch(upload, 10, rest, **{"Upload-Checksum": digest(b"something else")})
    assert wrong.status == 460
    assert "Checksum" in wrong.error
    assert tus.offset(upload) == 10

    answer = tus.patch(upload, 10, rest, **{"Upload-Checksum": digest(rest)})
    assert answer.status == 204
    work()
    imported = tus.get_import(answer.headers["X-Import-Id"])
    assert imported["insertedRows"] == 2
    assert imported["sizeBytes"] == len(data)


def test_creation_with_upload(tus, work):
    data = contacts_csv(5)
    meta = metadata(source="crm", filename="five.csv")
    partial = tus.request(
        "POST",
        body=data[:30],
        headers={
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta,
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert partial.status == 201
    assert partial.headers["Upload-Offset"] == "30"
    assert "X-Import-Id" not in partial.headers

    whole = tus.request(
        "POST",
        body=data,
        headers={
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta,
            "Content-Type": "application/offset+octet-stream",
            "Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode(),
        },
    )
    assert whole.status == 201
    assert whole.headers["Upload-Offset"] == str(len(data))
    work()
    assert tus.get_import(whole.headers["X-Import-Id"])["insertedRows"] == 5

    too_long = tus.request(
        "POST",
        body=data,
        headers={
            "Upload-Length": "10",
            "Upload-Metadata": meta,
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert too_long.status == 413
    assert "Location" not in too_long.headers


def test_unknown_deleted_and_expired_uploads(serve):
    tus = serve()
    for path in (f"/uploads/{uuid.uuid4().hex}", "/uploads/not-an-id", "/uploads/..%2F..%2Fetc"):
        assert tus.request("HEAD", path).status == 404
        assert tus.patch(path, 0, b"x").status == 404
        assert tus.request("DELETE", path).status == 404

    upload = tus.create(10)
    assert tus.patch(upload, 0, b"12345").status == 204
    assert partial_files(tus.app)
    assert tus.request("DELETE", upload).status == 204
    assert tus.request("HEAD", upload).status == 404
    assert tus.patch(upload, 5, b"67890").status == 404
    assert partial_files(tus.app) == []

    short = serve(UPLOAD_EXPIRY="1s")
    upload = short.create(10)
    wait_for(lambda: short.request("HEAD", upload).status == 410, timeout=10)
    assert short.patch(upload, 0, b"12345").status == 410


def test_expiry_task_deletes_abandoned_uploads(serve):
    tus = serve(UPLOAD_EXPIRY="1s")
    abandoned = tus.create(10)
    assert tus.patch(abandoned, 0, b"12345").status == 204
    wait_for(lambda: tus.request("HEAD", abandoned).status == 410, timeout=10)
    fresh = serve(UPLOAD_EXPIRY="1h")
    alive = fresh.create(10)
    assert fresh.patch(alive, 0, b"12345").status == 204

    run_once(tus.app)  # what the worker's supervisor runs every MAINTENANCE_INTERVAL

    assert tus.request("HEAD", abandoned).status == 404
    assert fresh.offset(alive) == 5
    assert partial_files(tus.app) == [f"{urlsplit(alive).path.rsplit('/', 1)[1]}.part"]


def test_import_that_cannot_start_is_retried_by_head(tus, work, monkeypatch):
    import app.uploads

    real = app.uploads.create_import
    failures = []

    def storage_down_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise StorageUnavailable("storage is down")
        return real(*args, **kwargs)

    monkeypatch.setattr(app.uploads, "create_import", storage_down_once)
    data = contacts_csv(4)
    upload = tus.create(len(data))
    failed = tus.patch(upload, 0, data)
    assert failed.status == 503
    assert "retry" in failed.error
    with tus.app.app_context():
        assert db.session.scalar(text("SELECT count(*) FROM imports")) == 0

    head = tus.request("HEAD", upload)
    assert head.status == 200
    assert head.headers["Upload-Offset"] == str(len(data))
    job_id = head.headers["X-Import-Id"]
    assert tus.request("HEAD", upload).headers["X-Import-Id"] == job_id
    assert tus.patch(upload, len(data), b"").headers["X-Import-Id"] == job_id
    work()
    assert tus.get_import(job_id)["insertedRows"] == 4


def test_method_override_for_strict_proxies(tus):
    upload = tus.create(3)
    answer = tus.request(
        "POST",
        upload,
        b"abc",
        {
            "X-HTTP-Method-Override": "PATCH",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert answer.status == 204
    assert answer.headers["X-Import-Id"]
    assert tus.request("POST", upload, b"", {"X-HTTP-Method-Override": "DELETE"}).status == 204
    assert tus.request("HEAD", upload).status == 404


# --- two writers on one upload ---------------------------------------------------------------


def test_a_patch_in_progress_locks_out_another(tus, work):
    winner, loser = contacts_csv(500, "winner"), contacts_csv(500, "loserr")
    assert len(winner) == len(loser)
    upload = tus.create(len(winner))

    connection = socket.create_connection(("127.0.0.1", urlsplit(tus.url).port))
    connection.sendall(
        (
            f"PATCH {upload} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
            "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
            f"Content-Length: {len(winner)}\r\n\r\n"
        ).encode()
        + winner[:1000]
    )
    with tus.app.app_context():
        wait_for(lambda: db.session.scalar(text(ADVISORY_LOCKS)))
        db.session.remove()

    locked = tus.patch(upload, 0, loser)
    assert locked.status == 423
    assert "try again" in locked.error
    assert tus.request("DELETE", upload).status == 423

    connection.sendall(winner[1000:])
    response = http.client.HTTPResponse(connection)
    response.begin()
    assert response.status == 204
    job_id = response.headers["X-Import-Id"]
    connection.close()
    work()
    assert_imported_exactly(tus, job_id, "winner", 500)


def assert_imported_exactly(tus: TusServer, job_id: str, prefix: str, rows: int) -> None:
    """The import holds exactly the rows of the file that won, none of the other."""
    imported = tus.get_import(job_id)
    assert (imported["insertedRows"], imported["rejectedRows"]) == (rows, 0)
    with tus.app.app_context():
        emails = db.session.scalars(text("SELECT email FROM contacts WHERE import_id = :id"), {"id": job_id})
        assert sorted(emails) == [f"{prefix}{i:05d}@example.com" for i in range(rows)]


@pytest.fixture
def gunicorn(app: Flask, env: dict[str, str], tmp_path: Path) -> Iterator[TusServer]:
    """The app under gunicorn as in production: several worker processes on one socket."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    with open(tmp_path / "gunicorn.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:app.gunicorn_conf"]
            + ["--bind", f"fd://{listener.fileno()}", "--workers", "3", "--threads", "1", "wsgi:app"],
            cwd=ROOT,
            env={
                **os.environ,
                **env,
                "MAX_UPLOAD_SIZE": str(LIMIT),
                "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            },
            pass_fds=(listener.fileno(),),
            stdout=log,
            stderr=log,
        )
    listener.close()
    server = TusServer(app, f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: server.request("OPTIONS", version=None).status == 204, timeout=60)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.parametrize("server", ["threads-postgresql", "threads-sqlite", "gunicorn-postgresql"])
def test_racing_patches_never_interleave(request, app, serve, make_app, tmp_path, server):
    if server == "threads-sqlite":
        served = make_app(MAX_UPLOAD_SIZE=str(LIMIT), DATABASE_URL=f"sqlite:///{tmp_path / 'tus.db'}")
        upgrade_database(served)
        tus = serve(served)
    elif server == "gunicorn-postgresql":
        tus = request.getfixturevalue("gunicorn")
    else:
        tus = serve()
    writers = 6
    files = [contacts_csv(3000, f"writer{n}") for n in range(writers)]
    assert len({len(f) for f in files}) == 1
    upload = tus.create(len(files[0]))
    start = threading.Barrier(writers)
    answers: list[Answer | None] = [None] * writers

    def write(n: int) -> None:
        start.wait()
        answers[n] = tus.patch(upload, 0, files[n])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(a.status for a in answers)
    assert statuses.count(204) == 1, statuses
    assert set(statuses) - {204} <= {409, 423}, statuses
    won = next(n for n, a in enumerate(answers) if a.status == 204)
    assert tus.offset(upload) == len(files[won])
    run_jobs(tus.app)
    assert_imported_exactly(tus, answers[won].headers["X-Import-Id"], f"writer{won}", 3000)


def test_upload_expiry_setting(tmp_path):
    def expiry(value: str | None) -> float:
        env = {"INSTANCE_DIR": str(tmp_path), "SECRET_KEY": "x"}
        if value is not None:
            env["UPLOAD_EXPIRY"] = value
        return load_settings(env).upload_expiry

    assert expiry(None) == 24 * 3600
    assert expiry("3600") == 3600
    assert expiry("90s") == 90
    assert expiry("30m") == 1800
    assert expiry("2d") == 2 * 86400
    for wrong in ("soon", "-5", "0", "1w"):
        with pytest.raises(ConfigError, match="UPLOAD_EXPIRY"):
            expiry(wrong)


def test_a_resumable_upload_carries_its_merge_mode(tus):
    path = tus.create(len(b"name,email\nA,a@example.com\n"), mode="fill", filename="a.csv")
    answer = tus.patch(path, 0, b"name,email\nA,a@example.com\n")
    assert answer.status == 204
    with tus.app.app_context():
        assert db.session.scalars(select(Import.mode)).all() == ["fill"]  # the upload became an import
    refused = tus.request(
        "POST", headers={"Upload-Length": "10", "Upload-Metadata": metadata(source="crm", mode="merge")}
    )
    assert refused.status == 400 and "skip, fill, update" in refused.error
