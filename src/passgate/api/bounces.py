"""Bounces posted by a mail relay: POST /providers/bounces (Standard Webhooks signature checked)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import RegistryDep
from passgate.api.errors import ApiProblem
from passgate.bootstrap import build_bounce_intake
from passgate.messaging.bounces import MAX_BOUNCE_BYTES
from passgate.webhooks.signing import standard_verify

router = APIRouter(prefix="/providers", tags=["provider callbacks"])

_EXAMPLE_DSN = (
    "From: MAILER-DAEMON@mx.example.net\r\n"
    "To: bounces+0193a1b20000700080000000000000014f2a9c0e7d1b3a5c6e8f@bounces.acme.example\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "Message-ID: <20261207101500.4F2A1@mx.example.net>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
    "--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
    "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
    "Reporting-MTA: dns; mx.example.net\r\n\r\n"
    "Final-Recipient: rfc822; jo@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
    "--b1--\r\n"
)


class BounceOutcome(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"outcome": "bounced"}]})

    outcome: Literal["bounced", "delayed", "duplicate", "forged", "unknown", "not-a-bounce"] = Field(
        description=(
            "`bounced`: a hard bounce, the message is BOUNCED and its session INVALID; `delayed`: a soft "
            "bounce, on the session's timeline; `duplicate`: already recorded; `forged`: a bounce address "
            "whose token is not ours; `unknown`: no bounce address of ours, or no such email; "
            "`not-a-bounce`: a success notice or an auto-reply. Only the first two change anything."
        )
    )


@router.post(
    "/bounces",
    summary="A bounce (delivery status notification) forwarded by a mail relay (Standard Webhooks signature checked)",
    description=(
        "Exists only when PASSGATE_BOUNCE_SECRET is set. The body is the bounce exactly as the relay "
        "received it (`message/rfc822`: an RFC 3464 `multipart/report; report-type=delivery-status`, or a "
        "plain-text bounce), at most 1 MiB, addressed to the email's bounce address (`To`, `Delivered-To` "
        "or `X-Original-To`). It must carry `webhook-id`, `webhook-timestamp` and `webhook-signature` "
        'made with PASSGATE_BOUNCE_SECRET over the body\'s exact bytes (docs/operations.md, "Bounces").'
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"message/rfc822": {"schema": {"type": "string"}, "example": _EXAMPLE_DSN}},
        }
    },
    responses={
        401: {"description": "missing, stale (over 5 minutes) or wrong signature; nothing changed"},
        404: {"description": "PASSGATE_BOUNCE_SECRET is not set"},
        409: {"description": "the email is not yet recorded as sent: post the bounce again shortly"},
        413: {"description": "the body is over 1 MiB"},
    },
)
async def post_bounce(request: Request, registry: RegistryDep) -> BounceOutcome:
    secret = registry.settings.bounce_secret
    if not secret:
        raise ApiProblem(404, "Not found", "bounces over HTTP are not configured", slug="not-found")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BOUNCE_BYTES:
            raise ApiProblem(413, "Payload too large", f"a bounce is at most {MAX_BOUNCE_BYTES} bytes")
    # Checked before anything is read or looked up: an unsigned bounce learns nothing.
    if not standard_verify(secret, request.headers, bytes(body), registry.clock.now()):
        raise ApiProblem(
            401,
            "Unauthorized",
            "a bounce needs a valid webhook-signature made with PASSGATE_BOUNCE_SECRET, and a "
            "webhook-timestamp within 5 minutes",
            slug="bad-signature",
        )
    intake = build_bounce_intake(registry)
    outcome = await run_in_threadpool(intake.take, bytes(body), (), "http")
    if outcome == "early":
        raise ApiProblem(
            409,
            "Not sent yet",
            "the email is not yet recorded as sent; post the bounce again in a few seconds",
            slug="not-sent-yet",
        )
    return BounceOutcome(outcome=outcome)
