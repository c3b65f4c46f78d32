"""The webhook operations and schemas of the OpenAPI document."""

from __future__ import annotations

from typing import Any

from app.openapi.parts import JSON, _error, _json, _nullable, _page_parameter, _ref, _responses
from app.webhooks import IMPORT_EVENTS
from app.webhooks.endpoints import DESCRIPTION_MAX
from app.webhooks.models import MESSAGE_STATUSES
from app.webhooks.targets import URL_MAX

_EVENTS = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": list(IMPORT_EVENTS)}}
_TIME = {"type": "string", "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "WebhookEndpoint": {
        "type": "object",
        "required": [
            "id",
            "url",
            "description",
            "events",
            "enabled",
            "disabledReason",
            "failingSince",
            "previousSecretExpiresAt",
            "createdAt",
            "updatedAt",
        ],
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "description": {"type": "string"},
            "events": {"type": "array", "items": {"enum": list(IMPORT_EVENTS)}},
            "enabled": {"type": "boolean"},
            "disabledReason": _nullable("string", description="Why DataFlow disabled it (410, days failing)"),
            "failingSince": _nullable("string", format="date-time"),
            "previousSecretExpiresAt": _nullable("string", format="date-time"),
            "createdAt": _TIME,
            "updatedAt": _TIME,
            "secret": {
                "type": "string",
                "pattern": "^whsec_",
                "description": "Only in the answers of create and rotate-secret",
            },
        },
    },
    "WebhookEndpointList": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("WebhookEndpoint")}},
    },
    "NewWebhookEndpoint": {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": URL_MAX},
            "events": {**_EVENTS, "description": "Every import event when left out"},
            "description": {"type": "string", "maxLength": DESCRIPTION_MAX},
            "secret": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/=]{32,88}$"},
        },
    },
    "WebhookEndpointChange": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": URL_MAX},
            "events": _EVENTS,
            "description": {"type": "string", "maxLength": DESCRIPTION_MAX},
            "enabled": {"type": "boolean"},
        },
    },
    "WebhookAttempt": {
        "type": "object",
        "required": ["number", "at", "outcome", "statusCode", "durationMs", "response", "error"],
        "properties": {
            "number": {"type": "integer"},
            "at": _TIME,
            "outcome": {
                "enum": ["success", "failure", "gone", "timeout", "unreachable", "refused", "interrupted"]
            },
            "statusCode": _nullable("integer"),
            "durationMs": _nullable("integer"),
            "response": _nullable("string", description="The first part of the answer's body"),
            "error": _nullable("string"),
        },
    },
    "WebhookDelivery": {
        "type": "object",
        "required": ["id", "webhookId", "type", "importId", "endpointId", "status", "attempts", "attemptLog"],
        "properties": {
            "id": {"type": "string"},
            "webhookId": {"type": "string", "description": "The webhook-id header, the same on every retry"},
            "type": {"type": "string"},
            "importId": _nullable("string"),
            "endpointId": {"type": "string"},
            "status": {"enum": list(MESSAGE_STATUSES)},
            "attempts": {"type": "integer"},
            "nextAttemptAt": _nullable("string", format="date-time"),
            "deliveredAt": _nullable("string", format="date-time"),
            "lastStatusCode": _nullable("integer"),
            "lastError": _nullable("string"),
            "createdAt": _TIME,
            "attemptLog": {"type": "array", "items": _ref("WebhookAttempt")},
        },
    },
    "WebhookDeliveryPage": {
        "type": "object",
        "required": ["items", "page", "pages", "total"],
        "properties": {
            "items": {"type": "array", "items": _ref("WebhookDelivery")},
            "page": {"type": "integer"},
            "pages": {"type": "integer"},
            "total": {"type": "integer"},
        },
    },
}


def _id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": _ref(schema)}}}


_ENDPOINT = [_id("endpointId")]
_ONE = _json(_ref("WebhookEndpoint"), "The endpoint")
_DISABLED = _error("The endpoint is disabled; enable it first")

