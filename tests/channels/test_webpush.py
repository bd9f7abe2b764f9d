import asyncio
import email.utils
import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from py_vapid import Vapid02
from pywebpush import WebPusher

from retenshund.channels.webpush import (
    MAX_ENCRYPTED_BYTES,
    PushResult,
    new_push_session,
    parse_retry_after,
    push_payload,
    send_webpush,
)
from retenshund.vapid import b64url_encode, generate_vapid_keys, sign_jwt, vapid_authorization
from tests.support.push_service import make_subscription, running_push_service

SUBJECT = "mailto:ops@example.com"


@pytest.fixture(scope="module")
def keys():
    return generate_vapid_keys()


@pytest.fixture
async def service():
    async with running_push_service() as svc:
        yield svc


@pytest.fixture
def session():
    s = new_push_session()
    yield s
    s.close()


async def send(subscription, payload, keys, session, **kw):
    return await send_webpush(subscription, payload, keys, SUBJECT, session=session, **kw)


# --- delivery -----------------------------------------------------------------------------

async def test_payload_arrives_decrypted_byte_identical(service, keys, session):
    subscription, _ = make_subscription(service)
    payload = push_payload("Your cart misses you", "3 items left", "https://shop.example/cart",
                           None, "msg_123")
    result = await send(subscription, payload, keys, session)
    assert result == PushResult("delivered", 201, None, result.detail)
    [push] = await service.wait_for(1)
    assert push.payload == payload
    assert push.endpoint_id == subscription["endpoint"].rsplit("/", 1)[1]


async def test_binary_payload_arrives_byte_identical(service, keys, session):
    subscription, _ = make_subscription(service)
    payload = os.urandom(1000) + b"\x00\x00\x02\x00"  # trailing bytes that look like padding
    assert (await send(subscription, payload, keys, session)).outcome == "delivered"
    [push] = await service.wait_for(1)
    assert push.payload == payload


async def test_largest_payload_that_fits_is_delivered_and_one_more_byte_is_not(service, keys, session):
    subscription, _ = make_subscription(service)
    fits = os.urandom(MAX_ENCRYPTED_BYTES - 86 - 1 - 16)  # header, padding delimiter, GCM tag
    assert (await send(subscription, fits, keys, session)).outcome == "delivered"
    [push] = await service.wait_for(1)
    assert push.payload == fits
    too_big = await send(subscription, fits + b"x", keys, session)
    assert too_big.outcome == "too_large"
    assert len(service.attempts) == 1


async def test_vapid_claims_name_the_service_origin_our_subject_and_expire_within_12h(service, keys, session):
    subscription, _ = make_subscription(service)
    before = time.time()
    await send(subscription, b"hi", keys, session)
    [push] = await service.wait_for(1)
    assert push.jwt_claims["aud"] == service.origin
    assert push.jwt_claims["sub"] == SUBJECT
    assert before < push.jwt_claims["exp"] <= time.time() + 12 * 3600
    assert push.headers["authorization"].endswith(f"k={keys.public_key}")


async def test_ttl_and_urgency_headers_arrive(service, keys, session):
    subscription, _ = make_subscription(service)
    await send(subscription, b"hi", keys, session, ttl=3600, urgency="high")
    await send(subscription, b"hi", keys, session)
    first, second = await service.wait_for(2)
    assert (first.headers["ttl"], first.headers["urgency"]) == ("3600", "high")
    assert (second.headers["ttl"], second.headers["urgency"]) == ("86400", "normal")
    assert first.headers["content-encoding"] == "aes128gcm"


async def test_concurrent_sends_all_arrive_intact(service, keys, session):
    subs = [make_subscription(service)[0] for _ in range(20)]
    payloads = [push_payload(f"t{i}", f"b{i}", None, None, f"m{i}") for i in range(20)]
    results = await asyncio.gather(*(send(s, p, keys, session) for s, p in zip(subs, payloads)))
    assert {r.outcome for r in results} == {"delivered"}
    received = await service.wait_for(20)
    by_endpoint = {p.endpoint_id: p.payload for p in received}
    assert [by_endpoint[s["endpoint"].rsplit("/", 1)[1]] for s in subs] == payloads


