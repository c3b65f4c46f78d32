"""Webhook figures for /metrics, counted in PostgreSQL at scrape time so every process agrees."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select

from app.extensions import db
from app.webhooks.models import MESSAGE_STATUSES, WebhookAttempt, WebhookAttemptTally, WebhookMessage

OUTCOMES = ("success", "failure", "gone", "timeout", "unreachable", "refused", "interrupted")


class WebhookCollector:
    """Delivery attempts by outcome, and messages by status."""

    def collect(self) -> Iterator[Metric]:
        """Read both counts in one go each."""
        outcomes = dict(
            db.session.execute(
                select(WebhookAttempt.outcome, func.count()).group_by(WebhookAttempt.outcome)
            ).all()
        )
        # Attempts whose log was forgotten after its retention still count: a counter never goes down.
        for outcome, forgotten in db.session.execute(
            select(WebhookAttemptTally.outcome, WebhookAttemptTally.forgotten)
        ):
            outcomes[outcome] = outcomes.get(outcome, 0) + forgotten
        statuses = dict(
            db.session.execute(
                select(WebhookMessage.status, func.count()).group_by(WebhookMessage.status)
            ).all()
        )
        db.session.rollback()
        attempts = CounterMetricFamily(
            "dataflow_webhook_deliveries", "Webhook delivery attempts, by outcome", labels=["outcome"]
        )
        for outcome in OUTCOMES:
            attempts.add_metric([outcome], outcomes.get(outcome, 0))
        yield attempts
        messages = GaugeMetricFamily(
            "dataflow_webhook_messages", "Webhook messages, by status", labels=["status"]
        )
        for status in MESSAGE_STATUSES:
            messages.add_metric([status], statuses.get(status, 0))
        yield messages
