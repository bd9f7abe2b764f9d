"""Segment conditions and trigger ``where`` filters: compiled once, evaluated many times.

Condition syntax (the contract's, validated strictly)::

    {"all": [...]}   {"any": [...]}   {"not": {...}}
    {"trait": "plan", "op": "eq", "value": "pro"}
    {"event": "login", "count": {"gte": 3}, "within": "7d"}
    {"event": "login", "not_within": "7d"}
    {"engagement": "below_baseline", "ratio": 0.5}

Trait ops: eq ne gt gte lt lte contains exists (``value`` defaults to true for
exists). ``count`` takes one or more of eq ne gt gte lt lte, all of which must
hold, and defaults to ``{"gte": 1}``; without ``within`` it counts all time.
``not_within`` means no occurrence in that window. Engagement states:
below_baseline above_baseline normal new; ``ratio`` (recent / baseline)
replaces the configured threshold of below/above_baseline.

Value semantics, shared by conditions and ``where`` filters, never raise:

- Numbers compare numerically; ``true``/``false`` are not numbers; strings order
  only against strings. Comparing different types is simply false.
- ``contains`` is a substring test on strings and membership on lists.
- A missing value and null are the same: absent. Absent fails every test
  except ``ne``, ``nin`` and ``exists: false``; a null in a definition means
  absent, so ``{"eq": null}`` matches it.
- Dotted paths reach into nested objects (``address.city``) and list items by
  index (``items.0.sku``); a key that literally contains the dots wins.

Event windows: an occurrence at ``t`` is inside ``within: W`` at time ``now``
while ``t > now - W``, so it leaves the window exactly at ``t + W``. Occurrences
stamped in the future (client clocks) count as recent, which keeps "time passes"
the only way a value changes without new events: ageing out of a window.
"""

from __future__ import annotations

import json
import math
import operator
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from retenshund.durations import DefinitionError, parse_duration
from retenshund.engine.baseline import Engagement

__all__ = [
    "AllOf",
    "AnyOf",
    "Condition",
    "DefinitionError",
    "EngagementTest",
    "EventCount",
    "Facts",
    "Not",
    "TraitTest",
    "Where",
    "WhereClause",
    "compile_condition",
    "compile_where",
    "evaluate",
    "events_used",
    "lookback_ms",
    "match_where",
    "next_change_ms",
    "uses_engagement",
    "uses_traits",
]

COMPARE_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")
TRAIT_OPS = (*COMPARE_OPS, "contains", "exists")
WHERE_OPS = (*COMPARE_OPS, "in", "nin", "contains", "exists")
ENGAGEMENT_STATES = ("below_baseline", "above_baseline", "normal", "new")
_KINDS = ("all", "any", "not", "trait", "event", "engagement")
_ORDER_OPS = frozenset({"gt", "gte", "lt", "lte"})

# Deep enough for any hand-written definition, shallow enough that evaluation
# can recurse without ever meeting Python's recursion limit.
_MAX_DEPTH = 32
_MAX_PATH_CHARS = 256
# A ratio is recent / baseline activity; beyond this it is a typo, and the cap
# keeps float() of a huge JSON integer from overflowing.
_MAX_RATIO = 1000


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


@dataclass(frozen=True, slots=True)
class TraitTest:
    path: str
    parts: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class EventCount:
    """``bounds`` are ``(op, n)`` pairs that must all hold; ``not_within`` compiles
    to ``(("eq", 0),)``. ``within_ms`` None means all time."""

    event: str
    bounds: tuple[tuple[str, int], ...]
    within_ms: int | None


@dataclass(frozen=True, slots=True)
class EngagementTest:
    """``ratio`` overrides the default threshold of ``below``/``above_baseline``."""

    state: str
    ratio: float | None


Condition: TypeAlias = AllOf | AnyOf | Not | TraitTest | EventCount | EngagementTest


@dataclass(frozen=True, slots=True)
class WhereClause:
    path: str
    parts: tuple[str, ...]
    tests: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Where:
    clauses: tuple[WhereClause, ...]


