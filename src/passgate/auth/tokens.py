"""Access tokens: ES256 JWTs (joserfc) whose signing keys are derived from PASSGATE_SECRET_KEYS.

Deriving the P-256 key from the configured secret means every API process of a deployment signs and
verifies with the same key without sharing a key file, and rotating the secrets rotates the key: the
JWKS keeps publishing the keys of the older secrets, so tokens already issued stay valid until they expire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey

from passgate.auth.exceptions import InvalidToken
from passgate.caching import TtlCache

_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
ISSUER = "passgate"
AUDIENCE = "passgate-api"


def derive_signing_key(secret: bytes) -> ECKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=48, salt=None, info=b"passgate jwt es256").derive(secret)
    scalar = int.from_bytes(seed, "big") % (_P256_ORDER - 1) + 1
    private_key = ec.derive_private_key(scalar, ec.SECP256R1())
    key = ECKey.import_key(private_key, {"use": "sig", "alg": "ES256"})
    key.ensure_kid()
    return key


@dataclass(frozen=True)
class TokenClaims:
    client_id: str
    key_id: str
    scopes: frozenset[str]
    expires_at: int
    token_id: str


class TokenService:
    """Issues and verifies access tokens. The first key signs; every key verifies.

    Verified tokens are remembered (by their exact text, until they expire) so a client reusing its
    token for 20 minutes pays for one signature check, not one per request. Whether a remembered token is
    still valid is decided by the `now` the caller passes (its clock), as for one verified afresh; the
    cache's own time to live (a token's lifetime, on the process's monotonic time) only bounds how long it
    holds the claims.
    """

    def __init__(self, secrets: list[bytes], ttl_seconds: int = 1200, cache_size: int = 10_000) -> None:
        if not secrets:
            raise ValueError("at least one secret is needed")
        self.keys = [derive_signing_key(s) for s in secrets]
        self._keyset = KeySet(list[OctKey | RSAKey | ECKey | OKPKey](self.keys))
        self.ttl_seconds = ttl_seconds
        self._cache: TtlCache[str, TokenClaims] = TtlCache(ttl_seconds, maxsize=cache_size)

    def jwks(self) -> dict[str, object]:
        return {"keys": [k.as_dict(private=False) for k in self.keys]}

    def issue(self, client_id: str, key_id: str, scopes: list[str], now: datetime, token_id: str) -> str:
        key = self.keys[0]
        iat = int(now.timestamp())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": client_id,
            "key_id": key_id,
            "scope": " ".join(scopes),
            "iat": iat,
            "nbf": iat,
            "exp": iat + self.ttl_seconds,
            "jti": token_id,
        }
        return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)

    def verify(self, token: str, now: datetime) -> TokenClaims:
        ts = now.timestamp()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at > ts:
                return cached
            self._cache.invalidate(token)
            raise InvalidToken("token expired")
        claims = self._decode(token)
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int) or not isinstance(nbf, int) or exp <= ts or nbf > ts + 30:
            raise InvalidToken("token expired or not yet valid")
        if claims.get("iss") != ISSUER or claims.get("aud") != AUDIENCE:
            raise InvalidToken("token not issued for this API")
        sub, key_id = claims.get("sub"), claims.get("key_id")
        if not isinstance(sub, str) or not isinstance(key_id, str):
            raise InvalidToken("token lacks required claims")
        result = TokenClaims(
            client_id=sub,
            key_id=key_id,
            scopes=frozenset(str(claims.get("scope", "")).split()),
            expires_at=exp,
            token_id=str(claims.get("jti", "")),
        )
        return self._cache.put(token, result)

    def _decode(self, token: str) -> dict[str, object]:
        if len(token) > 4096:
            raise InvalidToken("malformed token")
        try:
            decoded = jwt.decode(token, self._keyset, algorithms=["ES256"])
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise InvalidToken("malformed or wrongly signed token") from exc
        return dict(decoded.claims)
