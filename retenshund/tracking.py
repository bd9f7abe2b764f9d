"""Signed links in outgoing email: open pixel, click redirects, unsubscribe.

Pure functions, no I/O. Every link carries a token that is a compact, URL-safe
HMAC-SHA256-signed claim ``(kind, message_id, extra)``:

- ``open``   — ``extra`` is empty. Served as ``GET /t/o/{token}.gif``.
- ``click``  — ``extra`` is the original ``http(s)`` URL. Served as ``GET /t/c/{token}``.
- ``unsub``  — ``extra`` is the user id. Served as ``GET``/``POST /u/{token}``.

Routes (written elsewhere, against these functions):

``GET /t/o/{token}.gif``
    Strip the ``.gif`` suffix, ``verify_link(secret, token)``; when the claims
    are valid and ``kind == "open"``, record an ``opened`` status for
    ``claims.message_id``. Always answer 200 with a 1x1 transparent GIF and
    ``Cache-Control: no-store`` (never reveal whether the token was valid).

``GET /t/c/{token}``
    ``verify_link``; when valid and ``kind == "click"``, record ``clicked``
    for ``claims.message_id`` and answer ``302 Location: claims.extra``. An
    invalid token is a 404 and never a redirect: only URLs we signed
    ourselves are redirected to, so the route is not an open redirect.

``GET /u/{token}`` and ``POST /u/{token}``
    ``verify_link``; when valid and ``kind == "unsub"``, the user
    ``claims.extra`` is unsubscribed from email (``claims.message_id`` says
    which message it came from). ``POST`` with the form body
    ``List-Unsubscribe=One-Click`` is the RFC 8058 one-click request mail
    clients send: answer 200 with no confirmation step. ``GET`` shows a page
    (a human following the link). Unsubscribe tokens do not expire.

Token layout (before base64url without padding)::

    kind (1 byte: o|c|u) | len(message_id) (1 byte) | message_id | extra | tag (16 bytes)

``tag`` is HMAC-SHA256 truncated to 128 bits, keyed with a key derived from the
signing secret for this purpose only (so a link token can never be confused
with a user token signed with the same secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html as _html
import re
from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = [
    "KINDS",
    "LinkClaims",
    "sign_link",
    "verify_link",
    "instrument_html",
    "open_pixel_url",
    "click_url",
    "unsubscribe_url",
]

KINDS = ("open", "click", "unsub")
_KIND_TO_BYTE = {"open": b"o", "click": b"c", "unsub": b"u"}
_BYTE_TO_KIND = {v[0]: k for k, v in _KIND_TO_BYTE.items()}
_TAG_LEN = 16
_MAX_TOKEN_CHARS = 8192
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")
_HTTP_RE = re.compile(r"https?://", re.IGNORECASE)
_KEY_LABEL = b"retenshun tracking link v1"

#: Links carrying this attribute are neither rewritten nor counted as clicks.
NOTRACK_ATTRIBUTE = "data-retenshun-notrack"


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a valid token says. ``extra`` is the URL of a click and the user id
    of an unsubscribe; empty for an open."""

    kind: str
    message_id: str
    extra: str = ""


def _key(secret: bytes | str) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        raise ValueError("secret must not be empty")
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_TAG_LEN]


