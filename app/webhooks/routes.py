"""Routes for webhooks: the JSON API and the pages, thin, committing what the service did."""

from __future__ import annotations

import json
from datetime import datetime

from flask import Blueprint, Flask, Response, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from app.errors import error_response, wants_json
from app.extensions import csrf, db
from app.imports.access import check_csrf_of_browsers
from app.imports.display import moment
from app.models import Import
from app.webhooks import IMPORT_EVENTS
from app.webhooks.endpoints import (
    BadInput,
    Refused,
    create_endpoint,
    delete_endpoint,
    deliveries_page,
    endpoint_json,
    import_webhooks,
    messages_with_attempts,
    parse_since,
    recover,
    retry_message,
    set_enabled,
    update_endpoint,
)
from app.webhooks.models import WebhookEndpoint, WebhookEvent, WebhookMessage
from app.webhooks.outbox import record_ping
from app.webhooks.signing import rotated

bp = Blueprint("webhooks", __name__)
PAGE_MAX = 1_000_000
BODY_MAX = 64 * 1024
MESSAGE_STATUSES = ("pending", "delivered", "failed")


@bp.before_request
def _protect_forms() -> None:
    """API clients (a token, or JSON without a session) need no CSRF token; browsers' forms do."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        check_csrf_of_browsers()


def _endpoint_or_404(endpoint_id: str) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) if len(endpoint_id) <= 36 else None
    if endpoint is None:
        abort(404, description="No webhook endpoint has this id")
    return endpoint


class BodyTooLarge(BadInput):
    """An endpoint's fields fit in a few hundred bytes; a body past BODY_MAX is refused unread."""


def _json_body() -> object:
    if request.mimetype != "application/json":
        raise BadInput("Send the fields as JSON (Content-Type: application/json)")
    data = request.stream.read(BODY_MAX + 1)
    if len(data) > BODY_MAX:
        raise BodyTooLarge(
            f"The body is larger than {BODY_MAX // 1024} KB; an endpoint's fields need far less"
        )
    try:
        return json.loads(data or b"null")
    except (ValueError, UnicodeDecodeError):
        raise BadInput("The body is not valid JSON") from None


def _status(exc: BadInput) -> int:
    return 413 if isinstance(exc, BodyTooLarge) else 400


def _page() -> int:
    return min(max(1, request.args.get("page", 1, type=int) or 1), PAGE_MAX)


def _back(endpoint_id: str, message: str, category: str = "success") -> Response:
    flash(message, category)
    return redirect(url_for("webhooks.show", endpoint_id=endpoint_id), code=303)


def _form_body() -> dict[str, object]:
    """The create form's fields as the API's JSON fields."""
    return {
        "url": request.form.get("url", ""),
        "events": request.form.getlist("events"),
        "description": request.form.get("description", ""),
    }


@bp.get("/webhooks")
def index() -> Response | str | dict:
    """Every endpoint, newest first; the page also has the form that adds one."""
    endpoints = db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at.desc())).all()
    if wants_json():
        return {"items": [endpoint_json(e) for e in endpoints]}
    return render_template("webhooks/index.html", endpoints=endpoints, events=IMPORT_EVENTS, form={})


@bp.post("/webhooks")
@csrf.exempt
def create() -> Response | tuple[object, int]:
    """Add an endpoint; the answer shows its secret, this once."""
    from_form = request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")
    try:
        endpoint = create_endpoint(_form_body() if from_form else _json_body())
    except BadInput as exc:
        db.session.rollback()
        if from_form and not wants_json():
            flash(str(exc), "error")
            endpoints = db.session.scalars(select(WebhookEndpoint)).all()
            page = render_template(
                "webhooks/index.html", endpoints=endpoints, events=IMPORT_EVENTS, form=_form_body()
            )
            return page, 400
        return error_response(_status(exc), str(exc))
    db.session.commit()
    if wants_json():
        response = Response(
            json.dumps(endpoint_json(endpoint, secret=True)), 201, mimetype="application/json"
        )
        response.headers["Location"] = url_for("webhooks.show", endpoint_id=endpoint.id)
        return response
    return render_template("webhooks/secret.html", endpoint=endpoint, created=True), 201


@bp.get("/webhooks/<endpoint_id>")
def show(endpoint_id: str) -> Response | str | dict:
    """One endpoint; its page lists its messages with their attempts."""
    endpoint = _endpoint_or_404(endpoint_id)
    if wants_json():
        return endpoint_json(endpoint)
    status = request.args.get("status") if request.args.get("status") in MESSAGE_STATUSES else None
    return render_template(
        "webhooks/detail.html",
        endpoint=endpoint,
        deliveries=deliveries_page(endpoint, _page(), status),
        status=status,
        statuses=MESSAGE_STATUSES,
        events=IMPORT_EVENTS,
    )


@bp.patch("/webhooks/<endpoint_id>")
@csrf.exempt
def patch(endpoint_id: str) -> Response | dict:
    """Change an endpoint's url, events, description or enabled."""
    endpoint = _endpoint_or_404(endpoint_id)
    try:
        update_endpoint(endpoint, _json_body())
    except BadInput as exc:
        db.session.rollback()
        return error_response(_status(exc), str(exc))
    db.session.commit()
    return endpoint_json(endpoint)


@bp.delete("/webhooks/<endpoint_id>")
@csrf.exempt
def delete(endpoint_id: str) -> Response:
    """Remove an endpoint with its messages and their log."""
    endpoint = _endpoint_or_404(endpoint_id)
    delete_endpoint(endpoint)
    db.session.commit()
    return Response(status=204)


