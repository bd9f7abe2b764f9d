from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from retenshund.durations import DAY_MS, HOUR_MS
from retenshund.engine.baseline import Engagement
from retenshund.engine.conditions import (
    Condition,
    DefinitionError,
    EventCount,
    compile_condition,
    compile_where,
    evaluate,
    events_used,
    lookback_ms,
    match_where,
    next_change_ms,
    uses_engagement,
    uses_traits,
)

NOW = 1_780_000_000_000


@dataclass
class FakeFacts:
    traits: Mapping[str, Any] = field(default_factory=dict)
    events: Mapping[str, Sequence[int]] = field(default_factory=dict)
    engagement: Engagement | None = None

    def event_times(self, name: str) -> Sequence[int]:
        return sorted(self.events.get(name, ()))


def check(cond: object, facts: FakeFacts, now: int = NOW) -> bool:
    return evaluate(compile_condition(cond), facts, now)


def trait(path: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"trait": path, "op": op} if value is None else {"trait": path, "op": op, "value": value}


# ------------------------------------------------------------------ compiling


@pytest.mark.parametrize(
    ("definition", "field", "says"),
    [
        (
            {"all": [trait("a", "eq", 1), trait("b", "eq", 1), trait("plan", "bogus", 1)]},
            "condition.all[2].op",
            "eq, ne, gt, gte, lt, lte, contains, exists",
        ),
        ({"not": {"any": [{"nope": 1}]}}, "condition.not.any[0]", "all, any, not, trait, event, engagement"),
        ({}, "condition", "all, any, not, trait, event, engagement"),
        ([], "condition", "must be an object"),
        ("plan", "condition", "must be an object"),
        ({"trait": "a", "event": "b"}, "condition", "has both"),
        ({"any": {"trait": "a"}}, "condition.any", "list"),
        ({"all": [], "extra": 1}, "condition.extra", "takes all"),
        ({"trait": "plan"}, "condition.op", "is required"),
        ({"trait": "plan", "op": "eq"}, "condition.value", "is required"),
        ({"trait": "", "op": "exists"}, "condition.trait", "non-empty"),
        ({"trait": 7, "op": "exists"}, "condition.trait", "non-empty"),
        ({"trait": "a..b", "op": "exists"}, "condition.trait", "empty part"),
        ({"trait": "plan", "op": "in", "value": ["pro"]}, "condition.op", "must be one of"),
        ({"trait": "plan", "op": ["eq"], "value": 1}, "condition.op", "must be one of"),
        (trait("plan", "eq", 1) | {"extra": 1}, "condition.extra", "takes trait, op, value"),
        (trait("age", "gt", True), "condition.value", "number or a string"),
        (trait("age", "gt", [1]), "condition.value", "number or a string"),
        (trait("age", "gt", float("nan")), "condition.value", "number or a string"),
        (trait("age", "eq", float("inf")), "condition.value", "finite"),
        (trait("x", "eq", {1: 2}), "condition.value", "JSON value"),
        ({"trait": "plan", "op": "exists", "value": "yes"}, "condition.value", "true or false"),
        ({"event": ""}, "condition.event", "non-empty"),
        ({"event": "login", "count": 3}, "condition.count", '{"gte": 3}'),
        ({"event": "login", "count": {}}, "condition.count", '{"gte": 3}'),
        ({"event": "login", "count": {"atleast": 3}}, "condition.count.atleast", "eq, ne, gt"),
        ({"event": "login", "count": {"gte": -1}}, "condition.count.gte", "whole number"),
        ({"event": "login", "count": {"gte": 1.5}}, "condition.count.gte", "whole number"),
        ({"event": "login", "count": {"gte": True}}, "condition.count.gte", "whole number"),
        ({"event": "login", "within": "7 days"}, "condition.within", "e.g. 90s"),
        ({"event": "login", "within": 7}, "condition.within", "must be a string"),
        ({"event": "login", "within": "0s"}, "condition.within", "longer than 0s"),
        ({"event": "login", "not_within": "0d"}, "condition.not_within", "longer than 0s"),
        ({"event": "login", "not_within": "7d", "count": {"gte": 1}}, "condition.count", "not_within"),
        ({"event": "login", "not_within": "7d", "within": "1d"}, "condition.within", "not_within"),
        ({"event": "login", "since": "7d"}, "condition.since", "takes event, count, within, not_within"),
        ({"engagement": "sad"}, "condition.engagement", "below_baseline, above_baseline, normal, new"),
        ({"engagement": "normal", "ratio": 0.5}, "condition.ratio", "only applies"),
        ({"engagement": "below_baseline", "ratio": 0}, "condition.ratio", "above 0"),
        ({"engagement": "below_baseline", "ratio": "0.5"}, "condition.ratio", "above 0"),
        ({"engagement": "below_baseline", "ratio": 10**400}, "condition.ratio", "above 0"),
    ],
)
def test_compile_errors_name_the_spot_and_the_choices(definition: object, field: str, says: str) -> None:
    with pytest.raises(DefinitionError) as err:
        compile_condition(definition)
    assert err.value.field == field
    assert says in err.value.message


