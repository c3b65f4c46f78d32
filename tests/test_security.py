"""Hostile requests: oversize and cut-short bodies, broken forms, filenames as paths, and the headers."""

from __future__ import annotations

import io
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Import, Upload
from app.storage import COPY_CHUNK
from tests.conftest import count, stored_files

CSV = b"name,email\nAda Lovelace,ada@example.com\n"
LIMIT = 10_000


@pytest.fixture
def small(make_app: Callable[..., Flask]) -> Flask:
    """An app whose upload limit is 10,000 bytes; no app context is pushed."""
    return make_app(MAX_UPLOAD_SIZE=str(LIMIT), RATE_LIMITS_ENABLED="false")


def assert_nothing_stored(app: Flask) -> None:
    assert count(app, Import) == 0
    assert count(app, Upload) == 0
    assert stored_files(app) == []


# --- headers ----------------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(small):
    client = small.test_client()
    answers = [
        client.get("/", headers={"Accept": "text/html"}),
        client.get("/imports", headers={"Accept": "application/json"}),
        client.get("/no/such/page", headers={"Accept": "text/html"}),
        client.post("/import", data=b"", headers={"X-Source": "s"}),
        client.get("/health"),
        client.get("/static/css/app.css"),
    ]
    for answer in answers:
        answer.close()
        headers = answer.headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        policy = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_pages_have_no_inline_script_or_style(small):
    client = small.test_client()
    for path in ("/", "/imports", "/login"):
        page = client.get(path, headers={"Accept": "text/html"}).get_data(as_text=True)
        assert "<script>" not in page and "style=" not in page and "<style" not in page, path


# --- size -------------------------------------------------------------------------------------


def test_an_announced_oversize_body_is_413_on_every_path(small):
    client = small.test_client()
    big = b"x" * (LIMIT + 70_000)
    answers = [
        client.post("/import", data=big, headers={"X-Source": "s"}),
        client.post("/import", data=big, content_type="application/json"),
        client.post("/import", data={"source": "s", "file": (io.BytesIO(big), "big.csv")}),
        client.post(
            "/uploads",
            data=big,
            headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(big))},
            content_type="application/offset+octet-stream",
        ),
    ]
    for answer in answers:
        assert answer.status_code == 413, answer.request.path
        assert "limit" in answer.get_json()["error"]
    assert_nothing_stored(small)


