"""/manage/v1/webhooks: endpoints, their deliveries log and replay, secret and key rotation, the public key."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictStr
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.api.errors import ApiProblem
from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.webhooks.events import Channel, EventType, SignatureScheme
from passgate.webhooks.services import (
    EndpointChanges,
    WebhookService,
    delivery_view,
    endpoint_view,
    public_key_view,
)
from passgate.webhooks.states import DeliveryStatus

router = APIRouter(prefix="/manage/v1/webhooks", tags=["webhooks"])

MAX_OVERLAP_SECONDS = 7 * 86400
NO_STORE = {"Cache-Control": "no-store"}
# Ids are UUIDs; anything else (a NUL byte, say, which PostgreSQL refuses in text) is a bad request.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
NO_NUL = r"^[^\x00]*$"
EndpointId = Annotated[str, Path(pattern=ID_PATTERN)]


def get_webhooks(registry: RegistryDep) -> WebhookService:
    return registry.webhooks


WebhooksDep = Annotated[WebhookService, Depends(get_webhooks)]

_EXAMPLE: dict[str, Any] = {
    "url": "https://hooks.acme.example/passgate",
    "events": ["MFA.StatusUpdate", "Verification.StatusUpdate"],
    "channel": None,
    "signatureScheme": "standard-webhooks",
    "enabled": True,
}


def _unique(values: list[EventType]) -> list[EventType]:
    return list(dict.fromkeys(values))


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    url: StrictStr = Field(min_length=1, max_length=2048, description="https (http only where allowed)")
    events: list[EventType] = Field(min_length=1, max_length=10)
    channel: Channel | None = Field(default=None, description="only events of this channel (EMAIL or SMS)")
    signatureScheme: SignatureScheme = SignatureScheme.KOUNT
    enabled: StrictBool = True
    description: StrictStr | None = Field(default=None, max_length=200, pattern=NO_NUL)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"events": ["MFA.StatusUpdate"], "channel": "SMS"}]}
    )

    url: StrictStr | None = Field(default=None, min_length=1, max_length=2048)
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=10)
    channel: Channel | None = None
    signatureScheme: SignatureScheme | None = None
    enabled: StrictBool | None = None
    description: StrictStr | None = Field(default=None, max_length=200, pattern=NO_NUL)


class ReplayBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"eventId": "0f6f7d0e-3c1a-4f7e-9f55-0d7f1b6c2a11"},
                {"failed": True},
                {"since": "2026-12-07T06:00:00Z"},
            ]
        },
    )

    eventId: StrictStr | None = Field(
        default=None, pattern=ID_PATTERN, description="one event, whatever its state"
    )
    failed: StrictBool | None = Field(
        default=None,
        description="true: every FAILED delivery and every PENDING one waiting for a later retry, sent now",
    )
    since: AwareDatetime | None = Field(
        default=None, description="every delivery made since this time (RFC 3339), delivered ones too"
    )


class RotateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"overlapSeconds": 86400}]})

    overlapSeconds: int | None = Field(
        default=None, ge=0, le=MAX_OVERLAP_SECONDS, description="how long the old secret or key stays valid"
    )


class StatusParam(StrEnum):
    PENDING = DeliveryStatus.PENDING.value
    SENDING = DeliveryStatus.SENDING.value
    DELIVERED = DeliveryStatus.DELIVERED.value
    FAILED = DeliveryStatus.FAILED.value


def _bad(field: str, message: str) -> ApiProblem:
    return ApiProblem(
        400,
        "Invalid request",
        f"invalid value for {field}",
        [{"field": field, "message": message}],
        "validation",
    )


# Optional body; the examples are spelled out because an optional model's schema carries none.
ROTATE_BODY = Body(default=None, openapi_examples={"one-day-overlap": {"value": {"overlapSeconds": 86400}}})


def _overlap(body: RotateBody | None) -> timedelta | None:
    if body is None or body.overlapSeconds is None:
        return None
    return timedelta(seconds=body.overlapSeconds)


async def _run(registry: Registry, fn: Any) -> Any:
    def run() -> Any:
        with transaction(registry.sessions) as session:
            return fn(session)

    return await run_in_threadpool(run)


# The fixed paths come before /{endpoint_id}, which would otherwise match them.


@router.get("/public-key", summary="The public keys that verify kount-rsa-pss signatures (newest first)")
async def public_key(registry: RegistryDep, service: WebhooksDep, auth: AdminAuth) -> JSONResponse:
    keys = await _run(registry, lambda s: service.public_keys(s, auth.client_id))
    return JSONResponse(public_key_view(keys))


@router.post(
    "/public-key/rotate",
    summary="Sign with a new RSA key from now on; the old one stays valid for the overlap",
)
async def rotate_key(
    registry: RegistryDep, service: WebhooksDep, auth: AdminAuth, body: RotateBody | None = ROTATE_BODY
) -> JSONResponse:
    keys, overlap = await _run(registry, lambda s: service.rotate_key(s, auth.client_id, _overlap(body)))
    return JSONResponse({**public_key_view(keys), "overlapSeconds": int(overlap.total_seconds())})


@router.get("", summary="List webhook endpoints (never their secrets)")
async def list_endpoints(registry: RegistryDep, service: WebhooksDep, auth: AdminAuth) -> JSONResponse:
    now = registry.clock.now()
    items = await _run(
        registry, lambda s: [endpoint_view(e, now) for e in service.list_endpoints(s, auth.client_id)]
    )
    return JSONResponse({"items": items})


@router.post(
    "",
    status_code=201,
    summary="Register an endpoint; a standard-webhooks secret is in this answer only",
    responses={422: {"description": "the URL may not be called (`errors[].field` is `url`)"}},
)
async def create_endpoint(
    body: EndpointCreate, registry: RegistryDep, service: WebhooksDep, auth: AdminAuth
) -> JSONResponse:
    def run(session: Any) -> dict[str, Any]:
        endpoint, secret = service.create_endpoint(
            session,
            auth.client_id,
            url=body.url,
            events=[e.value for e in _unique(body.events)],
            channel=body.channel.value if body.channel else None,
            signature_scheme=body.signatureScheme.value,
            enabled=body.enabled,
            description=body.description,
        )
        out = endpoint_view(endpoint, registry.clock.now())
        if secret is not None:
            out["secret"] = secret
        return out

    return JSONResponse(await _run(registry, run), status_code=201, headers=NO_STORE)


@router.get("/{endpoint_id}", summary="One endpoint")
async def get_endpoint(
    endpoint_id: EndpointId, registry: RegistryDep, service: WebhooksDep, auth: AdminAuth
) -> JSONResponse:
    now = registry.clock.now()
    out = await _run(
        registry, lambda s: endpoint_view(service.get_endpoint(s, auth.client_id, endpoint_id), now)
    )
    return JSONResponse(out)


@router.patch("/{endpoint_id}", summary="Change some of an endpoint's attributes")
async def update_endpoint(
    endpoint_id: EndpointId,
    body: EndpointUpdate,
    registry: RegistryDep,
    service: WebhooksDep,
    auth: AdminAuth,
) -> JSONResponse:
    given = body.model_fields_set
    # null means "remove" only where that makes sense (channel, description).
    for name in ("url", "events", "signatureScheme", "enabled"):
        if name in given and getattr(body, name) is None:
            raise _bad(name, "cannot be null")
    renames = {"signatureScheme": "signature_scheme"}
    changes = EndpointChanges(
        fields=frozenset(renames.get(f, f) for f in given),
        url=body.url,
        events=[e.value for e in _unique(body.events)] if body.events is not None else None,
        channel=body.channel.value if body.channel else None,
        signature_scheme=body.signatureScheme.value if body.signatureScheme else None,
        enabled=body.enabled,
        description=body.description,
    )

    def run(session: Any) -> dict[str, Any]:
        endpoint, secret = service.update_endpoint(session, auth.client_id, endpoint_id, changes)
        out = endpoint_view(endpoint, registry.clock.now())
        if secret is not None:
            out["secret"] = secret
        return out

    return JSONResponse(await _run(registry, run), headers=NO_STORE)


@router.delete("/{endpoint_id}", status_code=204, summary="Delete an endpoint and its deliveries log")
async def delete_endpoint(
    endpoint_id: EndpointId, registry: RegistryDep, service: WebhooksDep, auth: AdminAuth
) -> Response:
    await _run(registry, lambda s: service.delete_endpoint(s, auth.client_id, endpoint_id))
    return Response(status_code=204)


@router.post("/{endpoint_id}/enable", summary="Enable an endpoint (also after it was disabled automatically)")
async def enable_endpoint(
    endpoint_id: EndpointId, registry: RegistryDep, service: WebhooksDep, auth: AdminAuth
) -> JSONResponse:
    now = registry.clock.now()
    out = await _run(
        registry, lambda s: endpoint_view(service.set_enabled(s, auth.client_id, endpoint_id, True), now)
    )
    return JSONResponse(out)


@router.post("/{endpoint_id}/disable", summary="Disable an endpoint; waiting deliveries are given up")
async def disable_endpoint(
    endpoint_id: EndpointId, registry: RegistryDep, service: WebhooksDep, auth: AdminAuth
) -> JSONResponse:
    now = registry.clock.now()
    out = await _run(
        registry, lambda s: endpoint_view(service.set_enabled(s, auth.client_id, endpoint_id, False), now)
    )
    return JSONResponse(out)


@router.post(
    "/{endpoint_id}/rotate-secret",
    summary="A new standard-webhooks secret (shown once); the old one signs beside it for the overlap",
)
async def rotate_secret(
    endpoint_id: EndpointId,
    registry: RegistryDep,
    service: WebhooksDep,
    auth: AdminAuth,
    body: RotateBody | None = ROTATE_BODY,
) -> JSONResponse:
    def run(session: Any) -> dict[str, Any]:
        endpoint, secret = service.rotate_secret(session, auth.client_id, endpoint_id, _overlap(body))
        return {**endpoint_view(endpoint, registry.clock.now()), "secret": secret}

    return JSONResponse(await _run(registry, run), headers=NO_STORE)


@router.get("/{endpoint_id}/deliveries", summary="Deliveries, newest first, each with every try")
async def deliveries(
    endpoint_id: EndpointId,
    registry: RegistryDep,
    service: WebhooksDep,
    auth: AdminAuth,
    status: StatusParam | None = None,
    eventId: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JSONResponse:
    def run(session: Any) -> list[dict[str, Any]]:
        rows = service.deliveries(
            session,
            auth.client_id,
            endpoint_id,
            status=status.value if status else None,
            event_id=eventId,
            limit=limit,
            offset=offset,
        )
        return [delivery_view(d, e, attempts) for d, e, attempts in rows]

    items = await _run(registry, run)
    return JSONResponse({"items": items, "limit": limit, "offset": offset})


@router.post(
    "/{endpoint_id}/replay",
    status_code=202,
    summary='Send one event again (`{"eventId": …}`) or every failed delivery (`{"failed": true}`)',
)
async def replay(
    endpoint_id: EndpointId, body: ReplayBody, registry: RegistryDep, service: WebhooksDep, auth: AdminAuth
) -> JSONResponse:
    given = [
        name
        for name, value in (("eventId", body.eventId), ("failed", body.failed), ("since", body.since))
        if value
    ]
    if len(given) != 1:
        raise _bad(
            given[1] if len(given) > 1 else "eventId", 'give one of "eventId", "failed": true or "since"'
        )
    count = await _run(
        registry, lambda s: service.replay(s, auth.client_id, endpoint_id, body.eventId, since=body.since)
    )
    return JSONResponse({"replayed": count}, status_code=202)


@router.get("/{endpoint_id}/deliveries/{delivery_id}", summary="One delivery: its payload and every try")
async def delivery(
    endpoint_id: EndpointId,
    delivery_id: Annotated[str, Path(pattern=ID_PATTERN)],
    registry: RegistryDep,
    service: WebhooksDep,
    auth: AdminAuth,
) -> JSONResponse:
    def run(session: Any) -> dict[str, Any]:
        return delivery_view(*service.delivery(session, auth.client_id, endpoint_id, delivery_id))

    return JSONResponse(await _run(registry, run))


@router.post(
    "/{endpoint_id}/test",
    status_code=202,
    summary="Send a Webhook.Test event to this endpoint",
    description="Queued like any event (signed, retried, in the deliveries log), whatever the endpoint "
    'subscribes to. Answers `{"eventId": …}`.',
)
async def send_test(
    endpoint_id: EndpointId, registry: RegistryDep, service: WebhooksDep, auth: AdminAuth
) -> JSONResponse:
    event_id = await _run(registry, lambda s: service.send_test_event(s, auth.client_id, endpoint_id))
    return JSONResponse({"eventId": event_id}, status_code=202)