PATHS: dict[str, Any] = {
    "/webhooks": {
        "get": {
            "operationId": "listWebhookEndpoints",
            "summary": "Every webhook endpoint, newest first",
            "responses": _responses({"200": _json(_ref("WebhookEndpointList"), "The endpoints")}),
        },
        "post": {
            "operationId": "createWebhookEndpoint",
            "summary": "Add an endpoint; the answer holds its signing secret, shown this once",
            "requestBody": _body("NewWebhookEndpoint"),
            "responses": _responses(
                {
                    "201": _json(
                        _ref("WebhookEndpoint"),
                        "The endpoint, with its secret",
                        {"Location": {"schema": {"type": "string"}, "required": True}},
                    )
                },
                "400",
                "413",
            ),
        },
    },
    "/webhooks/{endpointId}": {
        "get": {
            "operationId": "getWebhookEndpoint",
            "summary": "One endpoint",
            "parameters": _ENDPOINT,
            "responses": _responses({"200": _ONE}, "404"),
        },
        "patch": {
            "operationId": "updateWebhookEndpoint",
            "summary": "Change an endpoint's url, events, description, or enable or disable it",
            "parameters": _ENDPOINT,
            "requestBody": _body("WebhookEndpointChange"),
            "responses": _responses({"200": _ONE}, "400", "404", "413"),
        },
        "delete": {
            "operationId": "deleteWebhookEndpoint",
            "summary": "Remove an endpoint with its deliveries",
            "parameters": _ENDPOINT,
            "responses": _responses({"204": {"description": "Removed"}}, "404"),
        },
    },
    "/webhooks/{endpointId}/rotate-secret": {
        "post": {
            "operationId": "rotateWebhookSecret",
            "summary": "A new signing secret; the old one keeps signing beside it for 24 hours",
            "parameters": _ENDPOINT,
            "responses": _responses(
                {"200": _json(_ref("WebhookEndpoint"), "The endpoint, with its secret")}, "404"
            ),
        }
    },
    "/webhooks/{endpointId}/test": {
        "post": {
            "operationId": "testWebhookEndpoint",
            "summary": "Send a ping event to the endpoint",
            "parameters": _ENDPOINT,
            "responses": _responses(
                {"202": _json(_ref("WebhookDelivery"), "The ping, on its way"), "409": _DISABLED}, "404"
            ),
        }
    },
    "/webhooks/{endpointId}/deliveries": {
        "get": {
            "operationId": "listWebhookDeliveries",
            "summary": "The endpoint's messages, newest first, 25 a page, each with every attempt",
            "parameters": [
                *_ENDPOINT,
                _page_parameter(),
                {"name": "status", "in": "query", "schema": {"enum": list(MESSAGE_STATUSES)}},
            ],
            "responses": _responses(
                {"200": _json(_ref("WebhookDeliveryPage"), "A page of deliveries")}, "400", "404"
            ),
        }
    },
    "/webhooks/deliveries/{deliveryId}/retry": {
        "post": {
            "operationId": "retryWebhookDelivery",
            "summary": "Send one message again now, with the same webhook-id",
            "parameters": [_id("deliveryId")],
            "responses": _responses(
                {
                    "202": _json(_ref("WebhookDelivery"), "The message, due again"),
                    "409": _error("The endpoint is disabled, or the message is being sent right now"),
                },
                "404",
            ),
        }
    },
    "/webhooks/{endpointId}/recover": {
        "post": {
            "operationId": "recoverWebhookDeliveries",
            "summary": "Send again every failed message of the endpoint created since a time",
            "parameters": [
                *_ENDPOINT,
                {"name": "since", "in": "query", "required": True, "schema": _TIME},
            ],
            "responses": _responses(
                {
                    "202": _json(
                        {
                            "type": "object",
                            "required": ["recovered"],
                            "properties": {"recovered": {"type": "integer", "minimum": 0}},
                        },
                        "How many messages are due again",
                    ),
                    "409": _DISABLED,
                },
                "400",
                "404",
            ),
        }
    },
}
