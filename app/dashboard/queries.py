"""The numbers behind each chart of the ops page, read from the rollups and the imports table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, cast, func, select

from app import models
from app.dashboard.hours import ENDINGS, durations_since, floor_hour, quantile, statuses_by_hour
from app.dashboard.rollups import OUTCOMES, ImportMinute, ImportReason, ReasonHour
from app.extensions import db
from app.models import Import

THROUGHPUT_BIN_MINUTES = 5
THROUGHPUT_HOURS = 24
STATUS_DAYS = 7
QUEUE_MINUTES = 60
# The periods the reasons chart offers, by the name the query string gives.
PERIODS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
PERIOD_NAMES = {"1h": "last hour", "24h": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days"}
# The file size classes of the durations chart (their bounds are in hours.SIZE_BOUNDS).
SIZE_CLASSES = ("< 1 MB", "1–10 MB", "10–100 MB", "≥ 100 MB")


def aware(value: datetime | str) -> datetime:
    """A datetime from the database as UTC-aware (SQLite gives naive ones, or text from strftime)."""
    return models.aware(datetime.fromisoformat(value) if isinstance(value, str) else value)


@dataclass(frozen=True)
class Series:
    """Equal time bins from ``start``, ``step`` apart, with one list of values per series name."""

    start: datetime
    step: timedelta
    values: dict[str, list[float]]
    # What the bins sum to, where a bin's value is a rate and not a count.
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def times(self) -> list[datetime]:
        """The start of each bin."""
        length = len(next(iter(self.values.values()), []))
        return [self.start + i * self.step for i in range(length)]


def throughput(now: datetime) -> Series:
    """Rows per minute by outcome over the last 24 hours, in 5-minute bins (the last one so far)."""
    step = timedelta(minutes=THROUGHPUT_BIN_MINUTES)
    bins = THROUGHPUT_HOURS * 60 // THROUGHPUT_BIN_MINUTES
    end = now.replace(second=0, microsecond=0)
    end -= timedelta(minutes=end.minute % THROUGHPUT_BIN_MINUTES) - step
    start = end - bins * step
    # Cast, or PostgreSQL sums bigints into numerics, which arrive as slow Decimals.
    sums = [cast(func.sum(getattr(ImportMinute, o)), BigInteger) for o in OUTCOMES]
    rows = db.session.execute(
        select(ImportMinute.minute, *sums).where(ImportMinute.minute >= start).group_by(ImportMinute.minute)
    ).all()
    columns = [[0.0] * bins for _ in OUTCOMES]
    totals = [0] * len(OUTCOMES)
    first, width = start.timestamp(), step.total_seconds()
    for minute, *counts in rows:
        at = int((aware(minute).timestamp() - first) // width)
        if 0 <= at < bins:
            for k, count in enumerate(counts):
                if count:
                    columns[k][at] += count / THROUGHPUT_BIN_MINUTES
                    totals[k] += count
    # The last bin is still filling: average it over the minutes it has had, not five.
    elapsed = min(int((now - (end - step)).total_seconds() // 60) + 1, THROUGHPUT_BIN_MINUTES)
    for column in columns:
        column[-1] *= THROUGHPUT_BIN_MINUTES / max(elapsed, 1)
    values = dict(zip(OUTCOMES, columns, strict=True))
    return Series(start, step, values, dict(zip(OUTCOMES, totals, strict=True)))


def imports_per_hour(now: datetime) -> Series:
    """Imports that ended in each hour of the last 7 days, by final status."""
    step = timedelta(hours=1)
    bins = STATUS_DAYS * 24
    start = floor_hour(now) - (bins - 1) * step
    values = {status: [0.0] * bins for status in ENDINGS}
    for hour, counts in statuses_by_hour(now, start).items():
        index = int((hour - start) / step)
        if 0 <= index < bins:
            for status, count in counts.items():
                values[status][index] += count
    return Series(start, step, values)


@dataclass(frozen=True)
class Reason:
    """A rejection reason over a period: its rows and how many imports had it."""

    field: str
    message: str
    rows: int
    imports: int


def top_reasons(now: datetime, period: str, limit: int = 10) -> list[Reason]:
    """The reasons that rejected the most rows in the period, most first.

    An import counts for a reason in the hour it first had it, so one that runs across hours
    counts once.
    """
    since = (now - PERIODS[period]).replace(minute=0, second=0, microsecond=0)
    rows = func.sum(ReasonHour.rows)
    found = db.session.execute(
        select(ReasonHour.field, ReasonHour.message, rows, func.sum(ReasonHour.imports))
        .where(ReasonHour.hour >= since)
        .group_by(ReasonHour.field, ReasonHour.message)
        .order_by(rows.desc(), ReasonHour.field, ReasonHour.message)
        .limit(limit)
    ).all()
    return [Reason(field, message, int(n), int(imports)) for field, message, n, imports in found]


def imports_with_reason(now: datetime, period: str, field: str, message: str, limit: int = 100) -> list:
    """The imports that had a reason in the period, with their rows rejected for it, most first."""
    since = (now - PERIODS[period]).replace(minute=0, second=0, microsecond=0)
    return db.session.execute(
        select(Import, ImportReason.rows)
        .join(ImportReason, ImportReason.import_id == Import.id)
        .where(ImportReason.field == field, ImportReason.message == message, ImportReason.last_at >= since)
        .order_by(ImportReason.rows.desc(), Import.created_at.desc())
        .limit(limit)
    ).all()


@dataclass(frozen=True)
class Durations:
    """p50 and p95 of completed imports' durations in seconds for one file size class."""

    size_class: str
    imports: int
    p50: float | None
    p95: float | None


