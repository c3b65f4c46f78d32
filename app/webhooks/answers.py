"""Answers: log each attempt and move its message on (delivered, due again later, failed), give
back what was claimed and not sent, and disable an endpoint that keeps failing."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, insert, select, text, update

from app.extensions import db
from app.models import utcnow
from app.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from app.webhooks.sending import Answer
from app.webhooks.settings import WebhookSettings

if TYPE_CHECKING:
    from app.webhooks.delivery import Claim

JITTER = 0.1
# Retry-After is honoured up to a day; a longer wait is taken as a day.
MAX_RETRY_AFTER = 86400.0


def relaxed_commit() -> None:
    """On PostgreSQL, commit this transaction without waiting for the disk.

    Safe for deliveries: a claim or an answer lost in a database crash only means the message
    is sent again, with the same webhook-id, which receivers must accept anyway.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL synchronous_commit = off"))


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
# A failure leaves the time of an earlier delivery (a replay's) alone.
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


def record(answers: list[tuple[Claim, Answer, datetime]], config: WebhookSettings) -> None:
    """Log each attempt and move its message on: delivered, due again later, or failed.

    A group of answers is written in one transaction: a few statements for all of them. A
    message whose lease another run has taken since keeps its new state (the token fences it).
    """
    if not answers:
        return
    now = utcnow()
    relaxed_commit()
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
    db.session.execute(
        insert(WebhookAttempt),
        [
            {
                "message_id": claimed.message_id,
                "number": claimed.number,
                "started_at": started,
                "duration_ms": answer.duration_ms,
                "status_code": answer.status_code,
                "outcome": answer.outcome,
                "response": answer.response,
                "error": answer.error,
            }
            for claimed, answer, started in answers
        ],
    )
    # Successes are settled a statement per lease and status code (most often one for them all);
    # anything else a statement per message, as each has its own next time and error.
    delivered: dict[tuple[str, int | None], list[str]] = {}
    settled = []
    succeeded, failing, gone = set(), {}, set()
    for claimed, answer, started in answers:
        if answer.outcome == "success":
            delivered.setdefault((claimed.token, answer.status_code), []).append(claimed.message_id)
            succeeded.add(claimed.endpoint_id)
            continue
        params = {"b_id": claimed.message_id, "b_token": claimed.token, "b_code": answer.status_code}
        delay = None if answer.outcome == "gone" else next_delay(claimed.number, answer, config)
        if delay is None:
            params |= {"b_status": "failed", "b_next": None}
        else:
            params |= {"b_status": "pending", "b_next": now + timedelta(seconds=delay)}
        settled.append(params | {"b_error": answer.error})
        failing.setdefault(claimed.endpoint_id, started)
        if answer.outcome == "gone":
            gone.add(claimed.endpoint_id)
    for (token, code), ids in delivered.items():
        db.session.execute(
            update(_MESSAGES)
            .where(_MESSAGES.c.id.in_(ids), _MESSAGES.c.lease_token == token)
            .values(
                status="delivered",
                delivered_at=now,
                next_attempt_at=None,
                lease_until=None,
                lease_token=None,
                last_status_code=code,
                last_error=None,
            )
        )
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


def release(claims: list[Claim]) -> None:
    """Give back messages claimed but not sent: due again at once, the claim's attempt uncounted.

    The caller commits."""
    if not claims:
        return
    leases: dict[str, list[str]] = {}
    for claimed in claims:
        leases.setdefault(claimed.token, []).append(claimed.message_id)
    relaxed_commit()
    for token, ids in leases.items():
        db.session.execute(
            update(_MESSAGES)
            .where(_MESSAGES.c.id.in_(ids), _MESSAGES.c.lease_token == token)
            .values(lease_until=None, lease_token=None, attempts=_MESSAGES.c.attempts - 1)
        )


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
