"""Webhook endpoints, signing keys, and the outbox writes made inside the transactions of status changes.

Nothing is sent here. The listeners write one event row and one delivery row per matching enabled
endpoint in the caller's transaction, so an event exists exactly when the change it reports was committed;
`delivery.WebhookDeliverer` sends them.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from passgate.auth.models import Client
from passgate.caching import TtlCache
from passgate.clock import Clock
from passgate.db.deferred import DeferredWrites
from passgate.ids import new_uuid
from passgate.keyring import KeyRing
from passgate.observability import Metrics
from passgate.policy.decisions import Decision, DecisionContext
from passgate.webhooks import signing
from passgate.webhooks.events import (
    EndpointFilter,
    EventType,
    SessionChange,
    SignatureScheme,
    decision_payload,
    encode,
    iso,
    matching,
    status_event_type,
    status_payload,
)
from passgate.webhooks.exceptions import (
    EndpointDisabled,
    EndpointNotFound,
    EventNotFound,
    InvalidWebhookUrl,
    TooManyEndpoints,
    WrongSignatureScheme,
)
from passgate.webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookSigningKey,
    deliveries_table,
    events_table,
)
from passgate.webhooks.ssrf import CheckedUrl, ForbiddenTargetError
from passgate.webhooks.states import DeliveryStatus, DisabledReason

if TYPE_CHECKING:  # what mfa's status listeners receive; webhooks do not depend on mfa at run time
    from passgate.mfa.queries import SessionSnapshot

log = logging.getLogger("passgate.webhooks")

MAX_ENDPOINTS = 20  # per client; a console lists them all on one page
UrlChecker = Callable[[str], CheckedUrl]


class WebhookMetrics:
    """Per-endpoint counters and latency on the app's Prometheus registry (besides the global counter)."""

    def __init__(self, metrics: Metrics) -> None:
        self.global_deliveries = metrics.webhook_deliveries
        self.deliveries = Counter(
            "passgate_webhook_endpoint_deliveries_total",
            "Webhook delivery tries per endpoint by result (delivered, retry, failed)",
            ["client", "endpoint", "result"],
            registry=metrics.registry,
        )
        self.latency = Histogram(
            "passgate_webhook_delivery_seconds",
            "Webhook delivery latency per endpoint (request sent to answer read)",
            ["client", "endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
            registry=metrics.registry,
        )
        self.events = Counter(
            "passgate_webhook_events_total",
            "Webhook events written to the outbox by event type",
            ["event_type"],
            registry=metrics.registry,
        )
        self.disabled = Counter(
            "passgate_webhook_endpoints_disabled_total",
            "Endpoints disabled automatically, by reason (GONE, FAILING)",
            ["reason"],
            registry=metrics.registry,
        )


def secret_context(endpoint_id: str) -> str:
    # Binds a sealed secret to its endpoint: a sealed value copied onto another row does not open.
    return f"webhook-secret:{endpoint_id}"


def key_context(key_id: str) -> str:
    return f"webhook-key:{key_id}"


@dataclass(frozen=True)
class EndpointChanges:
    """A partial update; `fields` says which attributes were given (so `channel: null` clears the filter)."""

    fields: frozenset[str]
    url: str | None = None
    events: Sequence[str] | None = None
    channel: str | None = None
    signature_scheme: str | None = None
    enabled: bool | None = None
    description: str | None = None


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    public_key: str
    created_at: datetime
    valid_until: datetime | None


_generation = [0]


def endpoints_changed() -> None:
    """Endpoints were disabled outside WebhookService (by the delivery worker): drop every cached view."""
    _generation[0] += 1


_ENABLED_ENDPOINTS = select(WebhookEndpoint.id, WebhookEndpoint.events, WebhookEndpoint.channel).where(
    WebhookEndpoint.client_id == bindparam("client_id"), WebhookEndpoint.enabled.is_(True)
)


class WebhookService:
    def __init__(
        self,
        *,
        keyring: KeyRing,
        clock: Clock,
        check_url: UrlChecker,
        metrics: WebhookMetrics,
        key_overlap: timedelta = signing.DEFAULT_KEY_OVERLAP,
        secret_overlap: timedelta = timedelta(hours=24),
        max_endpoints: int = MAX_ENDPOINTS,
    ) -> None:
        self.keyring = keyring
        self.clock = clock
        self.check_url = check_url
        self.metrics = metrics
        self.key_overlap = key_overlap
        self.secret_overlap = secret_overlap
        self.max_endpoints = max_endpoints
        # Which endpoints want what, per client, for `filters_ttl` seconds: publishing runs inside every
        # decision and status change, and most clients' endpoints change rarely. A change made through
        # this process is seen at once; through another, within the TTL.
        self.filters_ttl = 1.0
        self._filters: TtlCache[str, tuple[int, list[EndpointFilter]]] = TtlCache(self.filters_ttl, clock)

    def _endpoint_filters(self, session: Session, client_id: str) -> list[EndpointFilter]:
        hit = self._filters.get(client_id)
        if hit is not None and hit[0] == _generation[0]:
            return hit[1]
        generation = _generation[0]
        filters = [
            EndpointFilter(row.id, tuple(row.events or ()), row.channel)
            for row in session.connection().execute(_ENABLED_ENDPOINTS, {"client_id": client_id})
        ]
        self._filters.put(client_id, (generation, filters))
        return filters

    def forget_endpoints(self, client_id: str) -> None:
        self._filters.invalidate(client_id)

    # -- endpoints -----------------------------------------------------------------------------------

    def _checked(self, url: str) -> str:
        try:
            return self.check_url(url).url
        except ForbiddenTargetError as exc:
            raise InvalidWebhookUrl(exc.message, exc.field) from None

    def create_endpoint(
        self,
        session: Session,
        client_id: str,
        *,
        url: str,
        events: Sequence[str],
        channel: str | None,
        signature_scheme: str,
        enabled: bool = True,
        description: str | None = None,
    ) -> tuple[WebhookEndpoint, str | None]:
        """The new endpoint and, for the Standard Webhooks scheme, its secret (shown this once)."""
        checked = self._checked(url)
        count = session.scalar(
            select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.client_id == client_id)
        )
        if (count or 0) >= self.max_endpoints:
            raise TooManyEndpoints(self.max_endpoints)
        now = self.clock.now()
        endpoint = WebhookEndpoint(
            id=new_uuid(),
            client_id=client_id,
            url=checked,
            description=description,
            events=list(dict.fromkeys(events)),
            channel=channel,
            signature_scheme=signature_scheme,
            enabled=enabled,
            disabled_reason=None if enabled else DisabledReason.MANUAL.value,
            disabled_at=None if enabled else now,
            created_at=now,
            updated_at=now,
        )
        secret = None
        if signature_scheme == SignatureScheme.STANDARD:
            secret = self._new_secret(endpoint)
        else:
            self.ensure_signing_key(session, client_id)
        session.add(endpoint)
        self.forget_endpoints(client_id)
        session.flush()
        return endpoint, secret

    def _new_secret(self, endpoint: WebhookEndpoint) -> str:
        secret = signing.generate_whsec()
        endpoint.sealed_secret = self.keyring.seal(secret, secret_context(endpoint.id))
        return secret

    def list_endpoints(self, session: Session, client_id: str) -> list[WebhookEndpoint]:
        return list(
            session.scalars(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.client_id == client_id)
                .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
            )
        )

    def get_endpoint(
        self, session: Session, client_id: str, endpoint_id: str, lock: bool = False
    ) -> WebhookEndpoint:
        stmt = select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.client_id == client_id
        )
        if lock:
            stmt = stmt.with_for_update()
        endpoint = session.scalars(stmt).first()
        if endpoint is None:
            raise EndpointNotFound(endpoint_id)
        return endpoint

    def update_endpoint(
        self, session: Session, client_id: str, endpoint_id: str, changes: EndpointChanges
    ) -> tuple[WebhookEndpoint, str | None]:
        """Apply a partial update. Switching to the Standard Webhooks scheme makes a secret (returned once)."""
        endpoint = self.get_endpoint(session, client_id, endpoint_id, lock=True)
        given = changes.fields
        if "url" in given and changes.url is not None:
            endpoint.url = self._checked(changes.url)
        if "events" in given and changes.events is not None:
            endpoint.events = list(dict.fromkeys(changes.events))
        if "channel" in given:
            endpoint.channel = changes.channel
        if "description" in given:
            endpoint.description = changes.description
        secret = None
        if "signature_scheme" in given and changes.signature_scheme is not None:
            if changes.signature_scheme != endpoint.signature_scheme:
                endpoint.signature_scheme = changes.signature_scheme
                if changes.signature_scheme == SignatureScheme.STANDARD:
                    secret = self._new_secret(endpoint)
                    endpoint.sealed_previous_secret = None
                    endpoint.previous_secret_until = None
                else:
                    self.ensure_signing_key(session, client_id)
        if "enabled" in given and changes.enabled is not None:
            self._set_enabled(session, endpoint, changes.enabled, DisabledReason.MANUAL)
        endpoint.updated_at = self.clock.now()
        self.forget_endpoints(client_id)
        return endpoint, secret

    def set_enabled(
        self, session: Session, client_id: str, endpoint_id: str, enabled: bool
    ) -> WebhookEndpoint:
        endpoint = self.get_endpoint(session, client_id, endpoint_id, lock=True)
        self._set_enabled(session, endpoint, enabled, DisabledReason.MANUAL)
        self.forget_endpoints(client_id)
        return endpoint

    def _set_enabled(
        self, session: Session, endpoint: WebhookEndpoint, enabled: bool, reason: DisabledReason
    ) -> None:
        now = self.clock.now()
        if enabled and not endpoint.enabled:
            endpoint.enabled = True
            endpoint.disabled_reason = None
            endpoint.disabled_at = None
            # A fresh start: the 5-day failure clock counts from the next failure.
            endpoint.failing_since = None
        elif not enabled and endpoint.enabled:
            disable_endpoint(session, endpoint, reason, now)
        endpoint.updated_at = now

    def delete_endpoint(self, session: Session, client_id: str, endpoint_id: str) -> None:
        endpoint = self.get_endpoint(session, client_id, endpoint_id, lock=True)
        session.delete(endpoint)
        self.forget_endpoints(client_id)

    def rotate_secret(
        self, session: Session, client_id: str, endpoint_id: str, overlap: timedelta | None = None
    ) -> tuple[WebhookEndpoint, str]:
        """A new secret (returned once); the current one keeps signing beside it for `overlap`."""
        endpoint = self.get_endpoint(session, client_id, endpoint_id, lock=True)
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
        secret = self._new_secret(endpoint)
        endpoint.updated_at = now
        return endpoint, secret

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

    # -- deliveries log and replay -------------------------------------------------------------------

    def deliveries(
        self,
        session: Session,
        client_id: str,
        endpoint_id: str,
        *,
        status: str | None = None,
        event_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[tuple[WebhookDelivery, WebhookEvent, list[WebhookAttempt]]]:
        self.get_endpoint(session, client_id, endpoint_id)
        stmt = (
            select(WebhookDelivery, WebhookEvent)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.client_id == client_id)
        )
        if status is not None:
            stmt = stmt.where(WebhookDelivery.status == status)
        if event_id is not None:
            stmt = stmt.where(WebhookDelivery.event_id == event_id)
        rows = session.execute(
            stmt.order_by(WebhookDelivery.created_at.desc(), WebhookEvent.sequence.desc(), WebhookDelivery.id)
            .limit(limit)
            .offset(offset)
        ).all()
        ids = [d.id for d, _ in rows]
        attempts: dict[str, list[WebhookAttempt]] = {i: [] for i in ids}
        if ids:
            for a in session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_(ids))
                .order_by(WebhookAttempt.attempt, WebhookAttempt.id)
            ):
                attempts[a.delivery_id].append(a)
        return [(d, e, attempts[d.id]) for d, e in rows]

    def replay(self, session: Session, client_id: str, endpoint_id: str, event_id: str | None) -> int:
        """Queue one event again (whatever its state), or every FAILED delivery; returns how many."""
        endpoint = self.get_endpoint(session, client_id, endpoint_id, lock=True)
        if not endpoint.enabled:
            raise EndpointDisabled(endpoint_id)
        now = self.clock.now()
        fresh = {
            "status": DeliveryStatus.PENDING.value,
            "tries": 0,
            "next_attempt_at": now,
            "locked_until": None,
            "locked_by": None,
            "lock_token": None,
        }
        if event_id is not None:
            delivery = session.scalars(
                select(WebhookDelivery).where(
                    WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.event_id == event_id
                )
            ).first()
            if delivery is None:
                raise EventNotFound(event_id)
            if delivery.status == DeliveryStatus.SENDING:
                return 0  # a try is under way; its outcome decides what happens next
            for k, v in fresh.items():
                setattr(delivery, k, v)
            session.info["work_queued"] = True
            return 1
        result = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == endpoint.id,
                WebhookDelivery.status == DeliveryStatus.FAILED.value,
            )
            .values(**fresh)
            .execution_options(synchronize_session=False)
        )
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if count:
            session.info["work_queued"] = True
        return count

    # -- Kount signing keys --------------------------------------------------------------------------

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
        return [
            PublicKey(k.id, rows[k.id].public_key, k.created_at, k.valid_until)
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

    # -- outbox writes (inside the caller's transaction) ---------------------------------------------

    def on_mfa_status(
        self, session: Session, mfa: SessionSnapshot, old: str | None, new: str, now: datetime
    ) -> None:
        if not self._endpoint_filters(session, mfa.client_id):
            return  # a client without endpoints: nothing to build (publish would find no target either)
        change = SessionChange(
            client_id=mfa.client_id,
            session_id=mfa.id,
            session_event_type=mfa.event_type,
            status=str(new),
            send_attempts=mfa.send_attempts,
            verification_attempts=mfa.verification_attempts,
            channel=mfa.channel,
            sequence=mfa.sequence,
            occurred_at=now,
        )
        self.publish(
            session,
            client_id=mfa.client_id,
            event_type=status_event_type(mfa.event_type),
            channel=mfa.channel,
            session_id=mfa.id,
            sequence=mfa.sequence,
            build=lambda event_id: status_payload(event_id, change),
            now=now,
        )

    def on_decision(self, session: Session, ctx: DecisionContext, decision: Decision) -> None:
        if not self._endpoint_filters(session, ctx.client_id):
            return  # most decisions: a client without endpoints pays one cached lookup
        challenge = decision.challenge
        account_id = (ctx.body.get("account") or {}).get("id")
        self.publish(
            session,
            client_id=ctx.client_id,
            event_type=EventType.DECISION_CREATED,
            channel=challenge.channel if challenge else None,
            session_id=None,
            sequence=None,
            build=lambda event_id: decision_payload(
                event_id,
                client_id=ctx.client_id,
                decision_id=ctx.decision_id,
                request_type=ctx.event_type,
                decision=decision,
                account_id=account_id,
                occurred_at=ctx.now,
            ),
            now=ctx.now,
        )

    def publish(
        self,
        session: Session,
        *,
        client_id: str,
        event_type: EventType,
        channel: str | None,
        session_id: str | None,
        sequence: int | None,
        build: Callable[[str], dict[str, Any]],
        now: datetime,
    ) -> str | None:
        """Write the event and its fan-out rows; returns the event id, or None when no endpoint wants it
        (then nothing is written: clients without webhooks pay one indexed read per change)."""
        targets = matching(self._endpoint_filters(session, client_id), event_type.value, channel)
        if not targets:
            return None
        event_id = new_uuid()
        # Append-only rows nothing reads back in this transaction: inserted at commit, many per statement
        # when requests share a transaction (db.deferred.DeferredWrites). The event goes first (the deliveries
        # reference it), and since its table is deferred first, it is inserted first.
        DeferredWrites.of(session).insert(
            events_table,
            [
                {
                    "id": event_id,
                    "client_id": client_id,
                    "event_type": event_type.value,
                    "session_id": session_id,
                    "sequence": sequence,
                    "channel": channel,
                    "body": encode(build(event_id)),
                    "created_at": now,
                }
            ],
        )
        DeferredWrites.of(session).insert(
            deliveries_table,
            [
                {
                    "id": new_uuid(),
                    "event_id": event_id,
                    "endpoint_id": endpoint_id,
                    "client_id": client_id,
                    "session_id": session_id,
                    "sequence": sequence,
                    "status": DeliveryStatus.PENDING.value,
                    "tries": 0,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for endpoint_id in targets
            ],
        )
        self.metrics.events.labels(event_type.value).inc()
        # Read after commit to wake an in-process worker at once (bootstrap.WorkNotifier).
        session.info["work_queued"] = True
        return event_id


def disable_endpoint(
    session: Session, endpoint: WebhookEndpoint, reason: DisabledReason, now: datetime
) -> int:
    """Disable the endpoint and give up its waiting deliveries (they can be replayed once it is enabled);
    returns how many were given up."""
    endpoint.enabled = False
    endpoint.disabled_reason = reason.value
    endpoint.disabled_at = now
    endpoint.updated_at = now
    endpoints_changed()
    return give_up_waiting(session, endpoint.id, reason)


def give_up_waiting(session: Session, endpoint_id: str, reason: DisabledReason) -> int:
    """Mark the endpoint's PENDING deliveries FAILED (the endpoint was disabled); returns how many."""
    table = deliveries_table
    result = session.execute(
        update(table)
        .where(table.c.endpoint_id == endpoint_id, table.c.status == DeliveryStatus.PENDING.value)
        .values(status=DeliveryStatus.FAILED.value, last_error=f"endpoint disabled ({reason.value})")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _as_signing_keys(rows: Sequence[WebhookSigningKey]) -> list[signing.SigningKey]:
    # The private PEM stays sealed here: key_ring only needs ids and times.
    return [
        signing.SigningKey(id=r.id, private_pem=b"", created_at=r.created_at, valid_until=r.valid_until)
        for r in rows
    ]


# -- views (camelCase, as on the wire) -----------------------------------------------------------------


def _t(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def endpoint_view(e: WebhookEndpoint, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": e.id,
        "url": e.url,
        "description": e.description,
        "events": list(e.events or []),
        "channel": e.channel,
        "signatureScheme": e.signature_scheme,
        "enabled": e.enabled,
        "disabledReason": e.disabled_reason,
        "disabledAt": _t(e.disabled_at),
        "failingSince": _t(e.failing_since),
        "lastSuccessAt": _t(e.last_success_at),
        "lastFailureAt": _t(e.last_failure_at),
        "createdAt": _t(e.created_at),
        "updatedAt": _t(e.updated_at),
    }
    if e.signature_scheme == SignatureScheme.STANDARD:
        overlap = e.previous_secret_until is not None and e.previous_secret_until > now
        out["previousSecretValidUntil"] = _t(e.previous_secret_until) if overlap else None
    return out


def delivery_view(
    d: WebhookDelivery, event: WebhookEvent, attempts: Sequence[WebhookAttempt]
) -> dict[str, Any]:
    return {
        "id": d.id,
        "eventId": d.event_id,
        "eventType": event.event_type,
        "mfaId": event.session_id,
        "sequence": event.sequence,
        "status": d.status,
        "attemptCount": d.attempts,
        "nextAttemptAt": _t(d.next_attempt_at) if d.status == DeliveryStatus.PENDING else None,
        "lastStatusCode": d.last_status_code,
        "lastError": d.last_error,
        "createdAt": _t(d.created_at),
        "deliveredAt": _t(d.delivered_at),
        "payload": json.loads(event.body),
        "attempts": [
            {
                "attempt": a.attempt,
                "at": _t(a.started_at),
                "result": a.result,
                "statusCode": a.status_code,
                "latencyMs": a.latency_ms,
                "error": a.error,
                "nextAttemptAt": _t(a.next_attempt_at),
            }
            for a in attempts
        ],
    }


def public_key_view(keys: Sequence[PublicKey]) -> dict[str, Any]:
    active, previous = keys[0], keys[1:]

    def one(k: PublicKey) -> dict[str, Any]:
        return {
            "keyId": k.key_id,
            "publicKey": k.public_key,
            "createdAt": _t(k.created_at),
            "validUntil": _t(k.valid_until),
        }

    return {**one(active), "algorithm": "RSASSA-PSS-SHA256", "previous": [one(k) for k in previous]}