def durations(now: datetime) -> list[Durations]:
    """Start-to-end time of the imports completed in the last 7 days, by file size class.

    Read from histograms of 32 buckets per power of ten, so each figure is within 7.5%.
    """
    merged = durations_since(now, floor_hour(now) - (STATUS_DAYS * 24 - 1) * timedelta(hours=1))
    return [
        Durations(
            name,
            sum(merged[i].values()),
            quantile(merged[i], 0.5),
            quantile(merged[i], 0.95),
        )
        for i, name in enumerate(SIZE_CLASSES)
    ]


def queue_history(now: datetime) -> Series:
    """Imports waiting to start and the oldest one's wait in minutes, each minute of the last hour.

    An import waits from its creation to its first start (or its end, when it was cancelled
    before it started); one in status queued waits still, from its creation, also when it waits
    for a retry (the table keeps no time of the release, so its earlier wait counts from creation).
    """
    step = timedelta(minutes=1)
    end = now.replace(second=0, microsecond=0)
    start = end - (QUEUE_MINUTES - 1) * step
    window_start = start
    first_end = func.coalesce(Import.started_at, Import.finished_at)
    columns = (Import.id, Import.created_at, first_end, Import.status)
    # Three reads that each use an index (an OR of them scans the whole table), then one per import.
    waited = {
        row.id: row[1:]
        for condition in (
            (Import.status == "queued",),
            (Import.started_at >= window_start, Import.created_at <= now),
            (Import.started_at.is_(None), Import.finished_at >= window_start),
        )
        for row in db.session.execute(select(*columns).where(*condition))
    }.values()
    samples = [start + i * step for i in range(QUEUE_MINUTES - 1)] + [now]
    intervals = []
    for created, ended, status in waited:
        created, ended = aware(created), None if status == "queued" or ended is None else aware(ended)
        # Most waits last seconds and hold no sample: keep only those that span one.
        first = max(0, math.ceil((created - start) / step))
        if first < len(samples) and (ended is None or samples[first] < ended):
            intervals.append((created, ended))
    depth, oldest = [], []
    for at in samples:
        waiting = [created for created, ended in intervals if created <= at and (ended is None or ended > at)]
        depth.append(float(len(waiting)))
        oldest.append(max((at - min(waiting)).total_seconds(), 0.0) / 60 if waiting else 0.0)
    return Series(start, step, {"waiting": depth, "oldest": oldest})
