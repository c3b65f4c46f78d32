"""The list of imports: filtered, paged and totalled, as JSON, as a page and as its HTMX table."""

from __future__ import annotations

import math
import re

from flask import Response, render_template, request
from sqlalchemy import ColumnElement, Select, func, select

from app.errors import error_response, wants_json
from app.extensions import db
from app.imports import bp
from app.imports.access import page_number
from app.imports.body import has_control_characters
from app.imports.pace import pace_of
from app.models import IMPORT_STATUSES, Import
from app.principals import current_principal

IMPORTS_PER_PAGE = 25
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _filtered(status: str | None, source: str | None, sha256: str | None) -> Select:
    query = select(Import)
    allowed = current_principal().sources
    if allowed is not None:  # a token limited to some sources sees only their imports
        query = query.where(Import.source.in_(sorted(allowed)))
    if status:
        query = query.where(Import.status == status)
    if source:
        query = query.where(Import.source == source)
    if sha256:
        query = query.where(Import.sha256 == sha256)
    return query


def _elapsed_seconds() -> ColumnElement[float]:
    """SQL for an import's running time in seconds, up to now while it runs."""
    if db.session.get_bind().dialect.name == "sqlite":
        end = func.julianday(func.coalesce(Import.finished_at, func.datetime("now")))
        return (end - func.julianday(Import.started_at)) * 86400
    return func.extract("epoch", func.coalesce(Import.finished_at, func.now()) - Import.started_at)


def _totals(query: Select) -> dict[str, float | int | None]:
    """Counts summed over every import the filters match, and their combined rows per second."""
    matched = query.subquery()
    row = db.session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(matched.c.processed_rows), 0),
            func.coalesce(func.sum(matched.c.inserted_rows), 0),
            func.coalesce(func.sum(matched.c.duplicate_rows), 0),
            func.coalesce(func.sum(matched.c.rejected_rows), 0),
        ).select_from(matched)
    ).one()
    elapsed = db.session.scalar(
        select(func.sum(_elapsed_seconds())).where(
            Import.id.in_(select(matched.c.id)), Import.started_at.is_not(None)
        )
    )
    processed = int(row[1])
    return {
        "imports": int(row[0]),
        "processed": processed,
        "inserted": int(row[2]),
        "duplicates": int(row[3]),
        "rejected": int(row[4]),
        "elapsed": float(elapsed) if elapsed else None,
        "rows_per_second": processed / float(elapsed) if elapsed and processed else None,
    }


def _imports_listing() -> dict[str, object] | Response:
    """The page of imports the query string asks for, or a 400 for a filter that cannot be."""
    status = request.args.get("status") or None
    source = request.args.get("source") or None
    sha256 = (request.args.get("sha256") or "").strip().lower() or None
    if status and status not in IMPORT_STATUSES:
        return error_response(400, f"status must be one of {', '.join(IMPORT_STATUSES)}")
    if sha256 and not SHA256.match(sha256):
        return error_response(400, "sha256 must be 64 hexadecimal characters")
    if source and has_control_characters(source):
        return error_response(400, "source must not contain control characters")
    per_page = min(max(request.args.get("per_page", IMPORTS_PER_PAGE, type=int) or 1, 1), 100)
    query = _filtered(status, source, sha256)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    page = page_number()
    imports = db.session.scalars(
        query.order_by(Import.created_at.desc(), Import.id).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return {
        "imports": imports,
        "page": page,
        "pages": max(1, math.ceil(total / per_page)),
        "total": total,
        "status": status,
        "source": source,
        "per_page": per_page,
        "query": query,
    }


def _table_context(listing: dict[str, object]) -> dict[str, object]:
    query = listing.pop("query")
    return {
        **listing,
        "paces": {imp.id: pace_of(imp) for imp in listing["imports"]},
        "totals": _totals(query),
        "statuses": IMPORT_STATUSES,
    }


@bp.get("/imports")
def index() -> Response | str | dict:
    """Recent imports, newest first, filtered by status and source."""
    listing = _imports_listing()
    if isinstance(listing, Response):
        return listing
    if wants_json():
        return {
            "items": [imp.to_dict() for imp in listing["imports"]],
            "page": listing["page"],
            "pages": listing["pages"],
            "total": listing["total"],
        }
    sources = db.session.scalars(
        _filtered(None, None, None)
        .with_only_columns(Import.source)
        .distinct()
        .order_by(Import.source)
        .limit(200)
    ).all()
    return render_template("imports/index.html", sources=sources, **_table_context(listing))


@bp.get("/imports/table")
def imports_table() -> Response | str:
    """The imports table alone, which the list page polls to stay current."""
    listing = _imports_listing()
    if isinstance(listing, Response):
        return listing
    return render_template("imports/_table.html", **_table_context(listing))
