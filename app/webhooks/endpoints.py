"""Managing endpoints and their messages: checked input, JSON shapes, retry and recover."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select, update

from app.extensions import db, settings
from app.models import Import, aware, iso, utcnow
from app.webhooks import IMPORT_EVENTS
from app.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookEvent, WebhookMessage
from app.webhooks.signing import BadSecret, new_secret, secret_bytes
from app.webhooks.targets import TargetRefused, check_url

DESCRIPTION_MAX = 255
CREATE_FIELDS = frozenset({"url", "events", "description", "secret"})
PATCH_FIELDS = frozenset({"url", "events", "description", "enabled"})
DELIVERIES_PER_PAGE = 25


class BadInput(ValueError):
    """The request's fields are wrong; the message says which and how."""


class Refused(Exception):
    """The endpoint's or message's state does not allow what was asked; the message says why."""


def _events(value: object) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadInput(f"events must be a non-empty list of event names: {', '.join(IMPORT_EVENTS)}")
    unknown = [v for v in value if v not in IMPORT_EVENTS]
    if unknown:
        raise BadInput(f"unknown event {unknown[0]!r}; events are {', '.join(IMPORT_EVENTS)}")
    return [e for e in IMPORT_EVENTS if e in value]


def _description(value: object) -> str:
    if not isinstance(value, str) or len(value) > DESCRIPTION_MAX:
        raise BadInput(f"description must be text of at most {DESCRIPTION_MAX} characters")
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise BadInput("description must not contain control characters")
    return value.strip()


def _url(value: object) -> str:
    try:
        return check_url(value, settings().webhooks)
    except TargetRefused as exc:
        raise BadInput(str(exc)) from None


def _fields(body: object, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadInput("The body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadInput(f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(allowed))}")
    return body


def create_endpoint(body: object) -> WebhookEndpoint:
    """A new endpoint from ``{"url", "events", "description", "secret"}``, added to the session."""
    fields = _fields(body, CREATE_FIELDS)
    if "url" not in fields:
        raise BadInput("Missing required field: url")
    secret = fields.get("secret")
    if secret is not None:
        try:
            secret_bytes(secret)
        except BadSecret as exc:
            raise BadInput(str(exc)) from None
    endpoint = WebhookEndpoint(
        url=_url(fields["url"]),
        events=_events(fields["events"]) if "events" in fields else list(IMPORT_EVENTS),
        description=_description(fields.get("description", "")),
        secret=secret or new_secret(),
        old_secrets=[],
        enabled=True,
    )
    db.session.add(endpoint)
    db.session.flush()
    return endpoint


def update_endpoint(endpoint: WebhookEndpoint, body: object) -> None:
    """Change the url, events, description or enabled of an endpoint."""
    fields = _fields(body, PATCH_FIELDS)
    if "enabled" in fields and not isinstance(fields["enabled"], bool):
        raise BadInput("enabled must be true or false")
    if "url" in fields:
        endpoint.url = _url(fields["url"])
    if "events" in fields:
        endpoint.events = _events(fields["events"])
    if "description" in fields:
        endpoint.description = _description(fields["description"])
    if "enabled" in fields:
        set_enabled(endpoint, fields["enabled"])
    endpoint.updated_at = utcnow()


def set_enabled(endpoint: WebhookEndpoint, enabled: bool) -> None:
    """Enable (forgetting why it was disabled) or disable an endpoint."""
    from app.webhooks.answers import disable_endpoint

    if enabled and not endpoint.enabled:
        endpoint.enabled, endpoint.disabled_reason, endpoint.failing_since = True, None, None
    elif not enabled and endpoint.enabled:
        db.session.flush()
        disable_endpoint(endpoint.id, None)
        db.session.refresh(endpoint)


def parse_since(text: str | None) -> datetime:
    """The ``since`` of a recover: an ISO 8601 time (UTC when it names no zone)."""
    if not text:
        raise BadInput("Missing required parameter: since (an ISO 8601 time such as 2026-12-01T09:00:00Z)")
    try:
        # A "+" in a query string arrives as a space: "…09:00:00 01:00" meant "…09:00:00+01:00".
        when = datetime.fromisoformat(re.sub(r" (\d\d:?\d\d)$", r"+\1", text.strip().replace("Z", "+00:00")))
    except ValueError:
        raise BadInput(f"since must be an ISO 8601 time such as 2026-12-01T09:00:00Z, not {text!r}") from None
    return aware(when)


def retry_message(message: WebhookMessage) -> None:
    """Send a message again now (delivered or failed alike), with its webhook-id."""
    endpoint = db.session.get(WebhookEndpoint, message.endpoint_id)
    if not endpoint.enabled:
        raise Refused("The endpoint is disabled; enable it first, then retry.")
    if message.status == "pending" and message.lease_until and aware(message.lease_until) > utcnow():
        raise Refused("This message is being sent right now; its answer will show in a moment.")
    db.session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.id == message.id)
        .values(status="pending", next_attempt_at=utcnow(), lease_until=None, lease_token=None)
    )
    db.session.info["webhooks_wake"] = True
    db.session.refresh(message)


