"""Segment definitions compiled for the engine: what each one reads (event
names and how far back, traits, engagement), an index from events to the
segments they can change, and lazily loaded facts. Pure: no store, no clock."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..durations import DefinitionError
from ..store.base import StoredEvent
from .baseline import Engagement
from .conditions import (
    AllOf,
    AnyOf,
    Condition,
    EventCount,
    Not,
    compile_condition,
    evaluate,
    uses_engagement,
    uses_traits,
)
from .engagement import DROP_EVENT

ENTERED = "segment_entered"
EXITED = "segment_exited"
_RESERVED = frozenset({ENTERED, EXITED, DROP_EVENT})


def is_reserved(event: str | None) -> bool:
    """Events retenshun writes about a user, not ones the user caused."""
    return event is not None and (event in _RESERVED or event.startswith("message_"))


def _longer(a: int | None, b: int | None) -> int | None:
    """The longer of two lookbacks; None (all time) beats any window."""
    return None if a is None or b is None else max(a, b)


def covers(have: int | None, need: int | None) -> bool:
    return have is None or (need is not None and have >= need)


def event_windows(cond: Condition) -> dict[str, int | None]:
    """Event name -> how far back its history matters (None: all time)."""
    out: dict[str, int | None] = {}
    stack: list[Condition] = [cond]
    while stack:
        node = stack.pop()
        if isinstance(node, (AllOf, AnyOf)):
            stack.extend(node.items)
        elif isinstance(node, Not):
            stack.append(node.item)
        elif isinstance(node, EventCount):
            out[node.event] = _longer(out[node.event], node.within_ms) if node.event in out else node.within_ms
    return out


def _reserved_use(obj: Any, path: str) -> DefinitionError | None:
    """The first event condition naming an event retenshun writes itself."""
    if not isinstance(obj, Mapping):
        return None
    for kind in ("all", "any"):
        for i, item in enumerate(obj.get(kind) or []):
            found = _reserved_use(item, f"{path}.{kind}[{i}]")
            if found:
                return found
    if "not" in obj:
        return _reserved_use(obj["not"], f"{path}.not")
    if isinstance(obj.get("event"), str) and is_reserved(obj["event"]):
        return DefinitionError(
            f"{path}.event",
            f"{obj['event']!r} is written by retenshun itself and cannot drive a segment (it could loop); "
            "trigger an automation on it instead")
    return None


def canonical(condition: Any) -> str:
    """A condition's JSON with sorted keys: equal text, equal meaning (1 and true stay apart)."""
    return json.dumps(condition, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Segment:
    segment_id: str
    version: int
    cond: Condition
    windows: Mapping[str, int | None]
    traits: bool
    engagement: bool
    timed: bool  # some window moves with time, so (user, segment) pairs need timers

    @classmethod
    def compile(cls, segment_id: str, version: int, condition: Any) -> Segment:
        cond = compile_condition(condition, "condition")
        reserved = _reserved_use(condition, "condition")
        if reserved is not None:
            raise reserved
        windows = event_windows(cond)
        return cls(segment_id, version, cond, windows, uses_traits(cond), uses_engagement(cond),
                   any(w is not None for w in windows.values()))


class _Blank:
    """Facts of someone we know nothing about."""

    traits: Mapping[str, Any] = {}
    engagement = None

    def event_times(self, name: str) -> list[int]:
        return []


_BLANK = _Blank()


@dataclass(frozen=True, slots=True)
class SegmentIndex:
    """An immutable snapshot of the definitions, swapped whole on every change, so
    the writer thread and the event loop can both read it without locks."""

    segments: Mapping[str, Segment] = field(default_factory=dict)
    by_event: Mapping[str, frozenset[str]] = field(default_factory=dict)
    trait_ids: frozenset[str] = frozenset()
    engagement_ids: frozenset[str] = frozenset()
    # Event name -> the longest lookback any segment needs (None: all time).
    tracked: Mapping[str, int | None] = field(default_factory=dict)
    # Segments a person with no traits, no events and no engagement history
    # already matches (a not_within, a "ne" test...): the only ones a first-seen
    # user must be checked against beyond what their event itself affects.
    blank_ids: frozenset[str] = frozenset()

    @classmethod
    def build(cls, segments: Iterable[Segment]) -> SegmentIndex:
        by_id = {s.segment_id: s for s in segments}
        by_event: dict[str, set[str]] = {}
        tracked: dict[str, int | None] = {}
        for s in by_id.values():
            for name, window in s.windows.items():
                by_event.setdefault(name, set()).add(s.segment_id)
                tracked[name] = _longer(tracked[name], window) if name in tracked else window
        return cls(by_id, {k: frozenset(v) for k, v in by_event.items()},
                   frozenset(s.segment_id for s in by_id.values() if s.traits),
                   frozenset(s.segment_id for s in by_id.values() if s.engagement), tracked,
                   frozenset(s.segment_id for s in by_id.values() if evaluate(s.cond, _BLANK, 0)))

    def with_segment(self, segment: Segment) -> SegmentIndex:
        return SegmentIndex.build([*(s for s in self.segments.values() if s.segment_id != segment.segment_id),
                                   segment])

    def without(self, segment_id: str) -> SegmentIndex:
        return SegmentIndex.build(s for s in self.segments.values() if s.segment_id != segment_id)

    def affected(self, e: StoredEvent) -> frozenset[str]:
        """Segments whose value this event can change (engagement aside)."""
        if e.type == "track":
            return self.by_event.get(e.event or "", frozenset())
        if e.type == "alias" or (e.type == "identify" and e.user_id and e.anonymous_id):
            return frozenset(self.segments)  # may have merged two profiles: anything can change
        if e.type == "identify":
            return self.trait_ids
        return frozenset()


# ---------------------------------------------------------------- facts


class LazyFacts:
    """``Facts`` for one user, each part loaded the first time a condition asks."""

    __slots__ = ("_eng_done", "_engagement", "_load_engagement", "_load_times", "_load_traits", "_times", "_traits")

    def __init__(self, traits: Callable[[], Mapping[str, Any]], times: Callable[[str], Sequence[int]],
                 engagement: Callable[[], Engagement | None]) -> None:
        self._load_traits = traits
        self._load_times = times
        self._load_engagement = engagement
        self._traits: Mapping[str, Any] | None = None
        self._times: dict[str, Sequence[int]] = {}
        self._engagement: Engagement | None = None
        self._eng_done = False

    @property
    def traits(self) -> Mapping[str, Any]:
        if self._traits is None:
            self._traits = self._load_traits()
        return self._traits

    @property
    def engagement(self) -> Engagement | None:
        if not self._eng_done:
            self._engagement = self._load_engagement()
            self._eng_done = True
        return self._engagement

    def event_times(self, name: str) -> Sequence[int]:
        times = self._times.get(name)
        if times is None:
            times = self._times[name] = self._load_times(name)
        return times
