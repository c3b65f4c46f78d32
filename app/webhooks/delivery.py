"""Delivery: claim due messages with a fenced lease, send them from threads, record each answer.

PostgreSQL holds every message's next attempt time. A job drains what is due; the worker's
reconciler queues a job whenever something is due and none waits, so a lost Redis job or a
worker killed mid-send only delays a message, which then goes out with the same webhook-id.
"""

from __future__ import annotations

import logging
import queue as queues
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis.exceptions
from rq import Queue
from sqlalchemy import and_, or_, select, update

from app.extensions import db, settings
from app.extensions import redis as redis_connection
from app.models import utcnow
from app.webhooks.answers import record, relaxed_commit, release
from app.webhooks.models import (
    WebhookAttempt,
    WebhookEndpoint,
    WebhookEvent,
    WebhookMessage,
)
from app.webhooks.sending import Answer, post
from app.webhooks.settings import WebhookSettings
from app.webhooks.signing import signature_header, signing_secrets
from app.webhooks.targets import TargetRefused, resolve

log = logging.getLogger(__name__)

QUEUE_NAME = "webhooks"
# A job stops claiming after this long and hands what is left to a new job, so others get a turn.
DRAIN_BUDGET = 120.0
# Claimed work, in rounds of WEBHOOK_CONCURRENCY messages. A job claims up to CLAIMED rounds and
# claims again when its threads are down to REFILL; it records answers once RECORDED rounds are in
# (or when it must claim). A claim's or a record's statements cost about as much for 48 messages
# as for 8, so the job's own thread does each seldom and the threads always have work queued.
CLAIMED = 8
REFILL = 2
RECORDED = 6
# How long the loop waits for one more answer before recording those that are in.
GATHER = 0.01


def queue() -> Queue:
    """The RQ queue delivery jobs go on (the workers take it before the imports queue)."""
    return Queue(QUEUE_NAME, connection=redis_connection())


def wake() -> None:
    """Queue a delivery job; if Redis cannot take it, the reconciler queues one soon."""
    try:
        queue().enqueue_call(
            "app.jobs.deliver_webhooks",
            job_id=f"webhooks-{uuid.uuid4().hex}",
            timeout=int(DRAIN_BUDGET + 4 * settings().webhooks.timeout + 60),
            result_ttl=0,
            failure_ttl=86400,
        )
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("could not queue a webhook delivery job, the reconciler will: %s", exc)


def _due(now: datetime):
    return and_(
        WebhookMessage.status == "pending",
        WebhookMessage.next_attempt_at <= now,
        or_(WebhookMessage.lease_until.is_(None), WebhookMessage.lease_until < now),
    )


def enqueue_due() -> bool:
    """Queue a delivery job when a message is due and no job waits for a worker; True if queued."""
    if queue().count:
        return False
    now = utcnow()
    due = select(WebhookMessage.id).join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
    if not db.session.scalar(select(due.where(_due(now), WebhookEndpoint.enabled.is_(True)).exists())):
        return False
    wake()
    return True


@dataclass(frozen=True)
class Claim:
    """A message this run holds the lease of, with what sending it needs."""

    message_id: str
    token: str
    number: int
    event_id: str
    payload: str
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]


def _lease(config: WebhookSettings) -> timedelta:
    # Longer than a claimed message can wait for a thread and then be sent: the rounds claimed
    # ahead of it, then its own exchange, each cut at the timeout.
    return timedelta(seconds=(CLAIMED + 1) * config.timeout + 5)


