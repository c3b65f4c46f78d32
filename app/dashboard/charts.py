"""Charts as SVG drawn on the server: axes with units, a title and description for screen readers.

Geometry is written as SVG attributes and colour comes from classes in the stylesheet, so the
charts need no script and no inline style (the Content-Security-Policy allows neither).
Text is sized in viewBox units for a chart about 480 px wide, which still reads at 375 px.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

WIDTH = 480
HEIGHT = 250
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 14, 50
PLOT_W = WIDTH - LEFT - RIGHT
PLOT_H = HEIGHT - TOP - BOTTOM
# A reason's label is cut here (its whole text is in the tooltip and the table).
LABEL_MAX = 46
# Room right of the reasons' bars for their counts (up to 999,999,999).
VALUE_ROOM = 110


def compact(value: float, step: float = 1.0) -> str:
    """A tick label: 950, 1.2k, 34k, 1.5M; below 1 with the decimals the ticks' ``step`` needs (0.25)."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".removesuffix(".0") + suffix
    decimals = next((d for d in range(4) if abs(round(step, d) - step) < 1e-9), 3)
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{value:.0f}"


def nice_max(value: float, intervals: int = 4) -> float:
    """The smallest round number (1, 2, 2.5 or 5 times a power of ten, per interval) at or above ``value``."""
    if value <= 0:
        return float(intervals)
    raw = value / intervals
    power = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= raw:
            return step * power * intervals
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Frame:
    """A chart's identity and words: the id its title and description are found by, and the axes' titles."""

    key: str
    title: str
    desc: str
    x_title: str
    y_title: str


def _open(frame: Frame, height: int, extra: str = "") -> list[str]:
    key = escape(frame.key)
    return [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{key}-title {key}-desc" data-chart="{key}"{extra}>',
        f'<title id="{key}-title">{escape(frame.title)}</title>',
        f'<desc id="{key}-desc">{escape(frame.desc)}</desc>',
    ]


def _y_axis(
    frame: Frame, top: float, plot_h: float, y_max: float, label: Callable[[float], str]
) -> list[str]:
    parts = []
    for i in range(5):
        value = y_max * i / 4
        text = label(value, y_max / 4)
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 5:.1f}" text-anchor="end">{text}</text>')
    middle = top + plot_h / 2
    parts.append(
        f'<text class="axis-title" x="14" y="{middle:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {middle:.1f})">{escape(frame.y_title)}</text>'
    )
    return parts


def _x_title(frame: Frame, height: int) -> str:
    x = LEFT + PLOT_W / 2
    title = escape(frame.x_title)
    return f'<text class="axis-title" x="{x:.1f}" y="{height - 6}" text-anchor="middle">{title}</text>'


def _x_ticks(ticks: Sequence[tuple[float, str]]) -> list[str]:
    """A mark and a label under the plot at each (x, label)."""
    parts = []
    bottom = TOP + PLOT_H
    for x, label in ticks:
        parts.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 5}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 20}" text-anchor="middle">{label}</text>')
    return parts


Ticks = Callable[[datetime], bool]


def _baseline(top: float, plot_h: float) -> str:
    y = top + plot_h
    return f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>'


def line_chart(
    frame: Frame,
    times: Sequence[datetime],
    series: dict[str, Sequence[float]],
    ticked: Ticks,
    tick_format: str,
) -> Markup:
    """Lines over equal time bins, one per series; each line's points carry its values on the y scale."""
    y_max = nice_max(max((max(v, default=0) for v in series.values()), default=0))
    count = len(times)
    step = PLOT_W / max(count - 1, 1)
    parts = _open(frame, HEIGHT, f' data-y-max="{y_max:g}" data-points="{count}"')
    parts += _y_axis(frame, TOP, PLOT_H, y_max, compact)
    parts += _x_ticks([(LEFT + step * i, f"{t:{tick_format}}") for i, t in enumerate(times) if ticked(t)])
    parts.append(_baseline(TOP, PLOT_H))
    for name, values in series.items():
        points = " ".join(
            f"{LEFT + step * i:.1f},{TOP + PLOT_H - PLOT_H * v / y_max:.1f}" for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline class="line s-{escape(name)}" data-series="{escape(name)}" points="{points}"/>'
        )
    parts.append(_x_title(frame, HEIGHT))
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_bars(
    frame: Frame,
    times: Sequence[datetime],
    series: dict[str, Sequence[float]],
    ticked: Ticks,
    tick_format: str,
) -> Markup:
    """Bars over equal time bins, the series stacked in each; only bars with a value are drawn."""
    count = len(times)
    totals = [sum(values[i] for values in series.values()) for i in range(count)]
    y_max = nice_max(max(totals, default=0))
    width = PLOT_W / max(count, 1)
    parts = _open(frame, HEIGHT, f' data-y-max="{y_max:g}"')
    parts += _y_axis(frame, TOP, PLOT_H, y_max, compact)
    parts += _x_ticks([(LEFT + width * i, f"{t:{tick_format}}") for i, t in enumerate(times) if ticked(t)])
    names = {name: escape(name) for name in series}
    for i in range(count):
        base = 0.0
        for name, values in series.items():
            value = values[i]
            if not value:
                continue
            css = names[name]
            y = TOP + PLOT_H - PLOT_H * (base + value) / y_max
            height = PLOT_H * value / y_max
            label = f"{times[i]:%-d %b %H:00}: {value:,.0f} {css}"
            parts.append(
                f'<rect class="bar s-{css}" x="{LEFT + width * i:.1f}" y="{y:.1f}" '
                f'width="{max(width - 0.4, 0.6):.1f}" height="{height:.1f}" data-value="{value:g}">'
                f"<title>{label}</title></rect>"
            )
            base += value
    parts.append(_baseline(TOP, PLOT_H))
    parts.append(_x_title(frame, HEIGHT))
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Bar:
    """One labelled horizontal bar, a link to what it counts."""

    label: str
    value: float
    href: str


