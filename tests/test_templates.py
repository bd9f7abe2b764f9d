"""Liquid message templates: errors at save time with field and line, lenient
rendering at send time, and limits that stop a runaway template quickly."""

from __future__ import annotations

import time
from typing import Any

import liquid
import pytest
from hypothesis import given
from hypothesis import strategies as st
from liquid.exceptions import LiquidError

from retenshund.templates import (
    DEFAULT_CATEGORY,
    LOOP_ITERATION_LIMIT,
    OUTPUT_LIMIT,
    SOURCE_LIMIT,
    CompiledTemplate,
    RenderError,
    TemplateError,
    build_context,
    compile_template,
    html_to_text,
    preview,
    render,
)

MILESTONE = {
    "name": "Milestone",
    "category": "product_updates",
    "email": {
        "subject": "You reached {{ milestone }}",
        "html": "<p>Hi {{ user.first_name }}, you sent {{ milestone }} from {{ event.source }}.</p>",
        "text": "Hi {{ user.first_name }} <{{ user.email }}>: {{ milestone }}",
    },
    "push": {
        "title": "{{ milestone }}!",
        "body": "Plan {{ user.traits.plan | upcase }}",
        "url": "https://app.example/m/{{ event.id }}",
        "icon": "https://cdn.example/{{ user.id }}.png",
    },
    "in_app": {
        "title": "Card ending {{ event.last4 }}",
        "body": "Expires {{ event.exp }}",
        "url": "/billing",
        "data": {
            "cta": "Update card for {{ user.email }}",
            "count": 3,
            "flags": [True, None, "{{ event.last4 }}"],
            "nested": {"deep": "{{ milestone | size }}"},
        },
    },
}


def context(**variables: Any) -> dict[str, Any]:
    return build_context(
        variables or {"milestone": "10,000 messages"},
        "u_1",
        {"email": "ann@example.com", "first_name": "Ann", "plan": "pro"},
        {"source": "api", "id": "ev9", "last4": "4242", "exp": "12/27"},
    )


def one_field(channel: str, field: str, source: str) -> dict[str, Any]:
    """A minimal valid template with ``source`` in ``channel.field``."""
    base: dict[str, dict[str, Any]] = {
        "email": {"subject": "s", "text": "t"},
        "push": {"title": "t"},
        "in_app": {"title": "t"},
    }
    section = base[channel]
    section[field] = source
    return {channel: section}


def render_one(channel: str, field: str, source: str, ctx: dict[str, Any] | None = None) -> Any:
    compiled = compile_template("t", one_field(channel, field, source))
    return render(compiled, channel, ctx if ctx is not None else context())[field]


def compile_error(spec: Any) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        compile_template("t", spec)
    return info.value


def render_error(source: str, ctx: dict[str, Any] | None = None) -> RenderError:
    compiled = compile_template("t", one_field("push", "body", source))
    with pytest.raises(RenderError) as info:
        render(compiled, "push", ctx if ctx is not None else context())
    return info.value


# --- rendering each channel ----------------------------------------------------------


def test_email_renders_variables_user_and_event() -> None:
    out = render(compile_template("milestone", MILESTONE), "email", context())
    assert out == {
        "subject": "You reached 10,000 messages",
        "html": "<p>Hi Ann, you sent 10,000 messages from api.</p>",
        "text": "Hi Ann <ann@example.com>: 10,000 messages",
    }


def test_push_renders_all_four_fields() -> None:
    out = render(compile_template("milestone", MILESTONE), "push", context())
    assert out == {
        "title": "10,000 messages!",
        "body": "Plan PRO",
        "url": "https://app.example/m/ev9",
        "icon": "https://cdn.example/u_1.png",
    }


def test_in_app_renders_data_strings_recursively_and_keeps_other_json_values() -> None:
    out = render(compile_template("milestone", MILESTONE), "in_app", context())
    assert out["title"] == "Card ending 4242"
    assert out["body"] == "Expires 12/27"
    assert out["url"] == "/billing"
    assert out["data"] == {
        "cta": "Update card for ann@example.com",
        "count": 3,
        "flags": [True, None, "4242"],
        "nested": {"deep": "15"},
    }