def claim(limit: int, config: WebhookSettings) -> list[Claim]:
    """Take up to ``limit`` due messages of enabled endpoints, committed before any is sent.

    Rows are locked with SKIP LOCKED (PostgreSQL) and each is taken by an UPDATE that checks it is
    still due under a new lease token, so two workers never hold one message at once.
    """
    now = utcnow()
    rows = db.session.execute(
        select(
            WebhookMessage.id,
            WebhookMessage.attempts,
            WebhookMessage.lease_until,
            WebhookEvent.id,
            WebhookEvent.payload,
            WebhookEndpoint.id,
            WebhookEndpoint.url,
            WebhookEndpoint.secret,
            WebhookEndpoint.old_secrets,
        )
        .join(WebhookEvent, WebhookEvent.id == WebhookMessage.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
        .where(_due(now), WebhookEndpoint.enabled.is_(True))
        .order_by(WebhookMessage.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookMessage)
    ).all()
    if not rows:
        db.session.rollback()
        return []
    relaxed_commit()
    token = uuid.uuid4().hex
    # One statement takes them all; it checks each is still due, so on SQLite (no row locks) a
    # message another process took in between is simply not returned.
    taken = set(
        db.session.scalars(
            update(WebhookMessage)
            .where(WebhookMessage.id.in_([row[0] for row in rows]), _due(now))
            .values(lease_until=now + _lease(config), lease_token=token, attempts=WebhookMessage.attempts + 1)
            .returning(WebhookMessage.id)
        )
    )
    claims = []
    for message_id, attempts, lease_until, event_id, payload, endpoint_id, url, secret, old in rows:
        if message_id not in taken:
            continue
        if lease_until is not None and attempts:
            # A lease that ran out: the worker that held it died before it recorded an answer.
            db.session.add(
                WebhookAttempt(
                    message_id=message_id,
                    number=attempts,
                    started_at=lease_until - _lease(config),
                    outcome="interrupted",
                    error="The worker sending it stopped before an answer was recorded; "
                    "it is sent again with the same webhook-id.",
                )
            )
        keys = tuple(signing_secrets(secret, old, now))
        claims.append(Claim(message_id, token, attempts + 1, event_id, payload, endpoint_id, url, keys))
    db.session.commit()
    return claims


def attempt(claimed: Claim, config: WebhookSettings) -> Answer:
    """Resolve, sign and send one message; touches no database (it runs in a thread)."""
    try:
        target = resolve(claimed.url, config)
    except TargetRefused as exc:
        return Answer("refused", error=str(exc))
    body = claimed.payload.encode()
    timestamp = int(time.time())
    headers = {
        "webhook-id": claimed.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(list(claimed.secrets), claimed.event_id, timestamp, body),
    }
    return post(target, headers, body, config.timeout)


def _stopping() -> bool:
    from app.imports.runs import handback_requested  # set in a work horse asked to stop

    return handback_requested.is_set()


def drain() -> int:
    """Send due messages, ``WEBHOOK_CONCURRENCY`` at a time, until none is due; how many were sent.

    Once the job is asked to stop or has used its DRAIN_BUDGET, it claims no more, and what no
    thread has started goes back, due at once, for the next job.
    """
    config = settings().webhooks
    deadline = time.monotonic() + DRAIN_BUDGET

    def over() -> bool:
        return time.monotonic() > deadline or _stopping()

    sent = 0
    in_flight: dict[Future[Answer | None], tuple[Claim, datetime]] = {}
    answered: queues.SimpleQueue[Future[Answer | None]] = queues.SimpleQueue()
    with ThreadPoolExecutor(config.concurrency, thread_name_prefix="webhook") as pool:
        while True:
            if not over() and len(in_flight) <= REFILL * config.concurrency:
                for claimed in claim(CLAIMED * config.concurrency - len(in_flight), config):
                    future = pool.submit(_send_unless, over, claimed, config)
                    in_flight[future] = (claimed, utcnow())
                    future.add_done_callback(answered.put)
            if not in_flight:
                break
            answers, unsent = [], []
            for future in _gather(answered, in_flight, config.concurrency, over):
                claimed, at = in_flight.pop(future)
                answer = future.result()
                if answer is None:
                    unsent.append(claimed)
                else:
                    answers.append((claimed, answer, at))
            record(answers, config)
            release(unsent)
            db.session.commit()
            sent += len(answers)
    if over():
        enqueue_due()
    return sent


def _send_unless(over: Callable[[], bool], claimed: Claim, config: WebhookSettings) -> Answer | None:
    """In a thread: send the message, or None once the job is over (it goes back)."""
    return None if over() else attempt(claimed, config)


def _gather(
    answered: queues.SimpleQueue[Future], in_flight: dict, concurrency: int, over: Callable[[], bool]
) -> list[Future]:
    """The answers to record together: the first one, then those that follow it closely, until
    RECORDED rounds are in, the threads are down to REFILL rounds of work (the loop must claim)
    or the job is over."""
    done = [answered.get()]
    while (
        len(done) < RECORDED * concurrency
        and len(in_flight) - len(done) > REFILL * concurrency
        and not over()
    ):
        try:
            done.append(answered.get(timeout=GATHER))
        except queues.Empty:
            break
    return done
