"""The API's contract as an OpenAPI 3.1 document, served at /openapi.json and fuzzed by the tests."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask

from app.imports.body import SOURCE_MAX
from app.models import IMPORT_STATUSES, MERGE_MODES
from app.validation import EMAIL_MAX, NAME_MAX

bp = Blueprint("openapi", __name__)

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


_MODE = {
    "enum": list(MERGE_MODES),
    "default": "skip",
    "description": "What happens to a contact the source already has: skip leaves it alone, fill fills "
    "its empty fields, update overwrites its fields with the file's non-empty values",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "BodyIssues": {
        "type": "object",
        "required": ["error", "issues"],
        "properties": {
            "error": {"type": "string"},
            "issues": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["path", "message"],
                    "properties": {
                        "path": {"type": "array", "items": {"type": ["string", "integer"]}},
                        "message": {"type": "string"},
                    },
                },
            },
            "moreIssues": {"type": "integer", "minimum": 1},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["jobId"],
        "properties": {"jobId": {"type": "string"}},
        "additionalProperties": False,
    },
    "Import": {
        "type": "object",
        "required": [
            "jobId",
            "status",
            "source",
            "format",
            "filename",
            "useResumable",
            "sizeBytes",
            "totalRows",
            "processedRows",
            "insertedRows",
            "duplicateRows",
            "rejectedRows",
            "attempts",
            "error",
            "createdAt",
            "startedAt",
            "finishedAt",
        ],  # fmt: skip
        "properties": {
            "jobId": {"type": "string"},
            "status": {"enum": list(IMPORT_STATUSES)},
            "source": {"type": "string"},
            "format": _nullable("string"),
            "filename": _nullable("string"),
            "useResumable": {"type": "boolean"},
            "sizeBytes": _nullable("integer", minimum=0),
            "sha256": _nullable("string"),
            "totalRows": _nullable("integer", minimum=0),
            "processedRows": {"type": "integer", "minimum": 0},
            "insertedRows": {"type": "integer", "minimum": 0},
            "duplicateRows": {"type": "integer", "minimum": 0},
            "rejectedRows": {"type": "integer", "minimum": 0},
            "updatedRows": {"type": "integer", "minimum": 0},
            "unchangedRows": {"type": "integer", "minimum": 0},
            "warningRows": {"type": "integer", "minimum": 0},
            "mode": {"enum": list(MERGE_MODES)},
            "mapping": {
                "type": ["object", "null"],
                "description": "Which column went to which field (a name in parts and several email or "
                "phone candidates are lists); attributes lists the columns kept as extra fields",
                "properties": {
                    **{
                        field: {"type": ["string", "array", "null"], "items": {"type": "string"}}
                        for field in ("name", "email", "phone")
                    },
                    "company": _nullable("string"),
                    "title": _nullable("string"),
                    "attributes": {"type": "array", "items": {"type": "string"}},
                },
            },
            "attempts": {"type": "integer", "minimum": 0},
            "error": _nullable("string"),
            "createdBy": _nullable(
                "string", description='Who started it: "user:<email>", "token:<fingerprint>", or null'
            ),
            "createdAt": {"type": "string", "format": "date-time"},
            "startedAt": _nullable("string", format="date-time"),
            "finishedAt": _nullable("string", format="date-time"),
            "undoneRows": {"type": "integer", "minimum": 0},
            "keptRows": {"type": "integer", "minimum": 0},
            "undoneAt": _nullable("string", format="date-time"),
            "fixes": _nullable("string"),
        },
    },
    "ImportPage": {
        "type": "object",
        "required": ["items", "page", "pages", "total"],
        "properties": {
            "items": {"type": "array", "items": _ref("Import")},
            "page": {"type": "integer", "minimum": 1},
            "pages": {"type": "integer", "minimum": 1},
            "total": {"type": "integer", "minimum": 0},
        },
    },
    "RowErrorPage": {
        "type": "object",
        "required": ["items", "page", "pages", "total"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["row", "level", "field", "message", "value"],
                    "properties": {
                        "row": {"type": "integer"},
                        "level": {"enum": ["error", "warning"]},
                        "field": _nullable("string"),
                        "message": {"type": "string"},
                        "value": _nullable("string"),
                    },
                },
            },
            "page": {"type": "integer", "minimum": 1},
            "pages": {"type": "integer", "minimum": 1},
            "total": {"type": "integer", "minimum": 0},
        },
    },
    "Contact": {
        "type": "object",
        "required": [
            "id",
            "name",
            "email",
            "phone",
            "company",
            "title",
            "attributes",
            "source",
            "importId",
            "importedAt",
            "updatedAt",
        ],  # fmt: skip
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "email": {"type": "string"},
            "phone": _nullable("string", description="E.164, with ;ext= for an extension"),
            "company": _nullable("string"),
            "title": _nullable("string", description="The job title"),
            "attributes": {
                "type": "object",
                "description": "Every other column of the file, by its header, as text; emails: the "
                "row's further addresses",
            },
            "source": {"type": "string"},
            "importId": _nullable("string"),
            "importedAt": {"type": "string", "format": "date-time"},
            "updatedAt": _nullable("string", format="date-time"),
        },
    },
    "ContactPage": {
        "type": "object",
        "required": ["items", "page", "pages", "total"],
        "properties": {
            "items": {"type": "array", "items": _ref("Contact")},
            "page": {"type": "integer", "minimum": 1},
            "pages": {"type": "integer", "minimum": 1},
            "total": {"type": "integer", "minimum": 0},
        },
    },
    "ContactKeysetPage": {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": _ref("Contact")},
            "next": _nullable("string"),
        },
    },
    "Fixes": {
        "type": "object",
        "properties": {
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["row"],
                    "properties": {
                        "row": {"type": "integer"},
                        "values": {"type": "object", "additionalProperties": _nullable("string")},
                    },
                },
            },
            "dismiss": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"enum": ["healthy", "unhealthy"]},
            "error": {"type": "string"},
            "checks": {"type": "object", "additionalProperties": {"enum": ["ok", "degraded", "failing"]}},
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "description": "What a dependency would refuse, such as a storage bucket's size limit",
            },
        },
    },
    "JsonImport": {
        "type": "object",
        "required": ["source", "data"],
        "properties": {
            "source": {"type": "string", "minLength": 1, "maxLength": SOURCE_MAX},
            "data": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["name", "email"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX},
                        "email": {"type": "string", "format": "email", "maxLength": EMAIL_MAX},
                        "phone": {"type": "string"},
                        "company": {"type": "string"},
                        "title": {"type": "string"},
                    },
                    # Any other key is kept with the contact, in its attributes.
                    "additionalProperties": True,
                },
            },
            "useResumable": {"type": "boolean", "default": False},
            "mode": _MODE,
        },
    },
    "MultipartImport": {
        "type": "object",
        "required": ["file", "source"],
        "properties": {
            "file": {"type": "string", "contentMediaType": "application/octet-stream"},
            "source": {"type": "string", "minLength": 1, "maxLength": SOURCE_MAX},
            "useResumable": {"type": "boolean"},
            "mode": _MODE,
        },
    },
}

RESPONSES: dict[str, Any] = {
    "BadRequest": _error("The request is wrong; the error says how"),
    "Unauthorized": {
        **_error("No valid API token: send Authorization: Bearer <token>"),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    },
    "NotFound": _error("No import has this id"),
    "TooLarge": _error(
        "The body is larger than MAX_UPLOAD_SIZE, or than the storage (its bucket's file size limit "
        "or its own upload limit) accepts; the error names the limit. Nothing of it was kept"
    ),
    "UnsupportedType": _error(
        "The storage bucket's allowed MIME types refuse this file's type; the error names them. "
        "Nothing was kept"
    ),
    "RateLimited": {
        **_error("Too many requests; try again after Retry-After seconds"),
        "headers": {"Retry-After": {"schema": {"type": "string"}, "required": True}},
    },
    "Unavailable": _error("Storage cannot be reached; nothing was stored, try again later"),
    "Forbidden": _error("The API token lacks the scope, or the source, or the import is another client's"),
}


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


PATHS: dict[str, Any] = {
    "/import": {
        "post": {
            "operationId": "startImport",
            "summary": "Start an import from a JSON body, a multipart form, or the file as the body",
            "parameters": [
                _header(
                    "X-Source",
                    "Where the contacts come from; required when the body is the file",
                    minLength=1,
                    maxLength=SOURCE_MAX,
                ),
                _header("X-Filename", "The file's name, only shown", maxLength=255),
                _header("X-Use-Resumable", "true to store the file with a resumable transfer"),
                {
                    "name": "X-Merge-Mode",
                    "in": "header",
                    "description": "The merge mode when the body is the file (skip, fill or update)",
                    "schema": {"enum": list(MERGE_MODES)},
                },
                _header(
                    "Idempotency-Key",
                    "Repeating a request with its key within 24 hours answers the first one's jobId",
                    minLength=1,
                    maxLength=255,
                ),
            ],
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {"schema": _ref("JsonImport")},
                    "multipart/form-data": {
                        "schema": _ref("MultipartImport"),
                        "encoding": {"file": {"contentType": "application/octet-stream"}},
                    },
                    "application/octet-stream": {"schema": {"contentMediaType": "application/octet-stream"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            "responses": _responses(
                {
                    "202": _json(
                        _ref("Accepted"),
                        "Stored and queued (or, for a repeated Idempotency-Key, the first request's job)",
                        {
                            "Location": {"schema": {"type": "string"}, "required": True},
                            "Idempotent-Replayed": {"schema": {"enum": ["true"]}},
                        },
                    ),
                    "409": _json(
                        _ref("Error"),
                        "The first request with this Idempotency-Key is still running",
                        {"Retry-After": {"schema": {"type": "string"}, "required": True}},
                    ),
                    "422": _error("This Idempotency-Key was used with a different request"),
                    "400": {
                        "description": "The request is wrong; the error says how",
                        "content": {JSON: {"schema": {"anyOf": [_ref("Error"), _ref("BodyIssues")]}}},
                    },
                },
                "413",
                "415",
                "503",
            ),
        }
    },
    "/imports": {
        "get": {
            "operationId": "listImports",
            "summary": "Imports, newest first",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"enum": list(IMPORT_STATUSES)}},
                {"name": "source", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "sha256",
                    "in": "query",
                    "description": "Only imports of the file with this SHA-256",
                    "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                },
                _page_parameter(),
                {
                    "name": "per_page",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
                },
            ],
            "responses": _responses({"200": _json(_ref("ImportPage"), "A page of imports")}, "400"),
        }
    },
    "/imports/{jobId}": {
        "get": {
            "operationId": "getImport",
            "summary": "One import: status, counts, progress",
            "parameters": [_job_id()],
            "responses": _responses({"200": _json(_ref("Import"), "The import")}, "404"),
        }
    },
    "/imports/{jobId}/errors": {
        "get": {
            "operationId": "getImportErrors",
            "summary": "The rows an import rejected (level error) and stored with a warning, 50 a page",
            "parameters": [
                _job_id(),
                _page_parameter(),
                {"name": "level", "in": "query", "schema": {"enum": ["error", "warning"]}},
            ],
            "responses": _responses(
                {"200": _json(_ref("RowErrorPage"), "A page of row problems")}, "400", "404"
            ),
        }
    },
    "/imports/{jobId}/retry": {
        "post": {
            "operationId": "retryImport",
            "summary": "Run a failed import again from its checkpoint",
            "parameters": [_job_id()],
            "responses": _responses(
                {
                    "200": _json(_ref("Import"), "The import, queued again"),
                    "409": _error("Only a failed import can be retried; the error says why not"),
                },
                "404",
            ),
        }
    },
    "/imports/{jobId}/cancel": {
        "post": {
            "operationId": "cancelImport",
            "summary": "Cancel a queued or running import (a running one stops after its batch)",
            "parameters": [_job_id()],
            "responses": _responses(
                {
                    "200": _json(_ref("Import"), "The import, cancelled"),
                    "409": _error("The import has already ended; the error says how"),
                },
                "404",
            ),
        }
    },
    "/contacts": {
        "get": {
            "operationId": "listContacts",
            "summary": "Stored contacts with every field and attribute, oldest first",
            "parameters": [
                {"name": "source", "in": "query", "schema": {"type": "string"}},
                {"name": "importId", "in": "query", "schema": {"type": "string"}},
                {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 200}},
                {"name": "after", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                _page_parameter(),
                {
                    "name": "per_page",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                },
            ],
            "responses": _responses(
                {
                    "200": _json(
                        {"anyOf": [_ref("ContactPage"), _ref("ContactKeysetPage")]},
                        "A page of contacts (a keyset page when after is given)",
                    )
                },
                "400",
            ),
        }
    },
    "/imports/{jobId}/undo": {
        "post": {
            "operationId": "undoImport",
            "summary": "Undo a finished import: remove what it inserted, restore what it updated",
            "parameters": [_job_id()],
            "responses": _responses(
                {
                    "202": _json(_ref("Import"), "The import, undoing"),
                    "409": _error("Queued, running, undoing or undone; the error says which"),
                },
                "404",
            ),
        }
    },
    "/imports/{jobId}/fixes": {
        "post": {
            "operationId": "fixRejectedRows",
            "summary": "Fix and dismiss rejected rows; import the fixed ones as a follow-up import",
            "parameters": [_job_id()],
            "requestBody": {"content": {JSON: {"schema": _ref("Fixes")}}},
            "responses": _responses(
                {
                    "202": _json(_ref("Import"), "The follow-up import, queued"),
                    "200": _json(
                        {"type": "object", "properties": {"jobId": {"type": "null"}}},
                        "Only rows dismissed: nothing to import",
                    ),
                    "409": _error("The import's rejected rows cannot be fixed now; the error says why"),
                },
                "400",
                "404",
            ),
        }
    },
    "/contacts/{contactId}": {
        "get": {
            "operationId": "getContact",
            "summary": "One contact",
            "parameters": [
                {"name": "contactId", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": _responses({"200": _json(_ref("Contact"), "The contact")}, "404"),
        }
    },
    "/health": {
        "get": {
            "operationId": "health",
            "summary": "Whether the database, Redis and storage answer",
            "security": [],
            "responses": {
                "200": _json(_ref("Health"), "Every dependency answers"),
                "503": _json(_ref("Health"), "A dependency is failing; error names it"),
            },
        }
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the JSON API."""
    from app.openapi_mapping import extend
    from app.webhooks import openapi as webhooks  # it builds on the helpers above

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
