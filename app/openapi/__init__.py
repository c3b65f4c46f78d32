"""The API's contract as an OpenAPI 3.1 document, served at /openapi.json and fuzzed by the tests.

Each part of the API writes its own part of the document: imports, contacts and health here
(schemas, paths), previews and mappings (mapping), webhooks beside their blueprint.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask

from app.openapi.paths import PATHS
from app.openapi.schemas import RESPONSES, SCHEMAS

bp = Blueprint("openapi", __name__)


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the JSON API."""
    from app.openapi.mapping import extend
    from app.webhooks import openapi as webhooks  # it builds on app.openapi.parts

    return extend(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "DataFlow",
                "version": "1",
                "description": "Import contact lists. With API_TOKENS set, every operation but /health "
                "needs Authorization: Bearer <token>.",
            },
            "security": [{"bearerToken": []}],
            "paths": {**PATHS, **webhooks.PATHS},
            "components": {
                "securitySchemes": {"bearerToken": {"type": "http", "scheme": "bearer"}},
                "schemas": {**SCHEMAS, **webhooks.SCHEMAS},
                "responses": RESPONSES,
            },
        }
    )


@bp.get("/openapi.json")
def serve_document() -> dict[str, Any]:
    """The document, open to anyone: it describes the API, it holds no data."""
    return document()


def init_app(app: Flask) -> None:
    """Serve /openapi.json."""
    app.register_blueprint(bp)
