"""The ops page's cards drawn once every few seconds for every viewer, and kept in Redis in between.

Drawing the five charts over 100,000 imports costs about 100 ms of CPU. An ops team with a few
browsers open, each polling its charts, had every web process drawing the same cards over and
over, and each viewer waiting behind the others' drawings: 4 clients at once saw a p99 of 286 ms.
So a drawn card (its HTML, for one chart and period) is kept in Redis for OPS_CACHE_SECONDS and
served to every viewer of every web process; the live panel likewise, for NOW_SECONDS. When a
copy goes stale, one request redraws it while holding a short lock and the others keep serving
the stale copy, so a busy page never draws the same card twice at once; and a request redraws
one stale card at most. No copy outlives its freshness by more than REDRAW_SECONDS: a viewer sees
charts at most OPS_CACHE_SECONDS + REDRAW_SECONDS old (15 s by default) and the live panel at
most NOW_SECONDS + REDRAW_SECONDS. OPS_CACHE_SECONDS=0 draws everything live.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from flask import render_template
from markupsafe import Markup
from redis import Redis
from redis.exceptions import RedisError

from app.dashboard import now as current
from app.dashboard import views
from app.extensions import redis, settings
from app.models import utcnow

PREFIX = "dataflow:ops:card:"
# The live panel's freshness: its browsers ask every 5 s, and it shows what runs now.
NOW_SECONDS = 2
# The longest a redrawing request holds its lock, and a stale copy is served meanwhile.
REDRAW_SECONDS = 10

# A copy's name in Redis, how to draw it, and for how many seconds it stays fresh (0: drawn live).
Shared = tuple[str, Callable[[], Markup], int]


def _keep(client: Redis, name: str, html: Markup, seconds: int) -> None:
    """Store a drawing, mark it fresh for ``seconds`` and let the next redraw be claimed."""
    pipe = client.pipeline(transaction=False)
    pipe.set(name, html.encode(), ex=seconds + REDRAW_SECONDS)
    pipe.set(f"{name}:fresh", b"1", ex=seconds)
    pipe.delete(f"{name}:drawing")
    pipe.execute()


def _shared(wanted: list[Shared]) -> list[Markup]:
    """Each drawing's kept copy, unless this request must draw it (and keep it).

    Without Redis every card is drawn here from PostgreSQL, as with OPS_CACHE_SECONDS=0, so the
    page ops open when something is wrong still shows what PostgreSQL knows.
    """
    kept_ones = [name for name, _draw, seconds in wanted if seconds]
    # One round trip for the whole page: each copy and whether it is still fresh.
    try:
        found = redis().mget([p for name in kept_ones for p in (name, f"{name}:fresh")]) if kept_ones else []
    except RedisError:
        return [draw() for _name, draw, _seconds in wanted]
    copies = {name: (found[2 * i], found[2 * i + 1]) for i, name in enumerate(kept_ones)}
    shown = []
    redrawn = False
    for name, draw, seconds in wanted:
        kept, fresh = copies.get(name, (None, None))
        # A stale copy is redrawn by the one request that claims it, and one per request:
        # drawing holds the web process's CPU, and the viewers it serves meanwhile wait.
        if kept is not None and (
            fresh is not None
            or redrawn
            or not redis().set(f"{name}:drawing", b"1", nx=True, ex=REDRAW_SECONDS)
        ):
            shown.append(Markup(kept.decode()))
            continue
        redrawn = kept is not None
        html = draw()
        if seconds:
            with contextlib.suppress(RedisError):  # shown all the same, and drawn again next time
                _keep(redis(), name, html, seconds)
        shown.append(html)
    return shown


def _chart(key: str, period: str) -> Shared:
    def draw() -> Markup:
        return Markup(render_template("ops/_chart.html", card=views.chart(key, utcnow(), period)))

    name = f"{PREFIX}{key}:{period if key in views.WITH_PERIOD else ''}"
    return name, draw, settings().ops_cache_seconds


def _draw_now() -> Markup:
    try:
        workers, queue_now = current.workers_now(), current.queue_now()
    except RedisError:  # the page says so, and shows what PostgreSQL knows
        workers, queue_now = None, None
    return Markup(
        render_template(
            "ops/_now.html",
            queue_now=queue_now,
            workers=workers,
            retrying=current.waiting_for_retry(),
            reviewing=current.waiting_for_review(),
            failing_webhooks=current.failing_webhooks(),
        )
    )


def _now() -> Shared:
    return f"{PREFIX}now", _draw_now, min(NOW_SECONDS, settings().ops_cache_seconds)


def charts(keys: list[str], period: str) -> list[Markup]:
    """The chart cards named by ``keys``, for the period the viewer chose."""
    return _shared([_chart(key, period) for key in keys])


def now_panel() -> Markup:
    """The live panel: workers, the queue, the imports waiting for a person or a retry."""
    return _shared([_now()])[0]


def page(period: str) -> tuple[Markup, list[Markup]]:
    """The live panel and every chart card of the page, asked of Redis in one round trip."""
    live, *drawn = _shared([_now(), *[_chart(key, period) for key in views.CHARTS]])
    return live, drawn
