"""What the webhook worker signs with: unsealed whsec secrets and parsed RSA keys, each opened once.

Unsealing a secret or parsing a private key costs far more than signing with it, and the worker signs
every try afresh; so the plain values are kept in memory for the process (the active key id per client
only for a few seconds, so a rotation is picked up quickly). The keys and secrets themselves are made and
rotated by `keys.SigningKeys`.
"""

from __future__ import annotations

import logging
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.orm import Session

from passgate.caching import TtlCache
from passgate.clock import Clock
from passgate.webhooks import signing
from passgate.webhooks.keys import SigningKeys, key_context, secret_context
from passgate.webhooks.models import WebhookSigningKey

log = logging.getLogger("passgate.webhooks")

KEY_CACHE_SECONDS = 5.0


class DeliveryCredentials:
    """The worker's cache of signing material, read from the rows `SigningKeys` writes."""

    def __init__(self, keys: SigningKeys, clock: Clock) -> None:
        self.keys = keys
        self._private: dict[str, rsa.RSAPrivateKey] = {}  # parsed once per process
        self._active: TtlCache[str, str] = TtlCache(KEY_CACHE_SECONDS, clock)  # client -> signing key id
        self._unsealed: dict[str, str] = {}  # sealed secret -> secret

    def secrets(
        self,
        endpoint_id: str,
        sealed: str | None,
        previous: str | None,
        until: datetime | None,
        now: datetime,
    ) -> tuple[str, ...]:
        """The secrets that sign a try now (the previous one only during its overlap); unsealed once each."""
        out = []
        for value, live in ((sealed, True), (previous, until is not None and until > now)):
            if not value or not live:
                continue
            plain = self._unsealed.get(value)
            if plain is None:
                try:
                    plain = self.keys.keyring.unseal(value, secret_context(endpoint_id))
                except ValueError:
                    continue  # the sealing key is gone: the try fails and says so
                if len(self._unsealed) > 10_000:
                    self._unsealed.clear()
                self._unsealed[value] = plain
            out.append(plain)
        return tuple(out)

    def active_key(self, session: Session, client_id: str) -> str | None:
        """The id of the client's signing key, loaded and cached. Cached for a few seconds: right after a
        rotation the previous key (still valid for the overlap) may sign a few more tries."""
        cached = self._active.get(client_id)
        if cached is not None:
            return cached
        ring = self.keys.ensure_signing_key(session, client_id)
        key_id = ring.active.id
        if key_id not in self._private:
            row = session.get(WebhookSigningKey, key_id)
            if row is None:
                return None
            try:
                pem = self.keys.keyring.unseal(row.sealed_private_pem, key_context(key_id))
                self._private[key_id] = signing.load_private_key_pem(pem)
            except (ValueError, signing.InvalidSigningKeyError):
                log.error("a webhook signing key cannot be read", extra={"keyId": key_id})
                return None
        return self._active.put(client_id, key_id)

    def private_key(self, key_id: str | None) -> rsa.RSAPrivateKey | None:
        """A key `active_key` loaded in this process (None when it could not be read)."""
        return self._private.get(key_id or "")
