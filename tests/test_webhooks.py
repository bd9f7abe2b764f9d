"""The pure part of inbound webhooks: settings, signatures, payload -> event.

Signatures here are computed with hmac/hashlib directly from the providers'
documented schemes, not with the module under test."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from retenshund import webhooks as wh
from retenshund.config import ConfigError
from retenshund.errors import ApiError

NOW_MS = 1_780_000_000_000
NOW_S = NOW_MS // 1000
STRIPE_SECRET = "whsec_test_stripe_secret"
STANDARD_KEY = bytes(range(32))
STANDARD_SECRET = "whsec_" + base64.b64encode(STANDARD_KEY).decode()

CARD_MAP = {"type": "customer.source.expiring", "event": "card_expiring", "user_trait": "stripe_customer_id",
            "user_path": "data.object.customer",
            "properties": {"last4": "data.object.last4", "exp_month": "data.object.exp_month"}}


def settings(**sources: dict[str, Any]) -> dict[str, wh.Source]:
    return wh.parse_settings(sources, env={})


def stripe_source() -> wh.Source:
    return settings(stripe={"kind": "stripe", "secret": STRIPE_SECRET, "map": [CARD_MAP]})["stripe"]


def stripe_header(body: bytes, t: int = NOW_S, secret: str = STRIPE_SECRET) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def standard_sig(msg_id: str, ts: int, body: bytes, key: bytes = STANDARD_KEY) -> str:
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


# -- settings -------------------------------------------------------------------


def test_a_full_stripe_source_parses() -> None:
    source = stripe_source()
    assert source.kind == "stripe" and source.key == STRIPE_SECRET.encode()
    rule = source.maps["customer.source.expiring"]
    assert rule.event == "card_expiring" and rule.user_trait == "stripe_customer_id"
    assert rule.user_path == ("data", "object", "customer")
    assert rule.properties == {"last4": ("data", "object", "last4"), "exp_month": ("data", "object", "exp_month")}
    assert wh.trait_names({"stripe": source}) == ["stripe_customer_id"]


def test_standard_secret_is_base64_after_the_prefix() -> None:
    source = settings(app={"kind": "standard", "secret": STANDARD_SECRET})["app"]
    assert source.key == STANDARD_KEY and source.maps == {}


def test_secret_can_come_from_an_environment_variable() -> None:
    sources = wh.parse_settings({"s": {"kind": "stripe", "secret_env": "STRIPE_WH"}}, env={"STRIPE_WH": "whsec_x"})
    assert sources["s"].key == b"whsec_x"
    with pytest.raises(ConfigError, match=r"webhooks\.s\.secret_env: environment variable STRIPE_WH is not set"):
        wh.parse_settings({"s": {"kind": "stripe", "secret_env": "STRIPE_WH"}}, env={})


@pytest.mark.parametrize("raw, message", [
    ({"Bad Name": {"kind": "stripe", "secret": "x"}}, r"webhooks\.Bad Name: a source name"),
    ({"unmatched": {"kind": "stripe", "secret": "x"}}, r"webhooks\.unmatched: .* cannot be used"),
    ({"s": "whsec"}, r"webhooks\.s: must be a table"),
    ({"s": {"kind": "paypal", "secret": "x"}}, r"webhooks\.s\.kind: must be \"stripe\""),
    ({"s": {"kind": "stripe"}}, r"webhooks\.s\.secret: set the signing secret"),
    ({"s": {"kind": "stripe", "secret": "x", "secret_env": "Y"}}, r"webhooks\.s\.secret: .*not both"),
    ({"s": {"kind": "standard", "secret": "whsec_not base64!"}}, r"webhooks\.s\.secret: a Standard Webhooks secret"),
    ({"s": {"kind": "stripe", "secret": "x", "maps": []}}, r"webhooks\.s\.maps: unknown key; allowed here"),
    ({"s": {"kind": "stripe", "secret": "x", "map": {"type": "a"}}}, r"webhooks\.s\.map: write each entry as"),
    ({"s": {"kind": "stripe", "secret": "x", "map": [{"event": "e", "user_id_path": "a"}]}},
     r"webhooks\.s\.map\[0\]\.type: "),
    ({"s": {"kind": "stripe", "secret": "x", "map": [{"type": "t", "user_id_path": "a"}]}},
     r"webhooks\.s\.map\[0\]\.event: "),
    ({"s": {"kind": "stripe", "secret": "x", "map": [{"type": "t", "event": "e"}]}},
     r"webhooks\.s\.map\[0\]\.user_trait: say how to find the user"),
    ({"s": {"kind": "stripe", "secret": "x", "map": [{"type": "t", "event": "e", "user_trait": "c"}]}},
     r"webhooks\.s\.map\[0\]\.user_path: required with user_trait"),
    ({"s": {"kind": "stripe", "secret": "x",
            "map": [{"type": "t", "event": "e", "user_trait": "x'); DROP TABLE profiles; --", "user_path": "a"}]}},
     r"webhooks\.s\.map\[0\]\.user_trait: a trait name"),
    ({"s": {"kind": "stripe", "secret": "x",
            "map": [{"type": "t", "event": "e", "user_trait": "c", "user_path": "a", "user_id_path": "b"}]}},
     r"webhooks\.s\.map\[0\]\.user_id_path: use either"),
    ({"s": {"kind": "stripe", "secret": "x", "map": [{"type": "t", "event": "e", "user_id_path": "a..b"}]}},
     r"webhooks\.s\.map\[0\]\.user_id_path: a dotted path"),
    ({"s": {"kind": "stripe", "secret": "x",
            "map": [{"type": "t", "event": "e", "user_id_path": "a", "properties": {"webhook_source": "b"}}]}},
     r"webhooks\.s\.map\[0\]\.properties\.webhook_source: this name is set by retenshun"),
    ({"s": {"kind": "stripe", "secret": "x", "map": [{"type": "t", "event": "e", "user_id_path": "a"},
                                                    {"type": "t", "event": "f", "user_id_path": "a"}]}},
     r"webhooks\.s\.map\[1\]\.type: 't' is mapped twice"),
])
def test_bad_settings_name_the_key_and_the_fix(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        wh.parse_settings(raw, env={})


# -- Stripe signatures ------------------------------------------------------------


def test_stripe_signature_of_the_raw_body_verifies() -> None:
    body = b'{"id": "evt_1", "type": "x"}'
    wh.verify_stripe(stripe_header(body), body, STRIPE_SECRET.encode(), NOW_MS)


def test_stripe_accepts_any_of_several_v1_signatures() -> None:
    body = b'{"id": "evt_1"}'
    good = stripe_header(body).split(",v1=")[1]
    header = f"t={NOW_S},v1={'0' * 64},v0=abc,v1={good}"
    wh.verify_stripe(header, body, STRIPE_SECRET.encode(), NOW_MS)


@pytest.mark.parametrize("header, code", [
    (None, "missing_signature"),
    ("", "missing_signature"),
    ("v1=abc", "invalid_signature"),
    (f"t={NOW_S}", "invalid_signature"),
    (f"t=soon,v1={'0' * 64}", "invalid_signature"),
    (f"t={NOW_S},v1={'0' * 64}", "invalid_signature"),
    (f"t={NOW_S},v1=\u00e9\u00e9", "invalid_signature"),
])
def test_stripe_bad_headers_are_refused(header: str | None, code: str) -> None:
    with pytest.raises(wh.SignatureError) as exc:
        wh.verify_stripe(header, b"{}", STRIPE_SECRET.encode(), NOW_MS)
    assert exc.value.code == code


def test_stripe_tampered_body_or_other_secret_is_refused() -> None:
    body = b'{"id": "evt_1", "amount": 100}'
    header = stripe_header(body)
    with pytest.raises(wh.SignatureError, match="no signature matches"):
        wh.verify_stripe(header, body.replace(b"100", b"999"), STRIPE_SECRET.encode(), NOW_MS)
    with pytest.raises(wh.SignatureError, match="no signature matches"):
        wh.verify_stripe(header, body, b"whsec_other", NOW_MS)


@pytest.mark.parametrize("offset_s, ok", [(-300, True), (300, True), (-301, False), (301, False)])
def test_stripe_tolerance_is_five_minutes_both_ways(offset_s: int, ok: bool) -> None:
    body = b"{}"
    header = stripe_header(body, t=NOW_S + offset_s)
    if ok:
        wh.verify_stripe(header, body, STRIPE_SECRET.encode(), NOW_MS)
    else:
        with pytest.raises(wh.SignatureError) as exc:
            wh.verify_stripe(header, body, STRIPE_SECRET.encode(), NOW_MS)
        assert exc.value.code == "stale_signature"


# -- Standard Webhooks signatures ---------------------------------------------------


def test_standard_signature_verifies_and_returns_the_header_id() -> None:
    source = settings(app={"kind": "standard", "secret": STANDARD_SECRET})["app"]
    body = b'{"type": "invoice.paid"}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW_S),
               "webhook-signature": f"v1a,xyz {standard_sig('msg_1', NOW_S, body)}"}
    assert wh.verify(source, headers, body, NOW_MS) == "msg_1"
    svix = {"svix-id": "msg_2", "svix-timestamp": str(NOW_S), "svix-signature": standard_sig("msg_2", NOW_S, body)}
    assert wh.verify(source, svix, body, NOW_MS) == "msg_2"


@pytest.mark.parametrize("change, code", [
    ({"webhook-id": "msg_other"}, "invalid_signature"),
    ({"webhook-timestamp": str(NOW_S - 301)}, "invalid_signature"),  # the timestamp is signed too
    ({"webhook-signature": "v2,abc"}, "invalid_signature"),
    ({"webhook-timestamp": "yesterday"}, "invalid_signature"),
    ({"webhook-id": ""}, "missing_signature"),
])
def test_standard_bad_headers_are_refused(change: dict[str, str], code: str) -> None:
    body = b"{}"
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW_S),
               "webhook-signature": standard_sig("msg_1", NOW_S, body)} | change
    with pytest.raises(wh.SignatureError) as exc:
        wh.verify_standard(headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"],
                           body, STANDARD_KEY, NOW_MS)
    assert exc.value.code == code


def test_standard_stale_timestamp_is_refused_even_when_signed() -> None:
    ts = NOW_S - 400
    with pytest.raises(wh.SignatureError) as exc:
        wh.verify_standard("msg_1", str(ts), standard_sig("msg_1", ts, b"{}"), b"{}", STANDARD_KEY, NOW_MS)
    assert exc.value.code == "stale_signature"


# -- payload -> event ---------------------------------------------------------------


def card_payload(customer: Any = "cus_1") -> dict[str, Any]:
    return {"id": "evt_1", "type": "customer.source.expiring",
            "data": {"object": {"customer": customer, "last4": "4242", "exp_month": 12}}}


def test_a_mapped_type_becomes_the_event_with_its_properties() -> None:
    m = wh.map_payload(stripe_source(), "evt_1", card_payload())
    assert isinstance(m, wh.Mapped)
    assert (m.event, m.user_trait, m.lookup_value, m.user_id, m.problem) == (
        "card_expiring", "stripe_customer_id", "cus_1", None, None)
    assert m.properties == {"last4": "4242", "exp_month": 12, "webhook_source": "stripe", "webhook_event_id": "evt_1"}


def test_an_expanded_stripe_object_stands_for_its_id() -> None:
    m = wh.map_payload(stripe_source(), "evt_1", card_payload({"id": "cus_9", "object": "customer"}))
    assert isinstance(m, wh.Mapped) and m.lookup_value == "cus_9"


def test_missing_user_field_is_a_problem_and_missing_properties_are_null() -> None:
    payload = {"type": "customer.source.expiring", "data": {"object": {"last4": "1111"}}}
    m = wh.map_payload(stripe_source(), "evt_2", payload)
    assert isinstance(m, wh.Mapped)
    assert m.lookup_value is None and m.problem == "data.object.customer is missing or not a string or number"
    assert m.properties["last4"] == "1111" and m.properties["exp_month"] is None


def test_user_id_path_names_the_user_directly_and_paths_index_lists() -> None:
    source = settings(app={"kind": "standard", "secret": STANDARD_SECRET, "map": [
        {"type": "seat.removed", "event": "team_member_left", "user_id_path": "data.members.1.id",
         "properties": {"team": "data.team"}}]})["app"]
    payload = {"type": "seat.removed", "data": {"team": "acme", "members": [{"id": "a"}, {"id": 42}]}}
    m = wh.map_payload(source, "msg_1", payload)
    assert isinstance(m, wh.Mapped) and m.user_id == "42" and m.properties["team"] == "acme"
    m = wh.map_payload(source, "msg_2", {"type": "seat.removed", "data": {"members": []}})
    assert isinstance(m, wh.Mapped) and m.user_id is None and m.problem is not None


def test_unmapped_or_untyped_payloads_are_ignored_with_a_reason() -> None:
    ignored = wh.map_payload(stripe_source(), "evt_3", {"type": "charge.succeeded"})
    assert isinstance(ignored, wh.Ignored) and ignored.reason == "no map for type charge.succeeded"
    untyped = wh.map_payload(stripe_source(), "evt_4", {"data": {}})
    assert isinstance(untyped, wh.Ignored) and untyped.type is None


def test_event_id_comes_from_the_header_or_the_stripe_payload() -> None:
    assert wh.event_id(stripe_source(), {"id": "evt_7"}, None) == "evt_7"
    assert wh.event_id(stripe_source(), {"id": "evt_7"}, "msg_1") == "msg_1"
    with pytest.raises(ApiError) as exc:
        wh.event_id(stripe_source(), {"type": "x"}, None)
    assert exc.value.status == 400


def test_decode_payload_wants_a_json_object() -> None:
    assert wh.decode_payload(b'{"a": 1}') == {"a": 1}
    for body in (b"[1]", b"{not json", b""):
        with pytest.raises(ApiError) as exc:
            wh.decode_payload(body)
        assert exc.value.status == 400 and exc.value.code == "invalid_json"
