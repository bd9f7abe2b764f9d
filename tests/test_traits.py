"""Trait merging: later values win, null removes — checked against a model."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from retenshund.traits import merge_profiles, merge_traits

keys = st.sampled_from(["plan", "email", "age", "name", "tz"])
values = st.none() | st.integers() | st.text(max_size=5) | st.booleans()
patches = st.dictionaries(keys, values, max_size=5)


@given(st.lists(patches, max_size=8))
def test_a_sequence_of_identifies_equals_replaying_each_key_last_write(patch_list: list[dict[str, Any]]) -> None:
    traits: dict[str, Any] = {}
    for patch in patch_list:
        traits = merge_traits(traits, patch)
    expected: dict[str, Any] = {}
    for patch in patch_list:
        for k, v in patch.items():
            expected[k] = v
    assert traits == {k: v for k, v in expected.items() if v is not None}
    assert None not in traits.values()


@given(patches.filter(lambda p: None not in p.values()), patches)
def test_merge_never_changes_its_inputs(current: dict[str, Any], patch: dict[str, Any]) -> None:
    before_current, before_patch = dict(current), dict(patch)
    merge_traits(current, patch)
    assert current == before_current and patch == before_patch


def test_the_known_profile_wins_over_the_anonymous_one() -> None:
    assert merge_profiles({"plan": "trial", "os": "ios"}, {"plan": "pro"}) == {"plan": "pro", "os": "ios"}
