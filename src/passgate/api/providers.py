"""Delivery callbacks: Twilio's signed status callback and the generic HTTP gateway's."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import RegistryDep
from passgate.api.errors import ApiProblem
from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.messaging.models import Message
from passgate.messaging.states import DELIVERY_TRANSITIONS, DeliveryStatus

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


def _apply(registry: Registry, by: str, ident: str, status: DeliveryStatus, source: str) -> bool:
    with transaction(registry.sessions) as session:
        column = Message.provider_message_id if by == "provider" else Message.id
        message = session.scalars(select(Message).where(column == ident).with_for_update()).first()
        if message is None:
            return False
        current = DeliveryStatus(message.delivery_status)
        if status == current or status not in DELIVERY_TRANSITIONS[current]:
            return True  # a duplicate or out-of-order report changes nothing
        registry.mfa.delivery_report(session, message, status, source)
        return True


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


@router.post("/http/status", summary="Delivery report from the generic HTTP SMS gateway")
async def http_status(body: GatewayStatus, registry: RegistryDep) -> Any:
    mapped = DeliveryStatus.DELIVERED if body.status == "delivered" else DeliveryStatus.UNDELIVERED
    found = await run_in_threadpool(_apply, registry, "id", body.messageId, mapped, "http-gateway")
    if not found:
        raise ApiProblem(404, "Not found", "no such message", slug="not-found")
    return JSONResponse({"status": "ok"})
