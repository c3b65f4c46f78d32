"""Delivery: claim due messages with a fenced lease, send them from threads, record each answer.

PostgreSQL holds every message's next attempt time. A job drains what is due; the worker's
reconciler queues a job whenever something is due and none waits, so a lost Redis job or a
worker killed mid-send only delays a message, which then goes out with the same webhook-id.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis.exceptions
from rq import Queue
from sqlalchemy import and_, bindparam, or_, select, text, update

from app.extensions import db, settings
from app.extensions import redis as redis_connection
from app.models import utcnow
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
JITTER = 0.1
# How long the loop waits for answers before recording those that are in.
GATHER = 0.01
# Retry-After is honoured up to a day; a longer wait is taken as a day.
MAX_RETRY_AFTER = 86400.0


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
    # Longer than a claimed message can wait for a thread and then be sent: one round queued
    # ahead of it, then its own exchange, each cut at the timeout.
    return timedelta(seconds=3 * config.timeout + 5)


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
    _relaxed_commit()
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


def _relaxed_commit() -> None:
    """On PostgreSQL, commit this transaction without waiting for the disk.

    Safe for deliveries: a claim or an answer lost in a database crash only means the message
    is sent again, with the same webhook-id, which receivers must accept anyway.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL synchronous_commit = off"))


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


def next_delay(number: int, answer: Answer, config: WebhookSettings) -> float | None:
    """Seconds until the attempt after attempt ``number``, with jitter; None when none is left."""
    if number >= len(config.schedule):
        return None
    delay = config.schedule[number] * random.uniform(1 - JITTER, 1 + JITTER)
    if answer.retry_after is not None:
        delay = max(delay, min(answer.retry_after, MAX_RETRY_AFTER))
    return delay


def disable_endpoint(endpoint_id: str, reason: str | None) -> None:
    """Stop sending to an endpoint: its waiting messages fail (``recover`` sends them again later)."""
    now = utcnow()
    db.session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(enabled=False, disabled_reason=reason, updated_at=now)
    )
    db.session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.endpoint_id == endpoint_id, WebhookMessage.status == "pending")
        .values(
            status="failed",
            next_attempt_at=None,
            last_error="The endpoint was disabled" + (f": {reason}" if reason else ""),
        )
    )


_MESSAGES = WebhookMessage.__table__
_SETTLE = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("b_id"), _MESSAGES.c.lease_token == bindparam("b_token"))
    .values(
        status=bindparam("b_status"),
        next_attempt_at=bindparam("b_next"),
        lease_until=None,
        lease_token=None,
        last_status_code=bindparam("b_code"),
        last_error=bindparam("b_error"),
    )
)
# A success also says when; a failure leaves the time of an earlier delivery (a replay's) alone.
_DELIVERED = _SETTLE.values(delivered_at=bindparam("b_at"))


