"""The activity explorer: the client's decisions with the MFA sessions they started (searchable,
filterable, cursor-paged), and one decision explained by re-evaluating its request."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from passgate.console.activity import (
    PAGE,
    ActivityFilters,
    decision_with_session,
    flatten,
    masked_explanation,
    masked_request,
    search,
)
from passgate.console.forms import clean_param, show_value
from passgate.console.routes.common import Reader, not_found, registry_of, render, run
from passgate.console.stats import CHANNELS, OUTCOMES, STATUSES
from passgate.console.views import session_view, timeline_view
from passgate.contacts import mask
from passgate.db import Session
from passgate.paging import KeysetCursor
from passgate.policy.exceptions import PolicyError
from passgate.policy.simulation import simulate

router = APIRouter()
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PHONE = re.compile(r"^\+?[0-9 ]{1,20}$")
RE_EVALUATED = (
    "Re-evaluated now: time-dependent signals such as velocities and device history may differ from the "
    "moment of the decision."
)


def _moment(text: str) -> datetime | None:
    """A time from the form (`2026-12-07T06:00`, read as UTC) or a link (ISO 8601 with an offset)."""
    if not text or len(text) > 40:
        return None
    try:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or one that falls outside the years 1-9999 in UTC
        return None


def _field(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M") if value else ""


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


@router.get("/activity")
async def activity_page(
    request: Request,
    user: Reader,
    inquiryId: str = "",  # noqa: N803 - the request attribute's own name
    account: str = "",
    email: str = "",
    phone: str = "",
    decision: str = "",
    status: str = "",
    channel: str = "",
    after: str = "",
) -> Response:
    registry = registry_of(request)
    q = request.query_params
    ignored: list[str] = []
    raw_from, raw_to = q.get("from", ""), q.get("to", "")
    created_from, created_to = _moment(raw_from), _moment(raw_to)
    if raw_from and created_from is None:
        ignored.append("From (not a date and time)")
    if raw_to and created_to is None:
        ignored.append("To (not a date and time)")
    phone_f = clean_param(phone, 20) or ""
    if phone_f and not PHONE.match(phone_f):
        ignored.append("Phone (digits, with a leading +)")
        phone_f = ""
    filters = ActivityFilters(
        inquiry_id=clean_param(inquiryId, 256) or "",
        account_id=clean_param(account, 256) or "",
        email=clean_param(email, 254) or "",
        phone=phone_f,
        decision=decision if decision in OUTCOMES else "",
        status=status if status in STATUSES else "",
        channel=channel if channel in CHANNELS else "",
        created_from=created_from,
        created_to=created_to,
    )
    cursor = KeysetCursor.parse(after) if after and len(after) < 80 else None

    def work(session: Session) -> tuple[list[dict[str, Any]], KeysetCursor | None]:
        page = search(session, user.client_id, filters, cursor, PAGE)
        rows = []
        for row in page.rows:
            d, m = row.decision, row.session
            rows.append(
                {
                    "id": d.id,
                    "created": _stamp(d.created_at),
                    "event": d.event_type,
                    "decision": d.decision,
                    "inquiry": d.inquiry_id,
                    "account": d.account_id or "",
                    "segment": d.segment,
                    "version": d.set_version,
                    "session": None
                    if m is None
                    else {
                        "id": m.id,
                        "status": m.status,
                        "channel": m.channel,
                        "destination": mask(m.channel, m.destination),
                    },
                }
            )
        return rows, page.next

    rows, next_cursor = await run(registry, work)
    shown = {
        "inquiryId": filters.inquiry_id,
        "account": filters.account_id,
        "email": filters.email,
        "phone": filters.phone,
        "decision": filters.decision,
        "status": filters.status,
        "channel": filters.channel,
        "from": _field(created_from),
        "to": _field(created_to),
    }
    kept = {k: v for k, v in shown.items() if v}
    if created_from is not None:
        kept["from"] = created_from.isoformat()
    if created_to is not None:
        kept["to"] = created_to.isoformat()
    return render(
        request,
        "console/activity.html",
        {
            "title": "Activity",
            "rows": rows,
            "filters": shown,
            "filtered": bool(kept),
            "ignored": ignored,
            "next_href": "/console/activity?" + urlencode({**kept, "after": str(next_cursor)})
            if next_cursor
            else "",
            "first_href": "/console/activity?" + urlencode(kept) if cursor else "",
            "outcomes": OUTCOMES,
            "statuses": STATUSES,
            "channels": CHANNELS,
        },
        user,
        nav="activity",
    )


@router.get("/activity/{decision_id}")
async def decision_page(request: Request, decision_id: str, user: Reader) -> Response:
    registry = registry_of(request)
    if not UUID.match(decision_id):
        raise not_found(user, "such decision")

    def work(session: Session) -> dict[str, Any] | None:
        found = decision_with_session(session, user.client_id, decision_id)
        if found is None:
            return None
        d, mfa = found
        out: dict[str, Any] = {
            "id": d.id,
            "event": d.event_type,
            "decision": d.decision,
            "segment": d.segment,
            "version": d.set_version,
            "tags": list(d.tags or []),
            "inquiry": d.inquiry_id,
            "account": d.account_id,
            "device": d.device_session_id,
            "created": d.created_at.isoformat().replace("+00:00", "Z"),
            "request": flatten(masked_request(dict(d.request or {}))),
            "stored_request": dict(d.request or {}),
            "session": None,
            "timeline": [],
        }
        if mfa is not None:
            out["session"] = session_view(mfa)
            out["timeline"] = timeline_view(registry.mfa.timeline_entries(session, user.client_id, mfa.id))
        return out

    found = await run(registry, work)
    if found is None:
        raise not_found(user, "such decision")
    stored = found.pop("stored_request")

    def explain() -> tuple[dict[str, Any], dict[str, Any]] | str:
        try:
            sim = simulate(
                registry.sessions,
                registry.policy_cache,
                registry.signals,
                user.client_id,
                found["event"],
                stored,
                found["version"],
                registry.clock.now(),
            )
        except PolicyError as exc:
            return f"The decision's policy set version cannot be evaluated now: {exc}."
        return masked_explanation(sim.explanation), sim.skipped

    explained = await run_in_threadpool(explain)
    return render(
        request,
        "console/decision.html",
        {
            "title": f"Decision {decision_id[:8]}",
            "d": found,
            "explanation": explained[0] if isinstance(explained, tuple) else None,
            "skipped": explained[1] if isinstance(explained, tuple) else None,
            "explain_problem": explained if isinstance(explained, str) else None,
            "re_evaluated": RE_EVALUATED,
            "show_value": show_value,
        },
        user,
        nav="activity",
    )
