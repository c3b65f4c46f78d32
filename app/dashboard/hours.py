"""Ended imports summed per closed hour: counts by final status and a histogram of durations by size.

A week of imports is too many to aggregate on every view of the page (100,000 took 40 to 60 ms
a chart here), but an hour that has passed no longer changes: the workers' upkeep sums each
closed hour once, from the imports table, and the page adds the hours not summed yet live.
Every path that ends an import (a worker, a cancel, the reconciler) is counted, since the
summary reads the table, not the code that wrote it. An import retried after it failed
stays counted as a failure in the hour it failed: the chart counts endings.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import g
from sqlalchemy import JSON, DateTime, Integer, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.maintenance import TASKS
from app.models import FINAL_STATUSES, Import, aware, utcnow

# How an import ended, as the charts count it. An undone import had completed: it counts as completed
# in the hour it finished, before and after its undo alike.
ENDINGS = ("completed", "failed", "cancelled")

log = logging.getLogger(__name__)

KEPT_DAYS = 8  # the charts look back 7 days; the first summary starts here
# Duration histogram: 32 buckets per power of ten from 10 ms, so a quantile read from it is within
# 7.5% of the exact one.
PER_DECADE = 32
FLOOR_SECONDS = 0.01
# Upper bounds in bytes of each file size class (the last one has none).
SIZE_BOUNDS = (1_000_000, 10_000_000, 100_000_000)
HOUR = timedelta(hours=1)
# An hour is summed this long after it closed: an import whose end was stamped just before the
# hour turned may commit just after.
GRACE = timedelta(minutes=5)


class ImportHour(db.Model):
    """One closed hour: imports that ended in it by final status, and their durations by size class."""

    __tablename__ = "import_hours"

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    # {size class: {bucket: completed imports}}, keys as text (JSON objects have no number keys).
    durations: Mapped[dict] = mapped_column(JSON, default=dict)


@dataclass
class Ended:
    """What ended in one hour."""

    statuses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENDINGS, 0))
    durations: dict[int, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )


def floor_hour(at: datetime) -> datetime:
    """The start of the hour ``at`` is in."""
    return at.replace(minute=0, second=0, microsecond=0)


def size_class(size: int) -> int:
    """The index of a file size's class: < 1 MB, 1–10 MB, 10–100 MB, ≥ 100 MB."""
    return next((i for i, bound in enumerate(SIZE_BOUNDS) if size < bound), len(SIZE_BOUNDS))


def bucket_of(seconds: float) -> int:
    """The histogram bucket a duration falls in."""
    return max(0, math.floor(PER_DECADE * math.log10(max(seconds, FLOOR_SECONDS) / FLOOR_SECONDS)))


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """The durations a bucket holds, from its lower bound up to (not including) the upper."""
    return FLOOR_SECONDS * 10 ** (bucket / PER_DECADE), FLOOR_SECONDS * 10 ** ((bucket + 1) / PER_DECADE)


def quantile(histogram: dict[int, int], q: float) -> float | None:
    """The q-quantile of a histogram, interpolated geometrically inside its bucket."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(histogram):
        count = histogram[bucket]
        if seen + count >= rank:
            low, high = bucket_bounds(bucket)
            share = (rank - seen) / count if count else 0.0
            return low * (high / low) ** share
        seen += count
    return bucket_bounds(max(histogram))[1]


def ended_between(start: datetime, end: datetime) -> dict[datetime, Ended]:
    """Read the imports that ended in [start, end) from the table, by hour."""
    found: dict[datetime, Ended] = defaultdict(Ended)
    rows = db.session.execute(
        select(Import.finished_at, Import.status, Import.size_bytes, Import.started_at).where(
            Import.finished_at >= start, Import.finished_at < end, Import.status.in_(FINAL_STATUSES)
        )
    )
    for finished, status, size, started in rows:
        finished = aware(finished)
        hour = found[floor_hour(finished)]
        status = "completed" if status == "undone" else status
        hour.statuses[status] += 1
        if status == "completed" and started is not None:
            seconds = max((finished - aware(started)).total_seconds(), 0.0)
            hour.durations[size_class(size or 0)][bucket_of(seconds)] += 1
    return found


def summarise_hours(now: datetime | None = None) -> int:
    """Sum every closed hour not summed yet (from 8 days back at first); the hours written. Commits."""
    now = now or utcnow()
    closed_until = floor_hour(now - GRACE)
    last = db.session.scalar(select(func.max(ImportHour.hour)))
    oldest = closed_until - timedelta(days=KEPT_DAYS)
    start = max(aware(last) + HOUR, oldest) if last else oldest
    if start >= closed_until:
        return 0
    ended = ended_between(start, closed_until)
    rows = []
    hour = start
    while hour < closed_until:
        summary = ended.get(hour) or Ended()
        rows.append(
            {
                "hour": hour,
                **summary.statuses,
                "durations": {
                    str(k): {str(b): n for b, n in v.items()} for k, v in summary.durations.items()
                },
            }
        )
        hour += HOUR
    insert = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    # Two workers summing the same hour write the same numbers: the second one's are dropped.
    db.session.execute(insert(ImportHour).values(rows).on_conflict_do_nothing(index_elements=["hour"]))
    db.session.commit()
    log.info("summed %d closed hours of ended imports", len(rows))
    return len(rows)


TASKS.append(summarise_hours)


def _unsummed(now: datetime, since: datetime) -> dict[datetime, Ended]:
    """The hours from ``since`` that no summary holds yet, read live (once per request)."""
    last = db.session.scalar(select(func.max(ImportHour.hour)).where(ImportHour.hour >= since))
    start = max(aware(last) + HOUR, since) if last else since
    memo = g.setdefault("dashboard_unsummed", {})
    if (start, now) not in memo:
        memo[start, now] = ended_between(start, now + HOUR)
    return memo[start, now]


def statuses_by_hour(now: datetime, since: datetime) -> dict[datetime, dict[str, int]]:
    """Imports that ended in each hour from ``since`` to now, by final status."""
    columns = [getattr(ImportHour, status) for status in ENDINGS]
    found = {
        aware(hour): dict(zip(ENDINGS, counts, strict=True))
        for hour, *counts in db.session.execute(
            select(ImportHour.hour, *columns).where(ImportHour.hour >= since)
        )
    }
    found.update({hour: ended.statuses for hour, ended in _unsummed(now, since).items()})
    return found


def durations_since(now: datetime, since: datetime) -> dict[int, dict[int, int]]:
    """Completed imports from ``since`` to now by size class, in duration histograms."""
    merged: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for stored in db.session.scalars(select(ImportHour.durations).where(ImportHour.hour >= since)):
        for klass, buckets in (stored or {}).items():
            into = merged[int(klass)]
            for bucket, count in buckets.items():
                into[int(bucket)] += count
    for ended in _unsummed(now, since).values():
        for klass, buckets in ended.durations.items():
            for bucket, count in buckets.items():
                merged[klass][bucket] += count
    return merged