def record(answers: list[tuple[Claim, Answer, datetime]], config: WebhookSettings) -> None:
    """Log each attempt and move its message on: delivered, due again later, or failed.

    A group of answers is written in one transaction: a few statements for all of them. A
    message whose lease another run has taken since keeps its new state (the token fences it).
    """
    now = utcnow()
    _relaxed_commit()
    # A message deleted with its endpoint while it was being sent has no log left to add to; the
    # lock keeps the others from being deleted until this is committed.
    kept = set(
        db.session.scalars(
            select(WebhookMessage.id)
            .where(WebhookMessage.id.in_([claimed.message_id for claimed, _, _ in answers]))
            .with_for_update()
        )
    )
    answers = [entry for entry in answers if entry[0].message_id in kept]
    if not answers:
        return
    db.session.add_all(
        WebhookAttempt(
            message_id=claimed.message_id,
            number=claimed.number,
            started_at=started,
            duration_ms=answer.duration_ms,
            status_code=answer.status_code,
            outcome=answer.outcome,
            response=answer.response,
            error=answer.error,
        )
        for claimed, answer, started in answers
    )
    delivered, settled = [], []
    succeeded, failing, gone = set(), {}, set()
    for claimed, answer, started in answers:
        params = {
            "b_id": claimed.message_id,
            "b_token": claimed.token,
            "b_code": answer.status_code,
            "b_error": answer.error,
            "b_next": None,
        }
        if answer.outcome == "success":
            delivered.append(params | {"b_status": "delivered", "b_at": now})
            succeeded.add(claimed.endpoint_id)
            continue
        delay = None if answer.outcome == "gone" else next_delay(claimed.number, answer, config)
        if delay is None:
            params["b_status"] = "failed"
        else:
            params |= {"b_status": "pending", "b_next": now + timedelta(seconds=delay)}
        settled.append(params)
        failing.setdefault(claimed.endpoint_id, started)
        if answer.outcome == "gone":
            gone.add(claimed.endpoint_id)
    db.session.flush()
    if delivered:
        db.session.execute(_DELIVERED, delivered)
    if settled:
        db.session.execute(_SETTLE, settled)
    endpoints = update(WebhookEndpoint)
    if succeeded:
        db.session.execute(
            endpoints.where(
                WebhookEndpoint.id.in_(succeeded), WebhookEndpoint.failing_since.is_not(None)
            ).values(failing_since=None)
        )
    for endpoint_id, since in failing.items():
        if endpoint_id in gone:
            disable_endpoint(endpoint_id, f"It answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC.")
        elif endpoint_id not in succeeded:
            db.session.execute(
                endpoints.where(
                    WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_(None)
                ).values(failing_since=since)
            )
            _disable_if_failing_too_long(endpoint_id, now, config)


def _disable_if_failing_too_long(endpoint_id: str, now: datetime, config: WebhookSettings) -> None:
    cutoff = now - timedelta(seconds=config.disable_after)
    failing_since = db.session.scalar(
        select(WebhookEndpoint.failing_since).where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.enabled.is_(True),
            WebhookEndpoint.failing_since <= cutoff,
        )
    )
    if failing_since is not None:
        days = config.disable_after / 86400
        span = f"{days:g} days" if days >= 1 else f"{config.disable_after:g} seconds"
        disable_endpoint(
            endpoint_id,
            f"Every delivery failed for {span} (since {failing_since:%Y-%m-%d %H:%M} UTC). "
            "Fix the endpoint, enable it, then recover the failed messages.",
        )


def _stopping() -> bool:
    from app.imports.runs import handback_requested  # set in a work horse asked to stop

    return handback_requested.is_set()


def drain() -> int:
    """Send due messages, ``WEBHOOK_CONCURRENCY`` at a time, until none is due; how many were sent."""
    config = settings().webhooks
    started = time.monotonic()
    sent = 0
    in_flight: dict[Future[Answer], tuple[Claim, datetime]] = {}
    exhausted = False
    with ThreadPoolExecutor(config.concurrency, thread_name_prefix="webhook") as pool:
        while True:
            exhausted = time.monotonic() - started > DRAIN_BUDGET or _stopping()
            # Keep a second round queued behind the threads, so they send while this thread
            # records answers and claims more; claim again once a round's worth is done.
            if not exhausted and len(in_flight) <= config.concurrency:
                for claimed in claim(2 * config.concurrency - len(in_flight), config):
                    in_flight[pool.submit(attempt, claimed, config)] = (claimed, utcnow())
            if not in_flight:
                break
            # Answers are recorded in groups: those in after a moment, or else the first one.
            done, _ = wait(in_flight, timeout=GATHER, return_when=ALL_COMPLETED)
            if not done:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            answers = []
            for future in done:
                claimed, at = in_flight.pop(future)
                answers.append((claimed, future.result(), at))
            record(answers, config)
            db.session.commit()
            sent += len(answers)
    if exhausted:
        enqueue_due()
    return sent