def test_compile_uses_the_callers_field_prefix() -> None:
    with pytest.raises(DefinitionError) as err:
        compile_condition({"any": [{"event": "x", "within": "soon"}]}, field="steps[1].if")
    assert err.value.field == "steps[1].if.any[0].within"


def test_deep_nesting_is_a_definition_error_not_a_crash() -> None:
    cond: dict[str, Any] = {"trait": "a", "op": "exists"}
    for _ in range(2000):
        cond = {"not": cond}
    with pytest.raises(DefinitionError, match="deeper"):
        compile_condition(cond)


def test_compiles_every_documented_form() -> None:
    cond = compile_condition(
        {
            "all": [
                trait("plan", "eq", "pro"),
                {"event": "login", "count": {"gte": 3}, "within": "7d"},
                {"event": "login", "not_within": "1d"},
                {"engagement": "below_baseline", "ratio": 0.5},
                {"any": [{"not": trait("beta", "exists")}]},
            ]
        }
    )
    assert events_used(cond) == {"login"}
    assert lookback_ms(cond) == 7 * DAY_MS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["all", "any", "not", "trait", "op", "value", "event", "count", "within",
             "not_within", "engagement", "ratio", "gte", "eq", "x"]
        ),
        inner,
        max_size=4,
    ),
    max_leaves=20,
)


@given(json_values)
def test_compile_raises_only_definition_error(obj: object) -> None:
    try:
        compile_condition(obj)
    except DefinitionError as err:
        assert err.field.startswith("condition")


@given(json_values)
def test_compile_where_raises_only_definition_error(obj: object) -> None:
    try:
        compile_where(obj)
    except DefinitionError as err:
        assert err.field.startswith("trigger.where")


# ------------------------------------------------------------------ traits

PROFILE = {
    "plan": "pro",
    "seats": 5,
    "ratio": 0.5,
    "beta": True,
    "tags": ["a", "b", 1],
    "bio": "loves graphs",
    "address": {"city": "Lyon", "lines": ["1 rue X", "Apt 2"]},
    "company.name": "Dotted Inc",
    "company": {"name": "Nested Inc"},
    "nothing": None,
}


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        (trait("plan", "eq", "pro"), True),
        (trait("plan", "ne", "pro"), False),
        (trait("seats", "eq", 5.0), True),  # numbers compare numerically
        (trait("beta", "eq", 1), False),  # bool is not a number
        (trait("seats", "eq", "5"), False),
        (trait("seats", "gt", 4), True),
        (trait("seats", "gte", 5), True),
        (trait("seats", "lt", 5), False),
        (trait("seats", "lte", 5.5), True),
        (trait("ratio", "lt", 1), True),
        (trait("beta", "gt", 0), False),  # bool is not a number
        (trait("plan", "gt", "basic"), True),  # strings lexicographically
        (trait("plan", "lt", "basic"), False),
        (trait("plan", "gt", 3), False),  # mixed types: false, no error
        (trait("seats", "lt", "9"), False),
        (trait("bio", "contains", "graph"), True),
        (trait("bio", "contains", "maps"), False),
        (trait("tags", "contains", "a"), True),
        (trait("tags", "contains", 1), True),
        (trait("tags", "contains", True), False),  # True is not 1
        (trait("seats", "contains", 5), False),
        (trait("bio", "contains", 5), False),
        (trait("tags", "eq", ["a", "b", 1]), True),
        (trait("tags", "eq", ["a", "b", True]), False),
        (trait("address", "eq", {"city": "Lyon", "lines": ["1 rue X", "Apt 2"]}), True),
        (trait("address.city", "eq", "Lyon"), True),
        (trait("address.lines.1", "eq", "Apt 2"), True),
        (trait("address.lines.9", "exists", True), False),
        (trait("address.city.x", "exists", True), False),
        (trait("company.name", "eq", "Dotted Inc"), True),  # a literal dotted key wins
        (trait("missing", "eq", "x"), False),
        (trait("missing", "ne", "x"), True),  # ne on a missing trait is true
        (trait("missing", "gt", 0), False),
        (trait("missing", "lt", 0), False),
        (trait("missing", "contains", "x"), False),
        (trait("missing.deeper", "ne", "x"), True),
        (trait("plan", "exists", True), True),
        (trait("plan", "exists"), True),  # value defaults to true
        (trait("missing", "exists"), False),
        (trait("missing", "exists", False), True),
        (trait("plan", "exists", False), False),
        (trait("nothing", "exists"), False),  # null is absent
        ({"trait": "nothing", "op": "eq", "value": None}, True),
        ({"trait": "missing", "op": "eq", "value": None}, True),
        ({"trait": "plan", "op": "eq", "value": None}, False),
        ({"trait": "plan", "op": "ne", "value": None}, True),
        ({"trait": "nothing", "op": "ne", "value": None}, False),
    ],
)
def test_trait_semantics(cond: dict[str, Any], expected: bool) -> None:
    assert check(cond, FakeFacts(traits=PROFILE)) is expected


