"""The webhook tables: endpoints, events (the outbox), one message per endpoint, and each attempt."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models import utcnow

MESSAGE_STATUSES = ("pending", "delivered", "failed")


def new_event_id() -> str:
    """A message id in the Standard Webhooks style; the same on every retry of the message."""
    return "msg_" + uuid.uuid4().hex


class WebhookEndpoint(db.Model):
    """A URL that wants some events, and the secrets its messages are signed with."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: "ep_" + uuid.uuid4().hex)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(255), default="")
    events: Mapped[list] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(default=True)
    # Why the endpoint stopped receiving messages when DataFlow disabled it (410, days of failures).
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    # Secrets replaced by a rotation that still sign beside the new one: [{"secret", "expiresAt"}].
    old_secrets: Mapped[list] = mapped_column(JSON, default=list)
    # The first failure since the last success: an endpoint failing for WEBHOOK_DISABLE_AFTER is disabled.
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookEvent(db.Model):
    """Something that happened, written in the same transaction as the change it tells of."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("webhook_events_import_idx", "import_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_event_id)
    type: Mapped[str] = mapped_column(String(32))
    import_id: Mapped[str | None] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"))
    # The exact body every delivery sends, so a retry signs the same bytes.
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookMessage(db.Model):
    """One event on its way to one endpoint: its state and when its next attempt is due."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        Index("webhook_messages_due_idx", "status", "next_attempt_at"),
        Index("webhook_messages_endpoint_idx", "endpoint_id", "created_at"),
        Index("webhook_messages_event_idx", "event_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: "dlv_" + uuid.uuid4().hex)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A worker sending the message holds it until then; a claim with another token fences it off.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_token: Mapped[str | None] = mapped_column(String(32))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookAttempt(db.Model):
    """One try at sending a message: when, the answer's status, how long, the start of the body."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("webhook_attempts_message_idx", "message_id", "number"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    message_id: Mapped[str] = mapped_column(ForeignKey("webhook_messages.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    # success, failure (an answer that is not 2xx), gone (410), timeout, unreachable, refused, interrupted
    outcome: Mapped[str] = mapped_column(String(16))
    response: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class WebhookAttemptTally(db.Model):
    """Attempts by outcome whose log was forgotten, so the delivery counter never goes down."""

    __tablename__ = "webhook_attempt_tallies"

    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    forgotten: Mapped[int] = mapped_column(BigInteger, default=0)