def chunked(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_an_oversize_body_without_length_is_413_on_every_path(small):
    client = small.test_client()
    just_over = b"x" * (LIMIT + 1)
    multipart = (
        b"--B\r\nContent-Disposition: form-data; name=source\r\n\r\ns\r\n"
        b'--B\r\nContent-Disposition: form-data; name=file; filename="a.csv"\r\n\r\n'
        + b"x" * (LIMIT + 70_000)
        + b"\r\n--B--\r\n"
    )
    answers = [
        # a chunked body (no Content-Length): the stream is cut off as soon as it passes the limit
        client.post("/import", input_stream=io.BytesIO(just_over), headers={"X-Source": "s"}),
        client.post("/import", input_stream=io.BytesIO(just_over), content_type="application/json"),
        client.post(
            "/import", input_stream=io.BytesIO(multipart), content_type="multipart/form-data; boundary=B"
        ),
        client.post(
            "/import", data={"source": "s", "file": (io.BytesIO(just_over), "a.csv")}
        ),  # a part just over the limit inside an allowed body
    ]
    for answer in answers:
        assert answer.status_code == 413, answer.get_data(as_text=True)
    assert_nothing_stored(small)
    exactly = client.post("/import", data=b"y" * LIMIT, headers={"X-Source": "s"})
    assert exactly.status_code == 202
    assert count(small, Import) == 1


# --- cut short, malformed, wrong type ---------------------------------------------------------


def test_a_body_shorter_than_its_content_length_is_400_and_kept_nowhere(small):
    client = small.test_client()
    for headers in ({"X-Source": "s"}, {"Content-Type": "application/json"}):
        answer = client.post(
            "/import",
            input_stream=io.BytesIO(CSV),
            headers=headers,
            environ_overrides={"CONTENT_LENGTH": str(len(CSV) + 500)},
        )
        assert answer.status_code == 400
        assert answer.get_json()["error"].startswith(f"The request body ended after {len(CSV)} of the")
    multipart = (
        b"--B\r\nContent-Disposition: form-data; name=source\r\n\r\ns\r\n"
        b'--B\r\nContent-Disposition: form-data; name=file; filename="a.csv"\r\n\r\n' + CSV + b"\r\n--B--\r\n"
    )
    answer = client.post(
        "/import",
        input_stream=io.BytesIO(multipart),
        content_type="multipart/form-data; boundary=B",
        environ_overrides={"CONTENT_LENGTH": str(len(multipart) + 100)},
    )
    assert answer.status_code == 400
    assert "ended after" in answer.get_json()["error"]
    assert_nothing_stored(small)


def test_a_multipart_body_cut_mid_part_is_400_saying_so(small):
    client = small.test_client()
    cut = (
        b"--B\r\nContent-Disposition: form-data; name=source\r\n\r\ns\r\n"
        b'--B\r\nContent-Disposition: form-data; name=file; filename="a.csv"\r\n\r\nname,email\nAda,'
    )
    answer = client.post("/import", data=cut, content_type="multipart/form-data; boundary=B")
    assert answer.status_code == 400
    assert "cut short or malformed" in answer.get_json()["error"]
    no_boundary = client.post("/import", data=cut, content_type="multipart/form-data")
    assert no_boundary.status_code == 400
    assert no_boundary.get_json()["error"] == "The multipart/form-data body has no boundary parameter"
    assert_nothing_stored(small)


def test_a_body_that_does_not_match_its_content_type_is_400(small):
    client = small.test_client()
    answer = client.post("/import", data=CSV, content_type="application/json")
    assert answer.status_code == 400
    assert answer.get_json()["error"].startswith("Malformed JSON in request body")
    tus = client.patch(
        "/uploads/" + "0" * 32,
        data=CSV,
        headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0"},
        content_type="text/csv",
    )
    assert tus.status_code == 415
    assert_nothing_stored(small)


# --- filenames ----------------------------------------------------------------------------------


def test_filenames_are_never_paths_and_are_shown_escaped(small, tmp_path):
    client = small.test_client()
    names = ["../../etc/passwd", "/tmp/evil.csv", "..\\..\\boot.ini", "<script>alert(1)</script>.csv"]
    ids = []
    for name in names:
        answer = client.post("/import", data={"source": "s", "file": (io.BytesIO(CSV), name)})
        assert answer.status_code == 202
        ids.append(answer.get_json()["jobId"])
    streamed = client.post("/import", data=CSV, headers={"X-Source": "s", "X-Filename": "../../../x.csv"})
    ids.append(streamed.get_json()["jobId"])

    storage_dir = small.config["SETTINGS"].storage_dir
    files = stored_files(small)
    assert len(files) == len(ids)
    assert all(f.parent == storage_dir and f.name.endswith(".upload") for f in files)
    assert not (tmp_path / "etc").exists() and not Path("/tmp/evil.csv").exists()
    with small.app_context():
        keys = {imp.storage_key for imp in db.session.scalars(select(Import))}
    assert keys == {f.name for f in files}

    page = client.get(f"/imports/{ids[3]}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.csv" in page
    assert "<script>alert(1)</script>" not in page
    detail = client.get(f"/imports/{ids[0]}", headers={"Accept": "application/json"}).get_json()
    assert detail["filename"] == "../../etc/passwd"  # kept as the name the user gave, only shown


# --- a real server: the body is not read past the limit -----------------------------------------


@pytest.fixture
def gunicorn(web_server: Callable[..., str], make_app: Callable[..., Flask]) -> tuple[str, int]:
    """The production web server (gunicorn, one worker) on a loopback port, with a 10,000-byte limit."""
    make_app()  # so the tables are emptied after the test
    base = web_server(MAX_UPLOAD_SIZE=str(LIMIT), RATE_LIMITS_ENABLED="false", WEB_CONCURRENCY="1")
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def read_answer(connection: socket.socket) -> tuple[int, bytes]:
    """The status code and the body of the server's answer."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length and (chunk := connection.recv(65536)):
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def test_a_chunked_stream_is_refused_as_soon_as_it_passes_the_limit(gunicorn, env):
    connection = socket.create_connection(gunicorn, timeout=30)
    connection.sendall(
        b"POST /import HTTP/1.1\r\nHost: test\r\nX-Source: s\r\nAccept: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    # The server reads a body COPY_CHUNK bytes at a time: send one chunk past the limit and more,
    # then wait with the body unfinished (a client with 100 MB to send).
    sent = 0
    piece = b"y" * 64 * 1024
    while sent <= LIMIT + 2 * COPY_CHUNK:
        connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sent += len(piece)
    # The body has no end yet: an answer now proves the server stopped reading near the limit.
    status, received = read_answer(connection)
    connection.close()
    assert status == 413
    assert b"larger than the limit" in received
    uploads = Path(env["STORAGE_DIR"])
    assert not uploads.exists() or not any(uploads.rglob("*.*"))


def test_an_announced_oversize_body_is_refused_before_it_is_sent(gunicorn):
    connection = socket.create_connection(gunicorn, timeout=30)
    connection.sendall(
        b"POST /import HTTP/1.1\r\nHost: test\r\nX-Source: s\r\nAccept: application/json\r\n"
        b"Content-Length: 10000000000\r\n\r\n" + b"z" * 1000
    )
    status, received = read_answer(connection)
    connection.close()
    assert status == 413
    assert b"larger than the limit" in received


def test_a_client_that_stops_sending_gets_400_and_nothing_is_kept(gunicorn, env):
    connection = socket.create_connection(gunicorn, timeout=30)
    connection.sendall(
        b"POST /import HTTP/1.1\r\nHost: test\r\nX-Source: s\r\nAccept: application/json\r\n"
        b"Content-Length: 5000\r\n\r\n" + CSV
    )
    connection.shutdown(socket.SHUT_WR)  # the client is done, 5000 - len(CSV) bytes short
    status, received = read_answer(connection)
    connection.close()
    assert status == 400
    assert b"The request body ended after" in received
    uploads = Path(env["STORAGE_DIR"])
    assert not uploads.exists() or not any(uploads.rglob("*.*"))


# --- the smaller ones ---------------------------------------------------------------------------


def test_a_form_of_too_many_parts_is_413_saying_so(small):
    parts = b"".join(
        b'--B\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % n for n in range(1001)
    )
    body = parts + b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n' + CSV
    body += b"\r\n--B--\r\n"
    answer = small.test_client().post(
        "/import",
        data=body,
        content_type="multipart/form-data; boundary=B",
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.get_json()["error"].startswith("The form has more than 1,000 parts.")
    assert_nothing_stored(small)


def test_pages_and_json_behind_authentication_are_never_cached(make_app):
    token = "tok-" + "a" * 28
    app = make_app(API_TOKENS=token, RATE_LIMITS_ENABLED="false")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    for path, headers in [("/imports", auth), ("/", auth | {"Accept": "text/html"}), ("/imports", {})]:
        assert client.get(path, headers=headers).headers["Cache-Control"] == "no-store", path
    static = client.get("/static/css/app.css")
    static.close()
    assert "no-store" not in static.headers.get("Cache-Control", "")
    open_app = make_app(RATE_LIMITS_ENABLED="false")  # authentication off: nothing private to keep
    assert "Cache-Control" not in open_app.test_client().get("/imports").headers


def test_cr_lf_in_next_goes_home(make_app, users):
    from tests.test_auth import PASSWORD, csrf_token_of

    users()
    app = make_app(API_TOKENS="tok-" + "a" * 28, RATE_LIMITS_ENABLED="false")
    client = app.test_client()
    for target in ("/imports%0D%0ASet-Cookie:%20x=1", "/%0Aevil", "/imports%09"):
        page = client.get(f"/login?next={target}", headers={"Accept": "text/html"})
        assert page.status_code == 200
        answer = client.post(
            f"/login?next={target}",
            data={"email": "ops@example.com", "password": PASSWORD, "csrf_token": csrf_token_of(page.text)},
        )
        assert answer.status_code == 303 and answer.headers["Location"] == "/", target
        assert "x=1" not in answer.headers.get("Set-Cookie", "")
