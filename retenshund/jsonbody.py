"""JSON that clients send: what a decode failure tells them, and how deep it may nest.

Every decoder of a request body (ingestion, the other API routes, webhooks,
inbox frames) turns its failure into an ``ApiError`` here, so that no input,
however odd, becomes a 500: msgspec raises ``UnicodeDecodeError`` for bytes
that are not UTF-8 and ``RecursionError`` for very deep nesting, besides its
own ``DecodeError`` / ``ValidationError``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from .errors import ApiError

# Levels of arrays and objects in one body. Deeper data is refused when it
# comes in: the templates, conditions and JSON encoders that later walk stored
# properties would otherwise each meet it with a RecursionError.
MAX_DEPTH = 64

DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_MISSING = re.compile(r"Object missing required field `(.+)`")


def json_error(exc: BaseException, prefix: str = "") -> ApiError:
    """The 400 for a body (``prefix``: where it sits, e.g. ``batch[3]``) that did not decode."""
    where = prefix or "body"
    if isinstance(exc, UnicodeDecodeError):
        return ApiError(400, "invalid_json", f"{where}: a string is not valid UTF-8; send UTF-8 text")
    if isinstance(exc, RecursionError):
        return nested_too_deeply(where)
    if isinstance(exc, msgspec.ValidationError):
        # A subclass of DecodeError: well-formed JSON of the wrong shape names its field.
        msg, sep, at = str(exc).rpartition(" - at ")
        if not sep:
            msg, at = str(exc), "$"
        path = at.strip("`").removeprefix("$").lstrip(".")
        missing = _MISSING.fullmatch(msg)
        if missing:
            path, msg = (f"{path}.{missing[1]}" if path else missing[1]), "required"
        field = f"{prefix}.{path}" if prefix and path else (prefix or path or "body")
        return ApiError(400, "invalid_field", f"{field}: {msg}")
    return ApiError(400, "invalid_json", f"{where}: not valid JSON ({exc})")


def size_text(limit: int) -> str:
    """A byte limit as people read it: ``32 KB``, or ``100 bytes`` below a kilobyte."""
    return f"{limit // 1024} KB" if limit >= 1024 else f"{limit} bytes"


def nested_too_deeply(where: str) -> ApiError:
    return ApiError(400, "invalid_json", f"{where}: nested too deeply (at most {MAX_DEPTH} levels of arrays and objects)")


def check_depth(raw: bytes, value: Any, where: str = "body", level: int = 1) -> None:
    """Refuse ``value`` (decoded from ``raw``, at ``level`` of it) if it nests
    deeper than MAX_DEPTH.

    Counting brackets in the bytes is a C-speed upper bound on the depth, so
    the walk runs only for a body with that many of them (every batch has)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    todo = [(value, level)]
    while todo:
        item, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise nested_too_deeply(where)
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        elif isinstance(item, msgspec.Struct):
            children = (getattr(item, f) for f in item.__struct_fields__)
        else:
            continue
        todo.extend((v, depth + 1) for v in children if isinstance(v, (dict, list, msgspec.Struct)))
