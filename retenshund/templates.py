"""Liquid message templates: validate and parse once at save time, render at send time.

A template that saves must never crash the dispatcher later, so every problem an
author can cause is reported by ``compile_template`` as a ``TemplateError`` that
names the field and line. At send time missing data renders as empty text, and
the only failure left is a template that exceeds a resource limit, which comes
back as a ``RenderError`` the dispatcher records as the message's failure reason.

No HTTP, storage or I/O here: plain functions over plain data, so the API
(save, preview) and the dispatcher (send) share exactly one implementation.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from io import StringIO
from typing import Any, Final, TextIO

from liquid import BoundTemplate, Environment, RenderContext
from liquid.exceptions import (
    FilterArgumentError,
    FilterError,
    FilterItemTypeError,
    FilterValueError,
    LiquidError,
    LiquidTypeError,
    LiquidValueError,
    LocalNamespaceLimitError,
    LoopIterationLimitError,
    OutputStreamLimitError,
    ResourceLimitError,
)
from liquid.output import LimitedStringIO

__all__ = [
    "CHANNEL_FIELDS",
    "DEFAULT_CATEGORY",
    "LOCAL_NAMESPACE_LIMIT",
    "LOOP_ITERATION_LIMIT",
    "OUTPUT_LIMIT",
    "RENDER_TIME_LIMIT",
    "SOURCE_LIMIT",
    "CompiledTemplate",
    "RenderError",
    "TemplateError",
    "build_context",
    "compile_template",
    "html_to_text",
    "preview",
    "render",
]

# --- limits -------------------------------------------------------------------
# Messages list a handful of items; ten thousand iterations is far beyond any real
# email or notification and still renders in milliseconds.
LOOP_ITERATION_LIMIT: Final = 10_000
# Per rendered field, in UTF-8 bytes (python-liquid counts bytes). Gmail clips
# HTML mail at ~100 KB, so 256 KiB leaves room without letting a field balloon.
OUTPUT_LIMIT: Final = 256 * 1024
# sys.getsizeof of assigned/captured values. Must hold one captured block of
# OUTPUT_LIMIT plus small assigns, while stopping repeated doubling early.
LOCAL_NAMESPACE_LIMIT: Final = 1024 * 1024
# Template source per field, in characters. Worst-case render work grows with
# source size times loop iterations, so the source has a ceiling too.
SOURCE_LIMIT: Final = 128 * 1024
# Per rendered field. Real templates render in about a millisecond; this only
# stops a runaway loop from holding the event loop (checked once per iteration).
RENDER_TIME_LIMIT: Final = 0.5
# Numbers beyond this many bits only arise from runaway arithmetic (repeated
# squaring), and turning them into text is itself slow.
_MAX_INT_BITS: Final = 256

DEFAULT_CATEGORY: Final = "transactional"

# The fields each channel renders, in output order.
CHANNEL_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "email": ("subject", "html", "text"),
    "push": ("title", "body", "url", "icon"),
    "in_app": ("title", "body", "url", "data"),
}
_TOP_LEVEL_KEYS: Final = ("name", "category", *CHANNEL_FIELDS)
# Categories are keys in users' preference documents and in URLs.
_CATEGORY_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_NAME_LIMIT: Final = 200
# in_app.data nesting; deeper JSON is a mistake and would recurse without bound.
_DATA_DEPTH_LIMIT: Final = 32


class TemplateError(Exception):
    """The template cannot be saved; ``field`` is a dotted path such as
    ``email.subject`` or ``in_app.data.cta``, ``line`` is 1-based when known."""

    def __init__(self, field: str, message: str, line: int | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.line = line


class RenderError(Exception):
    """Rendering failed (a resource limit, or no content for the channel); the
    dispatcher fails the message with this reason."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- the sandboxed environment --------------------------------------------------


