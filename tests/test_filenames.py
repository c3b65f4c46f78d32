"""Filenames people use, through the real web server: any script, emoji, and CR/LF, on every way in."""

from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import quote, urlsplit

import pytest

from app.filenames import ascii_fallback, clean_filename, content_disposition

CSV = b"name,email\nAda Lovelace,ada@example.com\nBad,not-an-email\n"
NAMES = ["контакты.csv", "日本語.csv", "📇 list.csv", "März\r\nkontakte.csv", "evil\r\nSet-Cookie: x=1.csv"]


def test_a_filename_loses_its_control_characters_and_keeps_its_letters():
    assert clean_filename("контакты.csv") == "контакты.csv"
    assert clean_filename("a\r\nb\x00c\x1b.csv") == "a bc.csv"
    assert clean_filename("\u202etxt.exe") == "txt.exe"  # no right-to-left override to disguise it
    family = "👨\u200d👩\u200d👧.csv"
    assert clean_filename(family) == family  # the joiners inside an emoji stay
    assert clean_filename("\r\n") is None
    assert ascii_fallback("Zoë Ünal.csv") == "Zoe Unal.csv"
    assert ascii_fallback("日本語.csv") == "download.csv"
    assert content_disposition("plain.csv") == 'attachment; filename="plain.csv"'
    quoted = content_disposition('a"b\\c.csv')
    assert quoted == "attachment; filename=\"a_b_c.csv\"; filename*=UTF-8''a%22b%5Cc.csv"


class Server:
    """A real gunicorn on loopback, spoken to with http.client so every byte of a header is ours."""

    def __init__(self, base: str) -> None:
        self.host, self.port = urlsplit(base).hostname, urlsplit(base).port

    def send(self, method: str, path: str, body: bytes = b"", headers: dict | None = None):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            headers = {"Accept": "application/json", **(headers or {})}
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.headers, answer.read()
        finally:
            connection.close()


@pytest.fixture
def server(web_server, make_app) -> Server:
    make_app()  # so the tables are emptied after the test
    return Server(web_server(RATE_LIMITS_ENABLED="false"))


def multipart(filename: str) -> tuple[bytes, str]:
    """A form as a browser sends it: the name in UTF-8, and in filename* when it holds CR or LF."""
    if "\r" in filename or "\n" in filename:
        disposition = f"filename*=UTF-8''{quote(filename)}".encode()
    else:
        disposition = b'filename="' + filename.encode() + b'"'
    body = (
        b'--B\r\nContent-Disposition: form-data; name="source"\r\n\r\ncrm\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; ' + disposition + b"\r\n"
        b"Content-Type: text/csv\r\n\r\n" + CSV + b"\r\n--B--\r\n"
    )
    return body, "multipart/form-data; boundary=B"


def started(server: Server, how: str, filename: str) -> str:
    """Start an import whose file has this name, by one of the three ways in; return its id."""
    if how == "multipart":
        body, content_type = multipart(filename)
        status, headers, answer = server.send("POST", "/import", body, {"Content-Type": content_type})
    elif how == "stream":
        # Headers cannot carry CR or LF: a stream's name arrives without them or not at all.
        raw = filename.replace("\r", "").replace("\n", " ").encode()
        status, headers, answer = server.send("POST", "/import", CSV, {"X-Source": "crm", "X-Filename": raw})
    else:
        metadata = ",".join(
            f"{key} {base64.b64encode(value.encode()).decode()}"
            for key, value in {"source": "crm", "filename": filename}.items()
        )
        status, headers, answer = server.send(
            "POST",
            "/uploads",
            CSV,
            {
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(CSV)),
                "Upload-Metadata": metadata,
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert status == 201, answer
        return headers["X-Import-Id"]
    assert status == 202, answer
    return json.loads(answer)["jobId"]


@pytest.mark.parametrize("how", ["multipart", "stream", "tus"])
def test_every_filename_downloads_its_rejected_rows_through_gunicorn(server, how):
    for filename in NAMES:
        job_id = started(server, how, filename)
        status, _, answer = server.send("GET", f"/imports/{job_id}")
        shown = json.loads(answer)["filename"]
        assert shown == clean_filename(filename.replace("\r", "").replace("\n", " "))
        assert "\r" not in shown and "\n" not in shown

        status, headers, body = server.send("GET", f"/imports/{job_id}/rejected.csv")
        assert status == 200, (filename, body[:200])
        assert headers["Content-Type"] == "text/csv; charset=utf-8"
        disposition = headers["Content-Disposition"]
        assert disposition.isascii() and "\r" not in disposition and "\n" not in disposition
        stem = shown.rsplit(".", 1)[0]
        assert disposition.endswith("filename*=UTF-8''" + quote(f"{stem}-rejected.csv", safe=""))
        assert body.startswith("\ufeff".encode())
        assert "Set-Cookie" not in headers
