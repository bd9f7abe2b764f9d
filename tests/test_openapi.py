"""/openapi.json, read through the real app: query parameters and optional bodies.

The query parameters are declared once (``api.common.Query`` / ``IntQuery``),
read by the handlers through those objects and listed in each route's
``openapi.Endpoint``; these tests check the document says what the handlers do."""

from __future__ import annotations

import inspect
import types
from typing import Any

from starlette.routing import Mount, Route, WebSocketRoute

from retenshund.api import common
from tests.conftest import PUBLISHABLE, Api

# Every operation that reads query parameters, and their names.
QUERY = {
    ("GET", "/v1/users"): {"query", "limit", "after"},
    ("GET", "/v1/users/{user_id}/events"): {"limit", "before"},
    ("GET", "/v1/users/{user_id}/journal"): {"automation_id", "limit"},
    ("GET", "/v1/automations/{automation_id}/runs"): {"user_id", "limit"},
    ("GET", "/v1/messages"): {"status", "channel", "template_id", "automation_id", "limit"},
    ("GET", "/v1/segments/{segment_id}/members"): {"limit", "after"},
    ("GET", "/v1/segments/{segment_id}/counts"): {"days"},
    ("GET", "/v1/analytics/messages"): {"group_by", "since", "template_id", "automation_id"},
    ("GET", "/v1/analytics/time-to-trigger"): {"since"},
    ("GET", "/v1/webhooks/unmatched"): {"source", "include_replayed", "before", "limit"},
    ("GET", "/v1/inbox"): {"limit", "before", "include_archived", "token"},
    ("POST", "/v1/inbox/read-all"): {"token"},
    ("POST", "/v1/inbox/{item_id}/read"): {"token"},
    ("POST", "/v1/inbox/{item_id}/archive"): {"token"},
    ("GET", "/v1/inbox/ws"): {"token"},
    ("GET", "/dashboard/events/ws"): {"backlog"},
}


async def document(api: Api) -> dict[str, Any]:
    r = await api.get("/openapi.json", key=None)
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def query_params(doc: dict[str, Any], method: str, path: str) -> dict[str, dict[str, Any]]:
    op = doc["paths"][path][method.lower()]
    return {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), path, op) for path, ops in doc["paths"].items() for m, op in ops.items()]


async def test_user_events_document_limit_and_before(api: Api) -> None:
    params = query_params(await document(api), "GET", "/v1/users/{user_id}/events")
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    assert params["limit"]["required"] is False
    assert params["before"]["schema"]["type"] == "string" and "next_before" in params["before"]["description"]


async def test_user_search_documents_query_limit_and_after(api: Api) -> None:
    params = query_params(await document(api), "GET", "/v1/users")
    assert set(params) == {"query", "limit", "after"}
    assert params["query"]["schema"]["maxLength"] == 255
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}


async def test_enums_required_and_defaults_come_from_the_code(api: Api) -> None:
    from retenshund import messages
    from retenshund.analytics import messages as am

    doc = await document(api)
    listing = query_params(doc, "GET", "/v1/messages")
    assert listing["status"]["schema"]["enum"] == list(messages.STATUSES)
    assert listing["channel"]["schema"]["enum"] == list(messages.CHANNELS)
    report = query_params(doc, "GET", "/v1/analytics/messages")
    assert report["group_by"]["required"] is True
    assert report["group_by"]["schema"]["enum"] == list(am.GROUP_COLUMNS)
    assert report["since"]["schema"]["default"] == am.DEFAULT_SINCE
    unmatched = query_params(doc, "GET", "/v1/webhooks/unmatched")
    assert unmatched["include_replayed"]["schema"] == {"type": "boolean", "default": False}
    assert "default" not in unmatched["before"]["schema"]  # absent: no cursor


async def test_the_token_body_is_optional_and_track_body_is_required(api: Api) -> None:
    doc = await document(api)
    assert doc["paths"]["/v1/users/{user_id}/token"]["post"]["requestBody"]["required"] is False
    assert doc["paths"]["/v1/track"]["post"]["requestBody"]["required"] is True
    # ...as the routes behave: the token route takes no body, track needs one.
    assert (await api.post("/v1/users/u1/token")).status_code == 200
    r = await api.http.post("/v1/track", content=b"", headers={"Authorization": f"Bearer {PUBLISHABLE}"})
    assert r.status_code == 400


async def test_every_query_parameter_is_fully_described(api: Api) -> None:
    doc = await document(api)
    seen = 0
    for method, path, op in operations(doc):
        params = op.get("parameters", [])
        keys = [(p["in"], p["name"]) for p in params]
        assert len(keys) == len(set(keys)), (method, path, keys)
        for p in params:
            if p["in"] == "path":
                assert f"{{{p['name']}}}" in path, (method, path, p)
                continue
            seen += 1
            where = (method, path, p.get("name"))
            assert p["in"] == "query", where
            assert isinstance(p["name"], str) and p["name"], where
            assert isinstance(p["description"], str) and len(p["description"]) > 5, where
            assert isinstance(p["required"], bool), where
            schema = p["schema"]
            assert schema["type"] in ("string", "integer", "boolean"), where
            if schema["type"] == "integer":
                assert schema["minimum"] <= schema["maximum"], where
                if "default" in schema:
                    assert schema["minimum"] <= schema["default"] <= schema["maximum"], where
            if "enum" in schema and "default" in schema:
                assert schema["default"] in schema["enum"], where
    assert seen >= 30


