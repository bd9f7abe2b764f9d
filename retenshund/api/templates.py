"""Templates: save (validated and compiled at save time), read, list, delete, preview."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import openapi
from ..clock import iso
from ..errors import ApiError, not_found
from ..templates import (CHANNEL_FIELDS, CompiledTemplate, RenderError, TemplateError, build_context,
                         compile_template, render)
from .common import decode, json, secret, services

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


class PreviewRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    channel: str
    user_id: str | None = None
    variables: dict[str, Any] = {}
    event: dict[str, Any] | None = None


def template_error(exc: TemplateError) -> ApiError:
    # The message already says the line ("line 2: ...").
    return ApiError(400, "template_error", f"{exc.field}: {exc.message}")


def _out(template_id: str, spec: dict[str, Any], version: int, created: int, updated: int) -> dict[str, Any]:
    return {"template_id": template_id, **spec, "version": version, "created_at": iso(created),
            "updated_at": iso(updated)}


def check_id(template_id: str) -> None:
    if not 1 <= len(template_id) <= 128 or not set(template_id) <= _ID_CHARS:
        raise ApiError(400, "invalid_field", "template_id: 1-128 letters, digits, '_', '-' or '.'")


async def render_for(svc: Any, compiled: CompiledTemplate, req: PreviewRequest) -> dict[str, Any]:
    """What a send would render for this user, variables and event (preview, draft preview)."""
    if req.channel not in compiled.channels:
        raise ApiError(422, "no_channel_content",
                       f"channel: template {compiled.id!r} has no {req.channel} content ({', '.join(compiled.channels)})")
    traits: dict[str, Any] = {}
    if req.user_id:
        profile = await svc.store.get_profile(req.user_id)
        if profile is None:
            raise not_found(f"user {req.user_id!r}")
        traits = profile.traits
    try:
        return render(compiled, req.channel, build_context(req.variables, req.user_id, traits, req.event))
    except RenderError as exc:
        raise ApiError(422, "render_error", str(exc)) from None


async def put_template(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    template_id = request.path_params["template_id"]
    check_id(template_id)
    spec = await decode(request, dict[str, Any])
    # What GET returns can be sent back as it is.
    for key in ("template_id", "version", "created_at", "updated_at"):
        spec.pop(key, None)
    try:
        compiled = compile_template(template_id, spec)
    except TemplateError as exc:
        raise template_error(exc) from None
    now = svc.clock.now_ms()
    version = await svc.store.put_template(template_id, compiled.source, now)
    svc.extra["templates"].put(compiled)
    found = await svc.store.get_template(template_id)
    assert found is not None
    return json(_out(template_id, *found), status=201 if version == 1 else 200)


async def get_template(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    found = await svc.store.get_template(request.path_params["template_id"])
    if found is None:
        raise not_found(f"template {request.path_params['template_id']!r}")
    return json(_out(request.path_params["template_id"], *found))


async def list_templates(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    return json({"templates": [_out(*row) for row in await svc.store.list_templates()]})


async def delete_template(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    template_id = request.path_params["template_id"]
    if not await svc.store.delete_template(template_id):
        raise not_found(f"template {template_id!r}")
    svc.extra["templates"].forget(template_id)
    return Response(status_code=204)


async def preview(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    template_id = request.path_params["template_id"]
    req = await decode(request, PreviewRequest)
    if req.channel not in CHANNEL_FIELDS:
        raise ApiError(400, "invalid_field", "channel: use email, push or in_app")
    compiled = await svc.extra["templates"].get(template_id)
    if compiled is None:
        raise not_found(f"template {template_id!r}")
    rendered = await render_for(svc, compiled, req)
    return json({"template_id": template_id, "channel": req.channel, "rendered": rendered})


routes = [
    Route("/v1/templates", list_templates, methods=["GET"]),
    Route("/v1/templates/{template_id}", put_template, methods=["PUT"]),
    Route("/v1/templates/{template_id}", get_template, methods=["GET"]),
    Route("/v1/templates/{template_id}", delete_template, methods=["DELETE"]),
    Route("/v1/templates/{template_id}/preview", preview, methods=["POST"]),
]

openapi.document(
    openapi.Endpoint("GET", "/v1/templates", "Every template", "secret"),
    openapi.Endpoint("PUT", "/v1/templates/{template_id}", "Create or replace a Liquid template (400 names the line)",
                     "secret"),
    openapi.Endpoint("GET", "/v1/templates/{template_id}", "One template", "secret"),
    openapi.Endpoint("DELETE", "/v1/templates/{template_id}", "Delete a template", "secret", status=204),
    openapi.Endpoint("POST", "/v1/templates/{template_id}/preview", "Render for a user and variables", "secret",
                     PreviewRequest),
)
