"""Rate limits per API token, signed-in user or client address, counted in Redis so every worker agrees.

``RATE_LIMIT`` counts every request a client makes, whatever the route; ``IMPORT_RATE_LIMIT`` counts
the requests that start an import and ``LOGIN_RATE_LIMIT`` the sign-in attempts. All are checked
before the request is authenticated, so guessing tokens or passwords is limited too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask, Response, current_app, request
from flask_limiter import ApplicationLimit, Limit, Limiter, RateLimitExceeded

from app.auth import request_identity
from app.errors import http_error
from app.extensions import settings

# Probed by load balancers and scrapers far more often than any person would call them.
EXEMPT_ENDPOINTS = frozenset({"ops.health", "metrics", "static"})
IMPORT_ENDPOINTS = frozenset({"imports.post_import", "imports.new", "uploads.create"})
LOGIN_ENDPOINTS = frozenset({"auth.login"})


def limiter_storage_uri(redis_url: str | None) -> str:
    """The limits library's name for the app's Redis (a unix socket for the embedded one)."""
    if not redis_url:
        # Only a bare `flask run` has no REDIS_URL (`flask serve` hands the embedded server's socket
        # to its processes), and that is a single process: counting in memory is the same thing.
        return "memory://"
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://") :]
    return redis_url


def rate_limit_key() -> str:
    """Count per token or user when the request proves one, else per client address."""
    return request_identity() or f"ip:{request.remote_addr or 'unknown'}"


def _setting(name: str) -> Callable[[], str]:
    return lambda: getattr(settings(current_app).security, name)


def _refusal(name: str) -> Callable[[], str]:
    return lambda: f"Too many requests: the limit is {_setting(name)()}. Try again after Retry-After seconds."


def _only_posts_to(endpoints: frozenset[str]) -> Callable[[], bool]:
    """An exemption for every request but a POST to one of ``endpoints``."""
    return lambda: request.method != "POST" or request.endpoint not in endpoints


def _refused(exc: RateLimitExceeded) -> Response:
    """429 with the error in the usual shape, and Retry-After: the seconds until the window frees up."""
    response = http_error(exc)
    limit = current_app.extensions["dataflow"]["limiter"].current_limit
    wait = int(limit.reset_at - time.time()) if limit is not None else 60
    response.headers["Retry-After"] = str(max(1, wait))
    return response


def init_app(app: Flask) -> None:
    """Count requests in the app's Redis and answer 429 with Retry-After past a limit."""
    security = settings(app).security
    app.config.update(
        RATELIMIT_ENABLED=security.rate_limits_enabled,
        RATELIMIT_STORAGE_URI=limiter_storage_uri(settings(app).redis_url),
        RATELIMIT_STRATEGY="moving-window",
        # Only a refusal says when to come back (Retry-After); other answers carry no limit headers.
        RATELIMIT_HEADERS_ENABLED=False,
        # A Redis outage must not take the API down with it; /health reports it.
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_KEY_PREFIX="dataflow",
    )
    app.register_error_handler(RateLimitExceeded, _refused)
    # One limiter per app: its storage is the app's Redis, and tests build many apps.
    limiter = Limiter(
        rate_limit_key,
        application_limits=[ApplicationLimit(_setting("rate_limit"), error_message=_refusal("rate_limit"))],
        default_limits=[
            Limit(
                _setting(name),
                exempt_when=_only_posts_to(endpoints),
                error_message=_refusal(name),
            )
            for name, endpoints in (
                ("import_rate_limit", IMPORT_ENDPOINTS),
                ("login_rate_limit", LOGIN_ENDPOINTS),
            )
        ],
    )
    limiter.request_filter(lambda: request.endpoint in EXEMPT_ENDPOINTS)
    limiter.init_app(app)
    app.extensions["dataflow"]["limiter"] = limiter