def test_boolean_composition() -> None:
    facts = FakeFacts(traits=PROFILE)
    pro, free = trait("plan", "eq", "pro"), trait("plan", "eq", "free")
    assert check({"all": [pro, trait("seats", "gte", 5)]}, facts)
    assert not check({"all": [pro, free]}, facts)
    assert check({"any": [free, pro]}, facts)
    assert not check({"any": [free]}, facts)
    assert check({"not": free}, facts)
    assert check({"all": []}, facts)  # everyone
    assert not check({"any": []}, facts)  # no one


@given(st.dictionaries(st.text(max_size=3), json_values, max_size=5), json_values, st.sampled_from(
    ["eq", "ne", "gt", "gte", "lt", "lte", "contains", "exists"]))
def test_trait_evaluation_never_raises(traits: dict[str, Any], value: Any, op: str) -> None:
    for path in ["a", "a.b", "a.0", *traits]:
        if not path or "" in path.split("."):
            continue
        try:
            cond = compile_condition({"trait": path, "op": op, "value": value})
        except DefinitionError:
            continue
        assert evaluate(cond, FakeFacts(traits=traits), NOW) in (True, False)


# ------------------------------------------------------------------ events


def test_within_window_boundary_is_exclusive_at_t_plus_window() -> None:
    t = NOW - 7 * DAY_MS + 1  # ages out exactly one millisecond from now
    facts = FakeFacts(events={"login": [t]})
    cond = compile_condition({"event": "login", "within": "7d"})
    assert evaluate(cond, facts, NOW)
    assert not evaluate(cond, facts, NOW + 1)
    assert next_change_ms(cond, facts, NOW) == NOW + 1


def test_count_thresholds_and_all_time() -> None:
    facts = FakeFacts(events={"login": [NOW - 10 * DAY_MS, NOW - 3 * DAY_MS, NOW - HOUR_MS, NOW]})
    assert check({"event": "login", "count": {"gte": 3}, "within": "7d"}, facts)
    assert not check({"event": "login", "count": {"gte": 4}, "within": "7d"}, facts)
    assert check({"event": "login", "count": {"eq": 4}}, facts)  # no within: all time
    assert check({"event": "login", "count": {"gt": 1, "lt": 3}, "within": "2d"}, facts)  # bounds AND
    assert not check({"event": "login", "count": {"gt": 2, "lt": 5}, "within": "2d"}, facts)
    assert check({"event": "login", "count": {"ne": 0}, "within": "1h"}, facts)
    assert check({"event": "login"}, facts)  # count defaults to at least once
    assert not check({"event": "logout"}, facts)
    assert check({"event": "logout", "count": {"lte": 0}}, facts)


def test_not_within() -> None:
    cond = {"event": "login", "not_within": "7d"}
    assert check(cond, FakeFacts())  # never happened
    assert check(cond, FakeFacts(events={"login": [NOW - 8 * DAY_MS]}))
    assert not check(cond, FakeFacts(events={"login": [NOW - 6 * DAY_MS]}))


def test_future_timestamps_count_as_recent() -> None:
    facts = FakeFacts(events={"login": [NOW + HOUR_MS]})
    assert check({"event": "login", "within": "1d"}, facts)
    assert not check({"event": "login", "not_within": "1d"}, facts)


