"""How profile and group traits change: later values win, ``null`` removes."""

from __future__ import annotations

from typing import Any


def merge_traits(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``current`` with ``patch`` applied at the top level.

    Nested objects are replaced, not merged, as Segment destinations do: an
    identify that sends ``address`` sends the whole address."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def merge_profiles(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """Traits of two profiles becoming one: the known user's values win over
    what was collected anonymously."""
    merged = dict(older)
    merged.update(newer)
    return merged
