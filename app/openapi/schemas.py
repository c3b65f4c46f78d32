"""The schemas and shared responses of imports, contacts and health in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from app.contact_list import COUNT_MAX
from app.imports.body import SOURCE_MAX
from app.models import IMPORT_STATUSES, MERGE_MODES
from app.openapi.parts import _error, _nullable, _ref
from app.validation import EMAIL_MAX, NAME_MAX

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
            "removedRows": {"type": "integer", "minimum": 0},
            "keptRows": {"type": "integer", "minimum": 0},
            "keptBy": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 0},
                "description": "Which imports changed the contacts the undo kept: {jobId: contacts}; "
                '"" for a change no import recorded',
            },
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
        "required": ["items", "page", "pages", "total", "totalExact"],
        "properties": {
            "items": {"type": "array", "items": _ref("Contact")},
            "page": {"type": "integer", "minimum": 1},
            "pages": {"type": "integer", "minimum": 1},
            "total": {
                "type": "integer",
                "minimum": 0,
                "maximum": COUNT_MAX,
                "description": f"Matching contacts, counted up to {COUNT_MAX:,} (then totalExact is false)",
            },
            "totalExact": {"type": "boolean"},
        },
    },
    "Sources": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["source", "contacts", "lastImport", "mapping"],
                    "properties": {
                        "source": {"type": "string"},
                        "contacts": {"type": "integer", "minimum": 0},
                        "lastImport": {
                            "type": ["object", "null"],
                            "properties": {
                                "jobId": {"type": "string"},
                                "status": {"type": "string"},
                                "filename": _nullable("string"),
                            },
                        },
                        "mapping": {
                            "type": ["object", "null"],
                            "description": "The mapping saved for the source",
                        },
                        "mappingShown": _nullable("string"),
                    },
                },
            }
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
    "NotReady": {
        "type": "array",
        "description": "The rows edited that still have a problem: kept with their edits, not imported",
        "items": {
            "type": "object",
            "required": ["row", "problem"],
            "properties": {"row": {"type": "integer"}, "problem": {"type": "string"}},
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
