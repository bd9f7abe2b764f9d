"""VAPID (RFC 8292) keys and the ``Authorization`` header that identifies us to push services.

The private key is stored as a PKCS8 PEM string; the public key is handed to browsers as
``applicationServerKey``: base64url (no padding) of the 65-byte uncompressed P-256 point."""

from __future__ import annotations

import base64
import functools
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

#: Tokens we mint live this long; RFC 8292 forbids more than 24 hours.
DEFAULT_LIFETIME_S = 12 * 60 * 60
MAX_LIFETIME_S = 24 * 60 * 60

_JWT_HEADER = b'{"typ":"JWT","alg":"ES256"}'
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class VapidKeys:
    private_pem: str
    """PKCS8 PEM of the P-256 private key."""
    public_key: str
    """base64url (unpadded) of the 65-byte uncompressed public point (``applicationServerKey``)."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode base64url with or without padding (standard-alphabet input is accepted too)."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    raw = raw.strip().replace(b"+", b"-").replace(b"/", b"_").rstrip(b"=")
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def generate_vapid_keys() -> VapidKeys:
    """A fresh P-256 key pair."""
    return _keys_from_private(ec.generate_private_key(ec.SECP256R1()))


def load_vapid_keys(private_pem: str) -> VapidKeys:
    """Load a stored private key (PKCS8 or SEC1 PEM) and derive its public key.

    Raises ``ValueError`` saying how to fix it when the PEM is not a P-256 private key."""
    return _keys_from_private(_load_private(private_pem))


def origin_of(endpoint: str) -> str:
    """The Web origin (``scheme://host[:port]``, default port omitted) of a push endpoint:
    the ``aud`` claim a push service expects."""
    parts = urlsplit(endpoint)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError(f"push endpoint must be an http(s) URL, got {endpoint!r}")
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def vapid_claims(endpoint: str, subject: str, *, now: float | None = None,
                 lifetime_s: int = DEFAULT_LIFETIME_S) -> dict[str, str | int]:
    """The JWT claims for one push endpoint: ``aud`` (its origin), ``exp``, ``sub``."""
    if not subject.startswith(("mailto:", "https:")):
        raise ValueError(
            f"VAPID subject must be a mailto: or https: URL (set [push] subject, "
            f'e.g. "mailto:ops@example.com"), got {subject!r}'
        )
    if not 0 < lifetime_s <= MAX_LIFETIME_S:
        raise ValueError(f"VAPID token lifetime must be 1..{MAX_LIFETIME_S} s, got {lifetime_s}")
    issued = time.time() if now is None else now
    return {"aud": origin_of(endpoint), "exp": int(issued) + lifetime_s, "sub": subject}


def sign_jwt(claims: dict[str, str | int], keys: VapidKeys) -> str:
    """An ES256 JWT (compact serialization) over ``claims``."""
    body = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    signing_input = f"{b64url_encode(_JWT_HEADER)}.{b64url_encode(body)}"
    der = _load_private(keys.private_pem).sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def vapid_authorization(endpoint: str, keys: VapidKeys, subject: str, *, now: float | None = None,
                        lifetime_s: int = DEFAULT_LIFETIME_S) -> str:
    """The ``Authorization`` header value for a push to ``endpoint``:
    ``vapid t=<JWT>, k=<public key>`` (RFC 8292 section 3)."""
    token = sign_jwt(vapid_claims(endpoint, subject, now=now, lifetime_s=lifetime_s), keys)
    return f"vapid t={token}, k={keys.public_key}"


def _keys_from_private(key: ec.EllipticCurvePrivateKey) -> VapidKeys:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return VapidKeys(private_pem=pem, public_key=b64url_encode(point))


@functools.lru_cache(maxsize=16)
def _load_private(private_pem: str) -> ec.EllipticCurvePrivateKey:
    hint = "generate one with 'retenshund keys'"
    try:
        key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise ValueError(f"VAPID private key is not an unencrypted PEM private key ({exc}); {hint}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"VAPID private key must be an EC P-256 key; {hint}")
    return key
