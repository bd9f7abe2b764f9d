"""The OpenAPI 3 description, generated from the msgspec structs that validate
requests, so the document cannot drift from what the server accepts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from . import __version__


class Parameter(Protocol):
    """A query parameter the route reads (``api.common.Query`` / ``IntQuery``)."""

    def openapi(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    auth: str  # secret | ingest | user | none
    request: Any = None
    response: Any = None
    status: int = 200
    query: tuple[Parameter, ...] = ()  # every query parameter the handler reads
    body_required: bool = True  # False when an empty body is accepted (``decode(..., empty_ok=True)``)


_ENDPOINTS: list[Endpoint] = []


def document(*endpoints: Endpoint) -> None:
    """Called by each api module for what it serves (at import, so it is static data)."""
    _ENDPOINTS.extend(endpoints)


def build() -> dict[str, Any]:
    types = sorted({t for e in _ENDPOINTS for t in (e.request, e.response) if t is not None}, key=repr)
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    by_type = dict(zip(types, schemas))
    paths: dict[str, dict[str, Any]] = {}
    security = {"secret": [{"bearer": []}, {"basic": []}], "ingest": [{"bearer": []}, {"basic": []}],
                "user": [{"userToken": []}], "none": []}
    for e in _ENDPOINTS:
        op: dict[str, Any] = {
            "summary": e.summary,
            "security": security[e.auth],
            "responses": {
                str(e.status): {"description": "OK"} | (
                    {"content": {"application/json": {"schema": by_type[e.response]}}} if e.response else {}),
                "default": {"description": "Error", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        }
        if e.request is not None:
            op["requestBody"] = {"required": e.body_required,
                                 "content": {"application/json": {"schema": by_type[e.request]}}}
        params = re.findall(r"\{(\w+)\}", e.path)  # "/t/o/{token}.gif" -> token
        parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
        parameters += [q.openapi() for q in e.query]
        names = [(p["in"], p["name"]) for p in parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"{e.method} {e.path}: a parameter is declared twice: {names}")
        if parameters:
            op["parameters"] = parameters
        paths.setdefault(e.path, {})[e.method.lower()] = op
    components["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}}, "required": ["code", "message"]}},
        "required": ["error"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "retenshun", "version": __version__,
                 "description": "Events in, the right message out, lift proven."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "sk_... or pk_... key"},
                "basic": {"type": "http", "scheme": "basic", "description": "key as user name, empty password"},
                "userToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }
