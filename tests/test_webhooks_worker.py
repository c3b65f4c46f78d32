"""Webhooks through real worker processes: retries woken by the reconciler, and kill -9 mid-send."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from sqlalchemy import select, text

from app.extensions import QUEUE_NAME, db, redis
from app.webhooks.models import WebhookMessage
from tests.conftest import wait_for
from tests.webhook_receiver import Receiver, Reply, running_receiver

WORKER = {
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "WEBHOOK_ALLOW_HTTP": "true",
    "WEBHOOK_RETRY_SCHEDULE": "0,1,1,1,1",
    "WEBHOOK_POLL_INTERVAL": "1",
    "WEBHOOK_TIMEOUT": "2",
    "RECONCILE_INTERVAL": "1",
    "JOB_HEARTBEAT_TIMEOUT": "2",
    "RATE_LIMITS_ENABLED": "false",
}
BODY = {"source": "crm", "data": [{"name": "Ada", "email": "ada@example.com"}]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def hooks_app(make_app) -> Iterator[Flask]:
    app = make_app(**WORKER)
    with app.app_context():
        yield app
        db.session.execute(text("TRUNCATE webhook_endpoints, webhook_events CASCADE"))
        db.session.commit()


@pytest.fixture
def api(hooks_app):
    client = hooks_app.test_client()
    client.environ_base["HTTP_ACCEPT"] = "application/json"
    return client


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``: the pool's workers and their work horses."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            kids = [int(k) for k in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
        except OSError:
            continue
        found += kids
        todo += kids
    return found


def kill_tree(process) -> None:
    """SIGKILL the worker and everything under it, as a crashed machine would stop them."""
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)


def messages() -> list[WebhookMessage]:
    db.session.rollback()
    return db.session.scalars(select(WebhookMessage)).all()


def test_retries_are_woken_by_the_reconciler_in_the_worker(api, receiver, worker_process):
    endpoint = api.post("/webhooks", json={"url": receiver.url}).get_json()
    receiver.script(*[Reply(500)] * 3)
    worker_process("--concurrency", "1", **WORKER)
    job_id = api.post("/import", json=BODY).get_json()["jobId"]

    wait_for(lambda: [m for m in messages() if m.status == "delivered"], timeout=60, interval=0.2)
    assert len(receiver.received) == 4
    assert {r.headers["webhook-id"] for r in receiver.received} == {
        receiver.received[0].headers["webhook-id"]
    }
    assert receiver.received[-1].verify(endpoint["secret"])["data"]["jobId"] == job_id
    [message] = api.get(f"/webhooks/{endpoint['id']}/deliveries").get_json()["items"]
    assert [a["statusCode"] for a in message["attemptLog"]] == [500, 500, 500, 200]


def test_a_worker_killed_mid_send_delivers_after_a_restart_with_the_same_id(
    api, receiver, worker_process, redis_url
):
    endpoint = api.post("/webhooks", json={"url": receiver.url}).get_json()
    held = threading.Event()
    receiver.script(Reply(hold=held))  # the first request gets no answer while the worker dies
    first = worker_process("--concurrency", "1", **WORKER)
    job_id = api.post("/import", json=BODY).get_json()["jobId"]
    wait_for(lambda: receiver.received, timeout=60, interval=0.1)

    kill_tree(first)
    held.set()
    redis_lib.Redis.from_url(redis_url).flushdb()  # nor may it depend on a job Redis kept
    [message] = messages()
    assert message.status == "pending" and message.attempts == 1

    worker_process("--concurrency", "1", **WORKER)
    wait_for(lambda: messages()[0].status == "delivered", timeout=60, interval=0.2)
    assert len(receiver.received) == 2
    first_try, second_try = receiver.received
    assert first_try.headers["webhook-id"] == second_try.headers["webhook-id"]
    for got in receiver.received:
        assert got.verify(endpoint["secret"])["data"]["jobId"] == job_id
    [shown] = api.get(f"/webhooks/{endpoint['id']}/deliveries").get_json()["items"]
    assert [a["outcome"] for a in shown["attemptLog"]] == ["interrupted", "success"]
    assert "stopped before an answer was recorded" in shown["attemptLog"][0]["error"]


def test_an_event_committed_before_any_worker_runs_is_delivered_once_one_starts(
    api, receiver, worker_process, redis_url
):
    from rq import SimpleWorker

    endpoint = api.post("/webhooks", json={"url": receiver.url}).get_json()
    job_id = api.post("/import", json=BODY).get_json()["jobId"]
    # The import ends in this process: its commit queued a delivery job, which Redis then loses.
    SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
    redis_lib.Redis.from_url(redis_url).flushdb()
    assert receiver.received == [] and messages()[0].status == "pending"

    worker_process("--concurrency", "1", **WORKER)
    wait_for(lambda: messages()[0].status == "delivered", timeout=60, interval=0.2)
    [got] = receiver.received
    assert got.verify(endpoint["secret"])["data"]["jobId"] == job_id