def test_absent_optional_fields_render_as_none_and_data_as_empty_object() -> None:
    compiled = compile_template("t", {"push": {"title": "Hi"}, "in_app": {"body": "b"}})
    assert render(compiled, "push", context()) == {"title": "Hi", "body": None, "url": None, "icon": None}
    assert render(compiled, "in_app", context()) == {"title": None, "body": "b", "url": None, "data": {}}


def test_preview_is_exactly_render() -> None:
    compiled = compile_template("milestone", MILESTONE)
    assert preview is render
    assert preview(compiled, "push", context()) == render(compiled, "push", context())


def test_line_endings_are_kept_byte_for_byte_including_in_captures() -> None:
    source = "a\r\nb\rc{% capture x %}d\r\ne{% endcapture %}{{ x }}"
    assert render_one("push", "body", source) == "a\r\nb\rcd\r\ne"


def test_filters_that_need_the_environment_still_work() -> None:
    assert render_one("push", "body", "{{ '2024-03-05' | date: '%b %d' }}|{{ items | join }}",
                      context(items=["a", "b"])) == "Mar 05|a b"


# --- the context --------------------------------------------------------------------


def test_user_traits_are_available_flat_and_under_traits() -> None:
    source = "{{ user.id }} {{ user.email }} {{ user.traits.email }} {{ milestone }}"
    assert render_one("push", "body", source) == "u_1 ann@example.com ann@example.com 10,000 messages"


def test_variables_cannot_shadow_user_or_event() -> None:
    ctx = build_context({"user": {"id": "admin"}, "event": "forged", "x": 1}, "u_1", {"plan": "pro"}, {"a": 2})
    assert ctx["user"] == {"id": "u_1", "plan": "pro", "traits": {"plan": "pro"}}
    assert ctx["event"] == {"a": 2}
    assert ctx["x"] == 1
    assert render_one("push", "body", "{{ user.id }}/{{ event.a }}", ctx) == "u_1/2"


def test_a_trait_named_id_cannot_replace_the_user_id() -> None:
    ctx = build_context({}, "u_1", {"id": "someone_else"}, None)
    assert ctx["user"]["id"] == "u_1"
    assert ctx["user"]["traits"] == {"id": "someone_else"}


def test_build_context_accepts_missing_parts() -> None:
    assert build_context(None, None, None, None) == {"user": {"id": None, "traits": {}}, "event": {}}


# --- lenient rendering of missing data -------------------------------------------------


def test_missing_variables_render_as_empty_text() -> None:
    source = "[{{ nope }}][{{ user.phone }}][{{ event.a.b.c }}][{{ nope | upcase }}]"
    assert render_one("push", "body", source) == "[][][][]"


def test_missing_data_in_a_filter_argument_renders_empty_instead_of_failing() -> None:
    source = "[{{ event.total | divided_by: event.count }}][{{ event.total | divided_by: event.count | default: 'n/a' }}]" \
             "[{{ user.bio | truncate: event.len }}]"
    assert render_one("push", "body", source) == "[][n/a][]"


def test_missing_data_in_loops_and_conditions_renders_nothing() -> None:
    source = "{% for item in event.items %}{{ item }}{% endfor %}{% if user.vip %}VIP{% else %}regular{% endif %}"
    assert render_one("push", "body", source) == "regular"


# --- errors at compile time ---------------------------------------------------------------


def test_unknown_filter_is_rejected_with_field_line_and_suggestion() -> None:
    err = compile_error(one_field("email", "text", "Hello\n\n{{ user.name | upcse }}"))
    assert err.field == "email.text"
    assert err.line == 3
    assert "line 3" in err.message
    assert "unknown filter 'upcse'" in err.message
    assert "upcase" in err.message