def recover(endpoint: WebhookEndpoint, since: datetime) -> int:
    """Send again every failed message of the endpoint created since ``since``; how many."""
    if not endpoint.enabled:
        raise Refused("The endpoint is disabled; enable it first, then recover its messages.")
    result = db.session.execute(
        update(WebhookMessage)
        .where(
            WebhookMessage.endpoint_id == endpoint.id,
            WebhookMessage.status == "failed",
            WebhookMessage.created_at >= since,
        )
        .values(status="pending", next_attempt_at=utcnow(), lease_until=None, lease_token=None)
    )
    if result.rowcount:
        db.session.info["webhooks_wake"] = True
    return result.rowcount


def endpoint_json(endpoint: WebhookEndpoint, secret: bool = False) -> dict[str, object]:
    """An endpoint as the API shows it; the secret only when it was just made."""
    rotation_ends = max((old["expiresAt"] for old in endpoint.old_secrets or ()), default=None)
    shown: dict[str, object] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.events or ()),
        "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason,
        "failingSince": iso(endpoint.failing_since),
        "previousSecretExpiresAt": iso(datetime.fromisoformat(rotation_ends)) if rotation_ends else None,
        "createdAt": iso(endpoint.created_at),
        "updatedAt": iso(endpoint.updated_at),
    }
    if secret:
        shown["secret"] = endpoint.secret
    return shown


def attempt_json(attempt: WebhookAttempt) -> dict[str, object]:
    """One attempt as the API shows it."""
    return {
        "number": attempt.number,
        "at": iso(attempt.started_at),
        "outcome": attempt.outcome,
        "statusCode": attempt.status_code,
        "durationMs": attempt.duration_ms,
        "response": attempt.response,
        "error": attempt.error,
    }


def message_json(message: WebhookMessage, event: WebhookEvent, attempts: list[WebhookAttempt]) -> dict:
    """A message with its attempts, as the API shows it."""
    return {
        "id": message.id,
        "webhookId": event.id,
        "type": event.type,
        "importId": event.import_id,
        "endpointId": message.endpoint_id,
        "status": message.status,
        "attempts": message.attempts,
        "nextAttemptAt": iso(message.next_attempt_at) if message.status == "pending" else None,
        "deliveredAt": iso(message.delivered_at),
        "lastStatusCode": message.last_status_code,
        "lastError": message.last_error,
        "createdAt": iso(message.created_at),
        "attemptLog": [attempt_json(a) for a in attempts],
    }


def messages_with_attempts(query) -> list[dict]:
    """The JSON of every message a query selects, with their events and attempts in two reads."""
    rows = db.session.execute(query.add_columns(WebhookEvent)).all()
    ids = [message.id for message, _ in rows]
    attempts: dict[str, list[WebhookAttempt]] = {i: [] for i in ids}
    if ids:
        for attempt in db.session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.message_id.in_(ids))
            .order_by(WebhookAttempt.number, WebhookAttempt.id)
        ):
            attempts[attempt.message_id].append(attempt)
    return [message_json(message, event, attempts[message.id]) for message, event in rows]


def _messages() -> Any:
    return select(WebhookMessage).join(WebhookEvent, WebhookEvent.id == WebhookMessage.event_id)


def deliveries_page(endpoint: WebhookEndpoint, page: int, status: str | None = None) -> dict[str, object]:
    """A page of the endpoint's messages, newest first, each with its attempts."""
    where = [WebhookMessage.endpoint_id == endpoint.id]
    if status:
        where.append(WebhookMessage.status == status)
    total = db.session.scalar(select(func.count()).select_from(WebhookMessage).where(*where))
    query = (
        _messages()
        .where(*where)
        .order_by(WebhookMessage.created_at.desc(), WebhookMessage.id)
        .limit(DELIVERIES_PER_PAGE)
        .offset((page - 1) * DELIVERIES_PER_PAGE)
    )
    return {
        "items": messages_with_attempts(query),
        "page": page,
        "pages": max(1, math.ceil(total / DELIVERIES_PER_PAGE)),
        "total": total,
    }


def import_deliveries(import_id: str) -> list[dict]:
    """Every message of an import's events, oldest first, with the endpoint's URL."""
    query = (
        _messages()
        .where(WebhookEvent.import_id == import_id)
        .order_by(WebhookMessage.created_at, WebhookMessage.id)
        .limit(100)
    )
    found = messages_with_attempts(query)
    urls = dict(
        db.session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.url).where(
                WebhookEndpoint.id.in_({m["endpointId"] for m in found})
            )
        ).all()
    )
    for message in found:
        message["endpointUrl"] = urls.get(message["endpointId"])
    return found


# The import page follows its deliveries while a message is due within this long.
FOLLOW_FOR = timedelta(minutes=1)


def import_webhooks(imp: Import) -> dict[str, object]:
    """The import page's deliveries, and whether the page should keep asking for them.

    It asks while the import runs and an endpoint may want its event, and while a message is
    due soon; a retry hours away waits for a reload.
    """
    items = import_deliveries(imp.id)
    soon = iso(utcnow() + FOLLOW_FOR)
    due_soon = any(m["status"] == "pending" and (m["nextAttemptAt"] or "") <= soon for m in items)
    running = not imp.is_final and bool(
        db.session.scalar(select(exists().where(WebhookEndpoint.enabled.is_(True))))
    )
    return {"items": items, "live": running or due_soon}


def delete_endpoint(endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint with its messages and their log (SQLite does not cascade by itself)."""
    messages = select(WebhookMessage.id).where(WebhookMessage.endpoint_id == endpoint.id)
    db.session.execute(delete(WebhookAttempt).where(WebhookAttempt.message_id.in_(messages)))
    db.session.execute(delete(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint.id))
    db.session.delete(endpoint)
