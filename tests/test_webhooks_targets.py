"""Where webhooks may go, how the address is pinned, and how the signatures read; no app needed."""

from __future__ import annotations

import datetime as dt
import ipaddress
import multiprocessing
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from app.webhooks.sending import post, retry_after
from app.webhooks.settings import WebhookSettings
from app.webhooks.signing import (
    BadSecret,
    new_secret,
    rotated,
    secret_bytes,
    signature_header,
    signing_secrets,
)
from app.webhooks.targets import Target, TargetRefused, check_url, refusal_for, resolve
from tests.webhook_receiver import running_receiver

STRICT = WebhookSettings()
OPEN = WebhookSettings(allow_private=True, allow_http=True)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.8", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private or reserved"),
        ("fc00::1", "private"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("0.0.0.0", "not an address"),
        ("224.0.0.1", "not an address"),
    ],
)
def test_addresses_that_are_not_public_are_refused(address, why):
    assert why in refusal_for(ipaddress.ip_address(address), STRICT)


def test_the_switch_allows_private_networks_but_never_metadata():
    assert refusal_for(ipaddress.ip_address("10.0.0.8"), OPEN) is None
    assert refusal_for(ipaddress.ip_address("127.0.0.1"), OPEN) is None
    assert "metadata" in refusal_for(ipaddress.ip_address("169.254.169.254"), OPEN)
    assert refusal_for(ipaddress.ip_address("93.184.215.14"), STRICT) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/x", "WEBHOOK_ALLOW_HTTP"),
        ("https://localhost/x", "WEBHOOK_ALLOW_PRIVATE"),
        ("https://[::1]:8443/x", "loopback"),
        ("https://u:p@example.com/x", "password"),
        ("https:///x", "must name a host"),
        ("https://example.com:99999/x", "not a valid URL"),
        ("https://exa mple.com/", "spaces"),
        ("javascript:alert(1)", "https://"),
        ("https://example.com/" + "a" * 2000, "at most 2000"),
    ],
)
def test_urls_are_checked_when_added(url, message):
    with pytest.raises(TargetRefused, match=message):
        check_url(url, STRICT)


def test_a_name_is_resolved_once_and_judged_by_its_address():
    with pytest.raises(TargetRefused, match="loopback"):
        resolve("https://localhost./hook", WebhookSettings(allow_http=True, allow_private=False))
    target = resolve("http://localhost:8080/hook?x=1", OPEN)
    assert target.host == "localhost" and target.port == 8080 and target.path == "/hook?x=1"
    assert ipaddress.ip_address(target.address).is_loopback
    with pytest.raises(TargetRefused, match="could not be resolved"):
        resolve("https://no-such-host.invalid/hook", STRICT)


