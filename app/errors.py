"""Error handlers that answer JSON to API clients and a page to browsers."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge, ServiceUnavailable

log = logging.getLogger(__name__)


def wants_json() -> bool:
    """Whether the client prefers JSON to HTML (API clients, curl, fetch); HTMX always wants HTML."""
    if request.headers.get("HX-Request") == "true":
        return False
    accept = request.accept_mimetypes
    return accept["application/json"] >= accept["text/html"]


def error_response(status: int, message: str) -> Response:
    """A JSON error in the original's shape: ``{"error": "..."}``."""
    response = jsonify(error=message)
    response.status_code = status
    return response


def _handle_http(exc: HTTPException) -> Response | tuple[str, int]:
    if exc.code == 404 and (exc.description or "").startswith("The requested URL"):
        message = "Not found"
    elif exc.code == 413 and exc.description == RequestEntityTooLarge.description:
        message = "The request body is larger than the upload limit"
    elif isinstance(exc, CSRFError) and not wants_json():  # API clients get Flask-WTF's reason
        message = (
            "This form has expired or did not come from this site, so nothing was changed. "
            "Go back, reload the page and try again."
        )
    else:
        message = exc.description or exc.name
    if wants_json():
        response = error_response(exc.code or 500, message)
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response
    template = "errors/404.html" if exc.code == 404 else "errors/error.html"
    return render_template(template, code=exc.code, title=exc.name, message=message), exc.code


def _handle_storage_unavailable(exc: Exception) -> Response | tuple[str, int]:
    log.warning("storage unavailable: %s", exc)
    return _handle_http(
        ServiceUnavailable("Storage cannot be reached right now; nothing was stored. Try again shortly.")
    )


def _handle_storage_full(exc: Exception) -> Response | tuple[str, int]:
    log.warning("storage full: %s", exc)
    if wants_json():
        return error_response(507, str(exc))
    return render_template("errors/error.html", code=507, title="Insufficient Storage", message=str(exc)), 507


def http_error(exc: HTTPException) -> Response:
    """The answer an HTTP error gets: JSON for API clients, a page for browsers."""
    return make_response(_handle_http(exc))


def _handle_unexpected(exc: Exception) -> Response | tuple[str, int]:
    log.exception("unhandled error")
    return _handle_http(InternalServerError("Something went wrong on our side. It has been logged."))


def init_app(app: Flask) -> None:
    """Register the handlers."""
    from app.storage import StorageFull, StorageUnavailable

    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(StorageUnavailable, _handle_storage_unavailable)
    app.register_error_handler(StorageFull, _handle_storage_full)
    app.register_error_handler(Exception, _handle_unexpected)
