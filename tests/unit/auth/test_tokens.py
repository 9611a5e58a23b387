from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from passgate.auth.exceptions import InvalidToken
from passgate.auth.tokens import TokenService

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
A = b"a" * 40
B = b"b" * 40


def test_issue_and_verify() -> None:
    svc = TokenService([A])
    tok = svc.issue("cl_1", "key_1", ["k1_integration_api"], NOW, "jti")
    claims = svc.verify(tok, NOW + timedelta(seconds=10))
    assert claims.client_id == "cl_1"
    assert claims.scopes == {"k1_integration_api"}


def test_expires_after_ttl() -> None:
    svc = TokenService([A], ttl_seconds=1200)
    tok = svc.issue("cl_1", "key_1", ["k1_integration_api"], NOW, "jti")
    svc.verify(tok, NOW + timedelta(seconds=1199))  # cached now; the cache must still honour expiry
    with pytest.raises(InvalidToken):
        svc.verify(tok, NOW + timedelta(seconds=1200))


def test_other_secret_rejects_and_rotation_keeps_old_tokens() -> None:
    old = TokenService([A]).issue("cl_1", "key_1", ["admin"], NOW, "j")
    with pytest.raises(InvalidToken):
        TokenService([B]).verify(old, NOW)
    rotated = TokenService([B, A])
    assert rotated.verify(old, NOW).scopes == {"admin"}
    new = rotated.issue("cl_1", "key_1", ["admin"], NOW, "j2")
    assert jwt.decode(new, KeySet.import_key_set(rotated.jwks())).header["kid"] == rotated.keys[0].kid


def test_tampered_token_rejected() -> None:
    svc = TokenService([A])
    tok = svc.issue("cl_1", "key_1", ["k1_integration_api"], NOW, "j")
    head, body, sig = tok.split(".")
    forged = TokenService([B]).issue("cl_2", "key_1", ["k1_integration_api"], NOW, "j").split(".")[1]
    for bad in (f"{head}.{forged}.{sig}", tok[:-2] + "AA", "not-a-token", "", "a.b.c", "x" * 5000):
        with pytest.raises(InvalidToken):
            svc.verify(bad, NOW)


def test_key_derivation_is_stable_across_processes() -> None:
    assert TokenService([A]).keys[0].kid == TokenService([A]).keys[0].kid
    assert TokenService([A]).jwks()["keys"][0]["kty"] == "EC"  # type: ignore[index]
