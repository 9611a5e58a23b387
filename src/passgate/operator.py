"""What the operator commands read and change (`passgate client list`, `messages list`, ...), across
clients: the command line is the operator's, not a tenant's. Views are camelCase, as in the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from passgate.auth.exceptions import NotFound
from passgate.auth.models import ApiKey, Client
from passgate.console.models import ConsoleUser
from passgate.contacts import mask
from passgate.messaging.models import Message
from passgate.webhooks.models import WebhookEndpoint

MESSAGE_STATUSES = ("QUEUED", "SENDING", "SENT", "FAILED")


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def client_view(c: Client, active_keys: int = 0, users: int = 0) -> dict[str, Any]:
    return {
        "clientId": c.id,
        "name": c.name,
        "country": c.country,
        "sandbox": c.sandbox,
        "createdAt": iso(c.created_at),
        "disabledAt": iso(c.disabled_at),
        "activeKeys": active_keys,
        "consoleUsers": users,
    }


def list_clients(session: Session) -> list[dict[str, Any]]:
    keys = (
        select(ApiKey.client_id, func.count().label("n"))
        .where(ApiKey.revoked_at.is_(None))
        .group_by(ApiKey.client_id)
        .subquery()
    )
    users = select(ConsoleUser.client_id, func.count().label("n")).group_by(ConsoleUser.client_id).subquery()
    rows = session.execute(
        select(Client, func.coalesce(keys.c.n, 0), func.coalesce(users.c.n, 0))
        .outerjoin(keys, keys.c.client_id == Client.id)
        .outerjoin(users, users.c.client_id == Client.id)
        .order_by(Client.created_at, Client.id)
    ).all()
    return [client_view(c, int(k), int(u)) for c, k, u in rows]


def get_client(session: Session, client_id: str) -> Client:
    client = session.get(Client, client_id) if "\x00" not in client_id else None
    if client is None:
        raise NotFound("client", client_id)
    return client


def show_client(session: Session, client_id: str) -> dict[str, Any]:
    client = get_client(session, client_id)
    keys = list_keys(session, client_id)
    users = list_users(session, client_id)
    endpoints = session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.client_id == client_id)
        .order_by(WebhookEndpoint.created_at)
    ).all()
    by_status = dict(
        session.execute(
            select(Message.status, func.count())
            .where(Message.client_id == client_id)
            .group_by(Message.status)
        ).all()
    )
    return {
        **client_view(client, sum(1 for k in keys if k["active"]), len(users)),
        "apiKeys": keys,
        "users": users,
        "webhookEndpoints": [
            {"id": e.id, "url": e.url, "enabled": e.enabled, "signatureScheme": e.signature_scheme}
            for e in endpoints
        ],
        "messages": {s: int(by_status.get(s, 0)) for s in MESSAGE_STATUSES},
    }


def set_client_disabled(session: Session, client_id: str, disabled: bool, now: datetime) -> dict[str, Any]:
    client = get_client(session, client_id)
    if disabled and client.disabled_at is None:
        client.disabled_at = now
    elif not disabled:
        client.disabled_at = None
    return client_view(client)


def key_view(k: ApiKey) -> dict[str, Any]:
    return {
        "keyId": k.id,
        "clientId": k.client_id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": k.scopes.split(),
        "createdAt": iso(k.created_at),
        "lastUsedAt": iso(k.last_used_at),
        "revokedAt": iso(k.revoked_at),
        "active": k.revoked_at is None,
    }


def list_keys(session: Session, client_id: str | None) -> list[dict[str, Any]]:
    stmt = select(ApiKey).order_by(ApiKey.client_id, ApiKey.created_at, ApiKey.id)
    if client_id is not None:
        get_client(session, client_id)
        stmt = stmt.where(ApiKey.client_id == client_id)
    return [key_view(k) for k in session.scalars(stmt)]


def get_key(session: Session, key_id: str) -> ApiKey:
    key = session.get(ApiKey, key_id) if "\x00" not in key_id else None
    if key is None:
        raise NotFound("API key", key_id)
    return key


def user_view(u: ConsoleUser) -> dict[str, Any]:
    return {
        "userId": u.id,
        "clientId": u.client_id,
        "email": u.email,
        "role": u.role,
        "createdAt": iso(u.created_at),
        "lastSignInAt": iso(u.last_sign_in_at),
        "disabledAt": iso(u.disabled_at),
    }


def list_users(session: Session, client_id: str | None) -> list[dict[str, Any]]:
    stmt = select(ConsoleUser).order_by(ConsoleUser.client_id, ConsoleUser.email)
    if client_id is not None:
        get_client(session, client_id)
        stmt = stmt.where(ConsoleUser.client_id == client_id)
    return [user_view(u) for u in session.scalars(stmt)]


def list_messages(
    session: Session, client_id: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    """Outbox messages, newest first; destinations masked (the command line is read over shoulders)."""
    stmt = select(Message).order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    if client_id is not None:
        get_client(session, client_id)
        stmt = stmt.where(Message.client_id == client_id)
    if status is not None:
        stmt = stmt.where(Message.status == status)
    return [
        {
            "messageId": m.id,
            "clientId": m.client_id,
            "sessionId": m.session_id,
            "channel": m.channel,
            "destination": mask(m.channel, m.destination),
            "template": m.template_name,
            "purpose": m.purpose,
            "status": m.status,
            "deliveryStatus": m.delivery_status,
            "attempts": m.attempts,
            "provider": m.provider,
            "lastError": m.last_error,
            "createdAt": iso(m.created_at),
            "sentAt": iso(m.sent_at),
            "nextAttemptAt": iso(m.next_attempt_at) if m.status == "QUEUED" else None,
        }
        for m in session.scalars(stmt)
    ]
