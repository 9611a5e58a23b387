"""/manage/v1/mfa-sessions: the client's MFA and verification sessions, filtered and paged, each as
GET /mfa/v2/{id} shows it (masked destination, never a code or link)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.api.errors import ApiProblem
from passgate.api.mfa import SESSION_EXAMPLE
from passgate.contacts import normalise_destination
from passgate.db import transaction
from passgate.mfa.queries import list_sessions
from passgate.mfa.views import session_view

router = APIRouter(prefix="/manage/v1/mfa-sessions", tags=["mfa sessions"])

MAX_LIMIT = 100
# Session ids are UUIDs: a cursor naming anything else was not made here.
_SESSION_ID = re.compile(r"[0-9a-f-]{1,36}")
_LIST_EXAMPLE = {"items": [SESSION_EXAMPLE], "nextCursor": "MjAyNi0xMi0wN1QwOTowMDowMCswMDowMHw1ZjBj"}

StatusFilter = Literal[
    "UNKNOWN",
    "MESSAGE_SENT",
    "VERIFIED",
    "VERIFICATION_ATTEMPT_FAILED",
    "TERMINATED",
    "FAILED_AUTHORIZATION",
    "INVALID",
]


def _bad(field: str, message: str) -> ApiProblem:
    return ApiProblem(
        400,
        "Invalid request",
        f"invalid value for {field}",
        slug="validation",
        errors=[{"field": field, "message": message}],
    )


def encode_cursor(created_at: datetime, session_id: str) -> str:
    """The opaque cursor of a page's last row: where the next page starts."""
    raw = f"{created_at.astimezone(UTC).isoformat()}|{session_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, session_id = raw.partition("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not _SESSION_ID.fullmatch(session_id):
            raise ValueError(raw)
        return when.astimezone(UTC), session_id
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise _bad("cursor", "not a cursor this list gave (pass nextCursor as it came)") from None


def _aware(field: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        if value.tzinfo is None:
            raise ValueError(value)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _bad(field, "must be an RFC 3339 time with a zone, e.g. 2026-12-07T09:00:00Z") from None


def _destination_channel(destination: str) -> str:
    return "EMAIL" if "@" in destination else "SMS"


@router.get(
    "",
    summary="MFA and verification sessions, newest first, filtered and paged",
    description=(
        "Each item is what `GET /mfa/v2/{id}` answers: the destination masked, never a code or link. "
        "Filters combine: `status`, `channel`, `accountId`, `destination` (the email address or E.164 phone "
        "number as your integration sends it; it is normalised and compared by its keyed hash, never "
        "stored or logged), and the creation time range `createdFrom` (inclusive) to `createdTo` "
        "(exclusive). Pages hold up to `limit` items (at most 100); pass `nextCursor` as `cursor` for the "
        "next page, until `nextCursor` is null."
    ),
    responses={200: {"content": {"application/json": {"example": _LIST_EXAMPLE}}}},
)
async def list_mfa_sessions(
    registry: RegistryDep,
    auth: AdminAuth,
    status: StatusFilter | None = Query(default=None, description="only sessions in this status"),
    channel: Literal["EMAIL", "SMS"] | None = Query(default=None, description="only this channel"),
    accountId: str | None = Query(
        default=None, min_length=1, max_length=256, description="only this account"
    ),
    destination: str | None = Query(
        default=None,
        min_length=3,
        max_length=320,
        description="only sessions sent to this email address or phone number",
        examples=["jo@example.com"],
    ),
    createdFrom: datetime | None = Query(default=None, description="created at or after (RFC 3339)"),
    createdTo: datetime | None = Query(default=None, description="created before (RFC 3339)"),
    limit: int = Query(default=50, ge=1, le=MAX_LIMIT, description="items per page"),
    cursor: str | None = Query(default=None, max_length=200, description="`nextCursor` of the previous page"),
) -> JSONResponse:
    created_from, created_to = _aware("createdFrom", createdFrom), _aware("createdTo", createdTo)
    after = decode_cursor(cursor) if cursor else None
    hashes: list[str] = []
    if destination is not None:
        dest_channel = _destination_channel(destination)
        if channel is not None and channel != dest_channel:
            raise _bad("destination", f"is not an address of the {channel} channel")
        check = normalise_destination(dest_channel, destination)
        if not check.ok or check.value is None:
            raise _bad("destination", check.reason or "not an email address or E.164 phone number")
        # Every configured key's hash: sessions made before a key rotation are found too.
        hashes = registry.keyring.all_hashes("destination", check.value)

    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            page = list_sessions(
                session,
                auth.client_id,
                status=status,
                channel=channel,
                account_id=accountId,
                destination_hashes=hashes,
                created_from=created_from,
                created_to=created_to,
                after=after,
                limit=limit,
            )
        return {
            "items": [session_view(row) for row in page.rows],
            "nextCursor": encode_cursor(*page.more_after) if page.more_after else None,
        }

    return JSONResponse(await run_in_threadpool(run))
