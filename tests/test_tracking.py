import base64
import re

import pytest

from retenshund.tracking import (
    LinkClaims,
    instrument_html,
    sign_link,
    unsubscribe_url,
    verify_link,
)

SECRET = b"a-long-random-signing-secret"
BASE = "https://engage.example.com"


def _click_tokens(html: str) -> list[str]:
    return re.findall(r'(?i:href)="https://engage\.example\.com/t/c/([A-Za-z0-9_-]+)"', html)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("open", ""), ("click", "https://example.com/x?a=1&b=2"), ("unsub", "user_123")],
)
def test_sign_verify_round_trip(kind, extra):
    token = sign_link(SECRET, kind, "msg_01HZX", extra)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert verify_link(SECRET, token) == LinkClaims(kind=kind, message_id="msg_01HZX", extra=extra)


def test_open_token_is_compact():
    token = sign_link(SECRET, "open", "msg_01HZXB2N4R9K7QJ3M5V8W6T0YS")
    assert len(token) <= 70


def test_tampered_token_is_rejected():
    token = sign_link(SECRET, "unsub", "msg_1", "user_1")
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-20] ^= 0x01  # flip a bit of the user id
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert forged != token
    assert verify_link(SECRET, forged) is None


def test_every_single_character_change_is_rejected():
    token = sign_link(SECRET, "click", "msg_1", "https://example.com/")
    for i in range(len(token)):
        replacement = "A" if token[i] != "A" else "B"
        mutated = token[:i] + replacement + token[i + 1 :]
        assert verify_link(SECRET, mutated) is None, i


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "not a token", "a" * 9000, "@@@@", sign_link(SECRET, "open", "msg_1")[:-2]],
)
def test_malformed_tokens_are_rejected(bad):
    assert verify_link(SECRET, bad) is None


def test_other_secret_is_rejected():
    token = sign_link(SECRET, "open", "msg_1")
    assert verify_link(b"another-secret", token) is None
    assert verify_link(SECRET, token) is not None


def test_click_token_carries_the_exact_url():
    url = "https://shop.example.com/p/ünïcode?q=a%20b&x=1#frag"
    claims = verify_link(SECRET, sign_link(SECRET, "click", "msg_9", url))
    assert claims is not None and claims.kind == "click" and claims.extra == url


def test_click_token_refuses_non_http_url():
    with pytest.raises(ValueError):
        sign_link(SECRET, "click", "msg_1", "javascript:alert(1)")
    with pytest.raises(ValueError):
        sign_link(SECRET, "bogus", "msg_1")


def test_unsubscribe_url_round_trip():
    url = unsubscribe_url(BASE + "/", SECRET, "msg_5", "user_42")
    assert url.startswith(BASE + "/u/")
    claims = verify_link(SECRET, url.rsplit("/", 1)[1])
    assert claims == LinkClaims("unsub", "msg_5", "user_42")


HTML = """<!doctype html>
<html><body>
<p>Hello <a href="https://example.com/a?x=1&amp;y=2">https link</a>
and <a class="btn" title="href=https://evil.example" href='http://example.com/b'>http link</a>
and <A HREF=https://example.com/c>upper</A></p>
<p><a href="mailto:help@example.com">mail</a> <a href="#top">top</a>
<a href="/relative">rel</a> <a href="ftp://example.com/f">ftp</a>
<a href="{unsub}">unsubscribe</a> <a data-retenshun-notrack href="https://example.com/keep">keep</a></p>
<!-- <a href="https://example.com/in-comment"> -->
</body></html>
"""


def _html():
    return HTML.replace("{unsub}", unsubscribe_url(BASE, SECRET, "msg_1", "user_1"))


def test_instrument_rewrites_http_and_https_links_only():
    src = _html()
    out = instrument_html(src, base_url=BASE, secret=SECRET, message_id="msg_1", track_opens=False, track_clicks=True)
    tokens = _click_tokens(out)
    urls = [verify_link(SECRET, t) for t in tokens]
    assert [c.extra for c in urls] == [
        "https://example.com/a?x=1&y=2",
        "http://example.com/b",
        "https://example.com/c",
    ]
    assert all(c.kind == "click" and c.message_id == "msg_1" for c in urls)
    # left alone, byte for byte
    for kept in (
        '<a href="mailto:help@example.com">',
        '<a href="#top">',
        '<a href="/relative">',
        '<a href="ftp://example.com/f">',
        f'<a href="{unsubscribe_url(BASE, SECRET, "msg_1", "user_1")}">',
        '<a data-retenshun-notrack href="https://example.com/keep">',
        '<!-- <a href="https://example.com/in-comment"> -->',
        'title="href=https://evil.example"',
    ):
        assert kept in out
    assert "https://example.com/a?" not in out
    assert "img" not in out
    # nothing but those three attribute values changed
    out_norm = re.sub(r'(?i)(href=)"https://engage\.example\.com/t/c/[A-Za-z0-9_-]+"', r"\1X", out)
    src_norm = (
        src.replace('href="https://example.com/a?x=1&amp;y=2"', "href=X")
        .replace("href='http://example.com/b'", "href=X")
        .replace("HREF=https://example.com/c", "HREF=X")
    )
    assert out_norm == src_norm


def test_instrument_adds_open_pixel_before_body_end():
    out = instrument_html(_html(), base_url=BASE, secret=SECRET, message_id="msg_1", track_opens=True, track_clicks=False)
    m = re.search(r'<img src="https://engage\.example\.com/t/o/([A-Za-z0-9_-]+)\.gif" width="1" height="1" alt="" style="display:none"></body>', out)
    assert m, out
    assert verify_link(SECRET, m.group(1)) == LinkClaims("open", "msg_1", "")
    assert out.count("<img") == 1
    assert _click_tokens(out) == []


def test_pixel_appended_when_there_is_no_body_tag():
    out = instrument_html("<p>hi</p>", base_url=BASE, secret=SECRET, message_id="m", track_opens=True, track_clicks=True)
    assert out.startswith("<p>hi</p><img src=")
    assert out.endswith('style="display:none">')


def test_both_off_returns_the_input_unchanged():
    src = _html()
    assert instrument_html(src, base_url=BASE, secret=SECRET, message_id="m", track_opens=False, track_clicks=False) == src


def test_body_end_inside_comment_or_script_is_not_used():
    src = "<html><body><script>var s = '</body>';</script><!-- </body> --><p>x</p></body></html>"
    out = instrument_html(src, base_url=BASE, secret=SECRET, message_id="m", track_opens=True, track_clicks=False)
    assert out.endswith('style="display:none"></body></html>')
    assert "var s = '</body>';" in out
