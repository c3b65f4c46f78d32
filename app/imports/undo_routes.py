"""Routes of an import's undo: a confirmation page, the undo itself, and the cancel of a running undo."""

from __future__ import annotations

from flask import Response, render_template

from app import undo
from app.errors import wants_json
from app.extensions import csrf, db
from app.imports import bp
from app.imports.access import (
    action_answer,
    action_refused,
    changeable_or_403,
    check_csrf_of_browsers,
    import_or_404,
)
from app.imports.service import ActionRefused


@bp.get("/imports/<job_id>/undo")
def confirm_undo(job_id: str) -> str:
    """The page that says what an undo will do, with the button that does it (works without JavaScript)."""
    return render_template("imports/undo.html", imp=import_or_404(job_id))


@bp.post("/imports/<job_id>/undo")
@csrf.exempt
def post_undo(job_id: str) -> Response | tuple[dict, int]:
    """Start undoing a finished import: 202 and the import, its status ``undoing``."""
    check_csrf_of_browsers()
    imp = changeable_or_403(job_id)
    try:
        undo.request_undo(imp)
    except ActionRefused as exc:
        return action_refused(imp, exc)
    db.session.commit()
    undo.enqueue_undo(imp.id)
    db.session.refresh(imp)
    answer = action_answer(imp, "The import is being undone.")
    return (answer, 202) if wants_json() else answer  # type: ignore[return-value]


@bp.post("/imports/<job_id>/undo/cancel")
@csrf.exempt
def cancel_undo(job_id: str) -> Response | dict:
    """Stop an undo after its current batch; a second undo finishes it."""
    check_csrf_of_browsers()
    imp = changeable_or_403(job_id)
    try:
        undo.cancel_undo(imp)
    except ActionRefused as exc:
        return action_refused(imp, exc)
    db.session.commit()
    db.session.refresh(imp)
    return action_answer(imp, "The undo is cancelled. Undo the import again to finish it.")
