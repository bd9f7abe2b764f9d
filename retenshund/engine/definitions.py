"""Automation definitions: validated strictly at save time, compiled once.

A bad definition is a DefinitionError whose field names the exact spot
(``steps[2].wait_for.timeout``), so the API answers 400 with it and the CLI
prints it. What is accepted here cannot fail at run time for shape reasons."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..durations import DefinitionError, parse_duration
from .conditions import Condition, Where, compile_condition, compile_where
from .timers import parse_cron

CHANNELS = ("email", "push", "in_app")
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_TOP = ("name", "trigger", "steps", "exit_on", "goal", "holdout_percent", "frequency_cap", "quiet_hours",
        "enabled", "description")


@dataclass(frozen=True)
class Trigger:
    kind: str  # event | segment_entered | segment_exited | schedule
    event: str | None = None
    where: Where | None = None
    segment: str | None = None
    cron: str | None = None
    timezone: str = "UTC"
    # Group fan-out: start a run for each member of the group named by this
    # event field (e.g. "properties.team_id"), except the actor by default.
    group_path: str | None = None
    include_actor: bool = False


@dataclass(frozen=True)
class Fallback:
    after_ms: int
    channel: str
    template_id: str


@dataclass(frozen=True)
class Computed:
    """A template variable computed from the user's own events at send time."""

    name: str
    agg: str  # count | sum | last
    event: str
    property: str | None
    within_ms: int | None


@dataclass(frozen=True)
class Step:
    kind: str  # wait | send | wait_for | if | webhook
    duration_ms: int = 0
    channel: tuple[str, ...] = ()
    template_id: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    category: str | None = None
    fallback: Fallback | None = None
    computed: tuple[Computed, ...] = ()
    event: str | None = None
    where: Where | None = None
    condition: Condition | None = None
    condition_source: dict[str, Any] | None = None
    branches: dict[str, tuple["Step", ...]] = field(default_factory=dict)
    url: str | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Automation:
    automation_id: str
    name: str
    trigger: Trigger
    steps: tuple[Step, ...]
    exit_on: tuple[str, ...]
    goal_event: str | None
    goal_within_ms: int
    holdout_percent: float
    cap_max: int | None
    cap_per_ms: int
    quiet_start: int | None  # minutes after midnight
    quiet_end: int | None
    quiet_timezone: str | None
    enabled: bool
    source: dict[str, Any]

    def step_at(self, path: tuple[Any, ...]) -> Step | None:
        """The step at a position path like (3, "if_not", 0); None past the end of a branch."""
        steps: tuple[Step, ...] = self.steps
        step: Step | None = None
        i = 0
        while i < len(path):
            index = path[i]
            if not isinstance(index, int) or index >= len(steps):
                return None
            step = steps[index]
            if i + 1 < len(path):
                steps = step.branches.get(path[i + 1], ())
                i += 2
            else:
                i += 1
        return step