def test_unknown_filter_inside_a_liquid_tag_reports_its_own_line() -> None:
    err = compile_error(one_field("push", "body", "{% liquid\nassign a = 1\necho a | frobnicate\n%}"))
    assert (err.field, err.line) == ("push.body", 3)
    assert "frobnicate" in err.message


def test_unclosed_if_is_rejected_with_the_line_it_was_opened_on() -> None:
    err = compile_error(one_field("email", "subject", "Hi\n{% if user.vip %}{% endif %}\n{% if x %}\nthere"))
    assert err.field == "email.subject"
    assert err.line == 3
    assert "line 3" in err.message
    assert "{% endif %}" in err.message


def test_closing_the_wrong_block_names_the_block_left_open() -> None:
    err = compile_error(one_field("push", "body", "{% if a %}\n{% for i in b %}\n{{ i }}\n{% endif %}"))
    assert err.line == 4
    assert "{% for %} from line 2" in err.message
    assert "{% endfor %}" in err.message


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("a\n\n{{ x | }}", 3),
        ("a\n{% for i in %}{% endfor %}", 2),
        ("a\n{% if a == %}{% endif %}", 2),
        ('a\n{{ "unterminated }}', 2),
        ("a\n{% case x %}{% when 1 %}\nb", 2),
    ],
)
def test_syntax_errors_report_the_line_of_the_faulty_markup(source: str, line: int) -> None:
    err = compile_error(one_field("push", "body", source))
    assert err.field == "push.body"
    assert err.line == line
    assert f"line {line}" in err.message


def test_errors_in_data_strings_name_the_dotted_path() -> None:
    err = compile_error({"in_app": {"title": "t", "data": {"cta": {"label": "{{ x | nope }}"}}}})
    assert err.field == "in_app.data.cta.label"
    err = compile_error({"in_app": {"title": "t", "data": {"items": ["ok", "{% if %}"]}}})
    assert err.field == "in_app.data.items[1]"


@pytest.mark.parametrize("tag", ["include", "render"])
def test_partials_are_refused_at_save_time(tag: str) -> None:
    err = compile_error(one_field("email", "text", f"a\n{{% {tag} 'footer' %}}"))
    assert (err.field, err.line) == ("email.text", 2)
    assert "not supported" in err.message


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ("not an object", "template", "JSON object"),
        ({}, "template", "at least one"),
        ({"email": None, "push": None}, "template", "at least one"),
        ({"sms": {"body": "x"}}, "sms", "unknown key"),
        ({"email": {"subject": "s", "body": "x"}}, "email.body", "unknown field"),
        ({"push": "hello"}, "push", "must be an object"),
        ({"push": {"title": 42}}, "push.title", "must be a string"),
        ({"in_app": {"title": "t", "data": ["x"]}}, "in_app.data", "JSON object"),
        ({"in_app": {"title": "t", "data": {"when": object()}}}, "in_app.data.when", "JSON values"),
        ({"email": {"text": "body"}}, "email.subject", "required"),
        ({"email": {"subject": "  ", "text": "body"}}, "email.subject", "required"),
        ({"email": {"subject": "s"}}, "email", "html"),
        ({"push": {"body": "b"}}, "push.title", "required"),
        ({"in_app": {"url": "/x"}}, "in_app", "title"),
        ({"name": "", "push": {"title": "t"}}, "name", "non-empty"),
        ({"category": "Product Updates", "push": {"title": "t"}}, "category", "lowercase"),
    ],
)
def test_shape_errors_name_the_field_and_say_what_to_do(spec: Any, field: str, words: str) -> None:
    err = compile_error(spec)
    assert err.field == field
    assert words in err.message
    assert err.line is None


def test_deeply_nested_data_is_rejected() -> None:
    data: dict[str, Any] = {"v": "{{ x }}"}
    for _ in range(100):
        data = {"d": data}
    err = compile_error({"in_app": {"title": "t", "data": data}})
    assert err.field.startswith("in_app.data.d.d.")
    assert "nested" in err.message


