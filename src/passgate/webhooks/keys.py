"""Webhook signing material: the per-client RSA keys of the kount-rsa-pss scheme and the per-endpoint
whsec secrets of the Standard Webhooks scheme.

Both are sealed at rest with the app's key ring, bound to their row (a sealed value copied onto another row
does not open). Rotation keeps the old key or secret valid beside the new one for an overlap, so receivers
can switch without losing an event. `services.WebhookService` calls these for the API, the console and the
CLI; the worker (`credentials.DeliveryCredentials`) reads the same material to sign each try.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from passgate.auth.models import Client
from passgate.clock import Clock
from passgate.keyring import KeyRing
from passgate.webhooks import signing
from passgate.webhooks.events import SignatureScheme
from passgate.webhooks.exceptions import WrongSignatureScheme
from passgate.webhooks.models import WebhookEndpoint, WebhookSigningKey


def secret_context(endpoint_id: str) -> str:
    # Binds a sealed secret to its endpoint: a sealed value copied onto another row does not open.
    return f"webhook-secret:{endpoint_id}"


def key_context(key_id: str) -> str:
    return f"webhook-key:{key_id}"


# How long a signing key is planned to sign: the active key's published validUntil is at least this long
# after its creation (docs/webhooks.md, "validUntil").
KEY_LIFETIME = timedelta(days=365)


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    public_key: str
    created_at: datetime
    valid_until: datetime


def published_until(
    created_at: datetime, scheduled: datetime | None, now: datetime, overlap: timedelta
) -> datetime:
    """The validUntil a key is published with, always a time (Kount's receivers parse it as one).

    A key whose end is scheduled (a rotation set it) ends then. The signing key has no end scheduled: it is
    planned to sign for KEY_LIFETIME after its creation, and in any case stays valid at least `overlap` from
    now, since a rotation made now would keep it valid that long; the later of the two is published.
    """
    if scheduled is not None:
        return scheduled
    return max(created_at + KEY_LIFETIME, now + overlap)


class SigningKeys:
    """Makes, rotates and publishes the keys and secrets that sign webhook tries."""

    def __init__(
        self,
        *,
        keyring: KeyRing,
        clock: Clock,
        key_overlap: timedelta = signing.DEFAULT_KEY_OVERLAP,
        secret_overlap: timedelta = timedelta(hours=24),
    ) -> None:
        self.keyring = keyring
        self.clock = clock
        self.key_overlap = key_overlap
        self.secret_overlap = secret_overlap

    # -- Standard Webhooks secrets (per endpoint) -----------------------------------------------------

    def new_secret(self, endpoint: WebhookEndpoint) -> str:
        """A fresh whsec secret, sealed onto the endpoint; the plain value is returned to be shown once."""
        secret = signing.generate_whsec()
        endpoint.sealed_secret = self.keyring.seal(secret, secret_context(endpoint.id))
        return secret

    def rotate_secret(self, endpoint: WebhookEndpoint, overlap: timedelta | None = None) -> str:
        """A new secret for this (locked) endpoint, returned once; the current one keeps signing beside it
        for `overlap`."""
        if endpoint.signature_scheme != SignatureScheme.STANDARD:
            raise WrongSignatureScheme(
                "this endpoint signs with kount-rsa-pss, which has no shared secret; rotate the RSA key "
                "with POST /manage/v1/webhooks/public-key/rotate"
            )
        now = self.clock.now()
        overlap = self.secret_overlap if overlap is None else overlap
        if endpoint.sealed_secret and overlap > timedelta(0):
            endpoint.sealed_previous_secret = endpoint.sealed_secret
            endpoint.previous_secret_until = now + overlap
        else:
            endpoint.sealed_previous_secret = None
            endpoint.previous_secret_until = None
        secret = self.new_secret(endpoint)
        endpoint.updated_at = now
        return secret

    def signing_secrets(self, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
        """The secrets that sign a try now: the current one, plus the previous one during its overlap."""
        out: list[str] = []
        if endpoint.sealed_secret:
            out.append(self.keyring.unseal(endpoint.sealed_secret, secret_context(endpoint.id)))
        if (
            endpoint.sealed_previous_secret
            and endpoint.previous_secret_until is not None
            and endpoint.previous_secret_until > now
        ):
            out.append(self.keyring.unseal(endpoint.sealed_previous_secret, secret_context(endpoint.id)))
        return out

    # -- Kount signing keys (per client) --------------------------------------------------------------

    def _keys(self, session: Session, client_id: str) -> list[WebhookSigningKey]:
        return list(
            session.scalars(select(WebhookSigningKey).where(WebhookSigningKey.client_id == client_id))
        )

    def ensure_signing_key(self, session: Session, client_id: str) -> signing.KeyRing:
        """The client's key ring, making its first key when it has none (or none valid any more)."""
        now = self.clock.now()
        try:
            return signing.key_ring(_as_signing_keys(self._keys(session, client_id)), now, self.key_overlap)
        except signing.NoActiveSigningKeyError:
            pass
        # Serialise first-key creation per client (PostgreSQL; SQLite writers are serial anyway).
        session.scalars(select(Client.id).where(Client.id == client_id).with_for_update()).first()
        try:
            return signing.key_ring(_as_signing_keys(self._keys(session, client_id)), now, self.key_overlap)
        except signing.NoActiveSigningKeyError:
            self._add_key(session, client_id, now)
        return signing.key_ring(_as_signing_keys(self._keys(session, client_id)), now, self.key_overlap)

    def _add_key(self, session: Session, client_id: str, now: datetime) -> WebhookSigningKey:
        private = signing.generate_rsa_key()
        # An ordinal in the id breaks ties between keys made in the same instant (key_ring orders by
        # creation time, then id), so the newest key always signs.
        ordinal = len(self._keys(session, client_id)) + 1
        key_id = f"k{ordinal:04d}-{secrets.token_hex(8)}"
        pem = signing.private_key_to_pem(private).decode()
        key = WebhookSigningKey(
            id=key_id,
            client_id=client_id,
            sealed_private_pem=self.keyring.seal(pem, key_context(key_id)),
            public_key=signing.public_key_der_b64(private.public_key()),
            created_at=now,
        )
        session.add(key)
        session.flush()
        return key

    def public_keys(self, session: Session, client_id: str) -> list[PublicKey]:
        """Every key a receiver should accept now, newest (the signing one) first."""
        ring = self.ensure_signing_key(session, client_id)
        return self._published(session, ring)

    def _published(self, session: Session, ring: signing.KeyRing) -> list[PublicKey]:
        rows = {
            k.id: k
            for k in session.scalars(
                select(WebhookSigningKey).where(WebhookSigningKey.id.in_([k.id for k in ring.valid]))
            )
        }
        now = self.clock.now()
        return [
            PublicKey(
                k.id,
                rows[k.id].public_key,
                k.created_at,
                published_until(k.created_at, k.valid_until, now, self.key_overlap),
            )
            for k in ring.valid
            if k.id in rows
        ]

    def rotate_key(
        self, session: Session, client_id: str, overlap: timedelta | None = None
    ) -> tuple[list[PublicKey], timedelta]:
        """A new signing key from now on; the keys valid until now stay valid for `overlap` more."""
        overlap = self.key_overlap if overlap is None else overlap
        now = self.clock.now()
        session.scalars(select(Client.id).where(Client.id == client_id).with_for_update()).first()
        until = now + overlap
        for key in self._keys(session, client_id):
            if key.valid_until is None or key.valid_until > until:
                key.valid_until = until
        self._add_key(session, client_id, now)
        ring = signing.key_ring(_as_signing_keys(self._keys(session, client_id)), now, self.key_overlap)
        return self._published(session, ring), overlap


def _as_signing_keys(rows: Sequence[WebhookSigningKey]) -> list[signing.SigningKey]:
    # The private PEM stays sealed here: key_ring only needs ids and times.
    return [
        signing.SigningKey(id=r.id, private_pem=b"", created_at=r.created_at, valid_until=r.valid_until)
        for r in rows
    ]
