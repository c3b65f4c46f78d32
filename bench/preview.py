"""POST /imports/preview of a large CSV beside a 1 KB one: the preview reads only the head of a file."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from pathlib import Path

from bench.stack import AUTHORIZATION, Stack

MB = 1024 * 1024
_BLOCK_ROWS = 20_000


def write_large_csv(path: Path, size: int) -> Path:
    """A CSV of about ``size`` bytes: a header, then the same block of contacts over and over."""
    if path.exists() and path.stat().st_size >= size:
        return path
    block = "".join(
        f"Person {i},person.{i:08d}@example.com,+44 20 7946 {i % 10000:04d}\n" for i in range(_BLOCK_ROWS)
    )
    data = block.encode()
    partial = path.with_suffix(".part")
    with open(partial, "wb") as out:
        out.write(b"Name,Email,Phone\n")
        written = 0
        while written < size:
            out.write(data)
            written += len(data)
    partial.replace(path)
    return path


def _answer_seconds(stack: Stack, path: Path) -> float:
    """Seconds from the first byte sent to the whole answer read, while the body is still being sent.

    The body goes from a thread, as a client streams a file; the answer arrives once the server has
    read what it needs. The connection is then closed, so the rest of the file is never sent.
    """
    size = path.stat().st_size
    head = (
        f"POST /imports/preview HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {size}\r\nX-Source: bench-preview\r\nAccept: application/json\r\n"
        f"Authorization: {AUTHORIZATION['Authorization']}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=120)

    def send() -> None:
        try:
            with open(path, "rb") as f:
                sock.sendall(head)
                while chunk := f.read(MB):
                    sock.sendall(chunk)
        except OSError:
            pass  # the server answered and the connection closed: the rest is not needed

    started = time.perf_counter()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        headers, _, body = answer.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in headers.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        while len(body) < length:
            body += sock.recv(65536)
        elapsed = time.perf_counter() - started
    finally:
        sock.close()
    sender.join(timeout=30)
    if not headers.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"POST /imports/preview answered {headers.splitlines()[0]!r}: {body[:300]!r}")
    return elapsed


def preview(stack: Stack, results: object, workdir: Path, size: int, repeats: int = 5) -> None:
    """Median answer time of a preview of a 1 KB CSV and of a ``size``-byte one, and their ratio."""
    small = workdir / "preview-1kb.csv"
    small.write_bytes(
        b"Name,Email,Phone\n"
        + b"".join(b"Person %d,p%d@example.com,+44 20 7946 0000\n" % (i, i) for i in range(25))[:1000]
    )
    large = write_large_csv(workdir / f"preview-{size // MB}mb.csv", size)
    small_times, large_times = [], []
    for _ in range(repeats):
        small_times.append(_answer_seconds(stack, small))
        large_times.append(_answer_seconds(stack, large))
    little, big = statistics.median(small_times), statistics.median(large_times)
    results.figures["preview"] = {  # type: ignore[attr-defined]
        "large_bytes": large.stat().st_size,
        "small_seconds": small_times,
        "large_seconds": large_times,
    }
    results.add(  # type: ignore[attr-defined]
        f"preview of a {large.stat().st_size / MB:,.0f} MB CSV (ms)",
        f"{big * 1000:,.1f}",
        f"1 KB CSV {little * 1000:,.1f}",
        f"{big / little:.2f}",
        f"< 1 s {'met' if big < 1 else 'MISSED'}",
    )
