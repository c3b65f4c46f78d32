"""Webhook figures for /metrics, counted in PostgreSQL at scrape time so every process agrees."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select

from app.extensions import db
from app.models import utcnow
from app.webhooks.models import MESSAGE_STATUSES, WebhookAttempt, WebhookAttemptTally, WebhookMessage

OUTCOMES = ("success", "failure", "gone", "timeout", "unreachable", "refused", "interrupted")
# The delivery latency is read over the attempts of this last stretch, at these quantiles.
RECENT = timedelta(minutes=5)
QUANTILES = (0.5, 0.95)


def recent_durations() -> dict[float, float]:
    """Seconds the attempts of the last RECENT took at each of QUANTILES (nearest rank); NaN if none.

    Gauges, not a histogram: attempts are forgotten after their retention, and a histogram read
    from the table would count down. Each quantile is one read of the recent rows, on PostgreSQL
    and SQLite alike.
    """
    recent = (WebhookAttempt.started_at >= utcnow() - RECENT, WebhookAttempt.duration_ms.is_not(None))
    count = db.session.scalar(select(func.count()).where(*recent))
    found = {}
    for q in QUANTILES:
        if not count:
            found[q] = math.nan
            continue
        rank = max(math.ceil(q * count) - 1, 0)
        ms = db.session.scalar(
            select(WebhookAttempt.duration_ms)
            .where(*recent)
            .order_by(WebhookAttempt.duration_ms)
            .offset(rank)
            .limit(1)
        )
        found[q] = (ms or 0) / 1000
    return found


class WebhookCollector:
    """Delivery attempts by outcome, the recent attempts' durations, and messages by status."""

    def collect(self) -> Iterator[Metric]:
        """Read the counts in one go each, and the recent durations."""
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
        durations = recent_durations()
        db.session.rollback()
        attempts = CounterMetricFamily(
            "dataflow_webhook_deliveries", "Webhook delivery attempts, by outcome", labels=["outcome"]
        )
        for outcome in OUTCOMES:
            attempts.add_metric([outcome], outcomes.get(outcome, 0))
        yield attempts
        latency = GaugeMetricFamily(
            "dataflow_webhook_recent_delivery_seconds",
            f"Time the delivery attempts of the last {RECENT.seconds // 60} minutes took, by quantile",
            labels=["quantile"],
        )
        for q, seconds in durations.items():
            latency.add_metric([str(q)], seconds)
        yield latency
        messages = GaugeMetricFamily(
            "dataflow_webhook_messages", "Webhook messages, by status", labels=["status"]
        )
        for status in MESSAGE_STATUSES:
            messages.add_metric([status], statuses.get(status, 0))
        yield messages