def test_the_stored_source_is_a_copy_of_the_callers_dict() -> None:
    spec = {"push": {"title": "Hi {{ x }}"}}
    compiled = compile_template("t", spec)
    spec["push"]["title"] = "changed"
    assert compiled.source["push"] == {"title": "Hi {{ x }}"}
    assert render(compiled, "push", context(x="Ann"))["title"] == "Hi Ann"


def test_a_field_longer_than_the_source_limit_is_rejected() -> None:
    err = compile_error(one_field("email", "html", "x" * (SOURCE_LIMIT + 1)))
    assert err.field == "email.html"
    assert str(SOURCE_LIMIT) in err.message


def test_template_error_str_starts_with_the_field() -> None:
    err = compile_error(one_field("push", "url", "{{ a | nope }}"))
    assert str(err).startswith("push.url: ")


def test_defaults_and_normalized_source() -> None:
    compiled = compile_template("welcome", {"push": {"title": "Hi"}, "email": None})
    assert isinstance(compiled, CompiledTemplate)
    assert (compiled.id, compiled.name, compiled.category) == ("welcome", "welcome", DEFAULT_CATEGORY)
    assert compiled.channels == ("push",)
    assert compiled.source == {"name": "welcome", "category": "transactional", "push": {"title": "Hi"}}
    named = compile_template("milestone", MILESTONE)
    assert (named.name, named.category) == ("Milestone", "product_updates")
    assert named.channels == ("email", "push", "in_app")


def test_rendering_a_channel_the_template_lacks_is_a_render_error() -> None:
    compiled = compile_template("t", {"push": {"title": "Hi"}})
    with pytest.raises(RenderError) as info:
        render(compiled, "email", context())
    assert info.value.field == "email"
    assert "no email content" in info.value.message
    with pytest.raises(RenderError) as info:
        render(compiled, "sms", context())
    assert info.value.field == "sms"


# --- limits -----------------------------------------------------------------------------


def assert_stopped(err: RenderError, started: float, words: str) -> None:
    assert time.monotonic() - started < 2.0
    assert err.field == "push.body"
    assert words in err.message
    # The dispatcher catches RenderError only: nothing of liquid's may escape.
    assert not isinstance(err, LiquidError)


def test_a_huge_loop_is_stopped_before_it_runs() -> None:
    started = time.monotonic()
    err = render_error("{% for i in (1..100000000) %}x{% endfor %}")
    assert_stopped(err, started, "loop iteration limit")
    assert str(LOOP_ITERATION_LIMIT) in err.message


def test_many_sequential_loops_share_one_iteration_budget() -> None:
    half = LOOP_ITERATION_LIMIT // 2 + 1
    started = time.monotonic()
    err = render_error(f"{{% for i in (1..{half}) %}}{{% endfor %}}{{% for i in (1..{half}) %}}{{% endfor %}}")
    assert_stopped(err, started, "loop iteration limit")


def test_a_loop_within_the_limit_renders() -> None:
    assert render_one("push", "body", "{% for i in (1..5) %}{{ i }}{% endfor %}") == "12345"


def test_a_huge_range_passed_to_a_filter_is_refused() -> None:
    started = time.monotonic()
    err = render_error("{{ (1..100000000) | join: ',' }}")
    assert_stopped(err, started, "range of 100000000 items")


def test_huge_output_is_stopped_with_the_byte_limit_in_the_message() -> None:
    started = time.monotonic()
    err = render_error("{% for i in (1..10000) %}" + "0123456789" * 10 + "{% endfor %}")
    assert_stopped(err, started, "output stream limit")
    assert str(OUTPUT_LIMIT) in err.message


def test_output_just_under_the_limit_renders() -> None:
    assert render_one("push", "body", "{{ big }}", context(big="y" * (OUTPUT_LIMIT - 1))) == "y" * (OUTPUT_LIMIT - 1)


def test_string_amplifying_filters_are_stopped_before_building_the_string() -> None:
    big = {"big": "x" * 200_000}
    started = time.monotonic()
    assert_stopped(render_error("{{ big | replace: 'x', 'xxxxxxxxxx' }}", context(**big)), started, "too large")
    assert_stopped(render_error("{{ big | append: big }}", context(**big)), started, "too large")