class _BudgetedContext(RenderContext):
    """Two budgets python-liquid does not have.

    Its loop limit applies to the product of *nested* loop lengths, so many
    sequential loops could still run loops x limit iterations: this also caps the
    sum over the whole render. And iteration counts say nothing about how much
    work each iteration does (a loop body can be 128K characters of assigns), so
    every iteration also checks a wall-clock deadline. Outside loops the work is
    bounded by the source size, so per-iteration checks bound the whole render.
    """

    __slots__ = ("deadline", "iterations")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.iterations = 0
        self.deadline = time.monotonic() + RENDER_TIME_LIMIT

    def raise_for_loop_limit(self, length: int = 1) -> None:
        super().raise_for_loop_limit(length)
        # Called once per loop entry with that loop's length, so the running sum
        # is the number of iterations the render will perform (tablerow counts
        # twice, which errs on the safe side).
        self.iterations += length
        if self.iterations > LOOP_ITERATION_LIMIT:
            raise LoopIterationLimitError("loop iteration limit reached", token=None)

    @contextmanager
    def loop(self, namespace: Mapping[str, object], forloop: Any) -> Iterator[RenderContext]:
        # The for and tablerow tags pull items from forloop.it: metering that
        # iterator is the one per-iteration hook python-liquid offers.
        forloop.it = self._metered(forloop.it)
        with super().loop(namespace, forloop) as context:
            yield context

    def get_buffer(self, buf: TextIO | None = None) -> StringIO:
        # Capture buffers: same newline fix as _BudgetedTemplate._get_buffer.
        carry = buf.size if isinstance(buf, LimitedStringIO) else 0
        return LimitedStringIO(limit=OUTPUT_LIMIT - carry, newline="")

    def _metered(self, items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            if time.monotonic() > self.deadline:
                raise _RenderTimeLimitError("render time limit reached", token=None)
            yield item


class _RenderTimeLimitError(ResourceLimitError):
    pass


class _BudgetedTemplate(BoundTemplate):
    context_class = _BudgetedContext

    def _get_buffer(self) -> StringIO:
        # python-liquid's limited buffer uses newline=None, which rewrites "\r\n"
        # and "\r" to "\n"; text outside markup must come out byte for byte.
        return LimitedStringIO(limit=OUTPUT_LIMIT, newline="")


# Raised by filters when the *data* does not fit (divide by zero, an undefined
# argument where a number belongs). Such a failure yields an undefined value,
# which renders as empty text, instead of failing the send.
_DATA_ERRORS: Final = (
    FilterError,
    FilterArgumentError,
    FilterValueError,
    FilterItemTypeError,
    LiquidTypeError,
    LiquidValueError,
    TypeError,
    ValueError,
    ArithmeticError,
)


def _check_filter_inputs(name: str, left: object, args: tuple[Any, ...]) -> None:
    """Refuse work whose *result* would blow the limits before doing it: the
    output and namespace limits only see a value after it has been built."""
    for value in (left, *args):
        # A range literal is lazy in a for tag (and counted there) but filters
        # such as join or reverse walk it whole: (1..100000000) | join hangs.
        if isinstance(value, range) and len(value) > LOOP_ITERATION_LIMIT:
            raise LoopIterationLimitError(
                f"range of {len(value)} items passed to filter '{name}'", token=None
            )
    if name == "join" and isinstance(left, (list, tuple)):
        sep = args[0] if args else " "
        sep_len = len(sep) if isinstance(sep, str) else 8
        total = max(len(left) - 1, 0) * sep_len
        if total <= OUTPUT_LIMIT:
            for item in left:
                # The same big string may be repeated many times (concat).
                total += len(item) if isinstance(item, str) else 8
                if total > OUTPUT_LIMIT:
                    break
        if total > OUTPUT_LIMIT:
            raise OutputStreamLimitError(f"filter '{name}' output too large", token=None)
    if name == "replace" and len(args) >= 2 and isinstance(left, str):
        old, new = str(args[0]), str(args[1])
        hits = left.count(old) if old else len(left) + 1
        if len(left) + hits * (len(new) - len(old)) > OUTPUT_LIMIT:
            raise OutputStreamLimitError(f"filter '{name}' output too large", token=None)


def _check_filter_result(name: str, result: object) -> None:
    if isinstance(result, str) and len(result) > OUTPUT_LIMIT:
        raise OutputStreamLimitError(f"filter '{name}' output too large", token=None)
    if isinstance(result, int) and result.bit_length() > _MAX_INT_BITS:
        raise ResourceLimitError(f"filter '{name}' produced a number too large", token=None)


def _sandboxed_filter(env: Environment, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # also copies with_context/with_environment flags
    def wrapper(left: object, *args: Any, **kwargs: Any) -> Any:
        _check_filter_inputs(name, left, args)
        try:
            result = func(left, *args, **kwargs)
        except _DATA_ERRORS:
            return env.undefined(name, token=None)
        _check_filter_result(name, result)
        return result

    # functools.wraps copied the original's async variant; we render synchronously
    # only, and an async path must not bypass the checks above.
    wrapper.__dict__.pop("filter_async", None)
    return wrapper


class _SandboxedEnvironment(Environment):
    loop_iteration_limit = LOOP_ITERATION_LIMIT
    output_stream_limit = OUTPUT_LIMIT
    local_namespace_limit = LOCAL_NAMESPACE_LIMIT
    template_class = _BudgetedTemplate

    def __init__(self, *, autoescape: bool) -> None:
        # The default loader is an empty in-memory dict; nothing reads the disk.
        super().__init__(autoescape=autoescape)
        # Partials would need a loader, and a message template is one document.
        # Without the tags, using them is a syntax error at save time.
        for tag in ("include", "render"):
            self.tags.pop(tag, None)
        self.filters = {
            name: _sandboxed_filter(self, name, func) for name, func in self.filters.items()
        }


# One environment per configuration, built at import: parsing and rendering
# reuse them, and templates stay bound to the environment that parsed them.
_PLAIN_ENV: Final = _SandboxedEnvironment(autoescape=False)
# Only email HTML escapes variables; subjects, text and push/in-app payloads are
# plain text where "&amp;" would be visible garbage.
_HTML_ENV: Final = _SandboxedEnvironment(autoescape=True)


# --- compiled form ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    path: str
    template: BoundTemplate
    # The text itself when it holds no Liquid markup: rendering it would give it
    # back unchanged, at the cost of a render context (about 10 µs a field).
    literal: str | None = None


def _field(env: Environment, source: str, path: str) -> _Field:
    template = _parse(env, source, path)
    plain = "{{" not in source and "{%" not in source and len(source.encode()) <= OUTPUT_LIMIT
    return _Field(path, template, source if plain else None)


# in_app.data after compilation: same shape, Liquid strings replaced by _Field.
_Data = _Field | dict[str, "_Data"] | list["_Data"] | int | float | bool | None


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """A validated template with every Liquid string parsed once.

    ``source`` is the normalized definition (defaults filled in, null channels
    dropped), which is what should be stored and returned by the API."""

    id: str
    name: str
    category: str
    source: dict[str, Any]
    _channels: dict[str, dict[str, Any]] = field(repr=False)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self._channels)


# --- compile ---------------------------------------------------------------------


def compile_template(template_id: str, spec: dict[str, Any]) -> CompiledTemplate:
    """Validate ``spec`` and parse all its Liquid; raise ``TemplateError`` on the
    first problem found."""
    if not isinstance(spec, dict):
        raise TemplateError("template", "must be a JSON object with name, category and channel sections")
    for key in spec:
        if key not in _TOP_LEVEL_KEYS:
            raise TemplateError(str(key), f"unknown key; a template has {_or_list(_TOP_LEVEL_KEYS)}")

    name = spec.get("name")
    if name is None:
        name = template_id
    elif not isinstance(name, str) or not name.strip():
        raise TemplateError("name", "must be a non-empty string (or omit it to use the template id)")
    elif len(name) > _NAME_LIMIT:
        raise TemplateError("name", f"is {len(name)} characters; the limit is {_NAME_LIMIT}")

    category = spec.get("category")
    if category is None:
        category = DEFAULT_CATEGORY
    elif not isinstance(category, str) or not _CATEGORY_RE.match(category):
        raise TemplateError(
            "category",
            "must be 1-64 lowercase letters, digits, '_' or '-', starting with a letter "
            f"or digit, such as 'product_updates' (default '{DEFAULT_CATEGORY}')",
        )

    source: dict[str, Any] = {"name": name, "category": category}
    channels: dict[str, dict[str, Any]] = {}
    for channel in CHANNEL_FIELDS:
        section = spec.get(channel)
        if section is None:
            continue
        channels[channel] = _compile_channel(channel, section)
        # A copy, so later changes to the caller's dict cannot make the stored
        # definition disagree with what was compiled.
        source[channel] = copy.deepcopy(section)
    if not channels:
        raise TemplateError(
            "template", f"has no content; add at least one of {_or_list(tuple(CHANNEL_FIELDS))}"
        )
    return CompiledTemplate(
        id=template_id, name=name, category=category, source=source, _channels=channels
    )


def _compile_channel(channel: str, section: object) -> dict[str, Any]:
    allowed = CHANNEL_FIELDS[channel]
    if not isinstance(section, dict):
        raise TemplateError(channel, f"must be an object with {_or_list(allowed)}")
    for key in section:
        if key not in allowed:
            raise TemplateError(f"{channel}.{key}", f"unknown field; {channel} has {_or_list(allowed)}")

    compiled: dict[str, Any] = {}
    for key in allowed:
        value = section.get(key)
        path = f"{channel}.{key}"
        if value is None:
            continue
        if key == "data":
            if not isinstance(value, dict):
                raise TemplateError(path, "must be a JSON object (its string values may use Liquid)")
            compiled[key] = _compile_data(value, path, 0)
            continue
        if not isinstance(value, str):
            raise TemplateError(path, "must be a string (a Liquid template)")
        env = _HTML_ENV if (channel, key) == ("email", "html") else _PLAIN_ENV
        compiled[key] = _field(env, value, path)

    def blank(key: str) -> bool:
        value = section.get(key)
        return not isinstance(value, str) or not value.strip()

    if channel == "email":
        if blank("subject"):
            raise TemplateError("email.subject", "is required; an email needs a subject")
        if "html" not in compiled and "text" not in compiled:
            raise TemplateError("email", "needs a body; add \"html\", \"text\" or both")
    elif channel == "push" and blank("title"):
        raise TemplateError("push.title", "is required; a web push notification needs a title")
    elif channel == "in_app" and "title" not in compiled and "body" not in compiled:
        raise TemplateError("in_app", "needs content; add \"title\", \"body\" or both")
    return compiled


def _compile_data(value: object, path: str, depth: int) -> _Data:
    if depth > _DATA_DEPTH_LIMIT:
        raise TemplateError(path, f"is nested more than {_DATA_DEPTH_LIMIT} levels deep; flatten it")
    if isinstance(value, str):
        return _field(_PLAIN_ENV, value, path)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        out: dict[str, _Data] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TemplateError(path, f"has a non-string key {key!r}; JSON object keys are strings")
            out[key] = _compile_data(item, f"{path}.{key}", depth + 1)
        return out
    if isinstance(value, list):
        return [_compile_data(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise TemplateError(path, f"has a value of type {type(value).__name__}; use JSON values only")


# python-liquid 2 reads ``event.limit`` as the keyword ``limit`` and refuses it,
# where Shopify's Liquid reads a property. Event properties called limit,
# offset, with... are common ("plan_limit_reached" with used/limit), so inside
# Liquid markup ``x.limit`` is rewritten to the equivalent ``x["limit"]``.
_KEYWORD_PROPERTY_RE: Final = re.compile(
    r'(?<=[\w\]"\'])\.(limit|offset|with|and|or|in|contains|reversed|cols|as|for|by|empty|blank|nil|null|true|false)'
    r'(?![\w])')
_MARKUP_RE: Final = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


def _quote_keyword_properties(source: str) -> str:
    return _MARKUP_RE.sub(lambda m: _KEYWORD_PROPERTY_RE.sub(r'["\1"]', m.group(0)), source)


def _parse(env: Environment, source: str, path: str) -> BoundTemplate:
    if len(source) > SOURCE_LIMIT:
        raise TemplateError(path, f"is {len(source)} characters; the limit is {SOURCE_LIMIT}")
    source = _quote_keyword_properties(source)
    try:
        template = env.from_string(source, name=path)
    except LiquidError as err:
        line, message = _describe_syntax_error(env, source, err)
        raise TemplateError(path, message, line) from err

    # python-liquid 2 only looks filters up while rendering; we want a typo in a
    # filter name to fail the save, not every send.
    unknown = [
        (span.index, name)
        for name, spans in template.analyze(include_partials=False).filters.items()
        if name not in env.filters
        for span in spans
    ]
    if unknown:
        index, name = min(unknown)
        line = _line_of(source, index)
        raise TemplateError(path, f"line {line}: unknown filter '{name}'; {_filter_hint(env, name)}", line)
    return template


# --- error messages ----------------------------------------------------------------

_BLOCK_TAGS: Final = frozenset({"if", "unless", "case", "for", "tablerow", "capture", "ifchanged", "comment"})
_UNCLOSED_RE: Final = re.compile(r"expected tag end(\w+)|unexpected tag 'end of expression'")
_UNEXPECTED_TAG_RE: Final = re.compile(r"unexpected tag '(\w+)'")


def _line_of(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


def _describe_syntax_error(env: Environment, source: str, err: LiquidError) -> tuple[int | None, str]:
    """The 1-based line (when it can be found) and an actionable message."""
    message = str(err.message)
    token = err.token
    if token is not None and token.start_index >= 0 and token.source == source:
        line: int | None = _line_of(source, token.start_index)
        index = token.start_index
    else:
        # python-liquid 2 reports errors found at the end of a tag or of the whole
        # template (unclosed blocks, "{{ x | }}") against a shared end-of-input
        # token with no position, so find the culprit ourselves.
        index = len(source)
        if _UNCLOSED_RE.search(message):
            line = _unclosed_block_line(env, source) or _reproducing_markup_line(env, source, message)
        else:
            line = _reproducing_markup_line(env, source, message) or _unclosed_block_line(env, source)
    where = f"line {line}: " if line is not None else ""

    unclosed = _UNCLOSED_RE.search(message)
    if unclosed:
        # Liquid names the missing end tag, except for an unclosed case.
        innermost = _open_blocks(env, source, len(source))
        tag = unclosed.group(1) or (innermost[-1][0] if innermost else "case")
        return line, f"{where}the {{% {tag} %}} block is never closed; add {{% end{tag} %}} where it should end"
    bad_tag = _UNEXPECTED_TAG_RE.search(message)
    if bad_tag:
        tag = bad_tag.group(1)
        if tag in ("include", "render"):
            return line, f"{where}{{% {tag} %}} is not supported in message templates; put the markup inline"
        if tag.startswith("end"):
            still_open = _open_blocks(env, source, index)
            if still_open and still_open[-1][0] != tag[3:]:
                name, opened_at = still_open[-1]
                return line, (
                    f"{where}{{% {tag} %}} was reached while the {{% {name} %}} from line "
                    f"{_line_of(source, opened_at)} is still open; add {{% end{name} %}} before it"
                )
            return line, f"{where}{{% {tag} %}} has no matching {{% {tag[3:]} %}}; remove it or open the block"
        return line, f"{where}unknown tag '{tag}'; use a standard Liquid tag (if, unless, case, for, assign, capture, ...)"
    message = message.replace("found end of expression", "but the markup ends there")
    return line, f"{where}{message}; check the Liquid syntax there"


def _open_blocks(env: Environment, source: str, stop: int) -> list[tuple[str, int]]:
    """Block tags opened before ``stop`` and not yet closed, innermost last."""
    stack: list[tuple[str, int]] = []
    try:
        tokens = list(env.tokenizer()(source))
    except LiquidError:
        return stack
    for token in tokens:
        if token.start_index >= stop:
            break
        if token.kind != "tag":
            continue
        if token.value in _BLOCK_TAGS:
            stack.append((token.value, token.start_index))
        elif token.value.startswith("end"):
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] == token.value[3:]:
                    del stack[i:]
                    break
    return stack


def _unclosed_block_line(env: Environment, source: str) -> int | None:
    still_open = _open_blocks(env, source, len(source))
    return _line_of(source, still_open[-1][1]) if still_open else None


def _reproducing_markup_line(env: Environment, source: str, message: str) -> int | None:
    """Line of the first single tag or output statement that, parsed on its own,
    fails with the same message."""
    try:
        tokens = list(env.tokenizer()(source))
    except LiquidError:
        return None
    for i, token in enumerate(tokens):
        if token.kind == "output":
            markup = token.value
        elif token.kind == "tag" and token.value != "comment":
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            expr = following.value if following is not None and following.kind == "expression" else ""
            markup = f"{{% {token.value} {expr} %}}"
            if token.value in _BLOCK_TAGS:
                # Closed, so only a fault in the tag's own expression reproduces.
                markup += f"{{% end{token.value} %}}"
        else:
            continue
        try:
            env.from_string(markup)
        except LiquidError as err:
            if str(err.message) == message:
                return _line_of(source, token.start_index)
    return None


def _filter_hint(env: Environment, name: str) -> str:
    close = difflib.get_close_matches(name, list(env.filters), n=3)
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return "remove it or use a standard Liquid filter such as default, date, upcase or escape"


def _or_list(names: tuple[str, ...]) -> str:
    quoted = [f'"{n}"' for n in names]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


# --- render ----------------------------------------------------------------------


def build_context(
    variables: Mapping[str, Any] | None,
    user_id: str | None,
    traits: Mapping[str, Any] | None,
    event_properties: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The render context every caller uses: variables at top level, ``user`` with
    its id and traits (both flat and under ``user.traits``), ``event`` properties."""
    trait_map = dict(traits or {})
    return {
        **(variables or {}),
        # Set last so neither a variable nor a trait called "id" can impersonate
        # another user or event in the message.
        "user": {**trait_map, "id": user_id, "traits": trait_map},
        "event": dict(event_properties or {}),
    }


def render(compiled: CompiledTemplate, channel: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """Rendered fields of ``channel``; absent fields are ``None`` (``data`` is ``{}``).

    Email without a ``text`` part gets one derived from the rendered HTML."""
    if channel not in CHANNEL_FIELDS:
        raise RenderError(channel, f"unknown channel; use {_or_list(tuple(CHANNEL_FIELDS))}")
    fields = compiled._channels.get(channel)
    if fields is None:
        raise RenderError(
            channel,
            f"template '{compiled.id}' has no {channel} content; it has {_or_list(compiled.channels)}",
        )
    out: dict[str, Any] = {}
    for key in CHANNEL_FIELDS[channel]:
        value = fields.get(key)
        if key == "data":
            out[key] = _render_data(value, context) if value is not None else {}
        else:
            out[key] = _render_field(value, context) if value is not None else None
    if channel == "email" and out["text"] is None and out["html"] is not None:
        out["text"] = html_to_text(out["html"])
    return out


# Preview shows exactly what a send would produce.
preview = render


def _render_data(node: _Data, context: Mapping[str, Any]) -> Any:
    if isinstance(node, _Field):
        return _render_field(node, context)
    if isinstance(node, dict):
        return {key: _render_data(item, context) for key, item in node.items()}
    if isinstance(node, list):
        return [_render_data(item, context) for item in node]
    return node


_LIMIT_ADVICE: Final[Mapping[type[ResourceLimitError], str]] = {
    LoopIterationLimitError: (
        f"loops may run at most {LOOP_ITERATION_LIMIT} iterations in total; "
        "loop over fewer items (for example with limit:)"
    ),
    OutputStreamLimitError: f"the rendered text may be at most {OUTPUT_LIMIT} bytes",
    _RenderTimeLimitError: f"rendering may take at most {RENDER_TIME_LIMIT} s; simplify the loop body",
    LocalNamespaceLimitError: (
        f"assigned and captured values may total at most {LOCAL_NAMESPACE_LIMIT} bytes"
    ),
}


def _render_field(compiled_field: _Field, context: Mapping[str, Any]) -> str:
    if compiled_field.literal is not None:
        return compiled_field.literal
    try:
        return compiled_field.template.render(context)
    except LiquidError as err:
        token = err.token
        at = ""
        if token is not None and token.start_index >= 0:
            at = f" (line {_line_of(token.source, token.start_index)})"
        advice = next((a for t, a in _LIMIT_ADVICE.items() if isinstance(err, t)), None)
        reason = f"{err.message}{at}" + (f"; {advice}" if advice else "")
        raise RenderError(compiled_field.path, reason) from err
    except (ValueError, TypeError, ArithmeticError, RecursionError) as err:
        # Python-level failures while writing values out, e.g. an integer too
        # long to convert to text, or data nested too deeply.
        raise RenderError(compiled_field.path, f"could not render: {err}") from err


# --- HTML to text ------------------------------------------------------------------

_SKIP_TAGS: Final = frozenset({"script", "style", "head", "title", "template", "noscript"})
# Blocks that read as paragraphs (a blank line around them) or as lines.
_PARAGRAPH_TAGS: Final = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "blockquote", "pre", "hr"}
)
_LINE_TAGS: Final = frozenset(
    {"div", "tr", "li", "section", "article", "header", "footer", "dt", "dd", "address", "center"}
)
_LINE, _PARAGRAPH = 1, 2
_WHITESPACE_RE: Final = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        # convert_charrefs unescapes entities in text and attribute values.
        super().__init__(convert_charrefs=True)
        # Text runs, and ints for line breaks (the number of newlines), kept apart
        # so that adjacent block boundaries (</li><li>) merge into one break.
        self.parts: list[str | int] = []
        self.skip_depth = 0
        self.links: list[tuple[str, int]] = []

    def text(self, start: int = 0) -> str:
        return "".join("\n" * p if isinstance(p, int) else p for p in self.parts[start:])

    def add_break(self, newlines: int) -> None:
        # Whitespace between block tags is source indentation, not content.
        while self.parts and isinstance(self.parts[-1], str) and not self.parts[-1].strip():
            self.parts.pop()
        if self.parts and isinstance(self.parts[-1], int):
            self.parts[-1] = max(self.parts[-1], newlines)
        else:
            self.parts.append(newlines)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth += 1
        elif self.skip_depth:
            return
        elif tag == "br":
            # Explicit, so it does not merge with neighbouring breaks.
            self.parts.append("\n")
        elif tag in _PARAGRAPH_TAGS:
            self.add_break(_PARAGRAPH)
        elif tag in _LINE_TAGS:
            self.add_break(_LINE)
            if tag == "li":
                self.parts.append("- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "a":
            href = (dict(attrs).get("href") or "").strip()
            self.links.append((href, len(self.parts)))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self.parts.append(f" {alt} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth = max(self.skip_depth - 1, 0)
        elif self.skip_depth:
            return
        elif tag in _PARAGRAPH_TAGS:
            self.add_break(_PARAGRAPH)
        elif tag in _LINE_TAGS:
            self.add_break(_LINE)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            text = " ".join(self.text(start).split())
            # A URL is worth showing unless it is an in-page anchor or the link
            # text already says it.
            if href and not href.startswith("#") and href.removeprefix("mailto:") != text:
                self.parts.append(f" ({href})" if text else href)

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            # Source line breaks are layout, as in a browser.
            self.parts.append(_WHITESPACE_RE.sub(" ", data))


def html_to_text(html: str) -> str:
    """Readable plain text for an email's text part, from its rendered HTML."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in parser.text().split("\n")]
    out: list[str] = []
    for line in lines:
        # At most one blank line in a row; <br><br> still yields exactly one.
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()
