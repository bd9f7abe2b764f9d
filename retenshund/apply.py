"""``retenshund apply DIR`` / ``retenshund diff DIR``: definitions as code.

The app's repository holds one file per definition (TOML or JSON):
``DIR/templates/<id>.toml``, ``DIR/segments/<id>.toml``,
``DIR/automations/<id>.toml``; the id is the file name (or an ``id`` key).
Everything is validated locally first, so nothing is applied when any file is
wrong; then it is sent to a running daemon through the same API the dashboard
uses, templates first (automations name them)."""

from __future__ import annotations

import difflib
import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from .durations import DefinitionError
from .engine.conditions import compile_condition
from .engine.definitions import compile_automation
from .templates import TemplateError, compile_template

KINDS = ("templates", "segments", "automations")
SERVER_FIELDS = {"template_id", "segment_id", "automation_id", "version", "created_at", "updated_at",
                 "member_count", "members", "count"}


class ApplyError(Exception):
    pass


@dataclass
class Definition:
    kind: str
    id: str
    path: Path
    body: dict[str, Any]


def load(directory: Path) -> list[Definition]:
    if not directory.is_dir():
        raise ApplyError(f"{directory} is not a folder (expected templates/, segments/, automations/ inside)")
    found: list[Definition] = []
    for kind in KINDS:
        folder = directory / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix not in (".toml", ".json"):
                continue
            try:
                body = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
            except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
                raise ApplyError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
            if not isinstance(body, dict):
                raise ApplyError(f"{path}: must hold one object")
            ident = str(body.pop("id", path.stem))
            found.append(Definition(kind, ident, path, body))
    if not found:
        raise ApplyError(f"no definitions under {directory} (templates/*.toml, segments/*.toml, automations/*.toml)")
    return found


def validate(defs: list[Definition]) -> None:
    """The same checks the API makes, before anything is sent."""
    templates = {d.id: d for d in defs if d.kind == "templates"}
    for d in defs:
        try:
            if d.kind == "templates":
                compile_template(d.id, d.body)
            elif d.kind == "segments":
                compile_condition(d.body.get("condition"), "condition")
            else:
                compile_automation(d.id, d.body)
        except TemplateError as exc:
            raise ApplyError(f"{d.path}: {exc.field}: {exc.message}") from None
        except DefinitionError as exc:
            raise ApplyError(f"{d.path}: {exc.field}: {exc.message}") from None
    del templates


def _normal(body: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in body.items() if k not in SERVER_FIELDS}, indent=2, sort_keys=True)


class Client:
    def __init__(self, url: str, key: str) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def get(self, kind: str, ident: str) -> dict[str, Any] | None:
        r = self._call("GET", f"/v1/{kind}/{ident}")
        return None if r.status_code == 404 else r.json()

    def put(self, kind: str, ident: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self._call("PUT", f"/v1/{kind}/{ident}", body)
        if r.status_code >= 400:
            raise ApplyError(f"{kind}/{ident}: {r.json().get('error', {}).get('message', r.text)}")
        return r.json()  # type: ignore[no-any-return]

    def _call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            r = self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ApplyError(f"cannot reach retenshund at {self.http.base_url}: {exc}"
                             " (start it, or pass --url)") from None
        if r.status_code in (401, 403):
            raise ApplyError("the daemon refused the key: pass a secret key with --key or RETENSHUN_SECRET_KEY")
        return r


def plan(defs: list[Definition], client: Client) -> list[tuple[Definition, str, str, str]]:
    """(definition, state, current text, wanted text); state: new | changed | unchanged."""
    out = []
    for d in defs:
        current = client.get(d.kind, d.id)
        wanted = _normal(d.body)
        if current is None:
            out.append((d, "new", "", wanted))
            continue
        have = _normal(current)
        # Compare with defaults filled in by the server: what we send is what it stores.
        out.append((d, "unchanged" if have == _normal({**_defaults(current, d.body), **d.body}) else "changed",
                    have, wanted))
    return out


def _defaults(current: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    # Keys the server adds on its own (e.g. a template's category default) count as unchanged.
    return {k: v for k, v in current.items() if k not in body and k not in SERVER_FIELDS}


def diff(directory: Path, client: Client, out: TextIO = sys.stdout) -> int:
    defs = load(directory)
    validate(defs)
    changes = 0
    for d, state, have, wanted in plan(defs, client):
        label = f"{d.kind[:-1]} {d.id}"
        if state == "unchanged":
            print(f"  = {label}", file=out)
            continue
        changes += 1
        print(f"  {'+' if state == 'new' else '~'} {label} ({d.path})", file=out)
        for line in difflib.unified_diff(have.splitlines(), wanted.splitlines(), "current", "wanted", lineterm="",
                                         n=2):
            print(f"      {line}", file=out)
    print(f"{changes} to apply, {len(defs) - changes} unchanged", file=out)
    return changes


def apply(directory: Path, client: Client, out: TextIO = sys.stdout) -> int:
    defs = load(directory)
    validate(defs)
    todo = [(d, state) for d, state, _h, _w in plan(defs, client) if state != "unchanged"]
    for i, (d, state) in enumerate(todo, 1):
        result = client.put(d.kind, d.id, d.body)
        version = f" (version {result['version']})" if "version" in result else ""
        print(f"  [{i}/{len(todo)}] {'created' if state == 'new' else 'updated'} {d.kind[:-1]} {d.id}{version}",
              file=out)
    print(f"applied {len(todo)}, {len(defs) - len(todo)} unchanged", file=out)
    return len(todo)