class Facts(Protocol):
    """What evaluating a condition for one user needs.

    ``event_times`` returns ascending millisecond timestamps of that event and
    must include every occurrence with ``t > now_ms - lookback_ms(cond)`` (all of
    them when the lookback is None); older ones may be left out."""

    @property
    def traits(self) -> Mapping[str, Any]: ...

    @property
    def engagement(self) -> Engagement | None: ...

    def event_times(self, name: str) -> Sequence[int]: ...


# ---------------------------------------------------------------- compiling


def compile_condition(obj: object, field: str = "condition") -> Condition:
    """Validate a decoded JSON condition; errors name the exact spot
    (``condition.all[2].op``) and the allowed values."""
    return _compile(obj, field, 1)


def _compile(obj: object, field: str, depth: int) -> Condition:
    if depth > _MAX_DEPTH:
        raise DefinitionError(field, f"conditions nest deeper than {_MAX_DEPTH} levels; flatten them")
    if not isinstance(obj, Mapping):
        raise DefinitionError(field, f"must be an object with one of the keys {_names(_KINDS)}")
    kinds = [k for k in _KINDS if k in obj]
    if not kinds:
        raise DefinitionError(field, f"needs one of the keys {_names(_KINDS)}")
    if len(kinds) > 1:
        raise DefinitionError(
            field, f"has both {kinds[0]!r} and {kinds[1]!r}; combine conditions with all/any"
        )
    kind = kinds[0]
    if kind in ("all", "any"):
        _only_keys(obj, (kind,), field, f"an {kind!r} condition")
        items = obj[kind]
        if not isinstance(items, list):
            raise DefinitionError(f"{field}.{kind}", "must be a list of conditions")
        compiled = tuple(_compile(c, f"{field}.{kind}[{i}]", depth + 1) for i, c in enumerate(items))
        return AllOf(compiled) if kind == "all" else AnyOf(compiled)
    if kind == "not":
        _only_keys(obj, ("not",), field, "a 'not' condition")
        return Not(_compile(obj["not"], f"{field}.not", depth + 1))
    if kind == "trait":
        return _compile_trait(obj, field)
    if kind == "event":
        return _compile_event(obj, field)
    return _compile_engagement(obj, field)


def _compile_trait(obj: Mapping[str, Any], field: str) -> TraitTest:
    _only_keys(obj, ("trait", "op", "value"), field, "a trait condition")
    parts = _path(obj["trait"], f"{field}.trait")
    if "op" not in obj:
        raise DefinitionError(f"{field}.op", f"is required; one of {_names(TRAIT_OPS)}")
    op = obj["op"]
    if op not in TRAIT_OPS:
        raise DefinitionError(f"{field}.op", f"must be one of {_names(TRAIT_OPS)}")
    if op == "exists":
        value = obj.get("value", True)
    elif "value" not in obj:
        raise DefinitionError(f"{field}.value", f"is required with op {op!r}")
    else:
        value = obj["value"]
    _check_operand(op, value, f"{field}.value")
    return TraitTest(obj["trait"], parts, op, value)


