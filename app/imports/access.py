"""The import a request names, whether its principal may change it, and the answers its actions give."""

from __future__ import annotations

from flask import Response, abort, current_app, flash, g, redirect, request, url_for

from app.errors import error_response, wants_json
from app.extensions import csrf, db
from app.imports.body import has_control_characters
from app.models import Import
from app.principals import current_principal

# Far past any real page, and small enough that its offset stays a valid SQL integer.
PAGE_MAX = 1_000_000_000


def page_number(name: str = "page") -> int:
    """The page the query argument ``name`` asks for, within 1 to PAGE_MAX."""
    return min(max(1, request.args.get(name, 1, type=int) or 1), PAGE_MAX)


def import_or_404(job_id: str) -> Import:
    """The import, if it exists and this principal may see its source; 404 otherwise."""
    imp = None if has_control_characters(job_id) else db.session.get(Import, job_id)
    if imp is None or not current_principal().may_use(imp.source):
        abort(404, description="Import not found")
    return imp


def check_csrf_of_browsers() -> None:
    """Refuse a browser's form post without a valid CSRF token.

    A forged request rides on the victim's cookies; an API client that asks for JSON and sends
    no session cookie carries none, so it needs no token (as with ``POST /import``).
    """
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    if g.get("auth") == "token":  # an API token: the session cookie plays no part, nor CSRF
        return
    if wants_json() and current_app.config["SESSION_COOKIE_NAME"] not in request.cookies:
        return
    csrf.protect()


def action_answer(imp: Import, done: str) -> Response | dict:
    if wants_json():
        return imp.to_dict()
    flash(done, "success")
    return redirect(url_for("imports.detail", job_id=imp.id), code=303)


def changeable_or_403(job_id: str) -> Import:
    """The import, if this principal may change it: its own, or any with the admin scope."""
    imp = import_or_404(job_id)
    if not current_principal().may_change(imp.created_by):
        abort(403, description="This import was started by another client; only an admin token may change it")
    return imp


def action_refused(imp: Import, exc: Exception) -> Response:
    """409 with the reason for API clients; the import page with the reason for a browser."""
    db.session.rollback()
    if wants_json():
        return error_response(409, str(exc))
    flash(str(exc), "error")
    return redirect(url_for("imports.detail", job_id=imp.id), code=303)