def test_repeated_doubling_of_a_variable_hits_the_namespace_limit() -> None:
    started = time.monotonic()
    err = render_error("{% assign s = 'xxxxxxxxxx' %}{% for i in (1..40) %}{% assign s = s | append: s %}"
                       "{% assign t = s | size %}{% endfor %}")
    # Whichever limit trips first, the doubling never reaches gigabytes.
    assert err.message.startswith(("local namespace limit", "filter 'append' output too large"))
    assert_stopped(err, started, "at most")


def test_runaway_arithmetic_is_stopped() -> None:
    started = time.monotonic()
    err = render_error("{% assign n = 10 %}{% for i in (1..40) %}{% assign n = n | times: n %}{% endfor %}{{ n }}")
    assert_stopped(err, started, "number too large")


def test_a_slow_loop_body_is_stopped_by_the_time_limit() -> None:
    body = "{% assign a = 'a' | upcase %}" * 2000
    compiled = compile_template("t", one_field("push", "body", "{% for i in (1..10000) %}" + body + "{% endfor %}"))
    started = time.monotonic()
    with pytest.raises(RenderError) as info:
        render(compiled, "push", context())
    assert_stopped(info.value, started, "render time limit")


def test_render_errors_carry_the_line_and_chain_the_cause() -> None:
    err = render_error("ok\n{% for i in (1..100000000) %}x{% endfor %}")
    assert "(line 2)" in err.message
    assert isinstance(err.__cause__, LiquidError)
    assert str(err).startswith("push.body: ")


