"""The email channel against a real SMTP server (aiosmtpd on 127.0.0.1)."""

import asyncio
import base64
import email.utils
import random
import re

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from retenshund.channels.email import (
    EmailResult,
    EmailSettings,
    SmtpPool,
    build_email,
    build_email_async,
    email_retry_delay,
    message_id_header,
)
from tests.support.smtp_server import SmtpTestServer

UNSUB = "https://engage.example.com/u/" + "A" * 110  # long: must not be folded or encoded


@pytest.fixture
async def smtp_server():
    async with SmtpTestServer() as server:
        yield server


def settings_for(server, **kw):
    values = dict(
        host=server.host,
        port=server.port,
        starttls=False,
        from_address="news@example.com",
        from_name="Exämple News",
        timeout=5,
        pool_size=2,
        local_hostname="client.test",
    )
    values.update(kw)
    return EmailSettings(**values)


def make(settings, n=0, **kw):
    values = dict(
        settings=settings,
        to=f"user{n}@example.org",
        subject=f"Hello {n} — ünïcode",
        html=f"<html><body><p>Hi number {n} ✓</p></body></html>",
        text=f"Hi number {n} ✓\n",
        message_id=f"msg_{n:04d}",
        unsubscribe_url=UNSUB,
    )
    values.update(kw)
    return build_email(**values)


async def test_multipart_alternative_text_then_html(smtp_server):
    settings = settings_for(smtp_server)
    async with SmtpPool(settings) as pool:
        result = await pool.send(make(settings, 1))
    assert result.outcome == "sent" and result.code == 250, result
    (got,) = await smtp_server.wait_for(1)
    assert got.mail_from == "news@example.com"
    assert got.rcpt_tos == ["user1@example.org"]
    msg = got.message
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().replace("\r\n", "\n") == "Hi number 1 ✓\n"
    assert "<p>Hi number 1 ✓</p>" in parts[1].get_content()
    assert str(msg["Subject"]) == "Hello 1 — ünïcode"
    assert msg["From"].addresses[0].display_name == "Exämple News"


async def test_headers(smtp_server):
    settings = settings_for(smtp_server)
    msg = make(settings, 7, unsubscribe_mailto="unsubscribe@example.com")
    async with SmtpPool(settings) as pool:
        assert (await pool.send(msg)).outcome == "sent"
    (got,) = await smtp_server.wait_for(1)
    m = got.message
    assert m["Message-ID"] == "<msg_0007@example.com>"
    assert email.utils.parsedate_to_datetime(m["Date"]).tzinfo is not None
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(r"<([^>]+)>,\s*<mailto:unsubscribe@example\.com>", str(m["List-Unsubscribe"]))
    assert str(m["List-Unsubscribe"]).startswith(f"<{UNSUB}>")
    # on the wire: the URL verbatim, not RFC 2047 encoded or split
    assert f"List-Unsubscribe: <{UNSUB}>,".encode() in got.raw
    assert b"=?utf-8?q?=3Chttps" not in got.raw


def test_message_id_header_keeps_ids_distinct():
    assert message_id_header("msg_01AB-c", "example.com") == "<msg_01AB-c@example.com>"
    assert message_id_header("a.b", "x.org") != message_id_header("a_b", "x.org")
    assert re.fullmatch(r"<[A-Za-z0-9_=-]+@x\.org>", message_id_header("a b/ü.c", "x.org"))


def test_build_refuses_to_override_managed_headers():
    settings = EmailSettings(from_address="news@example.com")
    with pytest.raises(ValueError):
        make(settings, headers={"List-Unsubscribe": "<https://evil>"})
    msg = make(settings, headers={"Reply-To": "help@example.com"})
    assert msg["Reply-To"] == "help@example.com"


async def test_ten_messages_over_pool_of_two_use_at_most_two_connections(smtp_server):
    settings = settings_for(smtp_server, pool_size=2)
    async with SmtpPool(settings) as pool:
        results = await asyncio.gather(*(pool.send(make(settings, n)) for n in range(10)))
        assert [r.outcome for r in results] == ["sent"] * 10
        assert pool.connections_opened <= 2
    got = await smtp_server.wait_for(10)
    assert sorted(g.rcpt_tos[0] for g in got) == sorted(f"user{n}@example.org" for n in range(10))
    assert 1 <= smtp_server.connections <= 2


