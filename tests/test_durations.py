import pytest
from hypothesis import given
from hypothesis import strategies as st

from retenshund.durations import (
    DAY_MS,
    HOUR_MS,
    MAX_DURATION_MS,
    MINUTE_MS,
    DefinitionError,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0s", 0),
        ("500ms", 500),
        ("90s", 90_000),
        ("15m", 15 * MINUTE_MS),
        ("1h", HOUR_MS),
        ("7d", 7 * DAY_MS),
        ("1w", 7 * DAY_MS),
        ("1h30m", 90 * MINUTE_MS),
        ("2d12h", 60 * HOUR_MS),
        ("1m500ms", MINUTE_MS + 500),
        ("1w1d1h1m1s1ms", 8 * DAY_MS + HOUR_MS + MINUTE_MS + 1_001),
        (" 7d ", 7 * DAY_MS),
        ("007d", 7 * DAY_MS),
        ("3650d", 3650 * DAY_MS),
    ],
)
def test_parses_documented_forms(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-5m", "negative"),
        ("5", "not a duration"),
        ("h", "not a duration"),
        ("5y", "not a duration"),
        ("5 m", "not a duration"),
        ("1.5h", "not a duration"),
        ("5M", "not a duration"),
        ("1h 30m", "not a duration"),
        ("30m1h", "out of order"),
        ("1h1h", "repeats"),
        ("5000d", "10 years"),
        ("9" * 5000 + "s", "10 years"),
        ("٣d", "not a duration"),  # Arabic-Indic digit: int() would take it, we must not
    ],
)
def test_rejects_with_field_and_format_help(text: str, says: str) -> None:
    with pytest.raises(DefinitionError) as err:
        parse_duration(text, "steps[0].wait")
    assert err.value.field == "steps[0].wait"
    assert says in err.value.message
    assert str(err.value).startswith("steps[0].wait: ")
    if says != "10 years":
        assert "e.g. 90s" in err.value.message


@pytest.mark.parametrize("value", [None, 60, 1.5, ["1h"], {"h": 1}, True])
def test_rejects_non_strings_from_json(value: object) -> None:
    with pytest.raises(DefinitionError, match="must be a string"):
        parse_duration(value, "within")


def test_error_message_quotes_long_input_briefly() -> None:
    with pytest.raises(DefinitionError) as err:
        parse_duration("x" * 10_000)
    assert len(err.value.message) < 250


def test_limit_is_ten_years_inclusive() -> None:
    assert parse_duration(format_duration(MAX_DURATION_MS)) == MAX_DURATION_MS
    with pytest.raises(DefinitionError):
        parse_duration(format_duration(MAX_DURATION_MS + 1))


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (500, "500ms"),
        (90_000, "1m30s"),
        (HOUR_MS, "1h"),
        (7 * DAY_MS, "7d"),
        (90 * MINUTE_MS, "1h30m"),
        (DAY_MS + 1, "1d1ms"),
    ],
)
def test_format_is_canonical(ms: int, text: str) -> None:
    assert format_duration(ms) == text


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
def test_format_rejects_non_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        format_duration(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=MAX_DURATION_MS))
def test_format_then_parse_round_trips(ms: int) -> None:
    assert parse_duration(format_duration(ms)) == ms


CANONICAL_ORDER = r"\A([0-9]{1,4}w)?([0-9]{1,4}d)?([0-9]{1,5}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?([0-9]{1,6}ms)?\Z"


@given(st.from_regex(CANONICAL_ORDER))
def test_parse_then_format_is_canonical(text: str) -> None:
    try:
        ms = parse_duration(text)
    except DefinitionError:
        return  # empty match or over the limit
    canonical = format_duration(ms)
    assert parse_duration(canonical) == ms
    assert format_duration(parse_duration(canonical)) == canonical


@given(
    st.one_of(
        st.text(),
        st.text(alphabet="0123456789wdhms -.+", max_size=30),
        st.from_regex(r"[0-9]{1,30}(ms|w|d|h|m|s){1,3}", fullmatch=True),
    )
)
def test_parse_raises_only_definition_error(text: str) -> None:
    try:
        ms = parse_duration(text)
    except DefinitionError as err:
        assert err.message
        return
    assert 0 <= ms <= MAX_DURATION_MS
