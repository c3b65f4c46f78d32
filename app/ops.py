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

from app.extensions import csrf, db, queue, redis, storage
from app.models import FINAL_STATUSES, IMPORT_STATUSES, Import

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)

DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600)


@bp.get("/health")
def health() -> tuple[dict, int]:
    """200 when the database, Redis and storage all answer; 503 naming the first that does not."""
    checks: dict[str, str] = {}
    failures: list[str] = []
    probes = {
        "database": lambda: db.session.execute(text("SELECT 1")),
        "redis": lambda: redis().ping(),
        "storage": lambda: storage().check(),
    }
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # a health check reports every failure, whatever its kind
            log.warning("health check failed: %s: %s", name, exc)
            checks[name] = "failing"
            failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
    if failures:
        db.session.rollback()
        return {"status": "unhealthy", "error": "; ".join(failures), "checks": checks}, 503
    return {"status": "healthy", "checks": checks}, 200


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

        totals = db.session.execute(
            select(
                func.coalesce(func.sum(Import.inserted_rows), 0),
                func.coalesce(func.sum(Import.duplicate_rows), 0),
                func.coalesce(func.sum(Import.rejected_rows), 0),
                func.coalesce(func.sum(Import.size_bytes), 0),
            )
        ).one()
        rows = CounterMetricFamily("dataflow_rows", "Rows imported, by outcome", labels=["outcome"])
        for outcome, value in zip(("inserted", "duplicate", "rejected"), totals[:3], strict=True):
            rows.add_metric([outcome], int(value))
        yield rows
        yield CounterMetricFamily(
            "dataflow_bytes_received", "Bytes of files accepted for import", value=int(totals[3])
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
        db.session.rollback()

        yield GaugeMetricFamily(
            "dataflow_queue_depth", "Import jobs waiting in the queue", value=queue().count
        )


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
