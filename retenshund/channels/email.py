"""Email channel: build (and DKIM-sign) a message, send it over pooled SMTP.

Three pieces:

- :func:`build_email` makes a ``multipart/alternative`` message (text, then
  HTML) with ``Message-ID``, ``Date``, ``List-Unsubscribe`` and
  ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), signed with
  DKIM when a key is configured. Signing is CPU work: call it off the event
  loop (``await build_email_async(...)`` or ``asyncio.to_thread``).
- :class:`SmtpPool` keeps up to ``pool_size`` SMTP connections open and reuses
  them; :meth:`SmtpPool.send` classifies what the server said into
  :class:`EmailResult` (``sent`` / ``retry`` / ``bounced`` / ``failed``).
- :func:`email_retry_delay`: when to try a ``retry`` outcome again.

The bytes that go on the wire are ``msg.as_bytes()`` under the message's own
policy, exactly the bytes that were signed. Do not hand a signed message to
``aiosmtplib.send_message`` (it re-serialises with another policy and may
refold ``List-Unsubscribe``, which breaks the signature).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as _dt
import email.policy
import email.utils
import logging
import random
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any, Literal

import aiosmtplib
import msgspec

log = logging.getLogger(__name__)

__all__ = [
    "EmailSettings",
    "EmailResult",
    "build_email",
    "build_email_async",
    "SmtpPool",
    "email_retry_delay",
    "message_id_header",
]

Outcome = Literal["sent", "retry", "bounced", "failed"]

# Header values we store raw (List-Unsubscribe, DKIM-Signature) must go out
# byte for byte: the default "long" refolding would turn a long URL into
# RFC 2047 encoded words, which mail clients do not decode in this header.
_POLICY = email.policy.SMTP.clone(refold_source="none")
_POLICY_UTF8 = email.policy.SMTPUTF8.clone(refold_source="none")

ONE_CLICK = "List-Unsubscribe=One-Click"

# Headers build_email owns; ``headers=`` may not set these.
_MANAGED = frozenset(
    h.lower()
    for h in (
        "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "List-Unsubscribe",
        "List-Unsubscribe-Post", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
        "DKIM-Signature", "Return-Path",
    )
)

# Signed when present (RFC 6376 section 5.4.1 recommendations plus RFC 8058's pair).
_DKIM_SIGN = (
    "from", "sender", "reply-to", "to", "cc", "subject", "date", "message-id", "in-reply-to",
    "references", "mime-version", "content-type", "content-transfer-encoding", "list-id",
    "list-unsubscribe", "list-unsubscribe-post", "feedback-id",
)
# Signed once more than they occur, so nobody can add another one later.
_DKIM_OVERSIGN = ("from", "subject", "list-unsubscribe", "list-unsubscribe-post")


class EmailSettings(msgspec.Struct, kw_only=True):
    """The ``[email]`` config section.

    ``starttls``: ``True`` requires STARTTLS, ``False`` never does it, ``None``
    upgrades when the server offers it. ``tls``: implicit TLS from the first
    byte (port 465); ``starttls`` is ignored then. ``port`` defaults to 587,
    or 465 with ``tls``. ``dkim_domain`` defaults to the From domain.
    ``return_path`` is the envelope sender (``MAIL FROM``), by default
    ``from_address``. A connection is closed after
    ``max_messages_per_connection`` messages (0: never), as many servers cap it.
    ``track_opens`` / ``track_clicks`` / ``unsubscribe_mailto`` are not used
    here: they are for the caller of ``tracking.instrument_html`` and
    :func:`build_email`.
    """

    host: str = "localhost"
    port: int | None = None
    username: str | None = None
    password: str | None = None
    starttls: bool | None = True
    tls: bool = False
    from_address: str = ""
    from_name: str = ""
    timeout: float = 30.0
    pool_size: int = 4
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_private_key: str | None = None
    return_path: str | None = None
    local_hostname: str | None = None
    validate_certs: bool = True
    max_messages_per_connection: int = 100
    track_opens: bool = True
    track_clicks: bool = True
    unsubscribe_mailto: str | None = None

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError("email.pool_size must be at least 1")
        if self.timeout <= 0:
            raise ValueError("email.timeout must be positive")
        if self.dkim_private_key:
            if not self.dkim_selector:
                raise ValueError("email.dkim_selector is required when email.dkim_private_key is set")
            from dkim.crypto import UnparsableKeyError, parse_pem_private_key

            try:
                parse_pem_private_key(_pem_bytes(self.dkim_private_key))
            except (UnparsableKeyError, ValueError) as exc:
                raise ValueError(f"email.dkim_private_key is not a PEM RSA private key: {exc}") from None

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return 465 if self.tls else 587

    @property
    def from_domain(self) -> str:
        """The From address's domain, in ASCII (IDNA) form."""
        domain = self.from_address.rpartition("@")[2]
        return domain if domain.isascii() else domain.encode("idna").decode("ascii")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "EmailSettings":
        """From the raw ``[email]`` table (strings from env vars are converted).

        Accepts ``from = "Name <addr@example.com>"`` as a shorthand for
        ``from_address`` / ``from_name``."""
        values = dict(data)
        if "from" in values:
            name, addr = email.utils.parseaddr(str(values.pop("from")))
            values.setdefault("from_address", addr)
            values.setdefault("from_name", name)
        return msgspec.convert(values, cls, strict=False)


