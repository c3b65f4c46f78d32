"""Who a request acts for (a token, a user, or no one while authentication is off) and what it may do.

An API token has scopes: ``read`` (status, lists, errors, metrics), ``import`` (start, retry and
cancel its own imports, tus uploads) and ``admin`` (everything, other principals' imports
included), and may be limited to some sources. A bare token in ``API_TOKENS`` and a signed-in user
have every right. Uploads belong to the principal that created them, imports record who started
them, and idempotency keys are kept per principal.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from flask import Flask, Response, g, request

from app.config import TokenGrant
from app.errors import error_response

ALL_SCOPES = frozenset({"read", "import", "admin"})
# Routes that need no scope: signing in and out, health, the contract, static files.
UNSCOPED_ENDPOINTS = frozenset(
    {"auth.login", "auth.logout", "ops.health", "openapi.serve_document", "static"}
)
# Blueprints whose every request changes what clients are told or sent: admin only.
ADMIN_BLUEPRINTS = frozenset({"webhooks"})
# Blueprints whose reads are part of importing (a tus client asks for its upload's offset).
IMPORT_BLUEPRINTS = frozenset({"uploads"})


@dataclass(frozen=True)
class Principal:
    """Whoever a request acts for: ``id`` is what imports and uploads record ("" for no one)."""

    id: str
    scopes: frozenset[str] = ALL_SCOPES
    sources: frozenset[str] | None = None

    def has(self, scope: str) -> bool:
        """Whether this principal holds the scope (admin holds them all)."""
        return "admin" in self.scopes or scope in self.scopes

    def may_use(self, source: str) -> bool:
        """Whether this principal may import into, or read the imports of, a source."""
        return self.sources is None or source in self.sources

    def may_change(self, created_by: str | None) -> bool:
        """Whether it may retry, cancel or otherwise change an import started by ``created_by``."""
        return self.has("admin") or (self.has("import") and created_by == self.id)


ANONYMOUS = Principal("")


def fingerprint(token: str) -> str:
    """The short SHA-256 of a token that imports record: ``printf %s "$TOKEN" | sha256sum | cut -c1-12``."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def grant_of(token: str, grants: tuple[TokenGrant, ...]) -> TokenGrant | None:
    """The grant of a token, compared in constant time against every configured one."""
    found = None
    for grant in grants:
        if hmac.compare_digest(token.encode(), grant.token.encode()):
            found = grant
    return found


def for_token(grant: TokenGrant) -> Principal:
    """The principal of an API token."""
    return Principal("token:" + fingerprint(grant.token), grant.scopes, grant.sources)


def for_user(email: str) -> Principal:
    """The principal of a signed-in user: every right."""
    return Principal("user:" + email)


def current_principal() -> Principal:
    """Whoever this request acts for; ANONYMOUS while authentication is off."""
    return g.get("principal") or ANONYMOUS


def label(created_by: str | None) -> str:
    """How the pages name a principal: the user's email, or which token."""
    if not created_by:
        return "–"
    kind, _, name = created_by.partition(":")
    return f"API token {name}" if kind == "token" else name


def required_scope() -> str | None:
    """The scope this request needs, from its route and method."""
    endpoint = request.endpoint or ""
    if not endpoint or endpoint in UNSCOPED_ENDPOINTS:
        return None
    blueprint = endpoint.partition(".")[0] if "." in endpoint else ""
    if blueprint in ADMIN_BLUEPRINTS:
        return "admin"
    if blueprint in IMPORT_BLUEPRINTS or request.method not in ("GET", "HEAD", "OPTIONS"):
        return "import"
    return "read"


def _check_scope() -> Response | None:
    """403 when the token lacks the scope the route needs."""
    scope = required_scope()
    principal = current_principal()
    if scope is None or principal.has(scope):
        return None
    return error_response(403, f"This API token lacks the {scope} scope that this request needs")


def init_app(app: Flask) -> None:
    """Check scopes after authentication; give the pages the ``principal`` filter."""
    app.before_request(_check_scope)
    app.add_template_filter(label, "principal")
