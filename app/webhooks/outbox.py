"""The outbox: an event and its messages join the caller's transaction; its commit wakes delivery."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.extensions import settings
from app.models import Import, import_json, iso, utcnow
from app.webhooks import EVENTS
from app.webhooks.models import WebhookEndpoint, WebhookEvent, WebhookMessage, new_event_id

log = logging.getLogger(__name__)

# Set in a session's info when it holds new messages: its commit wakes a delivery job.
WAKE = "webhooks_wake"


def _body(event_type: str, data: dict[str, object]) -> str:
    """The body every delivery of the event sends: ``{"type", "timestamp", "data"}``."""
    payload = {"type": event_type, "timestamp": iso(utcnow()), "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def subscribed(endpoint: WebhookEndpoint, event_type: str) -> bool:
    """Whether an endpoint wants this kind of event."""
    return event_type in (endpoint.events or ())


def _add(session: Session, event_type: str, data: dict, import_id: str | None, endpoints: list) -> str:
    event_row = WebhookEvent(
        id=new_event_id(), type=event_type, import_id=import_id, payload=_body(event_type, data)
    )
    session.add(event_row)
    # The schedule's first entry is the wait before the first attempt (0: at once).
    due = utcnow() + timedelta(seconds=settings().webhooks.schedule[0])
    for endpoint in endpoints:
        session.add(
            WebhookMessage(
                event_id=event_row.id, endpoint_id=endpoint.id, status="pending", next_attempt_at=due
            )
        )
    session.info[WAKE] = True
    return event_row.id


def _subscribers(session: Session, event_type: str) -> list[WebhookEndpoint]:
    """The enabled endpoints subscribed to an import event."""
    if event_type not in EVENTS or event_type == "ping":
        raise ValueError(f"{event_type!r} is not an import event")
    return [
        endpoint
        for endpoint in session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True)))
        if subscribed(endpoint, event_type)
    ]


def record_import_event(session: Session, import_row: Import | str, event_type: str) -> str | None:
    """Write an import's event for each enabled endpoint subscribed to it; None when none is."""
    endpoints = _subscribers(session, event_type)
    if not endpoints:
        return None
    import_id = import_row if isinstance(import_row, str) else import_row.id
    return _add_import_event(session, import_id, event_type, endpoints)


def record_import_events(session: Session, import_ids: list[str], event_type: str) -> None:
    """``record_import_event`` for several imports of one transaction, the endpoints read once."""
    endpoints = _subscribers(session, event_type)
    if not endpoints:
        return
    for import_id in import_ids:
        _add_import_event(session, import_id, event_type, endpoints)


def _add_import_event(session: Session, import_id: str, event_type: str, endpoints: list) -> str:
    # The import as this transaction has it now, with the status just written (bulk updates
    # leave loaded objects behind).
    imp = session.get(Import, import_id, populate_existing=True)
    if imp is None:
        raise ValueError(f"there is no import {import_id}")
    return _add(session, event_type, import_json(imp), import_id, endpoints)


def record_ping(session: Session, endpoint: WebhookEndpoint) -> WebhookMessage:
    """A ``ping`` event for one endpoint, to check that it receives and verifies messages."""
    data = {"endpointId": endpoint.id, "message": "A test message from DataFlow"}
    event_id = _add(session, "ping", data, None, [endpoint])
    session.flush()
    return session.scalar(select(WebhookMessage).where(WebhookMessage.event_id == event_id))


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    """Once new messages are committed, queue a delivery job (the worker's poll is the safety net)."""
    if session.info.pop(WAKE, False):
        from app.webhooks.delivery import wake

        wake()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(WAKE, None)
