"""Webhooks (endpoints, deliveries with every try, replay, secret and key rotation), API keys, MFA
settings, and the signed-in person's own sessions and devices."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from passgate.auth import services as key_svc
from passgate.auth.exceptions import NotFound
from passgate.auth.settings import ClientSettings, settings_view, update_settings
from passgate.auth.sms_breaker import WIRE_NAMES as BREAKER_NAMES
from passgate.auth.sms_breaker import BreakerMode
from passgate.console.permissions import Permission
from passgate.console.routes.common import (
    Action,
    Problem,
    Reader,
    action,
    attempt,
    auth_service,
    errors_by_field,
    not_found,
    page_problem,
    reader,
    redirect,
    registry_of,
    render,
    run,
)
from passgate.console.services import CurrentUser
from passgate.mfa.breaker_services import recent_transitions
from passgate.mfa.exceptions import InvalidDestination
from passgate.mfa.services import UnlockResult
from passgate.paging import KeysetCursor
from passgate.retention.plan import BOUNDS, Kind, wire_name
from passgate.retention.services import (
    SettingsWithRetention,
    configured_defaults,
    retention_view,
    stored_retention,
    update_retention,
)
from passgate.webhooks.events import TEST_EVENT_TYPE, Channel, EventType, SignatureScheme
from passgate.webhooks.exceptions import EndpointNotFound, EventNotFound
from passgate.webhooks.services import (
    EndpointChanges,
    EndpointHealth,
    WebhookService,
    delivery_view,
    endpoint_view,
    public_key_view,
)
from passgate.webhooks.states import DeliveryStatus

router = APIRouter()
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
KEY_ID = re.compile(r"^key_[0-9a-f]{16}$")
EVENTS = [e.value for e in EventType]
EVENT_TYPES = [*EVENTS, TEST_EVENT_TYPE]  # what the deliveries table filters on
SCHEMES = [s.value for s in SignatureScheme]
CHANNELS = [c.value for c in Channel]


def _webhooks(request: Request) -> WebhookService:
    return registry_of(request).webhooks


async def _webhooks_page(
    request: Request,
    user: CurrentUser,
    *,
    secret: tuple[str, str] | None = None,
    found: Problem | None = None,
    posted: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    registry = registry_of(request)
    service = _webhooks(request)
    now = registry.clock.now()

    def work(session: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        endpoints = [endpoint_view(e, now) for e in service.list_endpoints(session, user.client_id)]
        return endpoints, public_key_view(service.public_keys(session, user.client_id))

    endpoints, key = await run(registry, work)
    return render(
        request,
        "console/webhooks.html",
        {
            "title": "Webhooks",
            "endpoints": endpoints,
            "key": key,
            "events": EVENTS,
            "schemes": SCHEMES,
            "channels": CHANNELS,
            "secret": secret,
            "problem": found,
            "errors": errors_by_field(found.errors) if found else {},
            "posted": posted or {},
        },
        user,
        status=status,
        nav="webhooks",
    )


@router.get("/webhooks")
async def webhooks_page(request: Request, user: Reader) -> Response:
    return await _webhooks_page(request, user)


@router.post("/webhooks")
async def create_endpoint(
    request: Request, act: Annotated[Action, Depends(action(Permission.WEBHOOKS_MANAGE))]
) -> Response:
    registry = registry_of(request)
    service = _webhooks(request)
    f = act.form
    url = f.get("url").strip()[:2048]
    events = [e for e in f.getlist("events") if e in EVENTS]
    channel = f.get("channel") if f.get("channel") in CHANNELS else None
    scheme = f.get("signatureScheme") if f.get("signatureScheme") in SCHEMES else SignatureScheme.KOUNT.value
    description = f.get("description").strip()[:200] or None
    posted = {
        "url": url,
        "events": events,
        "channel": channel,
        "signatureScheme": scheme,
        "description": description,
    }
    if not url or not events:
        errors = []
        if not url:
            errors.append({"field": "url", "message": "the address Passgate posts events to"})
        if not events:
            errors.append({"field": "events", "message": "choose at least one event"})
        return await _webhooks_page(
            request, act.user, found=Problem("The endpoint was not added.", errors), posted=posted, status=422
        )

    def work(session: Any) -> tuple[str, str | None]:
        endpoint, secret = service.create_endpoint(
            session,
            act.user.client_id,
            url=url,
            events=events,
            channel=channel,
            signature_scheme=scheme,
            description=description,
        )
        act.audit(session, "webhook.created", endpoint.id, {"url": endpoint.url})
        return endpoint.id, secret

    outcome = await attempt(registry, work)
    if isinstance(outcome, Problem):
        return await _webhooks_page(request, act.user, found=outcome, posted=posted, status=outcome.status)
    endpoint_id, secret = outcome
    if secret:
        # Shown in this answer only (never stored in a cookie or a redirect).
        return await _webhooks_page(request, act.user, secret=(endpoint_id, secret))
    return redirect(request, f"/console/webhooks/{endpoint_id}", "Endpoint added.")


@router.post("/webhooks/public-key/rotate")
async def rotate_key(
    request: Request, act: Annotated[Action, Depends(action(Permission.WEBHOOKS_MANAGE))]
) -> Response:
    registry = registry_of(request)
    service = _webhooks(request)

    def work(session: Any) -> str:
        keys, _ = service.rotate_key(session, act.user.client_id, None)
        act.audit(session, "webhook.key_rotated", keys[0].key_id)
        return keys[0].key_id

    key_id = await run(registry, work)
    return redirect(
        request,
        "/console/webhooks",
        f"New signing key {key_id}; the previous one stays valid for the overlap.",
    )


PAGE_SIZE = 25
HEALTH_WINDOW = timedelta(hours=24)
# The headers each try carries, by scheme (the signature is made afresh for every try, so none is stored).
SIGNATURE_HEADERS = {
    SignatureScheme.KOUNT.value: ["X-Event-Timestamp", "X-Event-Signature"],
    SignatureScheme.STANDARD.value: ["webhook-id", "webhook-timestamp", "webhook-signature"],
}


async def _endpoint_page(
    request: Request,
    user: CurrentUser,
    endpoint_id: str,
    *,
    status_filter: str = "",
    type_filter: str = "",
    before: str = "",
    secret: str | None = None,
) -> Response:
    registry = registry_of(request)
    service = _webhooks(request)
    now = registry.clock.now()
    chosen = status_filter if status_filter in [s.value for s in DeliveryStatus] else None
    chosen_type = type_filter if type_filter in EVENT_TYPES else None
    cursor = KeysetCursor.parse(before) if before else None

    def work(session: Any) -> tuple[dict[str, Any], list[dict[str, Any]], EndpointHealth, str | None] | None:
        try:
            endpoint = service.get_endpoint(session, user.client_id, endpoint_id)
            rows = service.deliveries(
                session,
                user.client_id,
                endpoint_id,
                status=chosen,
                event_type=chosen_type,
                before=cursor,
                limit=PAGE_SIZE + 1,
            )
            health = service.health(session, user.client_id, endpoint_id, HEALTH_WINDOW)
        except EndpointNotFound:
            return None
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        following = str(KeysetCursor(rows[-1][0].created_at, rows[-1][0].id)) if more else None
        views = [delivery_view(d, e, a) for d, e, a in rows]
        return endpoint_view(endpoint, now), views, health, following

    found = await run(registry, work)
    if found is None:
        raise not_found(user, "such webhook endpoint")
    endpoint, deliveries, health, following = found
    return render(
        request,
        "console/webhook.html",
        {
            "title": f"Webhook {endpoint['url']}",
            "e": endpoint,
            "deliveries": deliveries,
            "health": health,
            "events": EVENTS,
            "event_types": EVENT_TYPES,
            "channels": CHANNELS,
            "statuses": [s.value for s in DeliveryStatus],
            "status_filter": chosen or "",
            "type_filter": chosen_type or "",
            "paged": cursor is not None,
            "following": following,
            "secret": secret,
        },
        user,
        nav="webhooks",
    )


@router.get("/webhooks/{endpoint_id}")
async def endpoint_page(
    request: Request, endpoint_id: str, user: Reader, status: str = "", type: str = "", before: str = ""
) -> Response:
    if not UUID.match(endpoint_id):
        raise not_found(user, "such webhook endpoint")
    return await _endpoint_page(
        request, user, endpoint_id, status_filter=status, type_filter=type, before=before[:120]
    )


@router.get("/webhooks/{endpoint_id}/deliveries/{delivery_id}")
async def delivery_page(request: Request, endpoint_id: str, delivery_id: str, user: Reader) -> Response:
    if not (UUID.match(endpoint_id) and UUID.match(delivery_id)):
        raise not_found(user, "such delivery")
    registry = registry_of(request)
    service = _webhooks(request)
    now = registry.clock.now()

    def work(session: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        try:
            endpoint = service.get_endpoint(session, user.client_id, endpoint_id)
            d, e, a = service.delivery(session, user.client_id, endpoint_id, delivery_id)
        except (EndpointNotFound, EventNotFound):
            return None
        return endpoint_view(endpoint, now), delivery_view(d, e, a)

    found = await run(registry, work)
    if found is None:
        raise not_found(user, "such delivery")
    endpoint, delivery = found
    return render(
        request,
        "console/webhook_delivery.html",
        {
            "title": f"Delivery of {delivery['eventType']}",
            "e": endpoint,
            "d": delivery,
            "payload": json.dumps(delivery["payload"], indent=2, ensure_ascii=False),
            "headers": SIGNATURE_HEADERS.get(endpoint["signatureScheme"], []),
        },
        user,
        nav="webhooks",
    )


async def _endpoint_action(request: Request, act: Action, endpoint_id: str, fn: Any, done: str) -> Response:
    if not UUID.match(endpoint_id):
        raise not_found(act.user, "such webhook endpoint")
    outcome = await attempt(registry_of(request), fn)
    if isinstance(outcome, Problem):
        return _endpoint_refused(request, act, endpoint_id, "Not done", outcome)
    return redirect(request, f"/console/webhooks/{endpoint_id}", outcome or done)


def _endpoint_refused(request: Request, act: Action, endpoint_id: str, lead: str, found: Problem) -> Response:
    if found.status == 404:
        raise not_found(act.user, "such webhook endpoint")
    return redirect(request, f"/console/webhooks/{endpoint_id}", f"{lead}: {found.message}")


@router.post("/webhooks/{endpoint_id}/update")
async def update_endpoint(
    request: Request, endpoint_id: str, act: Annotated[Action, Depends(action(Permission.WEBHOOKS_MANAGE))]
) -> Response:
    service = _webhooks(request)
    f = act.form
    events = [e for e in f.getlist("events") if e in EVENTS]
    changes = EndpointChanges(
        fields=frozenset(
            {"url", "events", "channel", "description", "enabled"} - (set() if events else {"events"})
        ),
        url=f.get("url").strip()[:2048] or None,
        events=events or None,
        channel=f.get("channel") if f.get("channel") in CHANNELS else None,
        description=f.get("description").strip()[:200] or None,
        enabled=f.get("enabled") == "on",
    )

    def work(session: Any) -> str:
        service.update_endpoint(session, act.user.client_id, endpoint_id, changes)
        act.audit(session, "webhook.updated", endpoint_id)
        return "Endpoint saved." if events else "Endpoint saved (events unchanged: choose at least one)."

    return await _endpoint_action(request, act, endpoint_id, work, "Endpoint saved.")


@router.post("/webhooks/{endpoint_id}/replay")
async def replay(
    request: Request, endpoint_id: str, act: Annotated[Action, Depends(action(Permission.WEBHOOKS_MANAGE))]
) -> Response:
    service = _webhooks(request)
    event_id = act.form.get("eventId").strip()[:64] or None
    if event_id is not None and not UUID.match(event_id):
        return redirect(request, f"/console/webhooks/{endpoint_id}", "Not replayed: no such event.")
    since_text = act.form.get("since").strip()[:40]
    since = None
    if since_text:
        try:
            # <input type="datetime-local"> sends local wall time without a zone; the console shows UTC.
            since = datetime.fromisoformat(since_text).replace(tzinfo=UTC)
        except ValueError:
            return redirect(
                request,
                f"/console/webhooks/{endpoint_id}",
                "Not replayed: give the time as date and time (UTC).",
            )

    def work(session: Any) -> str:
        n = service.replay(session, act.user.client_id, endpoint_id, event_id, since=since)
        act.audit(
            session,
            "webhook.replayed",
            endpoint_id,
            {"eventId": event_id, "since": since.isoformat() if since else None, "count": n},
        )
        if n == 0 and event_id is None:
            return (
                "Nothing to send again: no delivery is failed or waiting for a retry."
                if since is None
                else ("Nothing to send again: no delivery since then.")
            )
        return f"{n} deliver{'y' if n == 1 else 'ies'} sent again now."

    return await _endpoint_action(request, act, endpoint_id, work, "Queued again.")


@router.post("/webhooks/{endpoint_id}/test")
async def send_test_event(
    request: Request, endpoint_id: str, act: Annotated[Action, Depends(action(Permission.WEBHOOKS_MANAGE))]
) -> Response:
    service = _webhooks(request)

    def work(session: Any) -> str:
        event_id = service.send_test_event(session, act.user.client_id, endpoint_id)
        act.audit(session, "webhook.test_sent", endpoint_id, {"eventId": event_id})
        return "Test event queued: it appears below within seconds."

    return await _endpoint_action(request, act, endpoint_id, work, "Test event queued.")


@router.post("/webhooks/{endpoint_id}/rotate-secret")
async def rotate_secret(
    request: Request, endpoint_id: str, act: Annotated[Action, Depends(action(Permission.WEBHOOKS_MANAGE))]
) -> Response:
    if not UUID.match(endpoint_id):
        raise not_found(act.user, "such webhook endpoint")
    registry = registry_of(request)
    service = _webhooks(request)

    def work(session: Any) -> str:
        _, secret = service.rotate_secret(session, act.user.client_id, endpoint_id, None)
        act.audit(session, "webhook.secret_rotated", endpoint_id)
        return secret

    outcome = await attempt(registry, work)
    if isinstance(outcome, Problem):
        return _endpoint_refused(request, act, endpoint_id, "Not rotated", outcome)
    return await _endpoint_page(request, act.user, endpoint_id, secret=outcome)


@router.post("/webhooks/{endpoint_id}/delete")
async def delete_endpoint(
    request: Request, endpoint_id: str, act: Annotated[Action, Depends(action(Permission.WEBHOOKS_MANAGE))]
) -> Response:
    if not UUID.match(endpoint_id):
        raise not_found(act.user, "such webhook endpoint")
    registry = registry_of(request)
    service = _webhooks(request)

    def work(session: Any) -> None:
        service.delete_endpoint(session, act.user.client_id, endpoint_id)
        act.audit(session, "webhook.deleted", endpoint_id)

    try:
        await run(registry, work)
    except EndpointNotFound:
        raise not_found(act.user, "such webhook endpoint") from None
    return redirect(request, "/console/webhooks", "Endpoint deleted.")


# -- API keys ----------------------------------------------------------------------------------------------


async def _keys_page(
    request: Request,
    user: CurrentUser,
    *,
    created: dict[str, Any] | None = None,
    found: Problem | None = None,
    status: int = 200,
    typed: dict[str, Any] | None = None,
) -> Response:
    registry = registry_of(request)
    keys = await run(
        registry,
        lambda s: [
            {
                "id": k.id,
                "name": k.name,
                "prefix": k.prefix,
                "scopes": k.scopes.split(),
                "created": k.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                "lastUsed": k.last_used_at.strftime("%Y-%m-%d %H:%M UTC") if k.last_used_at else "never",
                "revoked": k.revoked_at.strftime("%Y-%m-%d %H:%M UTC") if k.revoked_at else None,
            }
            for k in key_svc.list_api_keys(s, user.client_id)
        ],
    )
    return render(
        request,
        "console/keys.html",
        {
            "title": "API keys",
            "keys": keys,
            "created": created,
            "problem": found,
            "active": sum(1 for k in keys if not k["revoked"]),
            "max": key_svc.MAX_ACTIVE_KEYS,
            # What the person typed, kept when the key was not made.
            "typed": typed or {},
        },
        user,
        status=status,
        nav="keys",
    )


@router.get("/keys")
async def keys_page(request: Request, user: Reader) -> Response:
    return await _keys_page(request, user)


@router.post("/keys")
async def create_key(
    request: Request, act: Annotated[Action, Depends(action(Permission.KEYS_MANAGE))]
) -> Response:
    registry = registry_of(request)
    name = act.form.get("name").strip()[:200] or None
    scopes = ["admin"] if act.form.get("admin") == "on" else []

    def work(session: Any) -> dict[str, Any]:
        created = key_svc.create_api_key(session, act.user.client_id, scopes, registry.clock.now(), name=name)
        act.audit(session, "apikey.created", created.key.id, {"scopes": created.key.scopes.split()})
        return {"id": created.key.id, "secret": created.secret, "clientId": act.user.client_id}

    created = await attempt(registry, work)
    if isinstance(created, Problem):
        return await _keys_page(
            request,
            act.user,
            found=created,
            status=created.status,
            typed={"name": name or "", "admin": bool(scopes)},
        )
    # The secret is in this page only: it is stored as a hash and never shown again.
    return await _keys_page(request, act.user, created=created)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(
    request: Request, key_id: str, act: Annotated[Action, Depends(action(Permission.KEYS_MANAGE))]
) -> Response:
    if not KEY_ID.match(key_id):
        raise not_found(act.user, "such API key")
    registry = registry_of(request)

    def work(session: Any) -> None:
        key_svc.revoke_api_key(session, act.user.client_id, key_id, registry.clock.now())
        act.audit(session, "apikey.revoked", key_id)

    try:
        await run(registry, work)
    except NotFound:
        raise not_found(act.user, "such API key") from None
    registry.key_status.forget(key_id)
    return redirect(
        request, "/console/keys", f"Key {key_id} revoked: its tokens stop working within seconds."
    )


# -- MFA settings ------------------------------------------------------------------------------------------

SETTING_FIELDS = (
    (
        "linkTtlSeconds",
        "Link lifetime (seconds)",
        "60 to 604800; default: 600 for login and SMS links, 86400 for account-opening emails",
    ),
    ("otpTtlSeconds", "Code lifetime (seconds)", "60 to 3600; default 600"),
    ("otpLength", "Code length (digits)", "4 to 10; default 6"),
    ("maxVerifyAttempts", "Verification attempts per session", "1 to 10; default 5"),
    ("maxSends", "Sends per session", "1 to 10; default 3"),
)
# Retention periods (docs/operations.md, "Retention and erasure"): the form names them as the API's
# problems do (`retention.sessionsDays`), so a refusal is shown beside its field.
RETENTION_LABELS = {
    Kind.SESSIONS: "MFA sessions, their messages and timelines (days)",
    Kind.DECISIONS: "Decisions (days)",
    Kind.WEBHOOK_DELIVERIES: "Finished webhook deliveries (days)",
    Kind.AUDIT_LOG: "Audit log (days)",
}


def _retention_fields(defaults: dict[str, int]) -> list[tuple[str, str, str]]:
    return [
        (
            f"retention.{wire_name(k)}",
            RETENTION_LABELS[k],
            f"{BOUNDS[k].low} to {BOUNDS[k].high}; default {defaults[wire_name(k)]}",
        )
        for k in Kind
    ]


# The SMS pumping breaker's fields (docs/mfa.md), posted as `smsBreaker.<name>`.
BREAKER_FIELDS = (
    ("windowSeconds", "Window (seconds)", "600 to 86400, whole minutes; default 3600"),
    ("minSends", "Sends in the window before conversion is judged", "1 to 1000000; default 50"),
    ("minConversion", "Lowest conversion (verified / sent) before the breaker opens", "0 to 1; default 0.2"),
    ("coolDownSeconds", "Cool-down before probing (seconds)", "60 to 86400; default 1800"),
    ("probeSends", "Probe sends while half-open", "1 to 100; default 5"),
)
BREAKER_MODES = [m.value for m in BreakerMode]


def _breaker_form(form: Any, errors: list[dict[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The breaker's part of a settings form: the body's `smsBreaker`, and the values as posted."""
    body: dict[str, Any] = {}
    posted: dict[str, Any] = {}
    for key, _, _ in BREAKER_FIELDS:
        name = f"smsBreaker.{key}"
        text = form.get(name).strip()[:20]
        posted[name] = text
        if not text:
            body[key] = None
        elif key == "minConversion":
            try:
                body[key] = float(text)
            except ValueError:
                errors.append({"field": name, "message": "a number from 0 to 1, or empty for the default"})
        elif text.isdigit() and len(text) < 10:
            body[key] = int(text)
        else:
            errors.append({"field": name, "message": "a whole number, or empty for the default"})
    mode = form.get("smsBreaker.mode").strip()[:20]
    posted["smsBreaker.mode"] = mode
    body["mode"] = mode or None
    return body, posted