async def test_work_runs_in_the_given_executor_not_on_the_loop(service, keys, session):
    threads = []

    class RecordingExecutor(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            def wrapped():
                threads.append(threading.current_thread().name)
                return fn(*args, **kwargs)
            return super().submit(wrapped)

    subscription, _ = make_subscription(service)
    with RecordingExecutor(max_workers=2, thread_name_prefix="push-worker") as executor:
        result = await send(subscription, b"hi", keys, session, executor=executor)
    assert result.outcome == "delivered"
    assert len(threads) == 1 and threads[0].startswith("push-worker")


async def test_works_without_a_shared_session(service, keys):
    subscription, _ = make_subscription(service)
    result = await send_webpush(subscription, b"solo", keys, SUBJECT)
    assert result.outcome == "delivered"
    assert (await service.wait_for(1))[0].payload == b"solo"


async def test_subscription_restricted_to_our_key_accepts_it(service, keys, session):
    subscription, _ = make_subscription(service, application_server_key=keys.public_key)
    assert (await send(subscription, b"hi", keys, session)).outcome == "delivered"


# --- answers from the push service --------------------------------------------------------

@pytest.mark.parametrize("status", [404, 410])
async def test_404_and_410_mean_gone(service, keys, session, status):
    subscription, _ = make_subscription(service)
    service.respond(None, status)
    result = await send(subscription, b"hi", keys, session)
    assert (result.outcome, result.status_code, result.retry_after_s) == ("gone", status, None)
    assert service.received == []


async def test_unknown_endpoint_is_gone(service, keys, session):
    subscription, _ = make_subscription(service)
    subscription["endpoint"] = f"{service.origin}/push/never-issued"
    result = await send(subscription, b"hi", keys, session)
    assert (result.outcome, result.status_code) == ("gone", 404)


async def test_429_retry_after_seconds(service, keys, session):
    subscription, _ = make_subscription(service)
    service.respond(subscription["endpoint"].rsplit("/", 1)[1], 429, {"Retry-After": "7"})
    result = await send(subscription, b"hi", keys, session)
    assert (result.outcome, result.status_code, result.retry_after_s) == ("retry", 429, 7.0)
    # the script was used up: the next push is accepted
    assert (await send(subscription, b"again", keys, session)).outcome == "delivered"
    assert [p.payload for p in await service.wait_for(1)] == [b"again"]


async def test_429_retry_after_http_date(service, keys, session):
    subscription, _ = make_subscription(service)
    service.respond(None, 429, {"Retry-After": email.utils.formatdate(time.time() + 120, usegmt=True)})
    result = await send(subscription, b"hi", keys, session)
    assert result.outcome == "retry"
    assert 110 <= result.retry_after_s <= 121


async def test_413_is_too_large_without_retry(service, keys, session):
    subscription, _ = make_subscription(service)
    service.respond(None, 413)
    result = await send(subscription, b"hi", keys, session)
    assert (result.outcome, result.status_code, result.retry_after_s) == ("too_large", 413, None)


@pytest.mark.parametrize("status,headers,retry_after", [(500, {}, None), (503, {"Retry-After": "30"}, 30.0)])
async def test_5xx_is_retried(service, keys, session, status, headers, retry_after):
    subscription, _ = make_subscription(service)
    service.respond(None, status, headers, times=2)
    first = await send(subscription, b"1", keys, session)
    second = await send(subscription, b"2", keys, session)
    third = await send(subscription, b"3", keys, session)
    assert [first.outcome, second.outcome, third.outcome] == ["retry", "retry", "delivered"]
    assert (first.status_code, first.retry_after_s) == (status, retry_after)


async def test_other_4xx_fails(service, keys, session):
    subscription, _ = make_subscription(service)
    service.respond(None, 400)
    result = await send(subscription, b"hi", keys, session)
    assert (result.outcome, result.status_code) == ("failed", 400)


async def test_401_is_a_logged_vapid_error(service, keys, session, caplog):
    subscription, _ = make_subscription(service)
    service.respond(None, 401)
    with caplog.at_level(logging.ERROR, logger="retenshund.channels.webpush"):
        result = await send(subscription, b"hi", keys, session)
    assert (result.outcome, result.status_code) == ("vapid_error", 401)
    assert any("VAPID" in r.getMessage() for r in caplog.records)


async def test_push_signed_with_another_vapid_key_is_refused_with_403(service, keys, session):
    subscription, _ = make_subscription(service, application_server_key=generate_vapid_keys().public_key)
    result = await send(subscription, b"hi", keys, session)
    assert (result.outcome, result.status_code) == ("vapid_error", 403)
    [attempt] = service.attempts
    assert "applicationServerKey" in attempt.reason
    assert service.received == []


# --- refused before or without the network ------------------------------------------------

async def test_oversize_payload_is_too_large_and_never_sent(service, keys, session):
    subscription, _ = make_subscription(service)
    result = await send(subscription, os.urandom(5000), keys, session)
    assert result.outcome == "too_large" and result.status_code is None
    assert "4096" in result.detail
    assert service.attempts == []


async def test_invalid_subscription_keys_fail_without_a_request(service, keys, session):
    subscription, _ = make_subscription(service)
    subscription["keys"]["p256dh"] = b64url_encode(b"\x04" + b"\x01" * 64)  # not on the curve
    result = await send(subscription, b"hi", keys, session)
    assert result.outcome == "failed" and "invalid subscription" in result.detail
    assert service.attempts == []


@pytest.mark.parametrize("endpoint", ["ftp://push.example/1", "not a url", None])
async def test_invalid_endpoint_fails(keys, session, endpoint):
    result = await send({"endpoint": endpoint, "keys": {}}, b"hi", keys, session)
    assert result.outcome == "failed" and "endpoint" in result.detail


async def test_unreachable_service_is_retried(keys, session):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subscription, _ = make_subscription(_Offline(f"http://127.0.0.1:{port}"))
    result = await send(subscription, b"hi", keys, session, timeout=2)
    assert result.outcome == "retry" and result.status_code is None
    assert "could not reach" in result.detail


async def test_silent_service_times_out_and_is_retried(keys, session):
    with socket.socket() as s:  # listens but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        subscription, _ = make_subscription(_Offline(f"http://127.0.0.1:{s.getsockname()[1]}"))
        started = time.monotonic()
        result = await send(subscription, b"hi", keys, session, timeout=0.3)
    assert result.outcome == "retry" and "did not answer" in result.detail
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("kwargs,match", [
    ({"urgency": "urgent"}, "urgency"),
    ({"ttl": -1}, "ttl"),
])
async def test_bad_arguments_raise(keys, kwargs, match):
    with pytest.raises(ValueError, match=match):
        await send_webpush({"endpoint": "https://x.example/1", "keys": {}}, b"hi", keys, SUBJECT, **kwargs)


async def test_empty_payload_raises(keys):
    with pytest.raises(ValueError, match="empty"):
        await send_webpush({"endpoint": "https://x.example/1", "keys": {}}, b"", keys, SUBJECT)


class _Offline:
    """Enough of a PushService for make_subscription when nothing should answer."""

    def __init__(self, origin):
        self.origin = origin

    def register(self, private_key, auth_secret, application_server_key=None):
        return f"{self.origin}/push/x"


# --- the push service really checks (these prove the assertions above mean something) ----

def _encrypted(subscription, payload=b"hello"):
    return WebPusher(subscription).encode(payload, "aes128gcm")["body"]


def _tamper_claims(header):
    scheme, _, rest = header.partition(" ")
    params = dict(p.strip().split("=", 1) for p in rest.split(","))
    head, _claims, sig = params["t"].split(".")
    forged = b64url_encode(json.dumps({"aud": "x", "exp": 2**40, "sub": "mailto:evil@example.com"}).encode())
    return f"vapid t={head}.{forged}.{sig}, k={params['k']}"


def _swap_key(header):
    return header.rsplit("k=", 1)[0] + f"k={generate_vapid_keys().public_key}"


def _py_vapid_header(keys, claims):
    return Vapid02.from_pem(keys.private_pem.encode()).sign(claims)["Authorization"]


BASE_HEADERS = {"TTL": "60", "Content-Encoding": "aes128gcm"}


@pytest.mark.parametrize("case,status,reason", [
    ("tampered_jwt", 401, "bad JWT signature"),
    ("other_key", 401, "bad JWT signature"),
    ("expired", 401, "expired"),
    ("wrong_aud", 401, "aud"),
    ("exp_beyond_24h", 401, "24 hours"),
    ("http_sub", 401, "sub"),
    ("no_auth", 401, "missing Authorization"),
    ("no_ttl", 400, "TTL"),
    ("aesgcm_encoding", 400, "Content-Encoding"),
    ("corrupt_body", 400, "decryption failed"),
])
async def test_service_refuses_invalid_pushes(service, keys, case, status, reason):
    subscription, _ = make_subscription(service)
    endpoint = subscription["endpoint"]
    body = _encrypted(subscription)
    headers = {**BASE_HEADERS, "Authorization": vapid_authorization(endpoint, keys, SUBJECT)}
    now = int(time.time())
    match case:
        case "tampered_jwt":
            headers["Authorization"] = _tamper_claims(headers["Authorization"])
        case "other_key":
            headers["Authorization"] = _swap_key(headers["Authorization"])
        case "expired":
            headers["Authorization"] = vapid_authorization(endpoint, keys, SUBJECT, now=now - 13 * 3600)
        case "wrong_aud":
            headers["Authorization"] = vapid_authorization("https://elsewhere.example/x", keys, SUBJECT)
        case "exp_beyond_24h":
            headers["Authorization"] = _py_vapid_header(
                keys, {"aud": service.origin, "exp": now + 25 * 3600, "sub": SUBJECT})
        case "http_sub":
            # validly signed, but a sub py_vapid and vapid_authorization would both refuse to sign
            headers["Authorization"] = _signed(keys, {"aud": service.origin, "exp": now + 3600,
                                                      "sub": "http://example.com"})
        case "no_auth":
            del headers["Authorization"]
        case "no_ttl":
            del headers["TTL"]
        case "aesgcm_encoding":
            headers["Content-Encoding"] = "aesgcm"
        case "corrupt_body":
            body = body[:-1] + bytes([body[-1] ^ 1])
    async with httpx.AsyncClient() as client:
        response = await client.post(endpoint, content=body, headers=headers)
    assert response.status_code == status
    [attempt] = service.attempts
    assert reason in attempt.reason and attempt.status == status
    assert service.received == []


async def test_service_accepts_the_same_push_unmodified(service, keys):
    """Control for the refusals above: the untampered request is accepted."""
    subscription, _ = make_subscription(service)
    headers = {**BASE_HEADERS, "Authorization": vapid_authorization(subscription["endpoint"], keys, SUBJECT)}
    async with httpx.AsyncClient() as client:
        response = await client.post(subscription["endpoint"], content=_encrypted(subscription), headers=headers)
    assert response.status_code == 201
    [push] = await service.wait_for(1)
    assert push.payload == b"hello"


async def test_service_accepts_py_vapid_tokens(service, keys):
    """An independent VAPID implementation is accepted, so the service is not just checking our own quirks."""
    subscription, _ = make_subscription(service)
    auth = _py_vapid_header(keys, {"aud": service.origin, "exp": int(time.time()) + 3600, "sub": SUBJECT})
    async with httpx.AsyncClient() as client:
        response = await client.post(subscription["endpoint"], content=_encrypted(subscription, b"x"),
                                     headers={**BASE_HEADERS, "Authorization": auth})
    assert response.status_code == 201


def _signed(keys, claims):
    return f"vapid t={sign_jwt(claims, keys)}, k={keys.public_key}"


# --- pure helpers -------------------------------------------------------------------------

def test_push_payload_is_compact_json_without_nones():
    raw = push_payload("Hi", None, "https://x.example/a", None, "m1")
    assert raw == b'{"title":"Hi","url":"https://x.example/a","message_id":"m1"}'
    assert json.loads(push_payload("T", "B", "U", "I", "M")) == {
        "title": "T", "body": "B", "url": "U", "icon": "I", "message_id": "M"}


@pytest.mark.parametrize("value,expected", [
    ("7", 7.0), (" 120 ", 120.0), (None, None), ("", None), ("soon", None), ("-5", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_relative_to_now():
    now = 1_780_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now=now) == 90.0