def _compile_event(obj: Mapping[str, Any], field: str) -> EventCount:
    _only_keys(obj, ("event", "count", "within", "not_within"), field, "an event condition")
    name = obj["event"]
    if not isinstance(name, str) or not name:
        raise DefinitionError(f"{field}.event", "must be a non-empty event name")
    if "not_within" in obj:
        for clash in ("count", "within"):
            if clash in obj:
                raise DefinitionError(
                    f"{field}.{clash}",
                    "cannot be combined with not_within, which already means "
                    "'no occurrence in that window'",
                )
        return EventCount(name, (("eq", 0),), _window(obj["not_within"], f"{field}.not_within"))
    within = _window(obj["within"], f"{field}.within") if "within" in obj else None
    if "count" not in obj:
        return EventCount(name, (("gte", 1),), within)
    count = obj["count"]
    if not isinstance(count, Mapping) or not count:
        raise DefinitionError(
            f"{field}.count", f'must be an object such as {{"gte": 3}} with ops {_names(COMPARE_OPS)}'
        )
    bounds: list[tuple[str, int]] = []
    for op, n in count.items():
        if op not in COMPARE_OPS:
            raise DefinitionError(f"{field}.count.{op}", f"unknown op; use {_names(COMPARE_OPS)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise DefinitionError(f"{field}.count.{op}", "must be a whole number of 0 or more")
        bounds.append((op, n))
    return EventCount(name, tuple(bounds), within)


def _compile_engagement(obj: Mapping[str, Any], field: str) -> EngagementTest:
    _only_keys(obj, ("engagement", "ratio"), field, "an engagement condition")
    state = obj["engagement"]
    if state not in ENGAGEMENT_STATES:
        raise DefinitionError(f"{field}.engagement", f"must be one of {_names(ENGAGEMENT_STATES)}")
    if "ratio" not in obj:
        return EngagementTest(state, None)
    if state not in ("below_baseline", "above_baseline"):
        raise DefinitionError(
            f"{field}.ratio", "only applies to below_baseline and above_baseline"
        )
    ratio = obj["ratio"]
    if not _is_finite(ratio) or not 0 < ratio <= _MAX_RATIO:
        raise DefinitionError(
            f"{field}.ratio",
            f"must be a number above 0 and up to {_MAX_RATIO}: recent activity / "
            "the user's baseline, e.g. 0.5",
        )
    return EngagementTest(state, float(ratio))


def compile_where(obj: object, field: str = "trigger.where") -> Where:
    """Validate a trigger filter ``{"properties.total": {"gt": 50}, "properties.plan": "pro"}``.

    A plain value means equality; an object is always a set of operators (all
    must hold), so matching an object literally needs ``{"eq": {...}}``. None
    means no filter."""
    if obj is None:
        return Where(())
    if not isinstance(obj, Mapping):
        raise DefinitionError(
            field, 'must be an object of path -> value or {op: value}, e.g. {"properties.plan": "pro"}'
        )
    clauses: list[WhereClause] = []
    for key, spec in obj.items():
        key_field = f"{field}[{json.dumps(key)}]" if isinstance(key, str) else field
        parts = _path(key, key_field)
        if not isinstance(spec, Mapping):
            _check_literal(spec, key_field, 1)
            clauses.append(WhereClause(key, parts, (("eq", spec),)))
            continue
        if not spec:
            raise DefinitionError(key_field, f"needs at least one op: {_names(WHERE_OPS)}")
        tests: list[tuple[str, Any]] = []
        for op, value in spec.items():
            if op not in WHERE_OPS:
                raise DefinitionError(
                    f"{key_field}.{op}",
                    f'unknown op; use {_names(WHERE_OPS)} (to match an object use {{"eq": {{...}}}})',
                )
            _check_operand(op, value, f"{key_field}.{op}")
            tests.append((op, value))
        clauses.append(WhereClause(key, parts, tuple(tests)))
    return Where(tuple(clauses))


def _only_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], field: str, what: str) -> None:
    for key in obj:
        if key not in allowed:
            raise DefinitionError(f"{field}.{key}", f"unknown key; {what} takes {_names(allowed)}")


def _path(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, str) or not value:
        raise DefinitionError(field, "must be a non-empty name or dotted path such as 'address.city'")
    if len(value) > _MAX_PATH_CHARS:
        raise DefinitionError(field, f"is longer than {_MAX_PATH_CHARS} characters")
    parts = tuple(value.split("."))
    if any(not p for p in parts):
        raise DefinitionError(field, f"{value!r} has an empty part; write paths like 'address.city'")
    return parts


def _window(value: object, field: str) -> int:
    ms = parse_duration(value, field)
    if ms == 0:
        raise DefinitionError(field, "must be longer than 0s")
    return ms