class EmailResult(msgspec.Struct, frozen=True):
    """What happened to one message.

    - ``sent``: the server took it (2xx after DATA).
    - ``retry``: temporary; try again later (4xx such as 421/451, connection
      errors, timeouts, and server-wide refusals at connect/EHLO/AUTH, which
      are not the recipient's fault).
    - ``bounced``: permanent refusal of the recipient or of the message (5xx at
      RCPT or after DATA, or an address that cannot be used): suppress it.
    - ``failed``: permanent, but not the address's fault (5xx at MAIL FROM,
      SMTPUTF8 needed and not offered): do not retry, do not suppress.

    ``code`` is the SMTP reply code when there was one; ``detail`` the
    command and the server's text.
    """

    outcome: Outcome
    code: int | None = None
    detail: str = ""


# --- building --------------------------------------------------------------

_ID_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def message_id_header(message_id: str, domain: str) -> str:
    """``<{message_id}@{domain}>``; characters outside ``[A-Za-z0-9_-]`` become
    ``=XX`` (so distinct ids stay distinct)."""
    local = _ID_SAFE.sub(lambda m: "".join(f"={b:02X}" for b in m.group().encode()), message_id)
    return f"<{local}@{domain}>"


def _ascii_domain(address: str) -> str:
    """Punycode the domain of ``address`` so only a non-ASCII local part needs SMTPUTF8."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an email address: {address!r}")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


def _address(addr_spec: str, display_name: str | None) -> Address:
    try:
        return Address(display_name=_one_line(display_name or ""), addr_spec=addr_spec)
    except Exception as exc:  # the parser raises several unrelated types
        raise ValueError(f"not a usable email address: {addr_spec!r} ({exc})") from None


def _one_line(value: str) -> str:
    return " ".join(value.splitlines()).strip()


def _set_raw_first(msg: EmailMessage, name: str, value: str) -> None:
    """Put a header, stored verbatim, at the top of the header block."""
    items = list(msg.raw_items())
    for key in {k for k, _ in items}:
        del msg[key]
    msg.set_raw(name, value)
    for key, val in items:
        msg.set_raw(key, val)


def _list_unsubscribe(url: str, mailto: str | None) -> str:
    if not re.fullmatch(r"https?://[^\s<>,\"]+", url):
        raise ValueError("unsubscribe_url must be an http(s) URL without spaces, commas or angle brackets")
    parts = [f"<{url}>"]
    if mailto:
        target = mailto if mailto.lower().startswith("mailto:") else f"mailto:{mailto}"
        if re.search(r"[\s<>,\"]", target):
            raise ValueError("unsubscribe_mailto must not contain spaces, commas or angle brackets")
        parts.append(f"<{target}>")
    return ",\r\n ".join(parts)


def _pem_bytes(key: str) -> bytes:
    return key.replace("\r\n", "\n").strip().encode("ascii") + b"\n"


def _dkim_sign(msg: EmailMessage, settings: EmailSettings) -> None:
    import dkim

    raw = msg.as_bytes()
    present = [name.lower() for name in msg.keys()]
    include = [h for h in _DKIM_SIGN if h in present] + [h for h in _DKIM_OVERSIGN if h in present]
    domain = settings.dkim_domain or settings.from_domain
    try:
        header = dkim.sign(
            raw,
            selector=str(settings.dkim_selector).encode("ascii"),
            domain=domain.encode("ascii"),
            privkey=_pem_bytes(settings.dkim_private_key or ""),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h.encode("ascii") for h in include],
            linesep=b"\r\n",
        )
    except dkim.DKIMException as exc:
        raise ValueError(f"DKIM signing failed: {exc}") from None
    name, _, value = header.decode("ascii").partition(":")
    _set_raw_first(msg, name, value.strip())


def build_email(
    *,
    settings: EmailSettings,
    to: str,
    subject: str,
    html: str,
    text: str,
    message_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str | None = None,
    headers: Mapping[str, str] | None = None,
    to_name: str | None = None,
    date: _dt.datetime | None = None,
) -> EmailMessage:
    """A ready-to-send message for one recipient (DKIM-signed when
    ``settings.dkim_private_key`` is set, covering ``List-Unsubscribe`` and
    ``List-Unsubscribe-Post`` as RFC 8058 requires).

    ``message_id`` is ours (``msg_...``); the ``Message-ID`` header is
    :func:`message_id_header` of it and the From domain. ``headers`` adds
    extra headers (``Reply-To``, ``Feedback-ID``...) but may not replace the
    ones this function owns. CPU-bound when signing: run it off the loop.
    """
    if not settings.from_address or "@" not in settings.from_address:
        raise ValueError("email.from_address is not configured")
    recipient = _ascii_domain(to)
    policy = _POLICY if recipient.isascii() and settings.from_address.isascii() else _POLICY_UTF8

    msg = EmailMessage(policy=policy)
    msg["From"] = _address(settings.from_address, settings.from_name)
    msg["To"] = _address(recipient, to_name)
    msg["Subject"] = _one_line(subject)
    msg["Date"] = email.utils.format_datetime(date or _dt.datetime.now(_dt.UTC))
    msg["Message-ID"] = message_id_header(message_id, settings.from_domain)
    msg.set_raw("List-Unsubscribe", _list_unsubscribe(unsubscribe_url, unsubscribe_mailto))
    msg["List-Unsubscribe-Post"] = ONE_CLICK
    for name, value in (headers or {}).items():
        if name.lower() in _MANAGED:
            raise ValueError(f"header {name} is set by build_email and cannot be overridden")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} must be one line")
        msg[name] = value

    # Quoted-printable keeps both parts 7-bit, so no server or policy can
    # change their bytes after signing.
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    # "=_" never occurs in quoted-printable text, so it cannot clash with a part.
    msg.set_boundary(f"=_rtn_{secrets.token_hex(12)}")

    if settings.dkim_private_key:
        _dkim_sign(msg, settings)
    return msg


async def build_email_async(**kwargs: Any) -> EmailMessage:
    """:func:`build_email` in a worker thread (DKIM signing is CPU work)."""
    return await asyncio.to_thread(lambda: build_email(**kwargs))


# --- sending ---------------------------------------------------------------


@dataclass(eq=False)
class _Conn:
    smtp: aiosmtplib.SMTP
    sent: int = 0


class _Failure(Exception):
    def __init__(self, result: EmailResult, *, stale: bool = False) -> None:
        super().__init__(result.detail)
        self.result = result
        self.stale = stale


def _envelope_recipients(msg: EmailMessage) -> list[str]:
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in (msg.get_all(name) or [])]
    return [addr for _, addr in email.utils.getaddresses(fields) if addr]


class SmtpPool:
    """Up to ``settings.pool_size`` open SMTP connections, reused across sends.

    A connection is dropped after any error (and re-opened on the next send)
    and after ``max_messages_per_connection`` messages. A pooled connection
    the server has closed while idle is noticed at checkout; if it dies at
    ``MAIL FROM`` (nothing sent yet) the message goes out once more on a new
    connection, so an idle timeout never costs a retry. No NOOP probing.

    ``async with SmtpPool(settings) as pool: result = await pool.send(msg)``.
    """

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._closed = False
        #: connections opened so far (for metrics and tests).
        self.connections_opened = 0

    async def __aenter__(self) -> "SmtpPool":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def send(self, msg: EmailMessage | bytes, *, recipients: Sequence[str] | None = None) -> EmailResult:
        """Send ``msg`` to ``recipients`` (by default its To/Cc/Bcc).

        An :class:`EmailMessage` goes out as ``msg.as_bytes()`` (its own
        policy; Bcc removed). Already serialised ``bytes`` (``msg.as_bytes()``
        done in the worker thread that built the message, which keeps that CPU
        work off the loop too) go out as they are and need ``recipients``.

        Never raises for SMTP or network trouble: the outcome says what to do.
        Refused for some of several recipients is ``sent`` with the refusals in
        ``detail``; refused for all is ``bounced`` (any 5xx) or ``retry`` (all 4xx).
        """
        if self._closed:
            raise RuntimeError("SmtpPool is closed")
        if isinstance(msg, (bytes, bytearray, memoryview)):
            if recipients is None:
                raise ValueError("recipients are required when sending bytes")
            data = bytes(msg)
        else:
            if recipients is None:
                recipients = _envelope_recipients(msg)
            if msg.get("Bcc") is not None:
                msg = _without_bcc(msg)
            data = msg.as_bytes()
        if isinstance(recipients, str):
            recipients = [recipients]
        try:
            rcpts = [_ascii_domain(r) for r in recipients]
        except ValueError as exc:
            return EmailResult("bounced", None, f"bad recipient address: {exc}")
        if not rcpts:
            return EmailResult("bounced", None, "no recipient address")
        sender = self.settings.return_path or self.settings.from_address
        utf8 = not (sender.isascii() and all(r.isascii() for r in rcpts))

        async with self._slots:
            fresh = False
            for _ in range(2):
                conn = None if fresh else self._checkout()
                reused = conn is not None
                if conn is None:
                    try:
                        conn = await self._connect()
                    except _Failure as failure:
                        return failure.result
                try:
                    result = await self._transaction(conn, sender, rcpts, data, utf8)
                except _Failure as failure:
                    conn.smtp.close()
                    if failure.stale and reused:
                        log.debug("pooled SMTP connection was stale; reconnecting")
                        fresh = True
                        continue
                    return failure.result
                except BaseException:
                    conn.smtp.close()
                    raise
                conn.sent += 1
                await self._checkin(conn)
                return result
            raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """QUIT every idle connection; connections in use close when their send ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(c) for c in idle))

    # -- internals --

    def _checkout(self) -> _Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.smtp.is_connected:
                return conn
            conn.smtp.close()
        return None

    async def _checkin(self, conn: _Conn) -> None:
        limit = self.settings.max_messages_per_connection
        if self._closed or (limit and conn.sent >= limit) or not conn.smtp.is_connected:
            await self._quit(conn)
        else:
            self._idle.append(conn)

    async def _quit(self, conn: _Conn) -> None:
        try:
            if conn.smtp.is_connected:
                await asyncio.wait_for(conn.smtp.quit(), self.settings.timeout)
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            pass
        finally:
            conn.smtp.close()

    async def _connect(self) -> _Conn:
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.effective_port,
            username=s.username or None,
            password=s.password if s.username else None,
            use_tls=s.tls,
            start_tls=False if s.tls else s.starttls,
            timeout=s.timeout,
            local_hostname=s.local_hostname,
            validate_certs=s.validate_certs,
        )
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    if not smtp.is_connected:
                        raise
                    await smtp.helo()
        except aiosmtplib.SMTPResponseException as exc:
            smtp.close()
            raise _Failure(EmailResult("retry", exc.code, f"connect: {exc.code} {exc.message}")) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise _Failure(EmailResult("retry", None, f"connect: {type(exc).__name__}: {exc}")) from None
        except BaseException:
            smtp.close()
            raise
        self.connections_opened += 1
        return _Conn(smtp)

    async def _transaction(
        self, conn: _Conn, sender: str, rcpts: list[str], data: bytes, utf8: bool
    ) -> EmailResult:
        smtp = conn.smtp
        options: list[str] = []
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(data)}")
        if not data.isascii() and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if utf8:
            if not smtp.supports_extension("smtputf8"):
                raise _Failure(EmailResult("failed", None, "the address needs SMTPUTF8, which the server does not offer"))
            options.append("SMTPUTF8")
        encoding = "utf-8" if utf8 else "ascii"

        phase = "MAIL"
        try:
            await smtp.mail(sender, options=options, encoding=encoding)
            phase = "RCPT"
            refused: list[aiosmtplib.SMTPRecipientRefused] = []
            for rcpt in rcpts:
                try:
                    await smtp.rcpt(rcpt, encoding=encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    if not smtp.is_connected:
                        raise
                    refused.append(exc)
            if len(refused) == len(rcpts):
                permanent = [e for e in refused if 500 <= e.code < 600]
                worst = permanent[0] if permanent else refused[0]
                raise _Failure(
                    EmailResult(
                        "bounced" if permanent else "retry",
                        worst.code,
                        "RCPT " + "; ".join(f"{e.recipient}: {e.code} {e.message}" for e in refused),
                    )
                )
            phase = "DATA"
            response = await smtp.data(data)
        except _Failure:
            raise
        except aiosmtplib.SMTPResponseException as exc:
            code = exc.code
            text = f"{phase} {code} {exc.message}"
            if 400 <= code < 500:
                raise _Failure(EmailResult("retry", code, text)) from None
            if 500 <= code < 600:
                outcome: Outcome = "failed" if phase == "MAIL" else "bounced"
                raise _Failure(EmailResult(outcome, code, text)) from None
            raise _Failure(EmailResult("retry", code if code > 0 else None, text)) from None
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise _Failure(
                EmailResult("retry", None, f"{phase}: server disconnected: {exc}"), stale=phase == "MAIL"
            ) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            raise _Failure(
                EmailResult("retry", None, f"{phase}: {type(exc).__name__}: {exc}"),
                stale=phase == "MAIL" and isinstance(exc, ConnectionError),
            ) from None
        detail = f"{response.code} {response.message}"
        if refused:
            detail += " (refused: " + "; ".join(f"{e.recipient}: {e.code} {e.message}" for e in refused) + ")"
        return EmailResult("sent", response.code, detail)


def _without_bcc(msg: EmailMessage) -> EmailMessage:
    clone = copy.copy(msg)
    del clone["Bcc"]
    return clone


# --- retry schedule --------------------------------------------------------


def email_retry_delay(
    attempt: int,
    *,
    elapsed_s: float | None = None,
    base_s: float = 60.0,
    factor: float = 2.0,
    cap_s: float = 3600.0,
    jitter: float = 0.2,
    give_up_after_s: float = 5 * 86400.0,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before the next try after ``attempt`` failed tries
    (``attempt`` >= 1), or ``None`` to give up.

    Nominal delays are ``base_s * factor**(attempt-1)`` capped at ``cap_s``
    (1 min, 2, 4, ... then hourly); each is scaled by a random factor in
    ``[1 - jitter, 1]`` so retries spread out and never exceed the cap. The
    answer is ``None`` when ``elapsed_s`` (time since the first attempt;
    by default the sum of the nominal delays so far) plus this delay would
    pass ``give_up_after_s``.
    """
    if attempt < 1:
        raise ValueError("attempt counts failed tries and starts at 1")
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1)")

    def nominal(n: int) -> float:
        # n-th delay (1-based); exponent bounded to avoid float overflow
        return min(cap_s, base_s * factor ** min(n - 1, 64))

    if elapsed_s is None:
        elapsed_s = 0.0
        for n in range(1, attempt):
            d = nominal(n)
            if d >= cap_s:
                elapsed_s += cap_s * (attempt - n)
                break
            elapsed_s += d
    delay = nominal(attempt) * (1.0 - jitter * (rng or random).random())
    if elapsed_s + delay > give_up_after_s:
        return None
    return delay
