"""Keys derived from PASSGATE_SECRET_KEYS (newest first) for keyed hashes and for sealing outbox secrets.

Every derived key carries a short id so a stored hash or sealed value names the key that made it; after a
rotation the older keys keep verifying what they made until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


@dataclass(frozen=True)
class DerivedKey:
    id: str
    key: bytes


class HmacSha256:
    """HMAC-SHA256 under one key, its padded inner and outer hash states made once (RFC 2104): a keyed hash
    then costs two copies and two updates, instead of `hmac.new` padding the key and starting both hashes
    on every call (a challenge makes two keyed hashes). The same digest as `hmac.new(key, msg, sha256)`,
    held by a differential test on generated keys and messages (tests/unit/test_keyring.py)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


_BLOCK = 64  # SHA-256's block size in bytes
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class KeyRing:
    def __init__(self, secrets: list[bytes]) -> None:
        if not secrets:
            raise ValueError("at least one secret key is needed")
        self._hash_keys = [self._named(_derive(s, b"passgate keyed hash v1")) for s in secrets]
        self._seal_keys = [self._named(_derive(s, b"passgate outbox seal v1")) for s in secrets]
        self._hash_by_id = {k.id: k for k in self._hash_keys}
        self._hmacs = {k.id: HmacSha256(k.key) for k in self._hash_keys}
        self._current_hmac = self._hmacs[self._hash_keys[0].id]
        self._seal_by_id = {k.id: k for k in self._seal_keys}
        self._aead = {k.id: AESGCM(k.key) for k in self._seal_keys}

    @staticmethod
    def _named(key: bytes) -> DerivedKey:
        return DerivedKey(hashlib.sha256(key).hexdigest()[:8], key)

    @property
    def current_hash_key_id(self) -> str:
        return self._hash_keys[0].id

    def keyed_hash(self, purpose: str, value: str, key_id: str | None = None) -> str:
        mac = self._hmacs[key_id] if key_id else self._current_hmac
        return mac.hexdigest(f"{purpose}\x00{value}".encode())

    def all_hashes(self, purpose: str, value: str) -> list[str]:
        """The value's hash under every key, for lookups of values hashed before a rotation."""
        return [self.keyed_hash(purpose, value, k.id) for k in self._hash_keys]

    def matches(self, purpose: str, value: str, stored_hash: str, key_id: str) -> bool:
        """Constant-time check of a presented value against a stored keyed hash."""
        if key_id not in self._hash_by_id:
            return False
        return hmac.compare_digest(self.keyed_hash(purpose, value, key_id), stored_hash)

    def seal(self, plaintext: str, context: str) -> str:
        """AES-GCM with the newest key; `context` (e.g. the message id) is bound as associated data."""
        key = self._seal_keys[0]
        nonce = os.urandom(12)
        ct = self._aead[key.id].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{key.id}.{base64.urlsafe_b64encode(nonce + ct).decode()}"

    def unseal(self, sealed: str, context: str) -> str:
        key_id, _, blob = sealed.partition(".")
        aead = self._aead.get(key_id)
        if aead is None:
            raise ValueError("sealed with a key that is no longer configured")
        raw = base64.urlsafe_b64decode(blob)
        try:
            return aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag as exc:
            raise ValueError("sealed value does not authenticate") from exc
