"""The OpenAPI 3.1 description of API v1, served at /api/v1/openapi.json.

Written by hand next to the handlers it describes; a test checks that every
route of the application is described here and every path here is routed, and
schemathesis checks the answers against the schemas.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broadcaster import __version__
from broadcaster.api.common import json_response
from broadcaster.models import AlertKind, AlertState, DeliveryState, Mode, Severity

JSON = "application/json"


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values]}


TIME = _nullable("string", format="date-time")

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message", "details"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "details": {"type": "object",
                                       "additionalProperties": {"type": "string"}}},
        }},
    },
    "Delivery": {
        "type": "object",
        "required": ["id", "channel", "state", "attempts", "headline", "text", "remote_id", "url",
                     "error", "queued_at", "not_before", "delivered_at"],
        "properties": {
            "id": {"type": "string"}, "channel": {"type": "string"},
            "state": _enum(DeliveryState), "attempts": {"type": "integer", "minimum": 0},
            "headline": {"type": "string"}, "text": {"type": "string"},
            "remote_id": _nullable("string"), "url": _nullable("string"),
            "error": _nullable("string"), "queued_at": {"type": "string", "format": "date-time"},
            "not_before": TIME, "delivered_at": TIME,
        },
    },
    "Alert": {
        "type": "object",
        "required": ["id", "state", "mode", "kind", "template", "severity", "variables",
                     "references", "created_by", "created_at", "send_at", "deliveries"],
        "properties": {
            "id": {"type": "string"}, "state": _enum(AlertState), "mode": _enum(Mode),
            "kind": _enum(AlertKind), "template": {"type": "string"},
            "severity": _enum(Severity),
            "variables": {"type": "object", "additionalProperties": {"type": "string"}},
            "references": _nullable("string"), "created_by": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"}, "send_at": TIME,
            "fired_at": TIME, "late_seconds": _nullable("number"),
            "repeat": {"type": ["object", "null"],
                       "properties": {"every": {"type": "string"}, "until": {"type": "string"}}},
            "repeat_of": _nullable("string"), "expires_at": TIME,
            "expired": {"type": "boolean"}, "expired_at": TIME,
            "deliveries": {"type": "array", "items": _ref("Delivery")},
        },
    },
    "AlertList": {
        "type": "object", "required": ["alerts"],
        "properties": {"alerts": {"type": "array", "items": _ref("Alert")},
                       "next": {"type": "string"}},
    },
    "AlertRequest": {
        "type": "object", "additionalProperties": False, "required": ["template", "mode"],
        "properties": {
            "template": {"type": "string", "minLength": 1},
            "variables": {"type": "object",
                          "additionalProperties": {"type": ["string", "number"]}},
            "channels": {"type": "array", "items": {"type": "string"}},
            "mode": _enum(Mode),
            "send_at": {"type": "string", "description": "send later: ISO 8601 with offset, "
                        "or a local time \"2026-11-24 06:00\" in the service's time zone; "
                        "in the future, at most 30 days ahead"},
            "repeat": {"type": "object", "additionalProperties": False, "required": ["every"],
                       "properties": {
                           "every": {"type": "string",
                                     "description": "ISO 8601 duration (at least PT1M) or a "
                                                    "five-field cron expression"},
                           "until": {"type": "string",
                                     "description": "a time, or \"allclear\" (default)"}}},
        },
    },
    "FollowupRequest": {
        "type": "object", "additionalProperties": False, "required": ["template", "kind"],
        "properties": {
            "template": {"type": "string", "minLength": 1},
            "variables": {"type": "object",
                          "additionalProperties": {"type": ["string", "number"]}},
            "channels": {"type": "array", "items": {"type": "string"}},
            "kind": {"type": "string", "enum": ["update", "allclear", "correction"]},
            "mode": _enum(Mode),
        },
    },
    "PreviewRequest": {
        "type": "object", "additionalProperties": False, "required": ["template"],
        "properties": {
            "template": {"type": "string", "minLength": 1},
            "variables": {"type": "object",
                          "additionalProperties": {"type": ["string", "number"]}},
            "channels": {"type": "array", "items": {"type": "string"}},
            "mode": _enum(Mode),
            "kind": {"type": "string", "enum": ["update", "allclear", "correction"]},
            "references": {"type": "string", "description": "preview a follow-up of this alert"},
        },
    },
    "Preview": {
        "type": "object",
        "required": ["template", "title", "approval", "mode", "kind", "second_officer",
                     "channels", "problems"],
        "properties": {
            "template": {"type": "string", "minLength": 1}, "title": {"type": "string"},
            "approval": {"type": "string"}, "mode": _enum(Mode), "kind": _enum(AlertKind),
            "second_officer": {"type": "boolean"},
            "channels": {"type": "array", "items": {
                "type": "object",
                "required": ["channel", "kind", "headline", "text", "length", "limit",
                             "problems"],
                "properties": {
                    "channel": {"type": "string"}, "kind": {"type": "string"},
                    "headline": {"type": "string"}, "text": {"type": "string"},
                    "length": {"type": "integer"}, "limit": _nullable("integer"),
                    "problems": {"type": "array", "items": {"type": "string"}},
                },
            }},
            "problems": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "Template": {
        "type": "object",
        "required": ["id", "title", "severity", "kind", "languages", "approval", "variables"],
        "properties": {
            "id": {"type": "string"}, "title": {"type": "string"},
            "description": {"type": "string"}, "severity": _enum(Severity),
            "event": {"type": "string"}, "category": {"type": "string"},
            "kind": _enum(AlertKind),
            "languages": {"type": "array", "items": {"type": "string"}},
            "expires_after": _nullable("string"),
            "approval": {"type": "object", "required": ["state", "label"], "properties": {
                "state": {"type": "string", "enum": ["approved", "draft", "changed"]},
                "label": {"type": "string"}, "approved_by": _nullable("string"),
                "approved_at": _nullable("string"),
            }},
            "variables": {"type": "array", "items": {"type": "object",
                                                      "required": ["name", "label", "type"]}},
            "texts": {"type": "object"},
        },
    },
    "TemplateList": {
        "type": "object", "required": ["templates", "problems"],
        "properties": {"templates": {"type": "array", "items": _ref("Template")},
                       "problems": {"type": "array", "items": {"type": "string"}}},
    },
    "Channel": {
        "type": "object",
        "required": ["name", "kind", "target", "languages", "exercise", "enabled", "up",
                     "health", "checked_at", "last_success_at", "limit"],
        "properties": {
            "name": {"type": "string"}, "kind": {"type": "string"},
            "target": {"type": "string"},
            "languages": {"type": "array", "items": {"type": "string"}},
            "exercise": {"type": "boolean"}, "enabled": {"type": "boolean"},
            "up": {"type": "boolean"}, "health": {"type": "string"}, "checked_at": TIME,
            "last_success_at": TIME, "limit": _nullable("integer"),
        },
    },
    "ChannelList": {
        "type": "object", "required": ["channels"],
        "properties": {"channels": {"type": "array", "items": _ref("Channel")}},
    },
    "Node": {
        "type": "object",
        "required": ["name", "version", "address", "state", "this", "started_at",
                     "last_seen_at", "stopped_at", "attempts_under_way"],
        "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "address": _nullable("string"),
            "state": {"type": "string", "enum": ["running", "stopped", "lost"]},
            "this": {"type": "boolean", "description": "the node that answered"},
            "started_at": TIME, "last_seen_at": TIME, "stopped_at": TIME,
            "attempts_under_way": {"type": "integer", "description": "leases it holds"},
        },
    },
    "NodeList": {
        "type": "object", "required": ["nodes"],
        "properties": {"nodes": {"type": "array", "items": _ref("Node")}},
    },
}

_ERRORS = {
    400: "The body is not JSON or not an object",
    401: "No token, or a wrong or disabled one",
    403: "The token's role is not enough",
    404: "No such alert, delivery or template",
    409: "The request contradicts the current state",
    413: "The body is over 64 KiB",
    422: "Invalid request: details name each bad field",
    503: "The ledger cannot persist right now: nothing was accepted",
}


def _answers(ok: int, schema: str, description: str, *errors: int) -> dict[str, Any]:
    answers: dict[str, Any] = {
        str(ok): {"description": description,
                  "content": {JSON: {"schema": _ref(schema)}}},
    }
    for status in (401, 403, 503, *errors):
        answers[str(status)] = {"description": _ERRORS[status],
                                "content": {JSON: {"schema": _ref("Error")}}}
    return answers


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": _ref(schema)}}}


def _id(description: str) -> list[dict[str, Any]]:
    return [{"name": "id", "in": "path", "required": True, "description": description,
             "schema": {"type": "string"}}]


_IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
                "description": "The same key and body within 24 h returns the first alert",
                "schema": {"type": "string", "maxLength": 255}}

PATHS: dict[str, Any] = {
    "/api/v1/alerts": {
        "post": {
            "summary": "Send an alert (role officer)", "parameters": [_IDEMPOTENCY],
            "requestBody": _body("AlertRequest"),
            "responses": {**_answers(201, "Alert", "Accepted: stored durably, delivering",
                                     400, 404, 409, 413, 422),
                          "200": {"description": "A repeat of an Idempotency-Key: the first "
                                  "alert", "content": {JSON: {"schema": _ref("Alert")}}}},
        },
        "get": {
            "summary": "Alerts, newest first (role viewer)",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                            "maximum": 500}},
                {"name": "before", "in": "query", "schema": {"type": "string"},
                 "description": "the `next` of the previous page"},
                {"name": "state", "in": "query", "schema": _enum(AlertState)},
            ],
            "responses": _answers(200, "AlertList", "A page of alerts", 422),
        },
    },
    "/api/v1/alerts/preview": {
        "post": {
            "summary": "What each channel would post; nothing is stored (role officer)",
            "requestBody": _body("PreviewRequest"),
            "responses": _answers(200, "Preview", "Per-channel texts, lengths and problems",
                                  400, 404, 413, 422),
        },
    },
    "/api/v1/alerts/{id}": {
        "get": {"summary": "One alert with its deliveries (role viewer)",
                "parameters": _id("alert id"),
                "responses": _answers(200, "Alert", "The alert", 404)},
        "delete": {"summary": "Withdraw an alert that has not gone out (role officer)",
                   "parameters": _id("alert id"),
                   "responses": _answers(200, "Alert", "Withdrawn", 404, 409)},
    },
    "/api/v1/alerts/{id}/followups": {
        "post": {"summary": "Update, all-clear or correction (role officer)",
                 "parameters": [*_id("the alert followed up"), _IDEMPOTENCY],
                 "requestBody": _body("FollowupRequest"),
                 "responses": {**_answers(201, "Alert", "Accepted", 400, 404, 409, 413, 422),
                               "200": {"description": "A repeat of an Idempotency-Key",
                                       "content": {JSON: {"schema": _ref("Alert")}}}}},
    },
    "/api/v1/alerts/{id}/approve": {
        "post": {"summary": "Confirm another officer's alert (two-person rule)",
                 "parameters": _id("alert id"),
                 "responses": _answers(200, "Alert", "Confirmed: delivering", 404, 409)},
    },
    "/api/v1/deliveries/{id}/retry": {
        "post": {"summary": "Send a failed or unknown delivery again (role officer)",
                 "parameters": _id("delivery id"),
                 "responses": _answers(200, "Delivery", "Queued again", 404, 409)},
    },
    "/api/v1/templates": {
        "get": {"summary": "Templates with variables and approval (role viewer)",
                "responses": _answers(200, "TemplateList", "Every loaded template")},
    },
    "/api/v1/templates/{id}": {
        "get": {"summary": "One template with its texts (role viewer)",
                "parameters": _id("template id"),
                "responses": _answers(200, "Template", "The template", 404)},
    },
    "/api/v1/channels": {
        "get": {"summary": "Channels with health (role viewer)",
                "responses": _answers(200, "ChannelList", "Every configured channel")},
    },
    "/api/v1/nodes": {
        "get": {"summary": "The nodes on the ledger, their state and work (role viewer)",
                "responses": _answers(200, "NodeList", "Every node that ever joined")},
    },
}

_PUBLIC: dict[str, Any] = {
    "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {
        "200": {"description": "Alive", "content": {JSON: {"schema": {"type": "object"}}}}}}},
    "/readyz": {"get": {"summary": "Readiness: the ledger takes writes, channels started",
                        "security": [], "responses": {
                            "200": {"description": "Ready",
                                    "content": {JSON: {"schema": {"type": "object"}}}},
                            "503": {"description": "Not ready; reasons say why",
                                    "content": {JSON: {"schema": {"type": "object"}}}}}}},
    "/metrics": {"get": {"summary": "Prometheus text format", "security": [], "responses": {
        "200": {"description": "Metrics", "content": {"text/plain": {
            "schema": {"type": "string"}}}}}}},
    "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                     "responses": {"200": {"description": "OpenAPI 3.1",
                                                           "content": {JSON: {"schema": {
                                                               "type": "object"}}}}}}},
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "broadcaster API", "version": __version__,
                 "description": "Crisis-communication broadcast service: send pre-approved "
                                "alerts to every channel and follow their delivery."},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "from `broadcaster users add`"}},
            "schemas": SCHEMAS,
        },
        "paths": {**PATHS, **_PUBLIC},
    }


async def openapi(request: web.Request) -> web.Response:
    return json_response(document())


ROUTES = [web.get("/api/v1/openapi.json", openapi)]
