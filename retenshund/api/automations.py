"""Automations: definitions (validated, versioned), runs, the holdout report, and
each user's decision trace."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import openapi
from ..analytics.lift import lift
from ..clock import iso
from ..durations import DefinitionError
from ..engine.definitions import compile_automation, templates_used
from ..errors import ApiError, not_found
from ..store.base import JournalEntry, Run
from .common import IntQuery, Query, RawRoute, decode, json, secret, services

RUNS_USER = Query("user_id", "Only this user's runs")
RUNS_LIMIT = IntQuery("limit", "Runs at most", low=1, high=1000, default=100)
JOURNAL_AUTOMATION = Query("automation_id", "Only the entries of this automation")
JOURNAL_LIMIT = IntQuery("limit", "Entries at most, newest first", low=1, high=1000, default=200)


def definition_error(exc: DefinitionError) -> ApiError:
    return ApiError(400, "invalid_definition", f"{exc.field}: {exc.message}" if exc.field else exc.message)


def _out(automation_id: str, definition: dict[str, Any], version: int, enabled: bool, created: int,
         updated: int) -> dict[str, Any]:
    return {"automation_id": automation_id, **definition, "enabled": enabled, "version": version,
            "created_at": iso(created), "updated_at": iso(updated)}


def run_json(r: Run) -> dict[str, Any]:
    status, reason = r.status, None
    if r.status == "held_out":
        status, reason = "suppressed", "holdout"
    return {"run_id": r.run_id, "automation_id": r.automation_id, "version": r.version, "user_id": r.user_id,
            "status": status, "reason": reason, "holdout": r.holdout, "position": r.position,
            "waiting_for": r.waiting_for, "wait_until": iso(r.wait_until), "goal_at": iso(r.goal_at),
            "started_at": iso(r.started_at), "ended_at": iso(r.ended_at)}


def journal_json(j: JournalEntry) -> dict[str, Any]:
    return {"at": iso(j.at), "kind": j.kind, "automation_id": j.automation_id, "run_id": j.run_id,
            "detail": j.detail}


async def validate(request: Request, automation_id: str, body: dict[str, Any]) -> Any:
    """Compile a definition and check the templates it names exist with that channel."""
    svc = services(request)
    for key in ("automation_id", "version", "created_at", "updated_at"):
        body.pop(key, None)
    try:
        compiled = compile_automation(automation_id, body)
    except DefinitionError as exc:
        raise definition_error(exc) from None
    for field, template_id, channels in templates_used(compiled.steps):
        template = await svc.extra["templates"].get(template_id)
        if template is None:
            raise ApiError(400, "invalid_definition", f"{field}: no template {template_id!r}"
                                                      " (create it with PUT /v1/templates/{id} first)")
        missing = [c for c in channels if c not in template.channels]
        if missing:
            raise ApiError(400, "invalid_definition",
                           f"{field}: template {template_id!r} has no {', '.join(missing)} content")
    return compiled


async def put_automation(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    automation_id = request.path_params["automation_id"]
    body = await decode(request, dict[str, Any])
    compiled = await validate(request, automation_id, body)
    existed = await svc.store.get_automation(automation_id) is not None
    version = await svc.store.put_automation(automation_id, body, compiled.enabled, svc.clock.now_ms())
    svc.extra["automations"].installed(compiled, version)
    found = await svc.store.get_automation(automation_id)
    assert found is not None
    return json(_out(automation_id, *found), status=200 if existed else 201)


async def validate_automation(request: Request) -> Response:
    """Dry run of PUT: 200 with the normalised definition, or the 400 PUT would give."""
    await secret(request)
    body = await decode(request, dict[str, Any])
    await validate(request, request.path_params["automation_id"], body)
    return json({"valid": True})


async def get_automation(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    found = await svc.store.get_automation(request.path_params["automation_id"])
    if found is None:
        raise not_found(f"automation {request.path_params['automation_id']!r}")
    return json(_out(request.path_params["automation_id"], *found))


async def list_automations(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    return json({"automations": [_out(*row) for row in await svc.store.list_automations()]})


async def delete_automation(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    automation_id = request.path_params["automation_id"]
    if not await svc.store.delete_automation(automation_id):
        raise not_found(f"automation {automation_id!r}")
    svc.extra["automations"].removed(automation_id)
    return Response(status_code=204)


async def runs(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    found = await svc.store.automation_runs(request.path_params["automation_id"],
                                            RUNS_USER.get(request), RUNS_LIMIT.read(request))
    return json({"runs": [run_json(r) for r in found]})


async def report(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    automation_id = request.path_params["automation_id"]
    found = await svc.store.get_automation(automation_id)
    if found is None:
        raise not_found(f"automation {automation_id!r}")
    definition = found[0]
    counts = await svc.store.report_counts(automation_id, svc.clock.now_ms())
    t_users, t_conv = counts["groups"].get(False, (0, 0))
    h_users, h_conv = counts["groups"].get(True, (0, 0))
    result = lift(t_users, t_conv, h_users, h_conv)
    retention = {}
    for day, (eligible, retained) in counts["retention"].items():
        row = {}
        for name, group in (("treated", False), ("holdout", True)):
            n, k = eligible.get(group, 0), retained.get(group, 0)
            row[name] = {"users": n, "retained": k, "rate": (k / n) if n else None}
        retention[f"day_{day}"] = row
    goal = definition.get("goal")
    return json({
        "automation_id": automation_id,
        "holdout_percent": definition.get("holdout_percent", 0),
        "goal": goal,
        "treated": {"users": t_users, "converted": t_conv, "rate": result.treated_rate},
        "holdout": {"users": h_users, "converted": h_conv, "rate": result.holdout_rate},
        "lift": {"absolute": result.absolute_lift, "relative": result.relative_lift,
                 "ci_low": result.ci_low, "ci_high": result.ci_high, "confidence": result.confidence,
                 "p_value": result.p_value},
        "retention": retention,
        "verdict": result.verdict,
        "explanation": result.explanation if goal else "this automation has no goal: add one to measure lift",
    })


async def journal(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    entries = await svc.store.user_journal(request.path_params["user_id"], JOURNAL_AUTOMATION.get(request),
                                           JOURNAL_LIMIT.read(request))
    return json({"user_id": request.path_params["user_id"], "journal": [journal_json(j) for j in entries]})


routes = [
    Route("/v1/automations", list_automations, methods=["GET"]),
    Route("/v1/automations/{automation_id}", put_automation, methods=["PUT"]),
    Route("/v1/automations/{automation_id}", get_automation, methods=["GET"]),
    Route("/v1/automations/{automation_id}", delete_automation, methods=["DELETE"]),
    Route("/v1/automations/{automation_id}/validate", validate_automation, methods=["POST"]),
    Route("/v1/automations/{automation_id}/runs", runs, methods=["GET"]),
    Route("/v1/automations/{automation_id}/report", report, methods=["GET"]),
    RawRoute("/v1/users/{user_id}/journal", journal, methods=["GET"]),
]

openapi.document(
    openapi.Endpoint("GET", "/v1/automations", "Every automation", "secret"),
    openapi.Endpoint("PUT", "/v1/automations/{automation_id}", "Create or change an automation (a new version)",
                     "secret"),
    openapi.Endpoint("GET", "/v1/automations/{automation_id}", "One automation", "secret"),
    openapi.Endpoint("DELETE", "/v1/automations/{automation_id}", "Delete an automation", "secret", status=204),
    openapi.Endpoint("POST", "/v1/automations/{automation_id}/validate", "Validate a definition without saving",
                     "secret"),
    openapi.Endpoint("GET", "/v1/automations/{automation_id}/runs", "Runs, newest first (user_id, limit)", "secret",
                     query=(RUNS_USER, RUNS_LIMIT)),
    openapi.Endpoint("GET", "/v1/automations/{automation_id}/report",
                     "Treated vs holdout: conversion, lift with 95% CI, p-value, retention", "secret"),
    openapi.Endpoint("GET", "/v1/users/{user_id}/journal", "Why something happened or did not (decision trace)",
                     "secret", query=(JOURNAL_AUTOMATION, JOURNAL_LIMIT)),
)
