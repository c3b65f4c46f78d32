"""Following one import: its page, its progress, its row problems and rejected rows; retry and cancel."""

from __future__ import annotations

import math

from flask import Response, abort, render_template, request, stream_with_context
from sqlalchemy import func, select
from sqlalchemy.orm import defer

from app import fixes
from app.errors import wants_json
from app.extensions import csrf, db
from app.fields import describe_mapping
from app.filenames import content_disposition
from app.imports import bp
from app.imports.access import (
    action_answer,
    action_refused,
    changeable_or_403,
    check_csrf_of_browsers,
    import_or_404,
    page_number,
)
from app.imports.body import has_control_characters
from app.imports.pace import pace_of
from app.imports.rejected import rejected_csv
from app.imports.review_page import review_context
from app.imports.service import (
    ActionRefused,
    cancel_import,
    discard_queued_import,
    import_status,
    requeue_import,
    retry_import,
)
from app.models import Import, RowError
from app.principals import current_principal

ERRORS_PER_PAGE = 50

ROW_PROBLEM_LEVELS = ("error", "warning")


def _errors_page(imp: Import, page: int, level: str | None = "error") -> dict[str, object]:
    """A page of the import's row problems: rejected rows ("error"), rows stored with a warning, or both."""
    where = [RowError.import_id == imp.id]
    if level is not None:
        where.append(RowError.level == level)
    total = db.session.scalar(select(func.count()).where(*where))
    items = db.session.scalars(
        select(RowError)
        .where(*where)
        # The raw row is only for rejected.csv: a page of them could weigh megabytes.
        .options(defer(RowError.raw))
        .order_by(RowError.row, RowError.id)
        .limit(ERRORS_PER_PAGE)
        .offset((page - 1) * ERRORS_PER_PAGE)
    ).all()
    return {
        "items": [e.to_dict() for e in items],
        "page": page,
        "pages": max(1, math.ceil(total / ERRORS_PER_PAGE)),
        "total": total,
        "level": level,
    }


def _level() -> str | None:
    """The ``level`` asked for (error or warning); a wrong one is a 400 naming the right ones."""
    level = request.args.get("level") or None
    if level is not None and level not in ROW_PROBLEM_LEVELS:
        abort(400, description=f"level must be one of {', '.join(ROW_PROBLEM_LEVELS)}")
    return level


@bp.get("/imports/<job_id>")
def detail(job_id: str) -> Response | str | dict:
    """One import: its status, counts and progress."""
    if wants_json():
        status = None if has_control_characters(job_id) else import_status(job_id)
        if status is None or not current_principal().may_use(status["source"]):
            abort(404, description="Import not found")
        return status
    imp = import_or_404(job_id)
    if imp.status == "review" and imp.storage_key:
        return render_template("imports/review.html", **review_context(imp))
    fix_list = None
    if imp.rejected_rows and imp.is_final:
        after = max(0, request.args.get("after", 0, type=int) or 0)
        fix_list = fixes.list_context(imp, request.args.get("problem") or None, after)
    return render_template(
        "imports/detail.html",
        imp=imp,
        fix_list=fix_list,
        pace=pace_of(imp),
        errors=_errors_page(imp, page_number()),
        warnings=_errors_page(imp, page_number("warnings_page"), "warning"),
        mapping=describe_mapping(imp.mapping),
    )


@bp.get("/imports/<job_id>/progress")
def progress(job_id: str) -> str:
    """The import's status and progress; it polls itself only while the import has not ended."""
    imp = import_or_404(job_id)
    # The first poll that sees the import ended also refreshes the rejected rows beside it.
    ended_now = imp.is_final and request.headers.get("HX-Request") == "true"
    return render_template(
        "imports/_progress.html",
        imp=imp,
        pace=pace_of(imp),
        oob_errors=_errors_page(imp, 1) if ended_now else None,
        oob_warnings=_errors_page(imp, 1, "warning") if ended_now else None,
        oob_fixes=fixes.list_context(imp, None, 0) if ended_now and imp.rejected_rows else None,
        mapping=describe_mapping(imp.mapping),
    )


@bp.get("/imports/<job_id>/errors")
def errors(job_id: str) -> Response | str | dict:
    """The row problems of an import, a page at a time: rejected rows and warnings (``level`` picks one)."""
    imp = import_or_404(job_id)
    if wants_json():
        return _errors_page(imp, page_number(), _level())
    return render_template(
        "imports/_errors.html", imp=imp, errors=_errors_page(imp, page_number(), _level() or "error")
    )


@bp.get("/imports/<job_id>/rejected.csv")
def rejected(job_id: str) -> Response:
    """The rejected rows in their original columns plus an ``error`` column, as a download."""
    imp = import_or_404(job_id)
    stem = (imp.filename or "import").rsplit(".", 1)[0] or "import"
    response = Response(
        stream_with_context(rejected_csv(db.session, imp.id)), content_type="text/csv; charset=utf-8"
    )
    response.headers["Content-Disposition"] = content_disposition(f"{stem}-rejected.csv")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/imports/<job_id>/retry")
@csrf.exempt
def retry(job_id: str) -> Response | dict:
    """Run a failed import again from its checkpoint."""
    check_csrf_of_browsers()
    imp = changeable_or_403(job_id)
    try:
        retry_import(imp)
    except ActionRefused as exc:
        return action_refused(imp, exc)
    db.session.commit()
    requeue_import(imp.id)
    return action_answer(imp, "The import is queued again and continues where it stopped.")


@bp.post("/imports/<job_id>/cancel")
@csrf.exempt
def cancel(job_id: str) -> Response | dict:
    """Cancel a queued or running import; a running one stops after its current batch."""
    check_csrf_of_browsers()
    imp = changeable_or_403(job_id)
    storage_key = imp.storage_key
    try:
        was_queued = cancel_import(imp)
    except ActionRefused as exc:
        return action_refused(imp, exc)
    db.session.commit()
    if was_queued:
        discard_queued_import(imp.id, storage_key)
    return action_answer(imp, "The import is cancelled. Rows stored before it stopped are kept.")