def test_next_change_for_a_count_is_when_the_deciding_occurrence_ages_out() -> None:
    times = [NOW - 6 * DAY_MS, NOW - 5 * DAY_MS, NOW - 2 * DAY_MS, NOW - DAY_MS]
    facts = FakeFacts(events={"login": times})
    cond = compile_condition({"event": "login", "count": {"gte": 3}, "within": "7d"})
    # 4 logins now; it takes two expiries to fall below 3: the second one decides.
    assert next_change_ms(cond, facts, NOW) == times[1] + 7 * DAY_MS
    assert evaluate(cond, facts, times[1] + 7 * DAY_MS - 1)
    assert not evaluate(cond, facts, times[1] + 7 * DAY_MS)


def test_next_change_none_when_nothing_can_age_out() -> None:
    facts = FakeFacts(events={"login": [NOW - DAY_MS]}, traits={"plan": "pro"})
    assert next_change_ms(compile_condition({"event": "login"}), facts, NOW) is None  # all time
    assert next_change_ms(compile_condition(trait("plan", "eq", "pro")), facts, NOW) is None
    never = compile_condition({"event": "login", "not_within": "7d"})
    assert next_change_ms(never, FakeFacts(), NOW) is None
    # gte 0 holds for every count, so expiries cannot change it.
    cond = compile_condition({"event": "login", "count": {"gte": 0}, "within": "7d"})
    assert next_change_ms(cond, facts, NOW) is None


def test_next_change_aims_at_the_nearest_flip_of_several() -> None:
    # 5 logins, "at least 1 but not 3": false once 2 have aged out (3 left),
    # true again at 2 and 1, false at 0. The timer must fire at the first.
    times = [NOW - 6 * DAY_MS + i * HOUR_MS for i in range(5)]
    facts = FakeFacts(events={"login": times})
    cond = compile_condition({"event": "login", "count": {"gte": 1, "ne": 3}, "within": "7d"})
    assert evaluate(cond, facts, NOW)
    assert next_change_ms(cond, facts, NOW) == times[1] + 7 * DAY_MS


def test_next_change_for_not_within_is_the_last_occurrence_ageing_out() -> None:
    last = NOW - 2 * DAY_MS
    facts = FakeFacts(events={"login": [NOW - 5 * DAY_MS, last]})
    cond = compile_condition({"event": "login", "not_within": "7d"})
    assert next_change_ms(cond, facts, NOW) == last + 7 * DAY_MS


# ------------------------------------------------------------------ engagement


@pytest.mark.parametrize(
    ("engagement", "cond", "expected"),
    [
        (Engagement(4.0, 1.0, 0.25, "below_baseline", 20), {"engagement": "below_baseline"}, True),
        (Engagement(4.0, 3.0, 0.75, "normal", 20), {"engagement": "below_baseline"}, False),
        (Engagement(4.0, 3.0, 0.75, "normal", 20), {"engagement": "normal"}, True),
        (Engagement(4.0, 3.0, 0.75, "normal", 20), {"engagement": "below_baseline", "ratio": 0.8}, True),
        (Engagement(4.0, 1.0, 0.25, "below_baseline", 20), {"engagement": "below_baseline", "ratio": 0.2}, False),
        (Engagement(1.0, 0.1, 0.1, "new", 2), {"engagement": "below_baseline", "ratio": 0.5}, False),
        (Engagement(1.0, 3.0, 3.0, "above_baseline", 20), {"engagement": "above_baseline", "ratio": 2.5}, True),
        (Engagement(0.0, 0.0, None, "new", 0), {"engagement": "new"}, True),
        (None, {"engagement": "below_baseline"}, False),
        (None, {"not": {"engagement": "normal"}}, True),
    ],
)
def test_engagement(engagement: Engagement | None, cond: dict[str, Any], expected: bool) -> None:
    assert check(cond, FakeFacts(engagement=engagement)) is expected


# ------------------------------------------------------------------ introspection


def test_introspection() -> None:
    cond = compile_condition(
        {
            "any": [
                {"event": "login", "within": "7d"},
                {"not": {"event": "purchase", "not_within": "30d"}},
                {"all": [trait("plan", "eq", "pro")]},
            ]
        }
    )
    assert events_used(cond) == frozenset({"login", "purchase"})
    assert uses_traits(cond)
    assert not uses_engagement(cond)
    assert lookback_ms(cond) == 30 * DAY_MS

    only_traits = compile_condition(trait("plan", "eq", "pro"))
    assert events_used(only_traits) == frozenset()
    assert lookback_ms(only_traits) == 0
    assert not uses_engagement(only_traits)

    unbounded = compile_condition({"all": [{"event": "a", "within": "1d"}, {"event": "b"}]})
    assert lookback_ms(unbounded) is None
    assert not uses_traits(unbounded)

    assert uses_engagement(compile_condition({"not": {"engagement": "normal"}}))