def _check_operand(op: str, value: object, field: str) -> None:
    if op == "exists":
        if not isinstance(value, bool):
            raise DefinitionError(field, "must be true or false")
    elif op in _ORDER_OPS:
        if isinstance(value, str):
            return
        if not _is_finite(value):
            raise DefinitionError(field, f"{op!r} compares with a number or a string")
    elif op in ("in", "nin"):
        if not isinstance(value, list):
            raise DefinitionError(field, f"{op!r} takes a list of values")
        _check_literal(value, field, 1)
    else:
        _check_literal(value, field, 1)


def _check_literal(value: object, field: str, depth: int) -> None:
    # Bounding the depth of definition values bounds the recursion in _equal,
    # which only descends while both sides are still nested.
    if depth > _MAX_DEPTH:
        raise DefinitionError(field, f"nests deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DefinitionError(field, "must be a finite number")
        return
    if isinstance(value, list):
        for item in value:
            _check_literal(item, field, depth + 1)
        return
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        for item in value.values():
            _check_literal(item, field, depth + 1)
        return
    raise DefinitionError(field, "must be a JSON value")


def _names(options: Sequence[str]) -> str:
    return ", ".join(options)


# ---------------------------------------------------------------- evaluating


def evaluate(cond: Condition, facts: Facts, now_ms: int) -> bool:
    """The condition's value for one user at ``now_ms``. Never raises on user data."""
    match cond:
        case AllOf(items):
            return all(evaluate(c, facts, now_ms) for c in items)
        case AnyOf(items):
            return any(evaluate(c, facts, now_ms) for c in items)
        case Not(item):
            return not evaluate(item, facts, now_ms)
        case TraitTest(path, parts, op, value):
            return _test(op, _resolve(facts.traits, path, parts), value)
        case EventCount(event, bounds, within_ms):
            return _bounds_hold(bounds, _count(facts.event_times(event), within_ms, now_ms))
        case EngagementTest(state, ratio):
            return _engagement_matches(state, ratio, facts.engagement)
    raise TypeError(f"not a compiled condition: {cond!r}")


def match_where(where: Where, event: Mapping[str, Any]) -> bool:
    """Whether an event (the stored payload: ``properties``, ``context``, ...) passes the filter."""
    for clause in where.clauses:
        actual = _resolve(event, clause.path, clause.parts)
        if not all(_test(op, actual, value) for op, value in clause.tests):
            return False
    return True


_MISSING: Any = object()


def _resolve(root: Mapping[str, Any], path: str, parts: tuple[str, ...]) -> Any:
    if path in root:
        return root[path]
    current: Any = root
    for part in parts:
        # dict first: the ABC check costs several times more, on every event.
        if type(current) is dict or isinstance(current, Mapping):
            if part not in current:
                return _MISSING
            current = current[part]
        elif isinstance(current, (list, tuple)) and part.isascii() and part.isdigit():
            index = int(part)
            if index >= len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def _test(op: str, actual: Any, expected: Any) -> bool:
    if actual is _MISSING or actual is None:
        return _test_absent(op, expected)
    if op == "exists":
        return expected is True
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, v) for v in expected)
    if op == "nin":
        return not any(_equal(actual, v) for v in expected)
    if op == "contains":
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        if isinstance(actual, (list, tuple)):
            return any(_equal(item, expected) for item in actual)
        return False
    order = _order(actual, expected)
    if order is None:
        return False
    return {"gt": order > 0, "gte": order >= 0, "lt": order < 0, "lte": order <= 0}[op]


def _test_absent(op: str, expected: Any) -> bool:
    # Missing and null are one state (identify's null removes a trait), and a
    # null in a definition names that state, so {"eq": null} means "absent".
    if op == "exists":
        return expected is False
    if op == "eq":
        return expected is None
    if op == "ne":
        return expected is not None
    if op == "in":
        return any(v is None for v in expected)
    if op == "nin":
        return not any(v is None for v in expected)
    return False


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    # math.isfinite() overflows on huge ints, which are finite anyway.
    if isinstance(value, float):
        return math.isfinite(value)
    return _is_number(value)


