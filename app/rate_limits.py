"""Rate limits per API token, signed-in user or client address, counted in Redis so every worker agrees.

``RATE_LIMIT`` counts every request a client makes, whatever the route; ``IMPORT_RATE_LIMIT`` counts
the requests that start an import and ``LOGIN_RATE_LIMIT`` the sign-in attempts. All are checked
before the request is authenticated, so guessing tokens or passwords is limited too.

The counting is the ``limits`` library's moving window, called straight from one hook: every request
pays for it, and the generic extension around it cost twice the Redis round trip itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import Flask, Response, current_app, request
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError
from werkzeug.exceptions import TooManyRequests

from app.auth import request_identity
from app.errors import http_error
from app.extensions import redis, settings

log = logging.getLogger(__name__)

# Probed by load balancers and scrapers far more often than any person would call them.
EXEMPT_ENDPOINTS = frozenset({"ops.health", "metrics", "static"})
IMPORT_ENDPOINTS = frozenset({"imports.post_import", "imports.new", "uploads.create"})
LOGIN_ENDPOINTS = frozenset({"auth.login"})
KEY_PREFIX = "dataflow"


@dataclass(frozen=True)
class Rule:
    """One limit: as configured, as counted, and the bucket it counts in."""

    limit: str
    rate: RateLimitItem
    scope: str


@dataclass(frozen=True)
class RateLimits:
    """The app's limits, parsed once, and the moving window that counts them."""

    window: MovingWindowRateLimiter
    overall: Rule
    # A POST to one of these endpoints is also counted against its own rule.
    posts: dict[str, Rule]


class RateLimited(TooManyRequests):
    """A request past a limit; ``retry_after`` is the seconds until its window frees up."""

    def __init__(self, rule: Rule, retry_after: int) -> None:
        super().__init__(
            f"Too many requests: the limit is {rule.limit}. Try again after Retry-After seconds."
        )
        self.retry_after = retry_after


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


def _rules(limits: RateLimits, endpoint: str | None) -> list[Rule]:
    rules = [limits.overall]
    if request.method == "POST" and endpoint in limits.posts:
        rules.append(limits.posts[endpoint])
    return rules


def _check() -> None:
    """Count the request against each limit it falls under; past one, refuse it with 429."""
    endpoint = request.endpoint
    if endpoint in EXEMPT_ENDPOINTS:
        return
    # A path that matches no route counts too: a scan of random paths is refused like any flood.
    limits: RateLimits = current_app.extensions["dataflow"]["rate_limits"]
    window = limits.window
    key = rate_limit_key()
    for rule in _rules(limits, endpoint):
        try:
            if window.hit(rule.rate, KEY_PREFIX, key, rule.scope):
                continue
            reset_at = window.get_window_stats(rule.rate, KEY_PREFIX, key, rule.scope).reset_time
        except RedisError:
            # A Redis outage must not take the API down with it; /health reports it.
            log.exception("rate limits cannot be counted; the request is let through")
            return
        log.info("rate limit %s exceeded by %s at %s", rule.rate, key, rule.scope)
        raise RateLimited(rule, retry_after=max(1, int(reset_at - time.time())))


def _refused(exc: RateLimited) -> Response:
    """429 with the error in the usual shape, and Retry-After: the seconds until the window frees up."""
    response = http_error(exc)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def init_app(app: Flask) -> None:
    """Count requests in the app's Redis and answer 429 with Retry-After past a limit."""
    security = settings(app).security
    app.register_error_handler(RateLimited, _refused)
    if not security.rate_limits_enabled:
        return
    # Counted in the app's own Redis connections: no second pool per process.
    uri = limiter_storage_uri(settings(app).redis_url)
    options = {"connection_pool": redis(app).connection_pool} if uri != "memory://" else {}
    storage = storage_from_string(uri, **options)
    app.extensions["dataflow"]["rate_limits"] = RateLimits(
        window=MovingWindowRateLimiter(storage),
        overall=Rule(security.rate_limit, parse(security.rate_limit), "global"),
        posts={
            endpoint: Rule(limit, parse(limit), endpoint)
            for limit, endpoints in (
                (security.import_rate_limit, IMPORT_ENDPOINTS),
                (security.login_rate_limit, LOGIN_ENDPOINTS),
            )
            for endpoint in endpoints
        },
    )
    app.before_request(_check)