# ------------------------------------------------------------------ next_change_ms, as a property
#
# Times are small integers (1 unit = 1 ms) so every instant in range can be
# checked, not just samples: the value is a step function of time and a step
# can only happen at an integer instant.

EVENTS = ("a", "b")
WINDOWS = {"3ms": 3, "10ms": 10, "25ms": 25}
T_MAX = 60
HORIZON = T_MAX + max(WINDOWS.values()) + 2  # past it, every window has emptied


def event_leaf() -> st.SearchStrategy[dict[str, Any]]:
    name = st.sampled_from(EVENTS)
    window = st.sampled_from(sorted(WINDOWS))
    bounds = st.dictionaries(
        st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), st.integers(0, 4), min_size=1, max_size=2
    )
    counted = st.builds(lambda e, c, w: {"event": e, "count": c, "within": w}, name, bounds, window)
    absent = st.builds(lambda e, w: {"event": e, "not_within": w}, name, window)
    all_time = st.builds(lambda e, c: {"event": e, "count": c}, name, bounds)
    return counted | absent | all_time


leaves = event_leaf() | st.sampled_from([trait("plan", "eq", "pro"), trait("plan", "eq", "free")])
conditions = st.recursive(
    leaves,
    lambda inner: st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"all": xs})
    | st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"any": xs})
    | inner.map(lambda x: {"not": x}),
    max_leaves=6,
)
histories = st.fixed_dictionaries({e: st.lists(st.integers(0, T_MAX), max_size=8) for e in EVENTS})


def facts_at(history: Mapping[str, list[int]], cond: Condition, at: int) -> FakeFacts:
    """History as a store would load it at ``at``: only as far back as lookback_ms asks."""
    back = lookback_ms(cond)
    events = {}
    for name, times in history.items():
        times = sorted(times)
        events[name] = times if back is None else times[bisect_right(times, at - back) :]
    return FakeFacts(traits={"plan": "pro"}, events=events)


def value_at(cond: Condition, history: Mapping[str, list[int]], at: int) -> bool:
    return evaluate(cond, facts_at(history, cond, at), at)


def change_at(cond: Condition, history: Mapping[str, list[int]], at: int) -> int | None:
    return next_change_ms(cond, facts_at(history, cond, at), at)


# Two bounds with two flipping counts: the timer must aim at the nearer one.
TWO_FLIPS = (
    {"event": "a", "count": {"gte": 1, "ne": 3}, "within": "25ms"},
    {"a": [10, 11, 12, 13, 14], "b": []},
    20,
)


@settings(max_examples=400)
@given(conditions, histories, st.integers(0, T_MAX))
@example(*TWO_FLIPS)
def test_value_is_constant_until_next_change(
    definition: dict[str, Any], history: dict[str, list[int]], now: int
) -> None:
    cond = compile_condition(definition)
    start = value_at(cond, history, now)
    nxt = change_at(cond, history, now)
    end = HORIZON if nxt is None else nxt
    changed = [x for x in range(now, end) if value_at(cond, history, x) != start]
    assert not changed, "value changed before the timer"
    if nxt is None:
        assert value_at(cond, history, HORIZON + 10**6) == start
        return
    assert nxt > now
    # The timer is always an ageing-out instant, never an arbitrary poll.
    ages_out = {
        t + n.within_ms
        for n in [cond, *_all_nodes(cond)]
        if isinstance(n, EventCount) and n.within_ms is not None
        for t in history[n.event]
    }
    assert nxt in ages_out


@settings(max_examples=400)
@given(conditions, histories, st.integers(0, T_MAX))
@example(*TWO_FLIPS)
def test_timer_driven_reevaluation_sees_every_change(
    definition: dict[str, Any], history: dict[str, list[int]], now: int
) -> None:
    # What the engine does: evaluate, sleep until next_change_ms, repeat. Every
    # instant at which the true value flips must be one the engine wakes at.
    cond = compile_condition(definition)
    wakeups = [now]
    while (nxt := change_at(cond, history, wakeups[-1])) is not None:
        assert nxt > wakeups[-1]
        wakeups.append(nxt)
        assert len(wakeups) < 100, "timer never settles"
    values = [value_at(cond, history, x) for x in range(now, HORIZON)]
    flips = {now + i for i in range(1, len(values)) if values[i] != values[i - 1]}
    assert flips <= set(wakeups)


