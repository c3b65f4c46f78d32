"""Routes of the ops page and the fragments it refreshes with HTMX; thin, the numbers come from views."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from app.dashboard import cards, queries, views
from app.models import utcnow

bp = Blueprint("dashboard", __name__)
DEFAULT_PERIOD = "24h"


def _period() -> str:
    period = request.args.get("period") or DEFAULT_PERIOD
    if period not in queries.PERIODS:
        abort(400, f"period must be one of {', '.join(queries.PERIODS)}")
    return period


@bp.get("/ops")
def page() -> str:
    """Every chart and the live panel, drawn on the server."""
    period = _period()
    live, drawn = cards.page(period)
    return render_template("ops/page.html", now=live, cards=drawn, period=period)


@bp.get("/ops/charts/<key>")
def chart(key: str) -> str:
    """One chart card, which polls itself."""
    if key not in views.CHARTS:
        abort(404)
    return cards.charts([key], _period())[0]


@bp.get("/ops/now")
def now_panel() -> str:
    """Workers, the queue and the imports that wait for a person or a retry."""
    return cards.now_panel()


@bp.get("/ops/reasons")
def reason() -> str:
    """The imports that had one rejection reason in a period, with the rows it cost each."""
    period = _period()
    message = request.args.get("message", "")
    field = request.args.get("field", "")
    if not message:
        abort(400, "message is required: follow a reason from the ops page")
    found = queries.imports_with_reason(utcnow(), period, field, message)
    return render_template(
        "ops/reason.html",
        found=found,
        field=field,
        message=message,
        period=period,
        period_name=queries.PERIOD_NAMES[period],
    )
