"""One HTTP POST of a signed message to the address its target resolved to; no redirects followed."""

from __future__ import annotations

import contextlib
import functools
import heapq
import http.client
import itertools
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from app.models import aware
from app.webhooks.targets import Target

# Read this much of an answer at most; keep the first part of it in the log.
READ_LIMIT = 4096
KEPT = 1024
USER_AGENT = "DataFlow-Webhooks/1"


@dataclass(frozen=True)
class Answer:
    """What one attempt came to."""

    outcome: str  # success, failure, gone, timeout, unreachable
    status_code: int | None = None
    duration_ms: int = 0
    response: str | None = None
    error: str | None = None
    retry_after: float | None = None


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait (delta seconds or an HTTP date), None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, aware(when).timestamp() - (now if now is not None else datetime.now(UTC).timestamp()))


@functools.lru_cache(maxsize=4)
def _tls(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """The TLS context of the system's trust store, or of the one SSL_CERT_FILE or SSL_CERT_DIR names.

    OpenSSL reads those two when the context loads its certificates; they are the arguments so that
    a context is made once per trust store. Loading the system's took 35 to 98 ms here, more than
    the delivery. A context is safe to share between threads.
    """
    return ssl.create_default_context()


class _Watchdog:
    """One thread that ends each exchange still going at its deadline.

    A server that drips its answer a byte at a time would outlast per-read timeouts, so every
    exchange has a deadline; a timer thread of its own per POST cost 1 ms here, this one thread none.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Nothing watched and no thread yet: so it is in a new process, and in a forked child."""
        self._wake = threading.Condition()
        self._deadlines: list[tuple[float, int]] = []  # a heap; released keys are left in it
        self._live: dict[int, http.client.HTTPConnection] = {}
        self._keys = itertools.count()
        self._started = False

    def watch(self, conn: http.client.HTTPConnection, timeout: float) -> int:
        """Cut ``conn`` in ``timeout`` seconds unless ``release`` comes first; the key to release it."""
        with self._wake:
            if not self._started:
                threading.Thread(target=self._run, name="webhook-watchdog", daemon=True).start()
                self._started = True
            key = next(self._keys)
            heapq.heappush(self._deadlines, (time.monotonic() + timeout, key))
            self._live[key] = conn
            if self._deadlines[0][1] == key:  # the thread sleeps until a later deadline, or for good
                self._wake.notify()
            return key

    def release(self, key: int) -> None:
        with self._wake:
            self._live.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._deadlines and self._deadlines[0][1] not in self._live:
                    heapq.heappop(self._deadlines)  # released before its time
                if not self._deadlines:
                    self._wake.wait()
                    continue
                deadline, key = self._deadlines[0]
                if time.monotonic() < deadline:
                    self._wake.wait(deadline - time.monotonic())
                    continue
                heapq.heappop(self._deadlines)
                conn = self._live.pop(key)
            _cut(conn)


_watchdog = _Watchdog()
# A forked child (RQ's work horse) has none of its parent's threads, and may find the lock held.
os.register_at_fork(after_in_child=_watchdog.reset)


def _connection(target: Target, timeout: float) -> http.client.HTTPConnection:
    """A connection to the target's host name whose socket goes to its resolved address.

    The Host header, TLS SNI and the certificate check all use the name; only the TCP
    connection is pinned, so no second DNS lookup can happen.
    """
    if target.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            target.host,
            target.port,
            timeout=timeout,
            context=_tls(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")),
        )
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    address = target.address

    def pinned(_where: tuple, timeout: float, source: tuple | None = None) -> socket.socket:
        return socket.create_connection((address, target.port), timeout, source)

    conn._create_connection = pinned  # type: ignore[attr-defined]  (http.client's own hook)
    return conn


def post(target: Target, headers: dict[str, str], body: bytes, timeout: float) -> Answer:
    """POST the body; the whole exchange, connect to last byte read, ends within ``timeout``."""
    started = time.monotonic()
    conn = _connection(target, timeout)
    watched = _watchdog.watch(conn, timeout)

    def elapsed_ms() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        conn.request(
            "POST",
            target.path,
            body=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        )
        response = conn.getresponse()
        data = response.read(READ_LIMIT)
        status = response.status
        wait = retry_after(response.getheader("Retry-After")) if status in (429, 503) else None
    except TimeoutError:
        return Answer("timeout", duration_ms=elapsed_ms(), error=f"No answer within {timeout:g} s")
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() - started >= timeout:
            return Answer("timeout", duration_ms=elapsed_ms(), error=f"No answer within {timeout:g} s")
        return Answer("unreachable", duration_ms=elapsed_ms(), error=_describe(exc))
    finally:
        _watchdog.release(watched)
        conn.close()
    text = data[:KEPT].decode("utf-8", errors="replace")
    if 200 <= status < 300:
        outcome = "success"
    elif status == 410:
        outcome = "gone"
    else:
        outcome = "failure"
    error = None
    if 300 <= status < 400:
        error = f"Redirects are not followed (Location: {response.getheader('Location') or 'none'})"
    return Answer(outcome, status, elapsed_ms(), text, error, wait)


def _cut(conn: http.client.HTTPConnection) -> None:
    """End a connection that has run out of time; the reading thread then sees it closed."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"The TLS certificate was refused: {exc.verify_message}"
    if isinstance(exc, ConnectionRefusedError):
        return "The connection was refused"
    return f"{type(exc).__name__}: {exc}"[:500]