def test_no_environment_is_built_per_compile_or_render(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    original = liquid.Environment.__init__

    def counting_init(self: liquid.Environment, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(liquid.Environment, "__init__", counting_init)
    compiled = compile_template("milestone", MILESTONE)
    for channel in compiled.channels:
        render(compiled, channel, context())
    assert built == []


# --- escaping -----------------------------------------------------------------------------


def test_email_html_escapes_variables_but_trusts_template_markup() -> None:
    ctx = context(name='<script>alert("x")</script> & co')
    out = render(compile_template("t", {"email": {"subject": "{{ name }}", "html": "<b>{{ name }}</b>",
                                                  "text": "{{ name }}"}}), "email", ctx)
    assert out["html"] == "<b>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co</b>"
    assert out["subject"] == '<script>alert("x")</script> & co'
    assert out["text"] == '<script>alert("x")</script> & co'


def test_filters_keep_html_escaping_and_safe_opts_out() -> None:
    ctx = context(name="<i>Tom & Jerry</i>")
    html = render_one("email", "html", "{{ name | upcase }}|{{ name | escape }}|{{ name | safe }}", ctx)
    assert html == "&lt;I&gt;TOM &amp; JERRY&lt;/I&gt;|&lt;i&gt;Tom &amp; Jerry&lt;/i&gt;|<i>Tom & Jerry</i>"


@pytest.mark.parametrize(("channel", "field"), [("push", "body"), ("push", "url"), ("in_app", "title")])
def test_non_html_fields_are_not_escaped(channel: str, field: str) -> None:
    assert render_one(channel, field, "{{ q }}", context(q="a<b>&c")) == "a<b>&c"


def test_in_app_data_is_not_escaped() -> None:
    compiled = compile_template("t", {"in_app": {"title": "t", "data": {"q": "{{ q }}"}}})
    assert render(compiled, "in_app", context(q="<&>"))["data"] == {"q": "<&>"}


# --- text derived from HTML ------------------------------------------------------------------


def test_email_without_text_gets_text_derived_from_the_rendered_html() -> None:
    html = (
        "<html><head><title>Ignored</title><style>p { color: red }</style></head><body>"
        "<h1>Hello&nbsp;{{ user.first_name }}</h1>\n"
        "<p>You reached {{ milestone }}.<br>Keep   going &amp; <a href=\"https://app.example/m?a=1&amp;b=2\">see stats</a></p>"
        "<script>track()</script>"
        "<ul>\n  <li>one</li>\n  <li>two</li>\n</ul>"
        "<p>&copy; Example &lt;team&gt;</p></body></html>"
    )
    out = render(compile_template("t", {"email": {"subject": "s", "html": html}}), "email", context())
    assert out["text"] == (
        "Hello Ann\n"
        "\n"
        "You reached 10,000 messages.\n"
        "Keep going & see stats (https://app.example/m?a=1&b=2)\n"
        "\n"
        "- one\n"
        "- two\n"
        "\n"
        "© Example <team>"
    )


def test_explicit_text_is_not_replaced_by_derived_text() -> None:
    out = render(compile_template("t", {"email": {"subject": "s", "html": "<p>html</p>", "text": "plain"}}),
                 "email", context())
    assert out["text"] == "plain"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ('<a href="https://x.example">https://x.example</a>', "https://x.example"),
        ('<a href="mailto:a@b.example">a@b.example</a>', "a@b.example"),
        ('<a href="#top">Back to top</a>', "Back to top"),
        ('<a href="https://x.example"><img src="logo.png" alt="Logo"></a>', "Logo (https://x.example)"),
        ('<a href="https://x.example"></a>', "https://x.example"),
        ("<table><tr><td>Plan</td><td>Pro</td></tr><tr><td>Seats</td><td>5</td></tr></table>",
         "Plan Pro\nSeats 5"),
        ("<div>a</div><div>b</div><p>c</p><br><br><br>d", "a\nb\n\nc\n\nd"),
        ("<p>unclosed <b>tags", "unclosed tags"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


# --- properties ---------------------------------------------------------------------------------

no_markup = st.text(max_size=200).filter(lambda s: "{{" not in s and "{%" not in s)


@given(no_markup)
def test_text_without_liquid_markup_renders_unchanged(source: str) -> None:
    spec = {
        "email": {"subject": source, "text": source},
        "push": {"title": source, "body": source, "url": source, "icon": source},
        "in_app": {"title": source, "body": source, "url": source, "data": {"k": [source]}},
    }
    if not source.strip():
        spec["email"]["subject"] = "s"
        spec["push"]["title"] = "t"
    compiled = compile_template("t", spec)
    email = render(compiled, "email", context())
    push = render(compiled, "push", context())
    in_app = render(compiled, "in_app", context())
    assert email["text"] == source
    assert source.strip() == "" or email["subject"] == push["title"] == source
    assert push["body"] == push["url"] == push["icon"] == source
    assert in_app["title"] == in_app["body"] == in_app["url"] == source
    assert in_app["data"] == {"k": [source]}


def test_properties_named_like_liquid_keywords_render_as_in_shopify_liquid() -> None:
    compiled = compile_template("kw", {"in_app": {"title": "{{ event.used }} of {{ event.limit }}",
                                                  "body": "{% if event.offset > 1 %}late{% endif %}"}})
    out = render(compiled, "in_app", build_context({}, "u1", {}, {"used": 3, "limit": 10, "offset": 2}))
    assert (out["title"], out["body"]) == ("3 of 10", "late")


@given(st.text(max_size=200).filter(lambda s: "{{" not in s and "{%" not in s and s.strip()))
def test_text_without_liquid_markup_renders_exactly_as_written_as_liquid_would(text: str) -> None:
    # Such fields skip the Liquid render (it would give the text back unchanged).
    compiled = compile_template("t", {"in_app": {"title": text, "data": {"k": text}},
                                      "email": {"subject": text, "html": text}})
    in_app = render(compiled, "in_app", build_context({}, "u1", {}, {}))
    email = render(compiled, "email", build_context({}, "u1", {}, {}))
    assert in_app["title"] == in_app["data"]["k"] == email["subject"] == email["html"] == text
    for autoescape in (False, True):
        assert liquid.Environment(autoescape=autoescape).from_string(text).render() == text
