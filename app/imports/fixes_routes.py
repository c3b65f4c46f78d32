"""Routes of fixing rejected rows: the list (HTMX), one row's edit or dismissal, and the follow-up import."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for

from app import fixes
from app.errors import error_response, wants_json
from app.extensions import csrf, db
from app.imports import bp
from app.imports.access import action_refused, changeable_or_403, check_csrf_of_browsers, import_or_404
from app.imports.service import ActionRefused, enqueue_import

CELL = "cell:"  # form fields of a row's cells are named "cell:<header>"


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def _list_context(imp: Any) -> dict[str, Any]:
    after = max(0, request.args.get("after", 0, type=int) or 0)
    return fixes.list_context(imp, request.args.get("problem") or None, after)


@bp.get("/imports/<job_id>/fixes")
def fixes_list(job_id: str) -> str:
    """The rejected rows, editable, a page at a time, of one problem if asked."""
    return render_template("imports/_fixes.html", **_list_context(import_or_404(job_id)))


@bp.post("/imports/<job_id>/fixes/<int:row>")
@csrf.exempt
def fix_row(job_id: str, row: int) -> Response | str:
    """Save one row's edited cells (checked at once), or dismiss it; HTMX gets the row back."""
    check_csrf_of_browsers()
    imp = changeable_or_403(job_id)
    try:
        if request.form.get("dismiss"):
            fix = fixes.dismiss_row(imp, row)
        else:
            values = {k[len(CELL) :]: v for k, v in request.form.items() if k.startswith(CELL)}
            fix = fixes.edit_row(imp, row, values)
    except fixes.FixRefused as exc:
        db.session.rollback()
        abort(400, description=str(exc))
    except ActionRefused as exc:
        return action_refused(imp, exc)
    db.session.commit()
    if _is_htmx():
        return render_template("imports/_fix_row.html", imp=imp, r=fixes.shown_row(imp, fix), fixable=True)
    return redirect(url_for("imports.detail", job_id=imp.id, _anchor=f"row-{row}"), code=303)


def _json_fixes() -> tuple[list[dict[str, Any]], list[int]]:
    """The body of ``POST /imports/<id>/fixes``, checked for shape; a wrong one is a 400."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description='The body must be a JSON object: {"rows": [...], "dismiss": [...]}')
    rows, dismiss = body.get("rows") or [], body.get("dismiss") or []
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and type(r.get("row")) is int and isinstance(r.get("values", {}), dict)
        for r in rows
    ):
        abort(400, description='rows must be a list of {"row": <number>, "values": {"<column>": "<text>"}}')
    if not isinstance(dismiss, list) or not all(type(n) is int for n in dismiss):
        abort(400, description="dismiss must be a list of row numbers")
    return rows, dismiss


@bp.post("/imports/<job_id>/fixes")
@csrf.exempt
def post_fixes(job_id: str) -> Response | tuple[dict, int] | dict:
    """Apply edits and dismissals, then import the fixed rows as a follow-up import: 202 and its jobId."""
    check_csrf_of_browsers()
    imp = changeable_or_403(job_id)
    rows, dismiss = _json_fixes() if request.is_json else ([], [])
    try:
        edited = [fixes.edit_row(imp, item["row"], item.get("values") or {}) for item in rows]
        for row in dismiss:
            fixes.dismiss_row(imp, row)
        # A row edited, then dismissed in the same request, is dismissed rather than not ready.
        not_ready = [{"row": f.row, "problem": f.problem} for f in edited if f.problem and not f.dismissed]
        follow_up = fixes.import_fixes(imp)
    except fixes.FixRefused as exc:
        db.session.rollback()
        return error_response(400, str(exc))
    except ActionRefused as exc:
        return action_refused(imp, exc)
    db.session.commit()
    if follow_up is not None:
        enqueue_import(follow_up.id)
    if wants_json():
        if follow_up is None:
            return {"jobId": None, "dismissed": len(dismiss), "notReady": not_ready}
        return follow_up.to_dict() | {"notReady": not_ready}, 202
    if follow_up is None:
        flash("No row is ready to import: fix a row first.", "error")
        return redirect(url_for("imports.detail", job_id=imp.id, _anchor="fixes"), code=303)
    flash("The fixed rows are being imported.", "success")
    return redirect(url_for("imports.detail", job_id=follow_up.id), code=303)