@settings(max_examples=300)
@given(event_leaf(), st.lists(st.integers(0, T_MAX), unique=True, max_size=8), st.integers(0, T_MAX))
def test_single_window_is_exact_with_distinct_timestamps(
    definition: dict[str, Any], times: list[int], now: int
) -> None:
    # Only shared timestamps can make the answer early; otherwise the value
    # really does change at the returned instant.
    cond = compile_condition(definition)
    history = {e: times if e == definition["event"] else [] for e in EVENTS}
    nxt = change_at(cond, history, now)
    if nxt is not None:
        assert value_at(cond, history, nxt) != value_at(cond, history, now)


def _all_nodes(cond: Any) -> list[Any]:
    children = list(getattr(cond, "items", ())) + ([cond.item] if hasattr(cond, "item") else [])
    return [n for c in children for n in (c, *_all_nodes(c))]


# ------------------------------------------------------------------ where filters

ORDER = {
    "type": "track",
    "event": "order_completed",
    "properties": {"total": 80, "plan": "pro", "tags": ["gift", "promo"], "coupon": None,
                   "items": [{"sku": "A1"}], "meta": {"k": 1}},
    "context": {"locale": "de"},
}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"properties.total": {"gt": 50}, "properties.plan": "pro", "context.locale": {"in": ["de", "fr"]}}, True),
        ({"properties.total": {"gt": 80}}, False),
        ({"properties.total": {"gte": 80, "lt": 100}}, True),
        ({"properties.total": {"gte": 80, "lt": 80}}, False),
        ({"properties.total": 80.0}, True),
        ({"properties.total": "80"}, False),
        ({"properties.total": {"gt": "5"}}, False),
        ({"context.locale": {"nin": ["de"]}}, False),
        ({"context.locale": {"ne": "fr"}}, True),
        ({"properties.tags": {"contains": "gift"}}, True),
        ({"properties.tags": ["gift", "promo"]}, True),
        ({"properties.items.0.sku": "A1"}, True),
        ({"properties.meta": {"eq": {"k": 1}}}, True),
        ({"properties.coupon": {"exists": False}}, True),
        ({"properties.coupon": None}, True),
        ({"properties.missing": {"nin": ["x"]}}, True),
        ({"properties.missing": {"in": ["x"]}}, False),
        ({"properties.missing": {"in": ["x", None]}}, True),
        ({"properties.missing": {"ne": 1}}, True),
        ({"properties.missing": {"lt": 1}}, False),
        ({"event": "order_completed"}, True),
        ({}, True),
    ],
)
def test_where_semantics(where: dict[str, Any], expected: bool) -> None:
    assert match_where(compile_where(where), ORDER) is expected


def test_where_none_means_no_filter() -> None:
    assert match_where(compile_where(None), {})


@pytest.mark.parametrize(
    ("where", "field", "says"),
    [
        ({"properties.total": {"greater": 50}}, 'trigger.where["properties.total"].greater', "gt, gte"),
        ({"properties.meta": {"k": 1}}, 'trigger.where["properties.meta"].k', '{"eq": {...}}'),
        ({"properties.total": {}}, 'trigger.where["properties.total"]', "at least one op"),
        ({"properties.total": {"gt": None}}, 'trigger.where["properties.total"].gt', "number or a string"),
        ({"context.locale": {"in": "de"}}, 'trigger.where["context.locale"].in', "list"),
        ({"properties.x": {"exists": 1}}, 'trigger.where["properties.x"].exists', "true or false"),
        ({"": 1}, 'trigger.where[""]', "non-empty"),
        ({"properties.": 1}, 'trigger.where["properties."]', "empty part"),
        (["properties.total"], "trigger.where", "must be an object"),
    ],
)
def test_where_errors_name_the_spot(where: object, field: str, says: str) -> None:
    with pytest.raises(DefinitionError) as err:
        compile_where(where)
    assert err.value.field == field
    assert says in err.value.message


@given(json_values, st.sampled_from(["eq", "ne", "gt", "lt", "in", "nin", "contains", "exists"]), json_values)
def test_match_where_never_raises(event_value: Any, op: str, operand: Any) -> None:
    try:
        where = compile_where({"properties.x": {op: operand}, "properties.x.0": {op: operand}})
    except DefinitionError:
        return
    for event in ({"properties": {"x": event_value}}, {"properties": event_value}, {}):
        assert match_where(where, event) in (True, False)