async def test_sequential_sends_reuse_one_connection(smtp_server):
    settings = settings_for(smtp_server, pool_size=4)
    async with SmtpPool(settings) as pool:
        for n in range(5):
            assert (await pool.send(make(settings, n))).outcome == "sent"
    assert smtp_server.connections == 1


@pytest.mark.parametrize(
    ("at", "code", "outcome"),
    [
        ("DATA", 451, "retry"),
        ("DATA", 421, "retry"),
        ("DATA", 550, "bounced"),
        ("DATA", 554, "bounced"),
        ("RCPT", 550, "bounced"),
        ("RCPT", 451, "retry"),
        ("RCPT", 421, "retry"),
        ("MAIL", 451, "retry"),
        ("MAIL", 553, "failed"),
    ],
)
async def test_server_answers_are_classified(smtp_server, at, code, outcome):
    settings = settings_for(smtp_server)
    smtp_server.answer(code, at=at)
    async with SmtpPool(settings) as pool:
        result = await pool.send(make(settings, 1))
        assert result.outcome == outcome, result
        assert result.code == code
        assert str(code) in result.detail and at in result.detail
        assert smtp_server.messages == []
        # the pool carries on: the next message goes through
        again = await pool.send(make(settings, 2))
        assert again.outcome == "sent", again
    (got,) = await smtp_server.wait_for(1)
    assert got.rcpt_tos == ["user2@example.org"]
    assert [(r.at, r.code) for r in smtp_server.refusals] == [(at, code)]


async def test_refused_for_one_of_two_recipients_is_sent_with_detail(smtp_server):
    settings = settings_for(smtp_server)
    smtp_server.answer(550, at="RCPT")
    async with SmtpPool(settings) as pool:
        result = await pool.send(make(settings, 1), recipients=["a@example.org", "b@example.org"])
    assert result.outcome == "sent"
    assert "a@example.org: 550" in result.detail
    (got,) = await smtp_server.wait_for(1)
    assert got.rcpt_tos == ["b@example.org"]


async def test_server_down_is_retry_and_pool_recovers(smtp_server):
    settings = settings_for(smtp_server)
    async with SmtpPool(settings) as pool:
        assert (await pool.send(make(settings, 1))).outcome == "sent"
        await smtp_server.stop()
        down = await pool.send(make(settings, 2))
        assert down.outcome == "retry" and down.code is None, down
        assert "connect" in down.detail
        await smtp_server.start()
        back = await pool.send(make(settings, 3))
        assert back.outcome == "sent", back
    got = await smtp_server.wait_for(2)
    assert [g.rcpt_tos[0] for g in got] == ["user1@example.org", "user3@example.org"]


async def test_connection_dropped_while_idle_is_replaced_without_a_retry(smtp_server):
    settings = settings_for(smtp_server)
    async with SmtpPool(settings) as pool:
        assert (await pool.send(make(settings, 1))).outcome == "sent"
        await smtp_server.drop_connections()
        result = await pool.send(make(settings, 2))
        assert result.outcome == "sent", result
        assert pool.connections_opened == 2
    await smtp_server.wait_for(2)
    assert smtp_server.connections == 2


async def test_stale_pooled_connection_is_replaced_without_a_retry(smtp_server):
    settings = settings_for(smtp_server)
    async with SmtpPool(settings) as pool:
        assert (await pool.send(make(settings, 1))).outcome == "sent"
        smtp_server.drop_connections_now()  # the pool still believes the connection is up
        result = await pool.send(make(settings, 2))
        assert result.outcome == "sent", result
        assert pool.connections_opened == 2
    await smtp_server.wait_for(2)


async def test_bad_recipient_address_is_a_bounce_without_talking_to_the_server(smtp_server):
    settings = settings_for(smtp_server)
    msg = make(settings, 1)
    async with SmtpPool(settings) as pool:
        result = await pool.send(msg, recipients=["not-an-address"])
    assert result == EmailResult("bounced", None, result.detail)
    assert smtp_server.connections == 0


