"""Webhook endpoints and their delivery log: `WebhookService`, what the API, the console and the CLI call.

Endpoint management and replay are here; the service hands signing keys and secrets to `keys.SigningKeys`
and the outbox writes made inside the transactions of status changes to `outbox.Outbox` (nothing is sent
here: `delivery.WebhookDeliverer` sends them). The views spell endpoints, deliveries and keys for the wire.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from passgate.clock import Clock
from passgate.ids import new_uuid
from passgate.keyring import KeyRing
from passgate.paging import KeysetCursor
from passgate.policy.decisions import Decision, DecisionContext
from passgate.webhooks import queries, signing
from passgate.webhooks.events import BreakerFacts, SignatureScheme, iso
from passgate.webhooks.exceptions import (
    EndpointDisabled,
    EndpointNotFound,
    EventNotFound,
    InvalidWebhookUrl,
    TooManyEndpoints,
)
from passgate.webhooks.keys import PublicKey, SigningKeys
from passgate.webhooks.metrics import WebhookMetrics
from passgate.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from passgate.webhooks.outbox import Outbox, endpoints_changed
from passgate.webhooks.ssrf import CheckedUrl, ForbiddenTargetError
from passgate.webhooks.states import DeliveryStatus, DisabledReason

if TYPE_CHECKING:  # what mfa's status listeners receive; webhooks do not depend on mfa at run time
    from passgate.mfa.queries import SessionSnapshot

log = logging.getLogger("passgate.webhooks")

MAX_ENDPOINTS = 20  # per client; a console lists them all on one page
UrlChecker = Callable[[str], CheckedUrl]


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
class EndpointHealth:
    """An endpoint's tries over a window, for the top of its console page."""

    window: timedelta
    tries: int
    delivered: int
    p50_ms: float | None
    p99_ms: float | None
    last_error: str | None
    last_error_at: datetime | None
    waiting: int  # deliveries not yet delivered nor given up

    @property
    def success_rate(self) -> float | None:
        return self.delivered / self.tries if self.tries else None


