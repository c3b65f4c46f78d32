"""For operators: /health checks every dependency, /metrics counts imports at scrape time."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from flask import Blueprint, Flask, Request, Response, current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_flask_exporter import PrometheusMetrics
from sqlalchemy import case, func, select, text

from app.dashboard.now import queue_now, worker_states, workers_now
from app.extensions import csrf, db, redis, storage
from app.models import FINAL_STATUSES, IMPORT_STATUSES, Import
from app.webhooks.metrics import WebhookCollector

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)

DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600)


@bp.get("/health")
def health() -> tuple[dict, int]:
    """200 when the database, Redis and storage all answer; 503 naming the first that does not.

    Storage whose own rules would refuse some uploads (a bucket's size limit or allowed types)
    still answers 200, with its check ``degraded`` and each rule under ``warnings``.
    """
    checks: dict[str, str] = {}
    failures: list[str] = []
    warnings: list[str] = []
    probes = {
        "database": lambda: db.session.execute(text("SELECT 1")),
        "redis": lambda: redis().ping(),
        "storage": lambda: warnings.extend(f"storage: {w}" for w in storage().check()),
    }
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "degraded" if name == "storage" and warnings else "ok"
        except Exception as exc:  # a health check reports every failure, whatever its kind
            log.warning("health check failed: %s: %s", name, exc)
            checks[name] = "failing"
            failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
    extra = {"warnings": warnings} if warnings else {}
    if failures:
        db.session.rollback()
        return {"status": "unhealthy", "error": "; ".join(failures), "checks": checks, **extra}, 503
    return {"status": "healthy", "checks": checks, **extra}, 200


def _duration_seconds():
    if db.engine.dialect.name == "sqlite":
        return (func.julianday(Import.finished_at) - func.julianday(Import.started_at)) * 86400.0
    return func.extract("epoch", Import.finished_at - Import.started_at)


class ImportCollector:
    """Import figures read from PostgreSQL and Redis when scraped, so every process agrees."""

    def collect(self) -> Iterator[Metric]:
        by_status = dict(
            db.session.execute(select(Import.status, func.count()).group_by(Import.status)).all()
        )
        finished = CounterMetricFamily(
            "dataflow_imports_finished", "Imports that ended, by final status", labels=["status"]
        )
        active = GaugeMetricFamily(
            "dataflow_imports_active", "Imports waiting or running, by status", labels=["status"]
        )
        for status in IMPORT_STATUSES:
            family = finished if status in FINAL_STATUSES else active
            family.add_metric([status], by_status.get(status, 0))
        yield finished
        yield active

        outcomes = ("inserted", "updated", "unchanged", "duplicate", "rejected", "skipped")
        *sums, warned, received = db.session.execute(
            select(
                *[func.coalesce(func.sum(getattr(Import, f"{o}_rows")), 0) for o in outcomes],
                func.coalesce(func.sum(Import.warning_rows), 0),
                func.coalesce(func.sum(Import.size_bytes), 0),
            )
        ).one()
        rows = CounterMetricFamily(
            "dataflow_import_rows", "Rows of every import so far, by outcome", labels=["outcome"]
        )
        legacy = CounterMetricFamily(
            "dataflow_rows", "Deprecated: the same as dataflow_import_rows_total", labels=["outcome"]
        )
        for outcome, value in zip(outcomes, sums, strict=True):
            rows.add_metric([outcome], int(value))
            legacy.add_metric([outcome], int(value))
        yield rows
        yield legacy
        yield CounterMetricFamily(
            "dataflow_row_warnings", "Rows stored with a warning (a value kept aside)", value=int(warned)
        )
        yield CounterMetricFamily(
            "dataflow_bytes_received", "Bytes of files accepted for import", value=int(received)
        )

        duration = _duration_seconds()
        ended = (Import.status.in_(FINAL_STATUSES), Import.started_at.is_not(None))
        row = db.session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(duration), 0.0),
                *[func.sum(case((duration <= bound, 1), else_=0)) for bound in DURATION_BUCKETS],
            ).where(*ended, Import.finished_at.is_not(None))
        ).one()
        count, total_seconds, *cumulative = row
        buckets = [(str(float(b)), int(c or 0)) for b, c in zip(DURATION_BUCKETS, cumulative, strict=True)]
        buckets.append(("+Inf", int(count)))
        yield HistogramMetricFamily(
            "dataflow_import_duration_seconds",
            "Time from an import's start to its end",
            buckets=buckets,
            sum_value=float(total_seconds),
        )
        waiting = queue_now()
        workers = worker_states(workers_now())
        db.session.rollback()

        yield GaugeMetricFamily(
            "dataflow_queue_depth", "Import jobs waiting in the queue", value=waiting.depth
        )
        yield GaugeMetricFamily(
            "dataflow_queue_oldest_age_seconds",
            "Seconds since the oldest import still waiting to run (queued, retries included) was created",
            value=waiting.oldest_age_seconds,
        )
        alive = GaugeMetricFamily(
            "dataflow_workers", "Workers alive (RQ heartbeat), by state", labels=["state"]
        )
        for state, count in workers.items():
            alive.add_metric([state], count)
        yield alive


def _registry(app: Flask) -> CollectorRegistry:
    """HTTP metrics from every process (multiprocess mode) or this one, plus import figures."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = app.extensions["dataflow"]["metrics"].registry
    return registry


def metrics() -> Response:
    """Prometheus text exposition."""
    registry = _registry(current_app)
    body = generate_latest(registry)
    imports = CollectorRegistry()
    imports.register(ImportCollector())
    imports.register(WebhookCollector())
    body += generate_latest(imports)
    return Response(body, mimetype="text/plain; version=0.0.4")


UNKNOWN_ENDPOINT = "unknown"


def endpoint(request: Request) -> str:
    """The HTTP metrics' label for a request: its endpoint, never its path (which holds ids).

    Every path that matches no route counts under one label, so random paths cannot grow /metrics.
    """
    return request.endpoint or UNKNOWN_ENDPOINT


def init_app(app: Flask) -> None:
    """Register /health always and /metrics unless ENABLE_METRICS is false."""
    enabled = app.config["SETTINGS"].enable_metrics
    if enabled:
        app.extensions["dataflow"]["metrics"] = PrometheusMetrics(
            app,
            path=None,
            registry=CollectorRegistry(auto_describe=True),
            defaults_prefix="dataflow",
            group_by=endpoint,
            excluded_paths=["/metrics", "/static"],
        )
        app.add_url_rule("/metrics", view_func=csrf.exempt(metrics))
    app.register_blueprint(bp)
