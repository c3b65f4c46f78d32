"""POST /imports/preview of a large CSV beside a 1 KB one: the preview reads only the head of a file."""

from __future__ import annotations

import http.client
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


# A wide export, as Google Contacts writes one: the review page lists and checks every column.
_WIDE_HEADER = (
    "First Name,Middle Name,Last Name,Name Prefix,Name Suffix,Nickname,File As,Organization Name,"
    "Organization Title,Organization Department,Birthday,Notes,Photo,Labels,E-mail 1 - Label,"
    "E-mail 1 - Value,"
    "E-mail 2 - Label,E-mail 2 - Value,Phone 1 - Label,Phone 1 - Value,Phone 2 - Label,Phone 2 - Value,"
    "Address 1 - Label,Address 1 - Formatted,Address 1 - Street,Address 1 - City,Address 1 - PO Box,"
    "Address 1 - Region,Address 1 - Postal Code,Address 1 - Country,Website 1 - Label,Website 1 - Value"
)


def _page_ms(stack: Stack, path: str, repeats: int) -> float:
    """Median milliseconds of a page, as a browser asks for it."""
    times = []
    for _ in range(repeats):
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
        started = time.perf_counter()
        conn.request("GET", path, headers={"Accept": "text/html", **AUTHORIZATION})
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - started)
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
    return statistics.median(times) * 1000


def review_page(stack: Stack, results: object, workdir: Path, repeats: int = 5) -> None:
    """The review page of a 32-column export held in review, beside the page of a finished import."""
    rows = [
        f"Person,{i},Lovelace,,,,,Firm {i},Engineer,,,,,* myContacts,* Work,p{i}@example.com,,,Mobile,"
        f"+44 20 7946 {i:04d},,,,,,London,,,,UK,,"
        for i in range(500)
    ]
    wide = workdir / "review-wide.csv"
    wide.write_text(_WIDE_HEADER + "\n" + "\n".join(rows) + "\n")
    status, answer = stack.request(
        "POST",
        "/import",
        body=wide.read_bytes(),
        headers={"X-Source": "bench-review", "X-Review": "true", "Content-Type": "text/csv"},
    )
    if status != 202:
        raise RuntimeError(f"POST /import answered {status}: {answer}")
    held = answer["jobId"]
    done = stack.post_file(wide, "bench-review-done")
    stack.wait(done)
    review_ms = _page_ms(stack, f"/imports/{held}", repeats)
    done_ms = _page_ms(stack, f"/imports/{done}", repeats)
    results.figures["review_page"] = {"review_ms": review_ms, "import_page_ms": done_ms}  # type: ignore[attr-defined]
    results.add(  # type: ignore[attr-defined]
        "review page of a 32-column export (ms)",
        f"{review_ms:,.1f}",
        f"import page {done_ms:,.1f}",
        f"{review_ms / done_ms:.2f}",
        f"< 200 ms {'met' if review_ms < 200 else 'MISSED'}",
    )


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
    review_page(stack, results, workdir, repeats)
