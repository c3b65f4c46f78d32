"""The paths of imports, contacts and health in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from app.imports.body import SOURCE_MAX
from app.models import IMPORT_STATUSES, MERGE_MODES
from app.openapi.parts import JSON, _error, _header, _job_id, _json, _page_parameter, _ref, _responses

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
                    "202": _json(
                        {"allOf": [_ref("Import"), {"properties": {"notReady": _ref("NotReady")}}]},
                        "The follow-up import of the ready rows, queued",
                    ),
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "jobId": {"type": "null"},
                                "dismissed": {"type": "integer", "minimum": 0},
                                "notReady": _ref("NotReady"),
                            },
                        },
                        "No row is ready (only rows dismissed, or every edit still has a problem)",
                    ),
                    "409": _error("The import's rejected rows cannot be fixed now; the error says why"),
                },
                "400",
                "404",
            ),
        }
    },
    "/imports/{jobId}/undo/cancel": {
        "post": {
            "operationId": "cancelUndo",
            "summary": "Stop an undo after its batch; what it undid stays undone, a second undo finishes it",
            "parameters": [_job_id()],
            "responses": _responses(
                {
                    "200": _json(_ref("Import"), "The import, back to how it ended"),
                    "409": _error("The import is not being undone"),
                },
                "404",
            ),
        }
    },
    "/contacts.csv": {
        "get": {
            "operationId": "exportContacts",
            "summary": "The contacts of the filter as CSV: streamed, UTF-8 with a BOM, formula-safe",
            "parameters": [
                {"name": "source", "in": "query", "schema": {"type": "string"}},
                {"name": "importId", "in": "query", "schema": {"type": "string"}},
                {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 200}},
            ],
            "responses": _responses(
                {
                    "200": {
                        "description": "The contacts",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    }
                },
                "400",
            ),
        }
    },
    "/sources": {
        "get": {
            "operationId": "listSources",
            "summary": "Each source with its contact count, its last import and its saved mapping",
            "responses": _responses({"200": _json(_ref("Sources"), "The sources")}),
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
