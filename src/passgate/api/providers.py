"""Delivery callbacks: Twilio's signed status callback and the generic HTTP gateway's (Standard Webhooks
signature)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import RegistryDep
from passgate.api.errors import ApiProblem
from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.messaging.queries import report_target
from passgate.messaging.states import DeliveryStatus, MessageStatus
from passgate.webhooks.signing import standard_verify

router = APIRouter(prefix="/providers", tags=["provider callbacks"])

TWILIO_STATUS = {
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.UNDELIVERED,
    "sent": DeliveryStatus.SENT,
}


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    payload = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def _apply(
    registry: Registry,
    by: Literal["provider", "id"],
    ident: str,
    status: DeliveryStatus,
    source: str,
    gateway: str | None = None,
) -> str:
    """Records a delivery report: "applied" (or a duplicate, changing nothing), "missing", or "early" (a
    message of this gateway not yet recorded as sent). With `gateway`, only SMS messages that gateway
    sent are reported on: an email's Message-ID carries its outbox id too, and anyone who sees a mail's
    headers would otherwise be able to report on it."""
    with transaction(registry.sessions) as session:
        message = report_target(session, by, ident)
        if message is None:
            return "missing"
        if gateway is not None:
            if message.channel != "SMS" or message.provider not in (gateway, None):
                return "missing"
            if message.provider is None:
                return (
                    "early" if message.status in (MessageStatus.QUEUED, MessageStatus.SENDING) else "missing"
                )
        # A duplicate or out-of-order report changes nothing.
        registry.dispatcher.delivery_report(session, message, status, source)
        return "applied"


@router.post("/twilio/status", summary="Twilio message status callback (X-Twilio-Signature checked)")
async def twilio_status(request: Request, registry: RegistryDep) -> Response:
    token = registry.settings.twilio_auth_token
    if not token:
        raise ApiProblem(404, "Not found", "Twilio is not configured", slug="not-found")
    form = await request.form()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    expected = twilio_signature(token, f"{registry.settings.public_url}/providers/twilio/status", params)
    given = request.headers.get("x-twilio-signature", "")
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise ApiProblem(403, "Forbidden", "bad or missing X-Twilio-Signature", slug="bad-signature")
    sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "")
    mapped = TWILIO_STATUS.get(status)
    if sid and mapped is not None:
        await run_in_threadpool(_apply, registry, "provider", sid, mapped, "twilio")
    return Response(status_code=204)


class GatewayStatus(BaseModel):
    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"messageId": "3f2a…", "status": "delivered"}]}
    )

    messageId: StrictStr = Field(min_length=1, max_length=64)
    status: Literal["delivered", "failed"]


MAX_REPORT_BYTES = 16 * 1024


async def _report_body(request: Request) -> bytes:
    """The request body, refused past `MAX_REPORT_BYTES` (a report is a few dozen bytes)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REPORT_BYTES:
            raise ApiProblem(
                413, "Payload too large", f"a delivery report is at most {MAX_REPORT_BYTES} bytes"
            )
    return bytes(body)


@router.post(
    "/http/status",
    summary="Delivery report from the generic HTTP SMS gateway (Standard Webhooks signature checked)",
    description=(
        'Exists only when PASSGATE_SMS_PROVIDER names `http`. The body `{"messageId", "status": '
        '"delivered"|"failed"}` must carry `webhook-id`, `webhook-timestamp` and `webhook-signature` '
        "made with PASSGATE_SMS_HTTP_SECRET (docs/mfa.md)."
    ),
    responses={
        401: {"description": "missing, stale (over 5 minutes) or wrong signature; nothing changed"},
        404: {"description": "no SMS message sent through this gateway has that id"},
        409: {"description": "the message is not yet recorded as sent: report it again shortly"},
    },
)
async def http_status(request: Request, registry: RegistryDep) -> Any:
    settings = registry.settings
    if "http" not in settings.sms_providers:
        raise ApiProblem(404, "Not found", "the HTTP SMS gateway is not configured", slug="not-found")
    body = await _report_body(request)
    # Checked before anything is read or looked up: an unsigned report learns nothing.
    if settings.sms_http_secret is not None and not standard_verify(
        settings.sms_http_secret, request.headers, body, registry.clock.now()
    ):
        raise ApiProblem(
            401,
            "Unauthorized",
            "a delivery report needs a valid webhook-signature made with the gateway's secret, and a "
            "webhook-timestamp within 5 minutes",
            slug="bad-signature",
        )
    try:
        report = GatewayStatus.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    mapped = DeliveryStatus.DELIVERED if report.status == "delivered" else DeliveryStatus.UNDELIVERED
    outcome = await run_in_threadpool(
        _apply, registry, "id", report.messageId, mapped, "http-gateway", "http"
    )
    if outcome == "missing":
        raise ApiProblem(
            404, "Not found", "no SMS message sent through this gateway has that id", slug="not-found"
        )
    if outcome == "early":
        raise ApiProblem(
            409,
            "Not sent yet",
            "the message is not yet recorded as sent; report it again in a few seconds",
            slug="not-sent-yet",
        )
    return JSONResponse({"status": "ok"})
