"""The numbers behind each chart of the ops page, read from the rollups and the imports table."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, func, or_, select

from app.dashboard.rollups import OUTCOMES, ImportMinute, ReasonHour
from app.extensions import db
from app.models import FINAL_STATUSES, Import

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
# Upper bounds in bytes of each file size class (the last one has none).
SIZE_CLASSES = (
    ("< 1 MB", 1_000_000),
    ("1–10 MB", 10_000_000),
    ("10–100 MB", 100_000_000),
    ("≥ 100 MB", None),
)


def aware(value: datetime | str) -> datetime:
    """A datetime from the database as UTC-aware (SQLite gives naive ones, or text from strftime)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _sqlite() -> bool:
    return db.session.get_bind().dialect.name == "sqlite"


@dataclass(frozen=True)
class Series:
    """Equal time bins from ``start``, ``step`` apart, with one list of values per series name."""

    start: datetime
    step: timedelta
    values: dict[str, list[float]]

    @property
    def times(self) -> list[datetime]:
        """The start of each bin."""
        length = len(next(iter(self.values.values()), []))
        return [self.start + i * self.step for i in range(length)]


def throughput(now: datetime) -> Series:
    """Rows per minute by outcome over the last 24 hours, averaged over 5-minute bins."""
    step = timedelta(minutes=THROUGHPUT_BIN_MINUTES)
    bins = THROUGHPUT_HOURS * 60 // THROUGHPUT_BIN_MINUTES
    end = now.replace(second=0, microsecond=0)
    end -= timedelta(minutes=end.minute % THROUGHPUT_BIN_MINUTES) - step
    start = end - bins * step
    rows = db.session.execute(
        select(ImportMinute.minute, *[func.sum(getattr(ImportMinute, o)) for o in OUTCOMES])
        .where(ImportMinute.minute >= start)
        .group_by(ImportMinute.minute)
    ).all()
    values = {outcome: [0.0] * bins for outcome in OUTCOMES}
    for minute, *counts in rows:
        at = int((aware(minute) - start) / step)
        if 0 <= at < bins:
            for outcome, count in zip(OUTCOMES, counts, strict=True):
                values[outcome][at] += int(count or 0) / THROUGHPUT_BIN_MINUTES
    return Series(start, step, values)


def _hour_of(column: ColumnElement) -> ColumnElement:
    if _sqlite():
        return func.strftime("%Y-%m-%d %H:00:00", column)
    return func.date_trunc("hour", column)


def imports_per_hour(now: datetime) -> Series:
    """Imports that ended in each hour of the last 7 days, by final status."""
    step = timedelta(hours=1)
    bins = STATUS_DAYS * 24
    start = now.replace(minute=0, second=0, microsecond=0) - (bins - 1) * step
    hour = _hour_of(Import.finished_at).label("hour")
    rows = db.session.execute(
        select(hour, Import.status, func.count())
        .where(Import.finished_at >= start, Import.status.in_(FINAL_STATUSES))
        .group_by(hour, Import.status)
    ).all()
    values = {status: [0.0] * bins for status in FINAL_STATUSES}
    for at, status, count in rows:
        index = int((aware(at) - start) / step)
        if 0 <= index < bins:
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
    """The reasons that rejected the most rows in the period, most first."""
    since = now - PERIODS[period]
    rows = func.sum(ReasonHour.rows)
    found = db.session.execute(
        select(ReasonHour.field, ReasonHour.message, rows, func.count(func.distinct(ReasonHour.import_id)))
        .where(ReasonHour.hour >= since.replace(minute=0, second=0, microsecond=0))
        .group_by(ReasonHour.field, ReasonHour.message)
        .order_by(rows.desc(), ReasonHour.field, ReasonHour.message)
        .limit(limit)
    ).all()
    return [Reason(field, message, int(n), int(imports)) for field, message, n, imports in found]


def imports_with_reason(now: datetime, period: str, field: str, message: str, limit: int = 100) -> list:
    """The imports that had a reason in the period, with their rows rejected for it, most first."""
    since = (now - PERIODS[period]).replace(minute=0, second=0, microsecond=0)
    rows = func.sum(ReasonHour.rows).label("reason_rows")
    return db.session.execute(
        select(Import, rows)
        .join(ReasonHour, ReasonHour.import_id == Import.id)
        .where(ReasonHour.hour >= since, ReasonHour.field == field, ReasonHour.message == message)
        .group_by(Import.id)
        .order_by(rows.desc(), Import.created_at.desc())
        .limit(limit)
    ).all()


def _seconds() -> ColumnElement[float]:
    if _sqlite():
        return (func.julianday(Import.finished_at) - func.julianday(Import.started_at)) * 86400.0
    return func.extract("epoch", Import.finished_at - Import.started_at)


@dataclass(frozen=True)
class Durations:
    """p50 and p95 of completed imports' durations in seconds for one file size class."""

    size_class: str
    imports: int
    p50: float | None
    p95: float | None


def _size_class() -> ColumnElement[int]:
    whens = [(Import.size_bytes < bound, i) for i, (_name, bound) in enumerate(SIZE_CLASSES) if bound]
    return case(*whens, else_=len(SIZE_CLASSES) - 1)


def durations(now: datetime) -> list[Durations]:
    """Start-to-end time of the imports completed in the last 7 days, by file size class."""
    ended = (
        Import.status == "completed",
        Import.finished_at >= now - timedelta(days=STATUS_DAYS),
        Import.started_at.is_not(None),
    )
    found: dict[int, tuple[int, float | None, float | None]] = {}
    size_class = _size_class().label("size_class")
    if _sqlite():  # no percentile function: the embedded default holds few imports
        by_class: dict[int, list[float]] = defaultdict(list)
        for klass, seconds in db.session.execute(select(size_class, _seconds()).where(*ended)):
            by_class[klass].append(max(float(seconds), 0.0))
        for klass, values in by_class.items():
            found[klass] = (len(values), _quantile(values, 0.5), _quantile(values, 0.95))
    else:
        seconds = _seconds()
        rows = db.session.execute(
            select(
                size_class,
                func.count(),
                func.percentile_cont(0.5).within_group(seconds),
                func.percentile_cont(0.95).within_group(seconds),
            )
            .where(*ended)
            .group_by(size_class)
        ).all()
        for klass, n, p50, p95 in rows:
            found[klass] = (n, max(float(p50), 0.0), max(float(p95), 0.0))
    return [Durations(name, *found.get(i, (0, None, None))) for i, (name, _bound) in enumerate(SIZE_CLASSES)]


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks, as PostgreSQL's percentile_cont does."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


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
    waited = db.session.execute(
        select(Import.created_at, first_end, Import.status).where(
            or_(
                Import.status == "queued",
                and_(Import.started_at >= window_start, Import.created_at <= now),
                and_(Import.started_at.is_(None), Import.finished_at >= window_start),
            )
        )
    ).all()
    intervals = [
        (aware(created), None if status == "queued" or ended is None else aware(ended))
        for created, ended, status in waited
    ]
    depth, oldest = [], []
    for i in range(QUEUE_MINUTES):
        at = now if i == QUEUE_MINUTES - 1 else start + i * step
        waiting = [created for created, ended in intervals if created <= at and (ended is None or ended > at)]
        depth.append(float(len(waiting)))
        oldest.append(max((at - min(waiting)).total_seconds(), 0.0) / 60 if waiting else 0.0)
    return Series(start, step, {"waiting": depth, "oldest": oldest})