async def _settings_page(
    request: Request,
    user: CurrentUser,
    *,
    found: Problem | None = None,
    posted: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    registry = registry_of(request)

    def work(session: Any) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        row = session.get(ClientSettings, user.client_id)
        kept = {f"retention.{k}": v for k, v in stored_retention(session, user.client_id).items()}
        stored = (row.sms_breaker if row else None) or {}
        raw = {
            **{f"smsBreaker.{wire}": stored.get(snake) for snake, wire in BREAKER_NAMES.items()},
            "linkTtlSeconds": row.link_ttl_seconds if row else None,
            "otpTtlSeconds": row.otp_ttl_seconds if row else None,
            "otpLength": row.otp_length if row else None,
            "maxVerifyAttempts": row.max_verify_attempts if row else None,
            "maxSends": row.max_sends if row else None,
            "smsAllowedCountries": ", ".join(row.sms_allowed_countries or []) if row else "",
            "rejectVoip": bool(row.reject_voip) if row else False,
            "destination": "",
        } | kept
        retention = retention_view(session, user.client_id, configured_defaults(registry.settings))
        view = settings_view(session, user.client_id) | {"retention": retention}
        return view, raw, recent_transitions(session, user.client_id)

    effective, raw, transitions = await run(registry, work)
    defaults = configured_defaults(registry.settings)
    if posted is not None:
        raw = {**raw, **posted}
    return render(
        request,
        "console/settings.html",
        {
            "title": "MFA settings",
            "s": effective,
            "raw": raw,
            "fields": SETTING_FIELDS,
            "retention_fields": _retention_fields({wire_name(k): defaults.days(k) for k in Kind}),
            "breaker_fields": BREAKER_FIELDS,
            "breaker_modes": BREAKER_MODES,
            "transitions": transitions,
            "problem": found,
            "errors": errors_by_field(found.errors) if found else {},
        },
        user,
        status=status,
        nav="settings",
    )


@router.get("/settings")
async def settings_page(request: Request, user: Reader) -> Response:
    return await _settings_page(request, user)


@router.post("/settings")
async def save_settings(
    request: Request, act: Annotated[Action, Depends(action(Permission.SETTINGS_EDIT))]
) -> Response:
    registry = registry_of(request)
    f = act.form
    body: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    retention: dict[str, Any] = {}
    retention_keys = [f"retention.{wire_name(k)}" for k in Kind]
    for key in [k for k, _, _ in SETTING_FIELDS] + retention_keys:
        text = f.get(key).strip()
        into, name = (retention, key.split(".", 1)[1]) if key.startswith("retention.") else (body, key)
        if not text:
            into[name] = None
        elif text.isdigit() and len(text) < 10:
            into[name] = int(text)
        else:
            errors.append({"field": key, "message": "a whole number, or empty for the default"})
    body["retention"] = retention
    countries = [c for c in re_split(f.get("smsAllowedCountries")) if c]
    body["smsAllowedCountries"] = countries or None
    body["rejectVoip"] = f.get("rejectVoip") == "on"
    body["smsBreaker"], breaker_posted = _breaker_form(f, errors)
    posted: dict[str, Any] = {k: f.get(k) for k in [k for k, _, _ in SETTING_FIELDS] + retention_keys} | {
        "smsAllowedCountries": f.get("smsAllowedCountries"),
        "rejectVoip": f.get("rejectVoip") == "on",
        **breaker_posted,
    }
    if errors:
        return await _settings_page(
            request,
            act.user,
            found=Problem("The settings were not saved.", errors, 400),
            posted=posted,
            status=400,
        )
    try:
        parsed = SettingsWithRetention.model_validate(body)
    except ValidationError as exc:
        found = page_problem(exc)
        assert found is not None  # a ValidationError always has its words
        return await _settings_page(request, act.user, found=found, posted=posted, status=400)

    def work(session: Any) -> None:
        now = registry.clock.now()
        update_settings(session, act.user.client_id, parsed, now)
        update_retention(session, act.user.client_id, parsed.retention, now)
        act.audit(session, "settings.updated", act.user.client_id, at=now)

    await run(registry, work)
    registry.mfa.forget_config(act.user.client_id)  # after the commit: a challenge in between read the old
    return redirect(request, "/console/settings", "Settings saved.")


@router.post("/settings/unlock")
async def unlock_destination(
    request: Request, act: Annotated[Action, Depends(action(Permission.SETTINGS_EDIT))]
) -> Response:
    """Clear one destination's failure counter and lock (docs/mfa.md), as POST
    /manage/v1/destinations/unlock does."""
    registry = registry_of(request)
    raw = act.form.get("destination").strip()[:320]
    channel = "EMAIL" if "@" in raw else "SMS"

    def work(session: Any) -> UnlockResult:
        result = registry.mfa.unlock_destination(session, act.user.client_id, channel, raw)
        details = {"channel": result.channel, "failures": result.failures, "locked": result.locked}
        act.audit(session, "destination.unlocked", result.masked, details)
        return result

    try:
        result = await run(registry, work)
    except InvalidDestination as exc:
        message = "an email address or a phone number in E.164 form is needed" if not raw else str(exc)
        found = Problem("Nothing was unlocked.", [{"field": "destination", "message": message}], 400)
        return await _settings_page(request, act.user, found=found, posted={"destination": raw}, status=400)
    if result.cleared:
        done = f"{result.masked} unlocked: {result.failures} consecutive failures cleared" + (
            " (it was locked)." if result.locked else "."
        )
    else:
        done = f"{result.masked} had no failures to clear."
    return redirect(request, "/console/settings", done)


def re_split(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[\s,;]+", text[:2000])]


# -- the signed-in person's account ---------------------------------------------------------------------


@router.get("/account")
async def account_page(
    request: Request, user: Annotated[CurrentUser, Depends(reader(Permission.OWN_ACCOUNT))]
) -> Response:
    registry = registry_of(request)
    auth = auth_service(registry)
    now = registry.clock.now()

    def work(session: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        sessions = [
            {
                "current": s.id == user.session_id,
                "created": s.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                "ip": s.ip,
                "agent": (s.user_agent or "")[:80],
            }
            for s in auth.sessions_of(session, user, now)
        ]
        devices = [
            {
                "created": d.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                "agent": (d.user_agent or "")[:80],
                "expires": d.expires_at.strftime("%Y-%m-%d"),
            }
            for d in auth.devices_of(session, user, now)
        ]
        return sessions, devices

    sessions, devices = await run(registry, work)
    return render(
        request,
        "console/account.html",
        {"title": "Your account", "sessions": sessions, "devices": devices},
        user,
        nav="account",
    )


@router.post("/account/sign-out-others")
async def sign_out_others(
    request: Request, act: Annotated[Action, Depends(action(Permission.OWN_ACCOUNT))]
) -> Response:
    registry = registry_of(request)
    auth = auth_service(registry)
    n = await run(registry, lambda s: auth.sign_out_others(s, act.user, registry.clock.now()))
    return redirect(request, "/console/account", f"Signed out {n} other session{'s' if n != 1 else ''}.")


@router.post("/account/forget-devices")
async def forget_devices(
    request: Request, act: Annotated[Action, Depends(action(Permission.OWN_ACCOUNT))]
) -> Response:
    registry = registry_of(request)
    auth = auth_service(registry)
    n = await run(registry, lambda s: auth.forget_devices(s, act.user, registry.clock.now()))
    return redirect(
        request,
        "/console/account",
        f"Forgot {n} browser{'s' if n != 1 else ''}: the next sign-in there asks for the email link again.",
    )