async def test_the_operations_with_query_parameters_are_the_known_ones(api: Api) -> None:
    doc = await document(api)
    found = {(m, path): set(query_params(doc, m, path)) for m, path, _ in operations(doc)}
    assert {k: v for k, v in found.items() if v} == QUERY


# --- The handlers read what the document lists -------------------------------------------

# Read without going through a handler's module globals, so the scan below cannot see them.
NOT_SCANNED = {("GET", "/v1/inbox/ws"): {"token"}}  # inbox_ws.InboxSocket parses the raw query string
# These call ``user()`` only when an Authorization: Bearer header is there, which wins over ?token=.
TOKEN_NEVER_READ = {("POST", "/v1/push/subscriptions"), ("DELETE", "/v1/push/subscriptions")}


def _code_objects(code: types.CodeType) -> list[types.CodeType]:
    found = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found += _code_objects(const)
    return found


def reads(fn: Any) -> tuple[set[str], list[str]]:
    """The query parameter names the handler reads through the declared objects
    (following the api helper functions it calls by name), and the functions
    that read the query string directly instead."""
    names: set[str] = set()
    direct: list[str] = []
    todo, done = [fn], set()
    while todo:
        f = inspect.unwrap(todo.pop())
        if not isinstance(f, types.FunctionType) or f in done:
            continue
        done.add(f)
        used = {n for c in _code_objects(f.__code__) for n in c.co_names}
        if {"query_params", "int_param", "query_string"} & used:
            direct.append(f"{f.__module__}.{f.__qualname__}")
        cells = [c.cell_contents for c in f.__closure__ or ()]
        for value in [f.__globals__[n] for n in used if n in f.__globals__] + cells:
            if isinstance(value, common.Query | common.IntQuery):
                names.add(value.name)
            elif value is common.user:
                names.add(common.USER_TOKEN.name)
            elif (isinstance(value, types.FunctionType) and value.__module__.startswith("retenshund.api.")
                  and value.__module__ != "retenshund.api.common"):
                todo.append(value)
    return names, direct


async def test_each_handler_reads_exactly_the_documented_query_parameters(api: Api) -> None:
    doc = await document(api)
    checked = 0
    for route in api.app.routes:
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route | WebSocketRoute)
        methods = {"GET"} if isinstance(route, WebSocketRoute) else (route.methods or set()) - {"HEAD"}
        endpoint = route.endpoint
        if not inspect.isfunction(endpoint):
            endpoint = type(endpoint).__call__  # an ASGI class (the inbox socket)
        names, direct = reads(endpoint)
        assert not direct, f"{route.path}: read the query through a Query/IntQuery object: {direct}"
        for method in methods:
            expected = (names | NOT_SCANNED.get((method, route.path), set()))
            if (method, route.path) in TOKEN_NEVER_READ:
                expected -= {"token"}
            assert set(query_params(doc, method, route.path)) == expected, (method, route.path)
            checked += 1
    assert checked > 50


async def test_the_documented_integer_ranges_are_the_enforced_ones(api: Api) -> None:
    """At the maximum the route answers 200, one past it 400 with the message
    int_param gives; one below the minimum too."""
    await api.post("/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}}, key=PUBLISHABLE)
    assert (await api.put("/v1/segments/s1", {"name": "S",
                                              "condition": {"trait": "plan", "op": "eq", "value": "pro"}})).status_code \
        in (200, 201)
    fill = {"user_id": "u1", "segment_id": "s1", "automation_id": "a1"}
    doc = await document(api)
    tried = 0
    for method, path, op in operations(doc):
        if method != "GET" or op["security"] != [{"bearer": []}, {"basic": []}]:
            continue  # the secret-key reads; the inbox and the WebSocket are covered elsewhere
        for p in op.get("parameters", []):
            schema = p["schema"]
            if p["in"] != "query" or schema["type"] != "integer":
                continue
            url = path.format(**fill)
            low, high = schema["minimum"], schema["maximum"]
            ok = await api.get(url, params={p["name"]: high})
            assert ok.status_code == 200, (url, p["name"], ok.text)
            for bad in (high + 1, low - 1):
                r = await api.get(url, params={p["name"]: bad})
                assert r.status_code == 400, (url, p["name"], bad)
                assert r.json()["error"] == {"code": "invalid_field",
                                             "message": f"{p['name']}: must be from {low} to {high}"}
            tried += 1
    assert tried >= 9
