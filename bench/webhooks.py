"""The webhook step: events delivered to a local receiver, beside plain POSTs from one client."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.run import Results
    from bench.stack import Stack


class Counter:
    """Counts the POSTs a receiver took, and wakes a waiter at a given count."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        self.target = 0
        self.reached = threading.Event()

    def expect(self, count: int) -> None:
        with self.lock:
            self.count, self.target = 0, count
            self.reached.clear()

    def hit(self) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.target:
                self.reached.set()


@contextmanager
def receiver() -> Iterator[tuple[str, Counter]]:
    """A threaded HTTP server on loopback answering 204 to every POST; its URL and counter."""
    counter = Counter()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.end_headers()
            counter.hit()

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        # Read by the constructor's listen(): set on the instance afterwards, the backlog stays 5,
        # and connections beyond it wait a second for their SYN to be sent again.
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", counter
    finally:
        server.shutdown()
        server.server_close()


def _plain_posts(url: str, body: bytes, count: int) -> float:
    """Seconds for ``count`` POSTs of the body, one after another, each on its own connection."""
    port = int(url.split(":")[2].split("/")[0])
    started = time.perf_counter()
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/hook", body=body, headers={"Content-Type": "application/json"})
        conn.getresponse().read()
        conn.close()
    return time.perf_counter() - started


def _record_events(stack: Stack, count: int) -> tuple[bytes, float]:
    """Write ``count`` ended imports with their events in one transaction and commit it.

    Returns one event's body (for the plain POSTs) and the moment just before the commit.
    """
    from app import create_app
    from app.extensions import db
    from app.models import Import, utcnow
    from app.webhooks import record_event
    from app.webhooks.models import WebhookEvent

    app = create_app({k: v for k, v in stack.env.items() if isinstance(v, str)})
    with app.app_context():
        for n in range(count):
            imp = Import(
                source="bench-webhooks",
                filename=f"events-{n}.csv",
                status="completed",
                processed_rows=1,
                inserted_rows=1,
                finished_at=utcnow(),
            )
            db.session.add(imp)
            db.session.flush()
            record_event(db.session, imp, "import.completed")
        body = db.session.scalars(db.select(WebhookEvent.payload).limit(1)).one().encode()
        committed = time.perf_counter()
        db.session.commit()  # its after-commit hook queues the delivery job
        db.engine.dispose()
    return body, committed


def webhooks(stack: Stack, results: Results, count: int) -> None:
    """``count`` events from commit to the last one received, beside as many plain POSTs."""
    stack.wait_idle()
    with receiver() as (url, counter):
        status, endpoint = stack.request(
            "POST",
            "/webhooks",
            json.dumps({"url": url, "events": ["import.completed"]}),
            {"Content-Type": "application/json"},
        )
        if status != 201:
            raise RuntimeError(f"POST /webhooks answered {status}: {endpoint}")
        counter.expect(count)
        body, committed = _record_events(stack, count)
        if not counter.reached.wait(600):
            raise RuntimeError(f"only {counter.count} of {count} webhooks arrived")
        delivered = time.perf_counter() - committed
        counter.expect(count)
        plain = _plain_posts(url, body, count)
        stack.request("DELETE", f"/webhooks/{endpoint['id']}")
    rate, baseline = count / delivered, count / plain
    results.figures["webhooks"] = {
        "events": count,
        "delivery_seconds": delivered,
        "plain_post_seconds": plain,
        "deliveries_per_s": rate,
        "plain_posts_per_s": baseline,
    }
    results.add(
        f"webhooks, {count:,} events from commit to received (deliveries/s)",
        f"{rate:,.0f}",
        f"plain POSTs, one client {baseline:,.0f}",
        f"{rate / baseline:.2f}",
    )
