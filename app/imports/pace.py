"""How fast an import goes: elapsed time, rows per second and the time left, from its counters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.models import Import, aware, utcnow


@dataclass(frozen=True)
class Pace:
    """An import's speed as the pages show it; ``None`` where it cannot be known yet."""

    elapsed: float | None
    rows_per_second: float | None
    seconds_left: float | None
    percent: float | None


def pace_of(imp: Import, now: datetime | None = None) -> Pace:
    """The pace of an import: up to now while it runs, start to finish once it has ended."""
    elapsed = None
    if imp.started_at is not None:
        end = imp.finished_at if imp.finished_at is not None else (now or utcnow())
        elapsed = max((aware(end) - aware(imp.started_at)).total_seconds(), 0.0)
    rate = imp.processed_rows / elapsed if elapsed and imp.processed_rows else None
    total = imp.total_rows
    percent = None
    if total:
        percent = min(100.0, 100.0 * imp.processed_rows / total)
    elif imp.status == "completed":
        percent = 100.0
    left = None
    if imp.status == "running" and total and rate:
        left = max(total - imp.processed_rows, 0) / rate
    return Pace(elapsed=elapsed, rows_per_second=rate, seconds_left=left, percent=percent)
