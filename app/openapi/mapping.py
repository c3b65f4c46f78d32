"""The OpenAPI description of previews, review, mappings and the import options that go with them."""

from __future__ import annotations

import copy
from typing import Any

from app.imports.body import SOURCE_MAX
from app.mapping import MAPPING_FROM
from app.openapi.parts import JSON, _error, _header, _job_id, _json, _nullable, _ref, _responses

_HEADERS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]}

SCHEMAS: dict[str, Any] = {
    "Mapping": {
        "type": "object",
        "description": "Field -> column header; name and email may list several (name: its parts in order; "
        "email and phone: candidates, the first valid wins). attributes lists the other columns to keep; "
        "without it every column no field takes is kept.",
        "properties": {
            "name": _HEADERS,
            "email": _HEADERS,
            "phone": _HEADERS,
            "company": _nullable("string"),
            "title": _nullable("string"),
            "attributes": {"type": "array", "items": {"type": "string"}},
        },
    },
    "SavedMapping": {
        "type": "object",
        "required": ["source", "mapping", "updatedAt"],
        "properties": {
            "source": {"type": "string"},
            "mapping": _ref("Mapping"),
            "updatedAt": {"type": "string", "format": "date-time"},
        },
    },
    "Problem": {
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
    "Preview": {
        "type": "object",
        "required": [
            "format",
            "encoding",
            "delimiter",
            "sheets",
            "sheet",
            "headerRow",
            "columns",
            "mapping",
            "mappingFrom",
            "sample",
            "unmapped",
        ],  # fmt: skip
        "properties": {
            "format": {"type": "string"},
            "encoding": _nullable("string"),
            "delimiter": _nullable("string"),
            "sheets": {"type": "array", "items": {"type": "string"}},
            "sheet": _nullable("string"),
            "headerRow": _nullable("integer", minimum=1),
            "columns": {"type": "array", "items": {"type": "string"}},
            "mapping": _ref("Mapping"),
            "mappingFrom": {"enum": list(MAPPING_FROM)},
            "sample": {
                "type": "array",
                "maxItems": 20,
                "items": {
                    "type": "object",
                    "required": ["row", "values", "problems"],
                    "properties": {
                        "row": {"type": "integer"},
                        "values": _nullable("object"),
                        "problems": {"type": "array", "items": _ref("Problem")},
                    },
                },
            },
            "unmapped": {"type": "array", "items": {"type": "string"}},
        },
    },
    "StartReview": {
        "type": "object",
        "properties": {
            "mapping": _ref("Mapping"),
            "headerRow": {"type": "integer", "minimum": 0},
            "sheet": {"type": "string", "maxLength": 255},
            "mode": {"enum": ["skip", "fill", "update"]},
            "remember": {"type": "boolean", "description": "Save the mapping for the import's source"},
        },
    },
}

# The options POST /import and POST /imports/preview take, in each body form.
OPTION_PROPERTIES: dict[str, Any] = {
    "mapping": _ref("Mapping"),
    "headerRow": {"type": "integer", "minimum": 0, "description": "The header's row number; 0: no header"},
    "sheet": {"type": "string", "maxLength": 255},
}
FORM_OPTIONS: dict[str, Any] = {
    "mapping": {"type": "string", "description": "The mapping as JSON text"},
    "headerRow": {"type": "string"},
    "sheet": {"type": "string", "maxLength": 255},
}
STREAM_OPTIONS = [
    _header("X-Mapping", "The mapping as JSON text"),
    _header("X-Header-Row", "The header's row number as the file shows it; 0 for a file without one"),
    _header("X-Sheet", "The workbook's sheet to read", maxLength=255),
]
REVIEW_HEADER = _header("X-Review", "true to hold the import in status review until it is started")

_SOURCE = {"name": "source", "in": "path", "required": True, "schema": {"type": "string"}}
_BAD = _error("A mapping, header row or sheet that does not fit; the error names it")

PATHS: dict[str, Any] = {
    "/imports/preview": {
        "post": {
            "operationId": "previewImport",
            "summary": "What an import of this file would find and store, from its head; stores nothing",
            "parameters": [
                _header("X-Source", "The source, whose saved mapping applies", maxLength=SOURCE_MAX)
            ]
            + STREAM_OPTIONS,
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "properties": {"data": {"type": "array"}, **OPTION_PROPERTIES},
                        }
                    },
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string"},
                                "source": {"type": "string"},
                                **FORM_OPTIONS,
                            },
                        }
                    },
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            "responses": _responses(
                {
                    "200": _json(_ref("Preview"), "The preview"),
                    "400": _BAD,
                    "422": _error("The file cannot be read at all; the error says why"),
                },
                "413",
            ),
        }
    },
    "/imports/{jobId}/preview": {
        "get": {
            "operationId": "previewStoredImport",
            "summary": "The preview of an import's stored file (an import in review), with other options",
            "parameters": [
                _job_id(),
                {"name": "mapping", "in": "query", "schema": {"type": "string"}},
                {"name": "headerRow", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {"name": "sheet", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": _responses(
                {
                    "200": _json(_ref("Preview"), "The preview"),
                    "400": _BAD,
                    "409": _error("The import's file is no longer stored"),
                    "422": _error("The file cannot be read at all"),
                },
                "404",
            ),
        }
    },
    "/imports/{jobId}/start": {
        "post": {
            "operationId": "startReviewedImport",
            "summary": "Start an import held in review, optionally with a mapping chosen for it",
            "parameters": [_job_id()],
            "requestBody": {"content": {JSON: {"schema": _ref("StartReview")}}},
            "responses": _responses(
                {
                    "202": _json(_ref("Import"), "The import, queued"),
                    "400": _BAD,
                    "409": _error("The import is not in review"),
                },
                "404",
            ),
        }
    },
    "/imports/{jobId}/reopen": {
        "post": {
            "operationId": "reopenImport",
            "summary": "Put a failed import that stored no row back in review, to map it again",
            "parameters": [_job_id()],
            "responses": _responses(
                {
                    "200": _json(_ref("Import"), "The import, in review"),
                    "409": _error("The import did not fail before storing a row, or its file is gone"),
                },
                "404",
            ),
        }
    },
    "/sources/{source}/mapping": {
        "get": {
            "operationId": "getSavedMapping",
            "summary": "The mapping saved for a source",
            "parameters": [_SOURCE],
            "responses": _responses(
                {"200": _json(_ref("SavedMapping"), "The saved mapping"), "404": _error("None is saved")},
                "400",
            ),
        },
        "put": {
            "operationId": "saveMapping",
            "summary": "Save the mapping for a source; its next imports whose columns match use it",
            "parameters": [_SOURCE],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Mapping")}}},
            "responses": _responses(
                {
                    "200": _json(_ref("SavedMapping"), "The saved mapping"),
                    # The router's path pattern stops at a line break: such a source names no route.
                    "404": _error("No such path (a source with a line break in it)"),
                },
                "400",
            ),
        },
        "delete": {
            "operationId": "deleteSavedMapping",
            "summary": "Forget the mapping saved for a source",
            "parameters": [_SOURCE],
            "responses": _responses(
                {"204": {"description": "Forgotten"}, "404": _error("None is saved")}, "400"
            ),
        },
    },
}


def extend(document: dict[str, Any]) -> dict[str, Any]:
    """Add previews, review and mappings to the document, and their options to POST /import."""
    document = copy.deepcopy(document)  # its parts are the module's own, shared by every call
    document["paths"] = {**document["paths"], **PATHS}
    document["components"]["schemas"] = {**document["components"]["schemas"], **SCHEMAS}
    post = document["paths"]["/import"]["post"]
    post["parameters"] = [*post["parameters"], *STREAM_OPTIONS, REVIEW_HEADER]
    content = post["requestBody"]["content"]
    review = {"type": "boolean", "description": "Hold the import in status review until it is started"}
    for kind, extra in (
        (JSON, {**OPTION_PROPERTIES, "review": review}),
        ("multipart/form-data", FORM_OPTIONS),
    ):
        schema = dict(document["components"]["schemas"][content[kind]["schema"]["$ref"].rsplit("/", 1)[1]])
        schema["properties"] = {**schema["properties"], **extra}
        if kind != JSON:
            schema["properties"]["review"] = {"type": "string"}
        content[kind] = {**content[kind], "schema": schema}
    imp = document["components"]["schemas"]["Import"]
    imp["properties"] = {
        **imp["properties"],
        "skippedRows": {"type": "integer", "minimum": 0},
        "mapping": {"anyOf": [_ref("Mapping"), {"type": "null"}]},
        "mappingFrom": {"enum": [*MAPPING_FROM, None]},
        "headerRow": _nullable("integer", minimum=0),
        "sheet": _nullable("string"),
    }
    return document
