"""Each chart of the ops page as the template shows it: its SVG, legend and the table of the same numbers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from flask import url_for
from markupsafe import Markup

from app.dashboard import charts, queries
from app.dashboard.charts import Bar, Frame
from app.dashboard.rollups import OUTCOMES
from app.imports.display import duration

# The charts drawn for a period the viewer chooses; the others always show the same span.
WITH_PERIOD = ("reasons",)
# How often each chart asks the server again, in seconds.
REFRESH = {"throughput": 30, "statuses": 60, "reasons": 60, "durations": 60, "queue": 10}


@dataclass
class ChartView:
    """One chart card: what it shows, drawn and tabulated."""

    key: str
    title: str
    svg: Markup
    legend: list[tuple[str, str]]
    headers: list[str]
    rows: list[list[str | Markup]]
    note: str = ""
    period: str | None = None
    refresh: int = 30
    extra: dict[str, object] = field(default_factory=dict)


def _every_six_hours(at: datetime) -> bool:
    return at.minute == 0 and at.hour % 6 == 0


def _every_other_midnight(at: datetime) -> bool:
    return at.hour == 0 and at.toordinal() % 2 == 0


def _quarter_hours(at: datetime) -> bool:
    return at.minute % 15 == 0


def _n(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def throughput(now: datetime) -> ChartView:
    """Rows per minute by outcome, last 24 hours."""
    series = queries.throughput(now)
    times = series.times
    totals = series.totals
    peak = max((sum(series.values[o][i] for o in OUTCOMES), i) for i in range(len(times)))
    desc = (
        f"Rows per minute, averaged over 5-minute bins, {charts.hours_ago(times, now)}. Rows in all: "
        + ", ".join(f"{_n(totals[o])} {o}" for o in OUTCOMES)
        + (
            f". Busiest bin: {times[peak[1]]:%H:%M}, {_n(peak[0])} rows per minute."
            if peak[0]
            else ". No rows."
        )
    )
    frame = Frame(
        "throughput", "Rows per minute by outcome, last 24 hours", desc, "Time (UTC)", "Rows per minute"
    )
    svg = charts.line_chart(frame, times, series.values, _every_six_hours, "%H:%M")
    rows = [
        [f"{t:%-d %b %H:%M}", *[_n(series.values[o][i]) for o in OUTCOMES]]
        for i, t in enumerate(times)
        if any(series.values[o][i] for o in OUTCOMES)
    ]
    return ChartView(
        "throughput",
        frame.title,
        svg,
        [(f"s-{o}", o.capitalize()) for o in OUTCOMES],
        ["5 minutes from (UTC)", *[f"{o.capitalize()} (rows/min)" for o in OUTCOMES]],
        rows,
        note="Five-minute periods without rows are left out of the table.",
    )


def statuses(now: datetime) -> ChartView:
    """Imports ended per hour by final status, last 7 days."""
    series = queries.imports_per_hour(now)
    times = series.times
    totals = {s: int(sum(v)) for s, v in series.values.items()}
    desc = f"Imports that ended in each hour {charts.hours_ago(times, now)}: " + ", ".join(
        f"{n:,} {s}" for s, n in totals.items()
    )
    frame = Frame(
        "statuses", "Imports per hour by final status, last 7 days", desc, "Hour ended (UTC)", "Imports"
    )
    svg = charts.stacked_bars(frame, times, series.values, _every_other_midnight, "%-d %b")
    rows = [
        [f"{t:%-d %b %H:00}", *[_n(series.values[s][i]) for s in series.values]]
        for i, t in enumerate(times)
        if any(series.values[s][i] for s in series.values)
    ]
    return ChartView(
        "statuses",
        frame.title,
        svg,
        [(f"s-{s}", s.capitalize()) for s in series.values],
        ["Hour (UTC)", *[s.capitalize() for s in series.values]],
        rows,
        note="Hours without an ending import are left out of the table.",
    )


def reasons(now: datetime, period: str) -> ChartView:
    """The top rejection reasons in the period, each linking to the imports that had it."""
    found = queries.top_reasons(now, period)
    name = queries.PERIOD_NAMES[period]

    def href(reason: queries.Reason) -> str:
        return url_for("dashboard.reason", period=period, field=reason.field, message=reason.message)

    def label(reason: queries.Reason) -> str:
        return f"{reason.field}: {reason.message}" if reason.field else reason.message

    desc = (
        "; ".join(f"{label(r)}: {r.rows:,} rows in {r.imports:,} imports" for r in found)
        if found
        else f"No row was rejected in the {name}."
    )
    frame = Frame("reasons", f"Top rejection reasons, {name}", desc, "Rows rejected", "Reason")
    svg = charts.horizontal_bars(frame, [Bar(label(r), r.rows, href(r)) for r in found], "rows rejected")
    rows = [
        [Markup('<a href="{}">{}</a>').format(href(r), label(r)), f"{r.rows:,}", f"{r.imports:,}"]
        for r in found
    ]
    return ChartView(
        "reasons",
        frame.title,
        svg,
        [],
        ["Reason", "Rows rejected", "Imports"],
        rows,
        period=period,
        extra={"periods": queries.PERIOD_NAMES, "empty": not found},
    )


def durations(now: datetime) -> ChartView:
    """p50 and p95 import duration by file size class, imports completed in the last 7 days."""
    found = queries.durations(now)
    longest = max((d.p95 or 0 for d in found), default=0)
    unit, scale = charts.duration_unit(longest)
    desc = "; ".join(
        f"{d.size_class}: {d.imports:,} imports, p50 {duration(d.p50)}, p95 {duration(d.p95)}"
        if d.imports
        else f"{d.size_class}: no imports"
        for d in found
    )
    frame = Frame(
        "durations", "Import duration by file size, last 7 days", desc, "File size", f"Duration ({unit})"
    )
    svg = charts.grouped_bars(
        frame,
        [d.size_class for d in found],
        {"p50": [d.p50 for d in found], "p95": [d.p95 for d in found]},
        scale,
    )
    rows = [[d.size_class, f"{d.imports:,}", duration(d.p50), duration(d.p95)] for d in found]
    return ChartView(
        "durations",
        frame.title,
        svg,
        [("s-p50", "Median (p50)"), ("s-p95", "95th percentile (p95)")],
        ["File size", "Completed imports", "p50", "p95"],
        rows,
        note="From start to end of each completed import.",
    )


def queue(now: datetime) -> ChartView:
    """Imports waiting to start and the oldest one's wait, each minute of the last hour."""
    series = queries.queue_history(now)
    times = series.times
    waiting, oldest = series.values["waiting"], series.values["oldest"]
    desc = (
        f"Each minute {charts.hours_ago(times, now)}. Now {waiting[-1]:.0f} imports wait, the oldest for "
        f"{oldest[-1]:.1f} minutes; at most {max(waiting):.0f} waited, "
        f"the longest wait was {max(oldest):.1f} minutes."
    )
    depth = Frame("queue", "Imports waiting, last hour", desc, "Time (UTC)", "Imports waiting")
    age = Frame("queue-age", "Oldest wait, last hour", desc, "Time (UTC)", "Oldest wait (minutes)")
    svg = charts.line_chart(depth, times, {"waiting": waiting}, _quarter_hours, "%H:%M")
    svg += charts.line_chart(age, times, {"oldest": oldest}, _quarter_hours, "%H:%M")
    rows = [
        [f"{t:%H:%M}" if i < len(times) - 1 else "now", _n(waiting[i]), f"{oldest[i]:.1f}"]
        for i, t in enumerate(times)
        if waiting[i] or i == len(times) - 1
    ]
    return ChartView(
        "queue",
        "Queue: imports waiting and the oldest wait, last hour",
        svg,
        [("s-waiting", "Imports waiting"), ("s-oldest", "Oldest wait")],
        ["Minute (UTC)", "Imports waiting", "Oldest wait (minutes)"],
        rows,
        note="Minutes with no import waiting are left out of the table.",
    )


CHARTS: dict[str, Callable[..., ChartView]] = {
    "throughput": throughput,
    "statuses": statuses,
    "reasons": reasons,
    "durations": durations,
    "queue": queue,
}


def chart(key: str, now: datetime, period: str) -> ChartView:
    """The chart named ``key``, drawn from the database as it is now."""
    view = CHARTS[key](now, period) if key in WITH_PERIOD else CHARTS[key](now)
    view.refresh = REFRESH[key]
    return view
