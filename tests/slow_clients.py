"""Slow clients on loopback: sockets that trickle request headers or bodies, and a normal client's timings.

Used by the test of the web server; ``python -m tests.slow_clients http://127.0.0.1:8000`` prints the
figures against a running server.
"""

from __future__ import annotations

import http.client
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CSV = b"name,email\nAda Lovelace,ada@example.com\n"


@dataclass
class Trickle:
    """Sockets that each send a little more of a request every ``interval`` seconds, reconnecting when cut."""

    host: str
    port: int
    headers: int
    bodies: int
    uploads: int = 0  # tus PATCHes whose chunk trickles in (cut ones are not started again)
    interval: float = 0.5
    stop: threading.Event = field(default_factory=threading.Event)
    reconnects: int = 0

    def _upload(self) -> socket.socket | None:
        """Create a tus upload, then start a PATCH of its bytes and send none of them yet."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.request(
                "POST",
                "/uploads",
                headers={
                    "Tus-Resumable": "1.0.0",
                    "Upload-Length": "10000000",
                    "Upload-Metadata": "source c2xvdw==",
                },
            )
            answer = connection.getresponse()
            answer.read()
            location = answer.headers["Location"]
        except (OSError, TypeError):
            return None
        finally:
            connection.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=5)
            sock.sendall(
                f"PATCH {urlsplit(location).path} HTTP/1.1\r\nHost: slow\r\nTus-Resumable: 1.0.0\r\n"
                "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                "Content-Length: 10000000\r\n\r\n".encode()
            )
            sock.setblocking(False)
            return sock
        except OSError:
            return None

    def _open(self, body: bool | None) -> socket.socket | None:
        if body is None:
            return self._upload()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=5)
            if body:
                sock.sendall(
                    b"POST /import HTTP/1.1\r\nHost: slow\r\nX-Source: slow\r\nAccept: application/json\r\n"
                    b"Content-Type: text/csv\r\nContent-Length: 10000000\r\n\r\nname,email\n"
                )
            else:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: slow\r\n")
            sock.setblocking(False)
            return sock
        except OSError:
            return None

    def _run(self) -> None:
        kinds: list[bool | None] = [False] * self.headers + [True] * self.bodies + [None] * self.uploads
        socks: list[socket.socket | None] = [self._open(body) for body in kinds]
        while not self.stop.wait(self.interval):
            for index, body in enumerate(kinds):
                sock = socks[index]
                try:
                    if sock is None:
                        raise OSError
                    sock.send(b"X-Slow: 1\r\n" if body is False else b"x")
                except OSError:
                    if sock is not None:
                        sock.close()
                    if body is None:  # a refused upload is not started again
                        socks[index] = None
                        continue
                    self.reconnects += 1
                    socks[index] = self._open(body)
        for sock in socks:
            if sock is not None:
                sock.close()

    def __enter__(self) -> Trickle:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join()


def timed(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes | None,
    limit: float,
    content_type: str = "text/csv",
) -> float:
    """Seconds a normal client waits for a whole answer; ``inf`` when none comes within ``limit``."""
    start = time.monotonic()
    connection = http.client.HTTPConnection(host, port, timeout=limit)
    headers = {"Accept": "application/json"}
    if body is not None:
        headers |= {"X-Source": "normal", "Content-Type": content_type}
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status >= 500:
            return float("inf")
    except OSError:
        return float("inf")
    finally:
        connection.close()
    return time.monotonic() - start


def probe(base: str, rounds: int = 8, pause: float = 0.5, limit: float = 5.0) -> dict[str, list[float]]:
    """Time ``GET /health`` and a small ``POST /import`` ``rounds`` times, ``pause`` seconds apart."""
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    figures: dict[str, list[float]] = {"health": [], "import": []}
    for _ in range(rounds):
        figures["health"].append(timed(host, port, "GET", "/health", None, limit))
        figures["import"].append(timed(host, port, "POST", "/import", CSV, limit))
        time.sleep(pause)
    return figures


def main() -> None:
    """Print the normal client's timings with slow-header, slow-body and slow-upload clients connected."""
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
    parts = urlsplit(base)
    uploads = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    with Trickle(
        parts.hostname or "127.0.0.1", parts.port or 80, headers=50, bodies=50, uploads=uploads
    ) as trickle:
        time.sleep(2)
        figures = probe(base)
    for name, values in figures.items():
        shown = ", ".join("timeout" if v == float("inf") else f"{v * 1000:.0f}" for v in values)
        print(f"{name:7} ms: {shown}")
    print(f"slow clients reconnected {trickle.reconnects} times")


if __name__ == "__main__":
    main()
