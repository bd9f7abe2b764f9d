"""Duration strings in definitions (``90s``, ``15m``, ``1h``, ``7d``, ``1w``, ``500ms``, ``1h30m``).

A duration is one or more ``<whole number><unit>`` parts with units from largest to
smallest, each unit at most once. Units: ``w`` (7 days), ``d``, ``h``, ``m``, ``s``,
``ms``. Days are always 24 hours: definitions describe elapsed time, not calendar
dates. ``0s`` is allowed; callers that need a positive duration check for it.
"""

from __future__ import annotations

import re

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

# Ten years including leap days: anything longer in a definition is a typo
# (an extra zero), and rejecting it keeps timer arithmetic far from overflow.
MAX_DURATION_MS = 3653 * DAY_MS

# Largest first; the order is also the order parts must appear in.
_UNITS: tuple[tuple[str, int], ...] = (
    ("w", WEEK_MS),
    ("d", DAY_MS),
    ("h", HOUR_MS),
    ("m", MINUTE_MS),
    ("s", SECOND_MS),
    ("ms", 1),
)
_UNIT_MS = dict(_UNITS)
_UNIT_RANK = {name: rank for rank, (name, _) in enumerate(_UNITS)}

# "ms" before "m" so that "500ms" is not read as 500 minutes followed by junk.
# [0-9] rather than \d: \d also matches other scripts' digits.
_PART = re.compile(r"([0-9]+)(ms|w|d|h|m|s)")

# int() refuses strings past ~4300 digits with ValueError; a cap far below that
# and far above any sensible value keeps the error a DefinitionError.
_MAX_DIGITS = 15

FORMAT_HELP = (
    "use a whole number and a unit, e.g. 90s, 15m, 1h, 7d, 1w, 500ms, "
    "or parts from largest to smallest unit such as 1h30m"
)


class DefinitionError(Exception):
    """A definition (segment, automation, duration) is invalid.

    ``field`` is the path of the offending spot (``condition.all[2].op``) so the
    API can answer with a 400 that names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_duration(text: object, field: str = "duration") -> int:
    """Parse a duration string into milliseconds, or raise :class:`DefinitionError`.

    ``text`` is typed loosely because it usually comes straight from decoded
    JSON, where a number or null in its place must be a clear error, not a crash."""
    if not isinstance(text, str):
        raise DefinitionError(field, f"must be a string; {FORMAT_HELP}")
    s = text.strip()
    if not s:
        raise DefinitionError(field, f"is empty; {FORMAT_HELP}")
    if s.startswith("-"):
        raise DefinitionError(field, f"must not be negative; {FORMAT_HELP}")
    total = 0
    pos = 0
    last_rank = -1
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise DefinitionError(field, f"{_show(text)} is not a duration; {FORMAT_HELP}")
        digits, unit = m.group(1), m.group(2)
        rank = _UNIT_RANK[unit]
        if rank <= last_rank:
            raise DefinitionError(
                field, f"{_show(text)} repeats a unit or lists them out of order; {FORMAT_HELP}"
            )
        if len(digits.lstrip("0")) > _MAX_DIGITS:
            raise DefinitionError(field, f"{_show(text)} is longer than 10 years")
        total += int(digits) * _UNIT_MS[unit]
        last_rank = rank
        pos = m.end()
    if total > MAX_DURATION_MS:
        raise DefinitionError(field, f"{_show(text)} is longer than 10 years")
    return total


def _show(text: str) -> str:
    # Error messages quote the input, but never a whole pasted document.
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


def format_duration(ms: int) -> str:
    """The canonical string for ``ms``: parts from days down to milliseconds.

    Weeks are never produced because ``7d`` and ``30d`` read better than ``1w``
    and ``4w2d``; ``parse_duration(format_duration(ms)) == ms`` for every valid
    duration."""
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise ValueError(f"a duration is a non-negative int of milliseconds, got {ms!r}")
    if ms == 0:
        return "0s"
    parts: list[str] = []
    rest = ms
    for unit, size in _UNITS[1:]:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
