"""How numbers, sizes, durations and times read on the pages (Jinja filters)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint

from app.models import aware


def number(value: float | int | None) -> str:
    """A count with thousands separators; a dash when unknown."""
    if value is None:
        return "–"
    return f"{round(value):,}"


def file_size(value: int | None) -> str:
    """Bytes as a person reads them: 512 B, 3.4 KB, 12.0 MB (powers of 1000, like file managers)."""
    if value is None:
        return "–"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            if unit == "B":
                return f"{int(size)} B"
            return f"{size:.1f}".removesuffix(".0") + f" {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """A duration in the two largest units: 0.4 s, 12 s, 3 min 4 s, 2 h 5 min."""
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def moment(value: datetime | None, short: bool = False) -> str:
    """A point in time, in UTC, in a form no locale can misread: 28 Nov 2026, 21:40 UTC.

    The short form (28 Nov, 21:40) is for tables, whose header says the times are UTC.
    """
    if value is None:
        return "–"
    return aware(value).astimezone(UTC).strftime("%-d %b, %H:%M" if short else "%-d %b %Y, %H:%M UTC")


def register(bp: Blueprint) -> None:
    """Make the filters available to every template."""
    for name, function in {
        "number": number,
        "file_size": file_size,
        "duration": duration,
        "moment": moment,
    }.items():
        bp.add_app_template_filter(function, name)
