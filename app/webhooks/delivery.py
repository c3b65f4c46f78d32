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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis.exceptions
from rq import Queue
from sqlalchemy import and_, exists, or_, select, update

from app.extensions import db, settings
from app.extensions import redis as redis_connection
from app.models import utcnow
from app.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookEvent, WebhookMessage
from app.webhooks.sending import Answer, post
from app.webhooks.settings import WebhookSettings
from app.webhooks.signing import signature_header, signing_secrets
from app.webhooks.targets import TargetRefused, resolve

log = logging.getLogger(__name__)

QUEUE_NAME = "webhooks"
# A job stops claiming after this long and hands what is left to a new job, so others get a turn.
DRAIN_BUDGET = 120.0
JITTER = 0.1
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
    if not db.session.scalar(select(exists().where(_due(now)))):
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
    # Longer than any one send can take (the whole exchange is cut at the timeout).
    return timedelta(seconds=2 * config.timeout + 5)


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
    claims = []
    for message_id, attempts, lease_until, event_id, payload, endpoint_id, url, secret, old in rows:
        token = uuid.uuid4().hex
        taken = db.session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id == message_id, _due(now))
            .values(lease_until=now + _lease(config), lease_token=token, attempts=WebhookMessage.attempts + 1)
        )
        if taken.rowcount != 1:
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


def record(claimed: Claim, answer: Answer, started: datetime, config: WebhookSettings) -> None:
    """Log the attempt and move the message on: delivered, due again later, or failed."""
    now = utcnow()
    db.session.add(
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
    )
    values: dict[str, object] = {
        "lease_until": None,
        "lease_token": None,
        "last_status_code": answer.status_code,
        "last_error": answer.error,
    }
    endpoint = update(WebhookEndpoint).where(WebhookEndpoint.id == claimed.endpoint_id)
    if answer.outcome == "success":
        values |= {"status": "delivered", "delivered_at": now, "next_attempt_at": None}
        db.session.execute(endpoint.values(failing_since=None))
    else:
        delay = None if answer.outcome == "gone" else next_delay(claimed.number, answer, config)
        if delay is None:
            values |= {"status": "failed", "next_attempt_at": None}
        else:
            values["next_attempt_at"] = now + timedelta(seconds=delay)
        db.session.execute(
            endpoint.where(WebhookEndpoint.failing_since.is_(None)).values(failing_since=started)
        )
    db.session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.id == claimed.message_id, WebhookMessage.lease_token == claimed.token)
        .values(values)
    )
    if answer.outcome == "gone":
        disable_endpoint(claimed.endpoint_id, f"It answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC.")
        return
    if answer.outcome != "success":
        _disable_if_failing_too_long(claimed.endpoint_id, now, config)


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
    from app.imports.pipeline import handback_requested  # set in a work horse asked to stop

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
            free = config.concurrency - len(in_flight)
            exhausted = time.monotonic() - started > DRAIN_BUDGET or _stopping()
            if free and not exhausted:
                for claimed in claim(free, config):
                    in_flight[pool.submit(attempt, claimed, config)] = (claimed, utcnow())
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                claimed, at = in_flight.pop(future)
                record(claimed, future.result(), at, config)
                sent += 1
            db.session.commit()
    if exhausted:
        enqueue_due()
    return sent