def _percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values; None when there are none."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class WebhookService:
    """A client's endpoints, their keys and secrets (through `keys`), and the outbox listeners (`outbox`)."""

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
        self.max_endpoints = max_endpoints
        self.keys = SigningKeys(
            keyring=keyring, clock=clock, key_overlap=key_overlap, secret_overlap=secret_overlap
        )
        self.outbox = Outbox(clock=clock, metrics=metrics)

    # -- the outbox listeners (inside the caller's transaction) ----------------------------------------

    def on_mfa_status(
        self, session: Session, mfa: SessionSnapshot, old: str | None, new: str, now: datetime
    ) -> None:
        self.outbox.on_mfa_status(session, mfa, old, new, now)

    def on_decision(self, session: Session, ctx: DecisionContext, decision: Decision) -> None:
        self.outbox.on_decision(session, ctx, decision)

    def on_breaker_transition(self, session: Session, change: BreakerFacts) -> None:
        self.outbox.on_breaker_transition(session, change)

    def forget_endpoints(self, client_id: str) -> None:
        self.outbox.forget_endpoints(client_id)

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
            secret = self.keys.new_secret(endpoint)
        else:
            self.keys.ensure_signing_key(session, client_id)
        session.add(endpoint)
        self.forget_endpoints(client_id)
        session.flush()
        return endpoint, secret

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
                    secret = self.keys.new_secret(endpoint)
                    endpoint.sealed_previous_secret = None
                    endpoint.previous_secret_until = None
                else:
                    self.keys.ensure_signing_key(session, client_id)
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

    # -- deliveries log and replay -------------------------------------------------------------------

    def deliveries(
        self,
        session: Session,
        client_id: str,
        endpoint_id: str,
        *,
        status: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        limit: int = 50,
        offset: int = 0,
        before: KeysetCursor | None = None,
    ) -> list[tuple[WebhookDelivery, WebhookEvent, list[WebhookAttempt]]]:
        """Newest first, each with every try. Page with `offset`, or with `before` (the cursor of the last row
        of the previous page: stable while new deliveries arrive)."""
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
        if event_type is not None:
            stmt = stmt.where(WebhookEvent.event_type == event_type)
        if before is not None:
            stmt = stmt.where(
                or_(
                    WebhookDelivery.created_at < before.created_at,
                    and_(WebhookDelivery.created_at == before.created_at, WebhookDelivery.id > before.id),
                )
            )
        rows = session.execute(
            stmt.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit).offset(offset)
        ).all()
        return self._with_attempts(session, rows)

    def _with_attempts(
        self, session: Session, rows: Sequence[Any]
    ) -> list[tuple[WebhookDelivery, WebhookEvent, list[WebhookAttempt]]]:
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

    def delivery(
        self, session: Session, client_id: str, endpoint_id: str, delivery_id: str
    ) -> tuple[WebhookDelivery, WebhookEvent, list[WebhookAttempt]]:
        """One delivery with its event and every try; EventNotFound when it is not this endpoint's."""
        self.get_endpoint(session, client_id, endpoint_id)
        rows = session.execute(
            select(WebhookDelivery, WebhookEvent)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.client_id == client_id,
            )
        ).all()
        if not rows:
            raise EventNotFound(delivery_id)
        return self._with_attempts(session, rows)[0]

    def health(self, session: Session, client_id: str, endpoint_id: str, window: timedelta) -> EndpointHealth:
        """Tries of the last `window`: how many succeeded, their latency, and the newest error."""
        self.get_endpoint(session, client_id, endpoint_id)
        since = self.clock.now() - window
        tries = session.execute(
            select(WebhookAttempt.result, WebhookAttempt.latency_ms)
            .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.client_id == client_id,
                WebhookAttempt.started_at >= since,
            )
        ).all()
        last_error = session.execute(
            select(WebhookAttempt.error, WebhookAttempt.started_at)
            .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.client_id == client_id,
                WebhookAttempt.result != "delivered",
            )
            .order_by(WebhookAttempt.started_at.desc(), WebhookAttempt.id.desc())
            .limit(1)
        ).first()
        waiting = session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.client_id == client_id,
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
            )
        )
        latencies = sorted(float(t.latency_ms) for t in tries if t.latency_ms is not None)
        return EndpointHealth(
            window=window,
            tries=len(tries),
            delivered=sum(1 for t in tries if t.result == "delivered"),
            p50_ms=_percentile(latencies, 0.50),
            p99_ms=_percentile(latencies, 0.99),
            last_error=last_error.error if last_error else None,
            last_error_at=last_error.started_at if last_error else None,
            waiting=int(waiting or 0),
        )

    def send_test_event(self, session: Session, client_id: str, endpoint_id: str) -> str:
        """Queue a `Webhook.Test` event for this endpoint alone; returns its event id."""
        endpoint = self.get_endpoint(session, client_id, endpoint_id)
        if not endpoint.enabled:
            raise EndpointDisabled(endpoint_id)
        return self.outbox.publish_test(
            session, client_id=client_id, endpoint_id=endpoint.id, now=self.clock.now()
        )

    def replay(
        self,
        session: Session,
        client_id: str,
        endpoint_id: str,
        event_id: str | None,
        *,
        since: datetime | None = None,
    ) -> int:
        """Queue one event again (whatever its state); or, without an event, every FAILED delivery and every
        PENDING one waiting for a later retry (after an outage both kinds are "what did not arrive"); or, with
        `since`, every delivery made since then, delivered ones too. Returns how many were queued."""
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
        if since is not None:
            which = and_(
                WebhookDelivery.created_at >= since,
                WebhookDelivery.status != DeliveryStatus.SENDING.value,
            )
        else:
            which = or_(
                WebhookDelivery.status == DeliveryStatus.FAILED.value,
                and_(
                    WebhookDelivery.status == DeliveryStatus.PENDING.value,
                    WebhookDelivery.next_attempt_at > now,
                ),
            )
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id, which)
            .values(**fresh)
            .execution_options(synchronize_session=False)
        )
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if count:
            session.info["work_queued"] = True
        return count

    # -- signing keys and secrets -------------------------------------------------------------------

    def rotate_secret(
        self, session: Session, client_id: str, endpoint_id: str, overlap: timedelta | None = None
    ) -> tuple[WebhookEndpoint, str]:
        """A new secret (returned once); the current one keeps signing beside it for `overlap`."""
        endpoint = self.get_endpoint(session, client_id, endpoint_id, lock=True)
        return endpoint, self.keys.rotate_secret(endpoint, overlap)

    def signing_secrets(self, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
        """The secrets that sign a try now: the current one, plus the previous one during its overlap."""
        return self.keys.signing_secrets(endpoint, now)

    def ensure_signing_key(self, session: Session, client_id: str) -> signing.KeyRing:
        """The client's key ring, making its first key when it has none (or none valid any more)."""
        return self.keys.ensure_signing_key(session, client_id)

    def public_keys(self, session: Session, client_id: str) -> list[PublicKey]:
        """Every key a receiver should accept now, newest (the signing one) first."""
        return self.keys.public_keys(session, client_id)

    def rotate_key(
        self, session: Session, client_id: str, overlap: timedelta | None = None
    ) -> tuple[list[PublicKey], timedelta]:
        """A new signing key from now on; the keys valid until now stay valid for `overlap` more."""
        return self.keys.rotate_key(session, client_id, overlap)


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
    return queries.give_up_waiting(session, endpoint.id, reason)


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
