"""The segment index: what a first-seen user must be checked against."""

from __future__ import annotations

from retenshund.engine.segment_defs import Segment, SegmentIndex


def test_only_segments_that_match_a_blank_person_are_checked_on_first_sight() -> None:
    index = SegmentIndex.build([
        Segment.compile("dormant", 1, {"event": "login", "not_within": "7d"}),
        Segment.compile("not_pro", 1, {"trait": "plan", "op": "ne", "value": "pro"}),
        Segment.compile("regulars", 1, {"event": "login", "count": {"gte": 3}, "within": "7d"}),
        Segment.compile("pro", 1, {"trait": "plan", "op": "eq", "value": "pro"}),
        Segment.compile("either", 1, {"any": [{"trait": "plan", "op": "eq", "value": "pro"},
                                              {"not": {"trait": "email", "op": "exists"}}]}),
    ])
    assert index.blank_ids == {"dormant", "not_pro", "either"}
