"""The building blocks of the OpenAPI document: references, JSON answers, shared parameters.

Each part of the document (imports, mappings, webhooks) writes its schemas and paths with these.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _responses(ok: dict[str, Any], *extra: str) -> dict[str, Any]:
    codes = {"400": "BadRequest", "401": "Unauthorized", "404": "NotFound", "413": "TooLarge"}
    codes |= {"415": "UnsupportedType"}
    codes |= {"403": "Forbidden", "429": "RateLimited", "503": "Unavailable"}
    responses = dict(ok)
    for code in ("401", "403", "429", *extra):
        responses[code] = {"$ref": f"#/components/responses/{codes[code]}"}
    return responses


def _page_parameter() -> dict[str, Any]:
    return {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}}


def _job_id() -> dict[str, Any]:
    return {"name": "jobId", "in": "path", "required": True, "schema": {"type": "string"}}


def _header(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "header", "description": description, "schema": {"type": "string", **schema}}
