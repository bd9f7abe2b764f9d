import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from py_vapid import Vapid02

from retenshund.vapid import (
    b64url_decode,
    generate_vapid_keys,
    load_vapid_keys,
    origin_of,
    vapid_authorization,
)


def test_generated_keys_round_trip_through_pem():
    keys = generate_vapid_keys()
    assert keys.private_pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS8
    assert load_vapid_keys(keys.private_pem) == keys


def test_public_key_is_65_byte_uncompressed_point_in_unpadded_base64url():
    keys = generate_vapid_keys()
    assert "=" not in keys.public_key and "+" not in keys.public_key and "/" not in keys.public_key
    raw = b64url_decode(keys.public_key)
    assert len(raw) == 65 and raw[0] == 0x04
    private = serialization.load_pem_private_key(keys.private_pem.encode(), password=None)
    expected = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert raw == expected


def test_load_accepts_sec1_pem_and_normalises_to_pkcs8():
    private = ec.generate_private_key(ec.SECP256R1())
    sec1 = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption()).decode()
    keys = load_vapid_keys(sec1)
    assert keys.private_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert load_vapid_keys(keys.private_pem) == keys


@pytest.mark.parametrize("pem", [
    "not a pem",
    ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
])
def test_load_rejects_anything_but_a_p256_private_key(pem):
    with pytest.raises(ValueError, match="retenshund keys"):
        load_vapid_keys(pem)


@pytest.mark.parametrize("endpoint,origin", [
    ("https://fcm.googleapis.com/fcm/send/abc", "https://fcm.googleapis.com"),
    ("https://Updates.Push.Services.Mozilla.com:443/wpush/v2/x", "https://updates.push.services.mozilla.com"),
    ("http://127.0.0.1:8123/push/x", "http://127.0.0.1:8123"),
    ("https://user@example.com:8443/p", "https://example.com:8443"),
])
def test_origin_of_endpoint(endpoint, origin):
    assert origin_of(endpoint) == origin


def _split_header(header):
    scheme, _, rest = header.partition(" ")
    params = dict(p.strip().split("=", 1) for p in rest.split(","))
    return scheme, params


def test_authorization_header_carries_a_verifiable_es256_jwt():
    keys = generate_vapid_keys()
    now = time.time()
    header = vapid_authorization("https://push.example.net/send/1", keys, "mailto:ops@example.com", now=now)
    scheme, params = _split_header(header)
    assert scheme == "vapid" and params["k"] == keys.public_key
    head_b64, claims_b64, sig_b64 = params["t"].split(".")
    assert json.loads(b64url_decode(head_b64)) == {"typ": "JWT", "alg": "ES256"}
    assert json.loads(b64url_decode(claims_b64)) == {
        "aud": "https://push.example.net", "exp": int(now) + 12 * 3600, "sub": "mailto:ops@example.com"}
    sig = b64url_decode(sig_b64)
    assert len(sig) == 64
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(keys.public_key))
    public.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                  f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))


def test_authorization_header_verifies_with_py_vapid():
    keys = generate_vapid_keys()
    header = vapid_authorization("https://push.example.net/send/1", keys, "https://example.com/contact")
    assert Vapid02.verify(header.replace(", ", ","))
    scheme, params = _split_header(header)
    tampered = params["t"][:-4] + ("AAAA" if not params["t"].endswith("AAAA") else "BBBB")
    assert not Vapid02.verify(f"vapid t={tampered},k={params['k']}")


@pytest.mark.parametrize("subject", ["ops@example.com", "http://example.com", ""])
def test_subject_must_be_mailto_or_https(subject):
    with pytest.raises(ValueError, match="mailto"):
        vapid_authorization("https://push.example.net/x", generate_vapid_keys(), subject)


def test_token_lifetime_is_capped_at_24_hours():
    with pytest.raises(ValueError, match="lifetime"):
        vapid_authorization("https://push.example.net/x", generate_vapid_keys(), "mailto:a@b.c",
                            lifetime_s=24 * 3600 + 1)