def sign_link(secret: bytes | str, kind: str, message_id: str, extra: str = "") -> str:
    """A URL-safe token (base64url alphabet, no padding) for ``(kind, message_id, extra)``.

    ``kind`` is ``open``, ``click`` or ``unsub``; a click's ``extra`` must be an
    ``http://`` or ``https://`` URL. ``message_id`` is at most 255 bytes of UTF-8.
    """
    code = _KIND_TO_BYTE.get(kind)
    if code is None:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    mid = message_id.encode("utf-8")
    if not mid or len(mid) > 255:
        raise ValueError("message_id must be 1 to 255 bytes of UTF-8")
    if kind == "click" and not _HTTP_RE.match(extra):
        raise ValueError("a click token's extra must be an http(s) URL")
    payload = code + bytes([len(mid)]) + mid + extra.encode("utf-8")
    raw = payload + _tag(_key(secret), payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def verify_link(secret: bytes | str, token: str) -> LinkClaims | None:
    """The claims of a token made by :func:`sign_link` with ``secret``; ``None``
    for anything else (tampered, truncated, other secret, not base64url).

    The tag is compared with :func:`hmac.compare_digest`. Tokens do not expire.
    """
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or not _TOKEN_RE.fullmatch(token):
        return None
    if len(token) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        return None
    # One token per claim: refuse non-canonical encodings (stray low bits).
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        return None
    if len(raw) < 2 + 1 + _TAG_LEN:
        return None
    payload, tag = raw[:-_TAG_LEN], raw[-_TAG_LEN:]
    if not hmac.compare_digest(tag, _tag(_key(secret), payload)):
        return None
    kind = _BYTE_TO_KIND.get(payload[0])
    mid_len = payload[1]
    if kind is None or mid_len == 0 or len(payload) < 2 + mid_len:
        return None
    try:
        message_id = payload[2 : 2 + mid_len].decode("utf-8")
        extra = payload[2 + mid_len :].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return LinkClaims(kind=kind, message_id=message_id, extra=extra)


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def open_pixel_url(base_url: str, secret: bytes | str, message_id: str) -> str:
    """``{base_url}/t/o/{token}.gif``."""
    return f"{_base(base_url)}/t/o/{sign_link(secret, 'open', message_id)}.gif"


def click_url(base_url: str, secret: bytes | str, message_id: str, url: str) -> str:
    """``{base_url}/t/c/{token}``, the token carrying ``url``."""
    return f"{_base(base_url)}/t/c/{sign_link(secret, 'click', message_id, url)}"


def unsubscribe_url(base_url: str, secret: bytes | str, message_id: str, user_id: str) -> str:
    """``{base_url}/u/{token}``: the signed unsubscribe link (page and RFC 8058 one-click POST)."""
    return f"{_base(base_url)}/u/{sign_link(secret, 'unsub', message_id, user_id)}"


# --- HTML instrumentation -------------------------------------------------

# Attributes inside one start tag, scanned left to right the way HTMLParser
# (and browsers) do, so a quoted value that contains "href=" is never matched.
_TAG_NAME_RE = re.compile(r"<[a-zA-Z][^\t\n\r\f />\x00]*")
_ATTR_RE = re.compile(
    r"""[\s/]*(?P<name>[^\s/>][^\s/=>]*)(?:\s*=+\s*(?P<value>"[^"]*"|'[^']*'|(?!['"])[^>\s]*))?"""
)


class _Scanner(HTMLParser):
    """Collects ``<a>`` start tags (position, raw text, attributes) and the
    position of the last ``</body>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[tuple[int, int], str, list[tuple[str, str | None]]]] = []
        self.body_end: tuple[int, int] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            raw = self.get_starttag_text()
            if raw is not None:
                self.anchors.append((self.getpos(), raw, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self.getpos()


def _href_span(raw_tag: str) -> tuple[int, int, str] | None:
    """(start, end, raw value) of the first ``href`` attribute value in one start tag."""
    m = _TAG_NAME_RE.match(raw_tag)
    if m is None:
        return None
    pos = m.end()
    while pos < len(raw_tag):
        a = _ATTR_RE.match(raw_tag, pos)
        if a is None or a.end() == pos:
            break
        if a.group("name").lower() == "href":
            if a.group("value") is None:
                return None
            return a.start("value"), a.end("value"), a.group("value")
        pos = a.end()
    return None


def _unquote(raw_value: str) -> str:
    if raw_value[:1] in ("'", '"') and raw_value[-1:] == raw_value[:1] and len(raw_value) >= 2:
        raw_value = raw_value[1:-1]
    return _html.unescape(raw_value)


def instrument_html(
    html: str,
    *,
    base_url: str,
    secret: bytes | str,
    message_id: str,
    track_opens: bool,
    track_clicks: bool,
) -> str:
    """Add open and click tracking to an email's HTML.

    - ``track_clicks``: every ``<a href="http(s)://...">`` gets
      ``href="{base_url}/t/c/{token}"`` where the signed token carries the
      original URL (entities such as ``&amp;`` decoded). Left alone: other
      schemes (``mailto:``, ``tel:``), fragments (``#top``), relative links,
      links already pointing at ``{base_url}/t/`` or at the unsubscribe page
      ``{base_url}/u/``, and links with a ``data-retenshun-notrack`` attribute.
      Everything else in the document is kept byte for byte.
    - ``track_opens``: the pixel
      ``<img src="{base_url}/t/o/{token}.gif" width="1" height="1" alt="" style="display:none">``
      goes right before the last ``</body>``, or at the end when there is none.
    """
    if not (track_opens or track_clicks):
        return html
    base = _base(base_url)
    scanner = _Scanner()
    scanner.feed(html)
    scanner.close()

    line_starts = [0]
    for m in re.finditer("\n", html):
        line_starts.append(m.end())

    def offset(pos: tuple[int, int]) -> int:
        line, col = pos
        return line_starts[line - 1] + col

    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), in document order
    if track_clicks:
        untracked = (f"{base}/u/", f"{base}/t/")
        for pos, raw_tag, attrs in scanner.anchors:
            names = {name for name, _ in attrs}
            if NOTRACK_ATTRIBUTE in names:
                continue
            href = next((value for name, value in attrs if name == "href"), None)
            if href is None:
                continue
            url = href.strip()
            if not _HTTP_RE.match(url) or url.startswith(untracked):
                continue
            start = offset(pos)
            if html[start : start + len(raw_tag)] != raw_tag:
                continue  # positions disagree with the source: leave it alone
            span = _href_span(raw_tag)
            if span is None or _unquote(span[2]).strip() != url:
                continue
            new_href = _html.escape(click_url(base, secret, message_id, url), quote=True)
            edits.append((start + span[0], start + span[1], f'"{new_href}"'))

    if track_opens:
        pixel = (
            f'<img src="{_html.escape(open_pixel_url(base, secret, message_id), quote=True)}"'
            ' width="1" height="1" alt="" style="display:none">'
        )
        at = offset(scanner.body_end) if scanner.body_end is not None else len(html)
        if scanner.body_end is not None and not html[at : at + 2] == "</":
            at = len(html)
        edits.append((at, at, pixel))

    edits.sort(key=lambda e: (e[0], e[1]))
    out: list[str] = []
    last = 0
    for start, end, text in edits:
        out.append(html[last:start])
        out.append(text)
        last = end
    out.append(html[last:])
    return "".join(out)