def _obj(value: object, field: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DefinitionError(field, f"must be an object ({what})")
    return value


def _only(obj: dict[str, Any], allowed: tuple[str, ...], field: str) -> None:
    for key in obj:
        if key not in allowed:
            raise DefinitionError(f"{field}.{key}" if field else key,
                                  f"unknown key; allowed here: {', '.join(allowed)}")


def _name(value: object, field: str, what: str = "a name") -> str:
    if not isinstance(value, str) or not value or len(value) > 255:
        raise DefinitionError(field, f"must be {what} (1 to 255 characters)")
    return value


def _id(value: object, field: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise DefinitionError(field, "must be an id: 1-128 letters, digits, '_', '-' or '.'")
    return value


def _hhmm(value: object, field: str) -> int:
    if not isinstance(value, str) or not _HHMM.match(value):
        raise DefinitionError(field, "must be a time like \"21:00\" (24-hour HH:MM)")
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _timezone(value: object, field: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(value, str):
        raise DefinitionError(field, "must be an IANA time zone like \"Europe/Berlin\"")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise DefinitionError(field, f"{value!r} is not an IANA time zone (like \"Europe/Berlin\")") from None
    return value


def compile_trigger(obj: object, field: str = "trigger") -> Trigger:
    t = _obj(obj, field, 'like {"event": "cart_abandoned"} or {"segment_entered": "at_risk"}')
    if "event" in t:
        _only(t, ("event", "where", "group_path", "include_actor"), field)
        where = compile_where(t["where"], f"{field}.where") if "where" in t else None
        group_path = t.get("group_path")
        if group_path is not None and (not isinstance(group_path, str) or not group_path):
            raise DefinitionError(f"{field}.group_path", "must be the event field holding the group id, "
                                                         "like \"properties.team_id\"")
        include_actor = t.get("include_actor", False)
        if not isinstance(include_actor, bool):
            raise DefinitionError(f"{field}.include_actor", "must be true or false")
        return Trigger("event", event=_name(t["event"], f"{field}.event", "an event name"), where=where,
                       group_path=group_path, include_actor=include_actor)
    for kind in ("segment_entered", "segment_exited"):
        if kind in t:
            _only(t, (kind,), field)
            return Trigger(kind, segment=_id(t[kind], f"{field}.{kind}"))
    if "schedule" in t:
        _only(t, ("schedule", "segment", "timezone"), field)
        if not isinstance(t["schedule"], str):
            raise DefinitionError(f"{field}.schedule", "must be a cron expression like \"0 9 * * 1\"")
        timezone = _timezone(t.get("timezone", "UTC"), f"{field}.timezone")
        parse_cron(t["schedule"], f"{field}.schedule", timezone)
        if "segment" not in t:
            raise DefinitionError(f"{field}.segment", "a schedule runs over a segment: name its id")
        return Trigger("schedule", cron=t["schedule"], segment=_id(t["segment"], f"{field}.segment"),
                       timezone=timezone)
    raise DefinitionError(field, "needs one of event, segment_entered, segment_exited, schedule")


def compile_steps(obj: object, field: str) -> tuple[Step, ...]:
    if not isinstance(obj, list):
        raise DefinitionError(field, "must be a list of steps")
    if len(obj) > 100:
        raise DefinitionError(field, "at most 100 steps per list")
    return tuple(compile_step(s, f"{field}[{i}]") for i, s in enumerate(obj))


def compile_step(obj: object, field: str) -> Step:
    s = _obj(obj, field, 'one of wait, send, wait_for, if, webhook, e.g. {"wait": "1h"}')
    if "wait" in s:
        _only(s, ("wait",), field)
        return Step("wait", duration_ms=parse_duration(s["wait"], f"{field}.wait"))
    if "send" in s:
        _only(s, ("send",), field)
        return _send(_obj(s["send"], f"{field}.send", "channel and template_id"), f"{field}.send")
    if "wait_for" in s:
        _only(s, ("wait_for", "timeout", "where", "if_happened", "if_not"), field)
        if "timeout" not in s:
            raise DefinitionError(f"{field}.timeout", "wait_for needs a timeout like \"24h\"")
        return Step("wait_for", event=_name(s["wait_for"], f"{field}.wait_for", "an event name"),
                    duration_ms=parse_duration(s["timeout"], f"{field}.timeout"),
                    where=compile_where(s["where"], f"{field}.where") if "where" in s else None,
                    branches={"if_happened": compile_steps(s.get("if_happened", []), f"{field}.if_happened"),
                              "if_not": compile_steps(s.get("if_not", []), f"{field}.if_not")})
    if "if" in s:
        _only(s, ("if", "then", "else"), field)
        cond_src = _obj(s["if"], f"{field}.if", "a segment condition")
        return Step("if", condition=compile_condition(cond_src, f"{field}.if"), condition_source=cond_src,
                    branches={"then": compile_steps(s.get("then", []), f"{field}.then"),
                              "else": compile_steps(s.get("else", []), f"{field}.else")})
    if "webhook" in s:
        _only(s, ("webhook",), field)
        w = _obj(s["webhook"], f"{field}.webhook", "url and body")
        _only(w, ("url", "body", "headers"), f"{field}.webhook")
        url = w.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
            raise DefinitionError(f"{field}.webhook.url", "must be an http(s) URL")
        headers = w.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in headers.items()):
            raise DefinitionError(f"{field}.webhook.headers", "must be an object of string values")
        return Step("webhook", url=url, body=w.get("body", {}), headers=headers)
    raise DefinitionError(field, "unknown step; use one of wait, send, wait_for, if, webhook")


def _send(s: dict[str, Any], field: str) -> Step:
    _only(s, ("channel", "template_id", "variables", "category", "fallback", "computed"), field)
    channel = s.get("channel")
    channels = [channel] if isinstance(channel, str) else channel
    if not isinstance(channels, list) or not channels or any(c not in CHANNELS for c in channels):
        raise DefinitionError(f"{field}.channel", "must be email, push, in_app or a list of them")
    variables = s.get("variables", {})
    if not isinstance(variables, dict):
        raise DefinitionError(f"{field}.variables", "must be an object")
    category = s.get("category")
    if category is not None and not isinstance(category, str):
        raise DefinitionError(f"{field}.category", "must be a category name")
    fallback = None
    if "fallback" in s:
        f = _obj(s["fallback"], f"{field}.fallback", 'like {"after": "30m", "channel": "email", "template_id": "x"}')
        _only(f, ("after", "channel", "template_id"), f"{field}.fallback")
        if channels != ["in_app"]:
            raise DefinitionError(f"{field}.fallback", "a fallback follows an in_app send (sent if still unread)")
        if f.get("channel") not in ("email", "push"):
            raise DefinitionError(f"{field}.fallback.channel", "must be email or push")
        fallback = Fallback(parse_duration(f.get("after"), f"{field}.fallback.after"), f["channel"],
                            _id(f.get("template_id"), f"{field}.fallback.template_id"))
    computed = _computed(s.get("computed", {}), f"{field}.computed")
    return Step("send", channel=tuple(channels), template_id=_id(s.get("template_id"), f"{field}.template_id"),
                variables=variables, category=category, fallback=fallback, computed=computed)


def _computed(obj: object, field: str) -> tuple[Computed, ...]:
    """``{"reports": {"count": "report_generated", "within": "30d"},
    "spent": {"sum": "order_completed", "property": "total", "within": "30d"},
    "plan": {"last": "plan_changed", "property": "plan"}}``"""
    spec = _obj(obj, field, "variable name -> {count|sum|last: event, property, within}")
    out = []
    for name, c in spec.items():
        f = f"{field}.{name}"
        c = _obj(c, f, '{"count": "event_name", "within": "30d"}')
        aggs = [k for k in ("count", "sum", "last") if k in c]
        if len(aggs) != 1:
            raise DefinitionError(f, "needs exactly one of count, sum, last (naming an event)")
        _only(c, (aggs[0], "property", "within"), f)
        prop = c.get("property")
        if aggs[0] != "count" and not (isinstance(prop, str) and prop):
            raise DefinitionError(f"{f}.property", f"{aggs[0]} needs the event property to read")
        within = parse_duration(c["within"], f"{f}.within") if "within" in c else None
        out.append(Computed(name, aggs[0], _name(c[aggs[0]], f"{f}.{aggs[0]}", "an event name"), prop, within))
    return tuple(out)


def compile_automation(automation_id: str, obj: object) -> Automation:
    _id(automation_id, "automation_id")
    a = _obj(obj, "", "an automation definition")
    _only(a, _TOP, "")
    name = _name(a.get("name", automation_id), "name")
    trigger = compile_trigger(a.get("trigger"), "trigger")
    steps = compile_steps(a.get("steps", []), "steps")
    exit_on = a.get("exit_on", [])
    if not isinstance(exit_on, list) or not all(isinstance(e, str) and e for e in exit_on):
        raise DefinitionError("exit_on", "must be a list of event names")
    goal_event, goal_within = None, 0
    if a.get("goal") is not None:
        g = _obj(a["goal"], "goal", 'like {"event": "order_completed", "within": "7d"}')
        _only(g, ("event", "within"), "goal")
        goal_event = _name(g.get("event"), "goal.event", "an event name")
        goal_within = parse_duration(g.get("within", "7d"), "goal.within")
    holdout = a.get("holdout_percent", 0)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout <= 100:
        raise DefinitionError("holdout_percent", "must be a number from 0 to 100")
    cap_max, cap_per = None, 0
    if a.get("frequency_cap") is not None:
        c = _obj(a["frequency_cap"], "frequency_cap", 'like {"max": 1, "per": "7d"}')
        _only(c, ("max", "per"), "frequency_cap")
        if isinstance(c.get("max"), bool) or not isinstance(c.get("max"), int) or c["max"] < 1:
            raise DefinitionError("frequency_cap.max", "must be a whole number of entries, at least 1")
        cap_max, cap_per = c["max"], parse_duration(c.get("per"), "frequency_cap.per")
    q_start = q_end = None
    q_tz = None
    if a.get("quiet_hours") is not None:
        q = _obj(a["quiet_hours"], "quiet_hours", 'like {"start": "21:00", "end": "08:00"}')
        _only(q, ("start", "end", "timezone"), "quiet_hours")
        q_start, q_end = _hhmm(q.get("start"), "quiet_hours.start"), _hhmm(q.get("end"), "quiet_hours.end")
        if q_start == q_end:
            raise DefinitionError("quiet_hours.end", "must differ from start")
        if "timezone" in q:
            q_tz = _timezone(q["timezone"], "quiet_hours.timezone")
    enabled = a.get("enabled", True)
    if not isinstance(enabled, bool):
        raise DefinitionError("enabled", "must be true or false")
    return Automation(automation_id=automation_id, name=name, trigger=trigger, steps=steps,
                      exit_on=tuple(exit_on), goal_event=goal_event, goal_within_ms=goal_within,
                      holdout_percent=float(holdout), cap_max=cap_max, cap_per_ms=cap_per, quiet_start=q_start,
                      quiet_end=q_end, quiet_timezone=q_tz, enabled=enabled, source=dict(a))


def templates_used(steps: tuple[Step, ...]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(field path, template id, channels) of every send, to check they exist at save time."""
    found: list[tuple[str, str, tuple[str, ...]]] = []

    def walk(steps: tuple[Step, ...], field: str) -> None:
        for i, step in enumerate(steps):
            f = f"{field}[{i}]"
            if step.kind == "send" and step.template_id:
                found.append((f"{f}.send.template_id", step.template_id, step.channel))
                if step.fallback:
                    found.append((f"{f}.send.fallback.template_id", step.fallback.template_id,
                                  (step.fallback.channel,)))
            for name, branch in step.branches.items():
                walk(branch, f"{f}.{name}")

    walk(steps, "steps")
    return found