@bp.post("/webhooks/<endpoint_id>/delete")
@csrf.exempt
def delete_from_page(endpoint_id: str) -> Response:
    """The page's delete button."""
    endpoint = _endpoint_or_404(endpoint_id)
    delete_endpoint(endpoint)
    db.session.commit()
    flash(f"The endpoint {endpoint.url} is deleted.", "success")
    return redirect(url_for("webhooks.index"), code=303)


@bp.post("/webhooks/<endpoint_id>/<any(enable, disable):action>")
@csrf.exempt
def enable_or_disable(endpoint_id: str, action: str) -> Response | dict:
    """The page's enable and disable buttons (the API uses PATCH with enabled)."""
    endpoint = _endpoint_or_404(endpoint_id)
    set_enabled(endpoint, action == "enable")
    db.session.commit()
    if wants_json():
        return endpoint_json(endpoint)
    done = "enabled" if endpoint.enabled else "disabled; messages waiting for it are marked failed"
    return _back(endpoint.id, f"The endpoint is {done}.")


@bp.post("/webhooks/<endpoint_id>/rotate-secret")
@csrf.exempt
def rotate_secret(endpoint_id: str) -> Response | str | dict:
    """A new secret; the old one keeps signing beside it for 24 hours."""
    endpoint = _endpoint_or_404(endpoint_id)
    endpoint.secret, endpoint.old_secrets = rotated(endpoint.secret, endpoint.old_secrets)
    db.session.commit()
    if wants_json():
        return endpoint_json(endpoint, secret=True)
    return render_template("webhooks/secret.html", endpoint=endpoint, created=False)


def _message_answer(message: WebhookMessage, done: str) -> Response | tuple[dict, int]:
    if wants_json():
        query = select(WebhookMessage).where(WebhookMessage.id == message.id)
        query = query.join(WebhookEvent, WebhookEvent.id == WebhookMessage.event_id)
        return messages_with_attempts(query)[0], 202
    return _back(message.endpoint_id, done)


@bp.post("/webhooks/<endpoint_id>/test")
@csrf.exempt
def test(endpoint_id: str) -> Response | tuple[dict, int]:
    """Send a ``ping`` to the endpoint now."""
    endpoint = _endpoint_or_404(endpoint_id)
    if not endpoint.enabled:
        return _refused(endpoint.id, "The endpoint is disabled; enable it first, then send a test.")
    message = record_ping(db.session, endpoint)
    db.session.commit()
    return _message_answer(message, "A ping is on its way; its attempt shows below in a moment.")


def _refused(endpoint_id: str, message: str) -> Response:
    db.session.rollback()
    if wants_json():
        return error_response(409, message)
    return _back(endpoint_id, message, "error")


@bp.get("/webhooks/<endpoint_id>/deliveries")
def deliveries(endpoint_id: str) -> Response | dict:
    """The endpoint's messages, newest first, 25 a page, each with its attempts."""
    endpoint = _endpoint_or_404(endpoint_id)
    status = request.args.get("status") or None
    if status and status not in MESSAGE_STATUSES:
        return error_response(400, f"status must be one of {', '.join(MESSAGE_STATUSES)}")
    return deliveries_page(endpoint, _page(), status)


@bp.post("/webhooks/deliveries/<message_id>/retry")
@csrf.exempt
def retry(message_id: str) -> Response | tuple[dict, int]:
    """Send one message again now, with the same webhook-id."""
    message = db.session.get(WebhookMessage, message_id) if len(message_id) <= 36 else None
    if message is None:
        abort(404, description="No webhook delivery has this id")
    try:
        retry_message(message)
    except Refused as exc:
        return _refused(message.endpoint_id, str(exc))
    db.session.commit()
    return _message_answer(message, "The message is on its way again.")


@bp.post("/webhooks/<endpoint_id>/recover")
@csrf.exempt
def recover_failed(endpoint_id: str) -> Response | tuple[dict, int]:
    """Send again every failed message since a time (``?since=`` or the page's field)."""
    endpoint = _endpoint_or_404(endpoint_id)
    try:
        since = parse_since(request.args.get("since") or request.form.get("since"))
        count = recover(endpoint, since)
    except BadInput as exc:
        if wants_json():
            return error_response(400, str(exc))
        return _back(endpoint.id, str(exc), "error")
    except Refused as exc:
        return _refused(endpoint.id, str(exc))
    db.session.commit()
    if wants_json():
        return {"recovered": count}, 202
    return _back(
        endpoint.id,
        f"{count} failed message{'s' if count != 1 else ''} on {'their' if count != 1 else 'its'} way again.",
    )


@bp.get("/webhooks/for-import/<import_id>")
def import_fragment(import_id: str) -> str:
    """The import page's list of its deliveries, which polls itself while they may change."""
    imp = db.session.get(Import, import_id) if len(import_id) <= 36 else None
    if imp is None:
        abort(404, description="Import not found")
    return render_template("webhooks/_import_deliveries.html", imp=imp)


def init_app(app: Flask) -> None:
    """Register the routes, and ``webhooks_of(import)`` for the import page."""
    app.register_blueprint(bp)
    app.add_template_global(import_webhooks, "webhooks_of")
    app.add_template_filter(_iso_moment, "iso_moment")


def _iso_moment(value: str | None) -> str:
    """A time as the API writes it (ISO 8601), shown as the pages show times."""
    return moment(datetime.fromisoformat(value), short=True) if value else "–"