def _equal(a: Any, b: Any) -> bool:
    # Python's == says True == 1 and compares lists of those alike; JSON
    # semantics keep booleans and numbers apart, at every depth.
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, (bool, str)) or isinstance(b, (bool, str)) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return False


def _order(a: Any, b: Any) -> int | None:
    if (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
        if a > b:
            return 1
        if a < b:
            return -1
        return 0 if a == b else None  # NaN is neither
    return None


def _count(times: Sequence[int], within_ms: int | None, now_ms: int) -> int:
    if within_ms is None:
        return len(times)
    return len(times) - bisect_right(times, now_ms - within_ms)


_COUNT_OPS: dict[str, Callable[[int, int], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
    "lte": operator.le,
}


def _bounds_hold(bounds: tuple[tuple[str, int], ...], n: int) -> bool:
    # On the hot path of every counted event: a table of operators, no dict per call.
    return all(_COUNT_OPS[op](n, k) for op, k in bounds)


def _engagement_matches(state: str, ratio: float | None, engagement: Engagement | None) -> bool:
    if engagement is None:
        return False
    if ratio is None:
        return engagement.state == state
    # A custom ratio still needs enough history to mean anything.
    if engagement.state == "new" or engagement.ratio is None:
        return False
    if state == "below_baseline":
        return engagement.ratio < ratio
    return engagement.ratio > ratio


# ---------------------------------------------------------------- introspection


def _nodes(cond: Condition) -> Iterator[Condition]:
    yield cond
    match cond:
        case AllOf(items) | AnyOf(items):
            for c in items:
                yield from _nodes(c)
        case Not(item):
            yield from _nodes(item)


def events_used(cond: Condition) -> frozenset[str]:
    """Event names whose new occurrences can change the value."""
    return frozenset(n.event for n in _nodes(cond) if isinstance(n, EventCount))


def uses_traits(cond: Condition) -> bool:
    return any(isinstance(n, TraitTest) for n in _nodes(cond))


def uses_engagement(cond: Condition) -> bool:
    return any(isinstance(n, EngagementTest) for n in _nodes(cond))


def lookback_ms(cond: Condition) -> int | None:
    """How far back event history must reach; None means all of it, 0 none."""
    longest = 0
    for n in _nodes(cond):
        if isinstance(n, EventCount):
            if n.within_ms is None:
                return None
            longest = max(longest, n.within_ms)
    return longest


def next_change_ms(cond: Condition, facts: Facts, now_ms: int) -> int | None:
    """The earliest instant after ``now_ms`` at which the value could change
    with no new events and no trait changes, or None if it cannot.

    Only event windows move with time. The answer may be early (the engine
    re-evaluates and finds nothing changed) but never late. Engagement moves
    with the day, not with events; the engine refreshes it on its daily
    schedule, so it is not covered here."""
    earliest: int | None = None
    for n in _nodes(cond):
        if isinstance(n, EventCount) and n.within_ms is not None:
            at = _window_change_ms(n, n.within_ms, facts.event_times(n.event), now_ms)
            if at is not None and (earliest is None or at < earliest):
                earliest = at
    return earliest


def _window_change_ms(
    node: EventCount, within_ms: int, times: Sequence[int], now_ms: int
) -> int | None:
    # With no new events the windowed count only falls, one expiry at a time.
    # The verdict over counts flips only next to a bound (k-1 | k | k+1), so the
    # largest count below the current one with a different verdict is among
    # those; the verdict cannot change before the count first reaches it.
    # (It may skip past it when occurrences share a timestamp: early, not late.)
    first = bisect_right(times, now_ms - within_ms)
    n = len(times) - first
    current = _bounds_hold(node.bounds, n)
    candidates = {c for _, k in node.bounds for c in (k - 1, k) if 0 <= c < n}
    flips = [c for c in candidates if _bounds_hold(node.bounds, c) != current]
    if not flips:
        return None
    target = max(flips)
    # The count is <= target once the (n - target) oldest in-window occurrences expired.
    return times[first + n - target - 1] + within_ms