def horizontal_bars(frame: Frame, bars: Sequence[Bar], value_label: str) -> Markup:
    """One bar per item, its label above it, each a link; the x axis counts ``value_label``."""
    row_h = 42
    top = 8
    plot_h = row_h * max(len(bars), 1)
    height = top + plot_h + 46
    x_max = nice_max(max((b.value for b in bars), default=0))
    left = 12
    plot_w = WIDTH - left - RIGHT - VALUE_ROOM  # the count is written to the right of its bar
    parts = _open(frame, height, f' data-x-max="{x_max:g}"')
    for i in range(5):
        x = left + plot_w * i / 4
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}"/>')
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="{anchor}">'
            f"{compact(x_max * i / 4, x_max / 4)}</text>"
        )
    for i, bar in enumerate(bars):
        y = top + row_h * i
        shown = bar.label if len(bar.label) <= LABEL_MAX else bar.label[: LABEL_MAX - 1] + "…"
        width = plot_w * bar.value / x_max
        parts.append(
            f'<a href="{escape(bar.href)}" class="bar-link"><title>{escape(bar.label)}: {bar.value:,.0f} '
            f"{escape(value_label)}</title>"
            f'<text class="bar-label" x="{left}" y="{y + 15}">{escape(shown)}</text>'
            f'<text class="bar-value" x="{WIDTH - RIGHT}" y="{y + 34}" text-anchor="end">'
            f"{bar.value:,.0f}</text>"
            f'<rect class="bar s-rejected" x="{left}" y="{y + 21}" width="{max(width, 1):.1f}" height="14" '
            f'data-value="{bar.value:g}"/></a>'
        )
    parts.append(
        f'<text class="axis-title" x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        f"{escape(frame.x_title)}</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def grouped_bars(
    frame: Frame,
    groups: Sequence[str],
    series: dict[str, Sequence[float | None]],
    scale: float,
) -> Markup:
    """Side-by-side bars for each group; values are divided by ``scale`` (the y axis's unit)."""
    shown = {name: [None if v is None else v / scale for v in values] for name, values in series.items()}
    y_max = nice_max(max((v for values in shown.values() for v in values if v is not None), default=0))
    slot = PLOT_W / max(len(groups), 1)
    bar_w = slot * 0.7 / max(len(series), 1)
    parts = _open(frame, HEIGHT, f' data-y-max="{y_max:g}"')
    parts += _y_axis(frame, TOP, PLOT_H, y_max, compact)
    for g, group in enumerate(groups):
        x0 = LEFT + slot * g + slot * 0.15
        for s, (name, values) in enumerate(shown.items()):
            value = values[g]
            if value is None:
                continue
            height = PLOT_H * value / y_max
            parts.append(
                f'<rect class="bar s-{escape(name)}" x="{x0 + bar_w * s:.1f}" '
                f'y="{TOP + PLOT_H - height:.1f}" '
                f'width="{bar_w - 2:.1f}" height="{max(height, 0.5):.1f}" data-series="{escape(name)}" '
                f'data-group="{escape(group)}" data-value="{value:g}">'
                f"<title>{escape(group)}, {escape(name)}: "
                f"{value:,.1f}</title></rect>"
            )
        center = LEFT + slot * g + slot / 2
        parts.append(
            f'<text class="tick" x="{center:.1f}" y="{TOP + PLOT_H + 20}" text-anchor="middle">'
            f"{escape(group)}</text>"
        )
    parts.append(_baseline(TOP, PLOT_H))
    parts.append(_x_title(frame, HEIGHT))
    parts.append("</svg>")
    return Markup("".join(parts))


def duration_unit(seconds: float) -> tuple[str, float]:
    """The unit a duration axis reads best in, and seconds per unit."""
    if seconds >= 2 * 3600:
        return "hours", 3600.0
    if seconds >= 120:
        return "minutes", 60.0
    return "seconds", 1.0


def hours_ago(times: Sequence[datetime], now: datetime) -> str:
    """The span a series covers, for a description: 'from 14:05 to 14:05 UTC'."""
    if not times:
        return ""
    end = times[-1] + (times[1] - times[0] if len(times) > 1 else timedelta())
    return f"from {times[0]:%-d %b %H:%M} to {min(end, now):%-d %b %H:%M} UTC"