@contextmanager
def dripping_server() -> Iterator[int]:
    """A server that answers every request a byte every 0.2 s, so no single read ever times out."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return  # cut by the client

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


def _post_to(port: int, timeout: float) -> tuple[str, float]:
    started = time.monotonic()
    answer = post(Target("http", "127.0.0.1", port, "/hook", "127.0.0.1"), {}, b"{}", timeout=timeout)
    return answer.outcome, time.monotonic() - started


def _post_in_child(port: int, results: multiprocessing.Queue) -> None:
    results.put(_post_to(port, 1))


def test_an_answer_dripped_a_byte_at_a_time_is_cut_at_the_timeout_also_in_a_forked_process():
    with dripping_server() as port:
        # Several at once, each cut at its own deadline by the one watchdog.
        with ThreadPoolExecutor(4) as pool:
            cut = list(pool.map(lambda timeout: _post_to(port, timeout), [1, 1.5, 1, 2]))
        assert [outcome for outcome, _ in cut] == ["timeout"] * 4
        assert all(
            timeout <= took < timeout + 1 for (_, took), timeout in zip(cut, [1, 1.5, 1, 2], strict=True)
        )
        # A work horse is forked from a worker whose watchdog may be running: it watches its own.
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        child = context.Process(target=_post_in_child, args=(port, results))
        child.start()
        outcome, took = results.get(timeout=10)
        child.join(10)
        assert outcome == "timeout" and 1 <= took < 2


def test_the_request_goes_to_the_pinned_address_with_the_name_as_host():
    with running_receiver() as receiver:
        port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
        # The name resolves nowhere: only the pinned address can have been used.
        target = Target("http", "hooks.example.invalid", port, "/hook", "127.0.0.1")
        answer = post(target, {"webhook-id": "msg_1"}, b"{}", timeout=5)
        assert answer.outcome == "success" and answer.status_code == 200
        assert receiver.received[0].headers["Host"] == f"hooks.example.invalid:{port}"


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_checks_the_certificate_against_the_name_over_the_pinned_address(tmp_path, monkeypatch):
    pytest.importorskip("cryptography")
    cert, key = _certificate(tmp_path, "hooks.example.invalid")
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_port
        target = Target("https", "hooks.example.invalid", port, "/hook", "127.0.0.1")
        untrusted = post(target, {}, b"{}", timeout=5)
        assert untrusted.outcome == "unreachable" and "certificate" in untrusted.error

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the receiver's certificate is now trusted
        assert post(target, {}, b"{}", timeout=5).status_code == 204
        assert seen == [f"hooks.example.invalid:{port}"]
        wrong_name = Target("https", "other.example.invalid", port, "/hook", "127.0.0.1")
        refused = post(wrong_name, {}, b"{}", timeout=5)
        assert refused.outcome == "unreachable" and "certificate" in refused.error
    finally:
        server.shutdown()
        server.server_close()


def test_secrets_and_signatures_follow_standard_webhooks():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret_bytes(secret)) == 32
    for bad in ("whsec_", "whsec_!!!!", "whsec_" + "QUJD" * 4, "nope", "whsec_" + "A" * 100):
        with pytest.raises(BadSecret):
            secret_bytes(bad)
    body = b'{"type":"ping","timestamp":"2026-12-01T00:00:00Z","data":{}}'
    now = int(dt.datetime.now(dt.UTC).timestamp())
    header = signature_header([secret], "msg_1", now, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": header}
    assert Webhook(secret).verify(body, headers)["type"] == "ping"


def test_rotation_keeps_the_old_secret_for_a_day_and_then_drops_it():
    first = new_secret()
    now = dt.datetime.now(dt.UTC)
    second, old = rotated(first, [], now)
    assert signing_secrets(second, old, now) == [second, first]
    assert signing_secrets(second, old, now + dt.timedelta(hours=23)) == [second, first]
    assert signing_secrets(second, old, now + dt.timedelta(hours=25)) == [second]
    third, older = rotated(second, old, now + dt.timedelta(hours=1))
    assert signing_secrets(third, older, now + dt.timedelta(hours=2)) == [third, second, first]


def test_retry_after_reads_seconds_and_dates():
    assert retry_after("120") == 120
    assert (
        retry_after(
            "Wed, 01 Dec 2026 12:00:30 GMT", now=dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC).timestamp()
        )
        == 30
    )
    assert retry_after("soon") is None and retry_after(None) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOK_RETRY_SCHEDULE", "0,5s,soon"),
        ("WEBHOOK_TIMEOUT", "0"),
        ("WEBHOOK_CONCURRENCY", "0"),
        ("WEBHOOK_ALLOW_PRIVATE", "maybe"),
        ("WEBHOOK_DISABLE_AFTER", "-1d"),
    ],
)
def test_webhook_settings_are_checked_at_start(name, value):
    from app.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=name):
        load_settings({"SECRET_KEY": "k", name: value}, instance=Path("/nonexistent-instance"))


def test_the_schedule_reads_durations():
    from app.config import load_settings

    config = load_settings({"SECRET_KEY": "k"}, instance=Path("/nonexistent-instance")).webhooks
    assert config.schedule == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert config.timeout == 15 and config.disable_after == 5 * 86400 and not config.allow_private
