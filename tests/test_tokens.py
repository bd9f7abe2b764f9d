"""User tokens: HS256 pinned, expiry enforced, forgeries refused."""

from __future__ import annotations

import base64
import json

import pytest

from retenshund import tokens

KEY = "a-signing-secret-for-tests"


def b64(d: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def test_round_trip() -> None:
    t = tokens.mint(KEY, "u1", 60, now=1000)
    assert tokens.verify(KEY, t, now=1010)["sub"] == "u1"


def test_expired_is_refused() -> None:
    t = tokens.mint(KEY, "u1", 60, now=1000)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(KEY, t, now=1000 + 60 + 31)


def test_wrong_key_is_refused() -> None:
    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.verify("another-secret", tokens.mint(KEY, "u1", 60))


def test_alg_none_is_refused_even_without_a_signature() -> None:
    t = b64({"alg": "none", "typ": "JWT"}) + "." + b64({"sub": "u1", "exp": 2**40}) + "."
    with pytest.raises(tokens.TokenError, match="HS256"):
        tokens.verify(KEY, t)


def test_a_changed_subject_breaks_the_signature() -> None:
    header, _claims, sig = tokens.mint(KEY, "u1", 60).split(".")
    forged = header + "." + b64({"sub": "u2", "exp": 2**40, "iat": 0}) + "." + sig
    with pytest.raises(tokens.TokenError):
        tokens.verify(KEY, forged)


@pytest.mark.parametrize("junk", ["", "a.b", "a.b.c.d", "!!!.???.***"])
def test_junk_is_refused(junk: str) -> None:
    with pytest.raises(tokens.TokenError):
        tokens.verify(KEY, junk)