async def test_dkim_signature_verifies_and_covers_list_unsubscribe(smtp_server):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    txt = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)
    asked = []

    def dnsfunc(name, timeout=5):
        asked.append(name)
        return txt if name == b"sel1._domainkey.example.com." else None

    settings = settings_for(smtp_server, dkim_selector="sel1", dkim_private_key=private_pem)
    msg = await build_email_async(
        settings=settings,
        to="user@example.org",
        subject="Signed ✓",
        html="<p>signed</p>",
        text="signed\n",
        message_id="msg_dkim",
        unsubscribe_url=UNSUB,
        unsubscribe_mailto="unsubscribe@example.com",
    )
    assert list(msg.keys())[0] == "DKIM-Signature"
    async with SmtpPool(settings) as pool:
        assert (await pool.send(msg)).outcome == "sent"
    (got,) = await smtp_server.wait_for(1)

    assert dkim.verify(got.raw, dnsfunc=dnsfunc) is True
    assert asked == [b"sel1._domainkey.example.com."]

    fields = dict(
        (k.strip(), v.strip())
        for k, v in (t.split("=", 1) for t in re.sub(r"\s+", "", str(got.message["DKIM-Signature"])).split(";") if t)
    )
    signed = fields["h"].lower().split(":")
    assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed
    assert {"from", "subject", "date", "message-id", "to"} <= set(signed)
    assert fields["d"] == "example.com" and fields["s"] == "sel1"

    # the headers really are covered: changing them breaks the signature
    tampered = got.raw.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Two-Clicks")
    assert tampered != got.raw
    assert dkim.verify(tampered, dnsfunc=dnsfunc) is False
    added = got.raw.replace(b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://evil.example/u>\r\n\r\n", 1)
    assert dkim.verify(added, dnsfunc=dnsfunc) is False


async def test_send_preserialized_bytes(smtp_server):
    settings = settings_for(smtp_server)
    msg = make(settings, 3)
    data = await asyncio.to_thread(msg.as_bytes)
    async with SmtpPool(settings) as pool:
        with pytest.raises(ValueError):
            await pool.send(data)
        assert (await pool.send(data, recipients="user3@example.org")).outcome == "sent"
    (got,) = await smtp_server.wait_for(1)
    assert got.raw == data
    assert got.rcpt_tos == ["user3@example.org"]


def test_settings_from_config_mapping():
    s = EmailSettings.from_mapping(
        {"host": "smtp.example.com", "port": "2525", "starttls": "false", "from": "Acme <news@acme.test>"}
    )
    assert (s.host, s.effective_port, s.starttls, s.from_address, s.from_name) == (
        "smtp.example.com", 2525, False, "news@acme.test", "Acme",
    )
    assert EmailSettings(tls=True).effective_port == 465
    assert EmailSettings().effective_port == 587
    with pytest.raises(ValueError):
        EmailSettings(pool_size=0)
    with pytest.raises(ValueError, match="dkim_private_key"):
        EmailSettings(dkim_selector="s", dkim_private_key="-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----")


def test_retry_delay_schedule():
    rng = random.Random(7)
    first = email_retry_delay(1, rng=rng)
    assert 48 <= first <= 60
    nominal = [email_retry_delay(n, jitter=0) for n in range(1, 10)]
    assert nominal[:7] == [60, 120, 240, 480, 960, 1920, 3600]
    assert nominal[7:] == [3600, 3600]
    for n in range(1, 200):
        d = email_retry_delay(n, rng=rng)
        if d is None:
            break
        assert d <= 3600
    # 5 days of (mostly hourly) retries, then give up
    assert 110 < n < 130
    assert email_retry_delay(n + 1, rng=rng) is None
    # parameters, not constants
    assert email_retry_delay(1, base_s=10, jitter=0) == 10
    assert email_retry_delay(3, base_s=10, cap_s=25, jitter=0) == 25
    assert email_retry_delay(2, elapsed_s=3599, give_up_after_s=3600) is None
    assert email_retry_delay(2, elapsed_s=0, give_up_after_s=3600, jitter=0) == 120
    with pytest.raises(ValueError):
        email_retry_delay(0)
