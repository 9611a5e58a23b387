"""Overview charts, MFA sessions (searchable list, one session with its timeline), the audit log."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from passgate.audit.services import entries as audit_entries
from passgate.console import charts
from passgate.console.activity import activity_links
from passgate.console.forms import clean_param
from passgate.console.routes.common import Reader, not_found, registry_of, render, run
from passgate.console.stats import CHANNELS, OUTCOMES, PERIODS, STATUSES, overview
from passgate.console.views import session_view, timeline_view
from passgate.contacts import mask
from passgate.db import Session
from passgate.mfa.breaker_services import tripped_breakers
from passgate.mfa.queries import load as load_session
from passgate.mfa.queries import search_sessions

router = APIRouter()
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PAGE = 50


@router.get("/overview")
async def overview_page(request: Request, user: Reader, period: str = "24h") -> Response:
    registry = registry_of(request)
    chosen = PERIODS.get(period, PERIODS["24h"])
    data = await run(registry, lambda s: overview(s, user.client_id, registry.clock.now(), chosen))
    breakers = await run(registry, lambda s: tripped_breakers(s, user.client_id))
    unit = chosen.bucket_label
    explore = activity_links(data.start, chosen.bucket_seconds, len(data.labels))
    decision_chart = charts.stacked_bars(
        "decisions",
        f"Decisions per {unit} by outcome, {chosen.label}",
        data.labels,
        data.decisions,
        ", ".join(f"{o}: {data.totals['byOutcome'][o]}" for o in OUTCOMES),
        links=explore["buckets"],
    )
    challenge_chart = charts.horizontal_stacks(
        "challenges",
        f"Challenges by status and channel, {chosen.label}",
        data.challenges,
        "; ".join(
            f"{c}: " + ", ".join(f"{s} {n}" for s, n in data.challenges[c].items() if n) for c in CHANNELS
        ),
    )
    conversion_chart = charts.meters(
        "conversion",
        f"Verification conversion by channel, {chosen.label}",
        data.conversion,
        "; ".join(f"{c}: {v} verified of {t}" for c, (v, t) in data.conversion.items()),
    )
    failure_chart = charts.stacked_bars(
        "failures",
        f"Delivery and webhook failures per {unit}, {chosen.label}",
        data.labels,
        {"delivery": data.delivery_failures, "webhook": data.webhook_failures},
        f"delivery failures {data.totals['deliveryFailures']}, failed webhook tries "
        f"{data.totals['webhookFailures']}",
    )
    table = [
        {
            "label": label,
            **{o: data.decisions[o][i] for o in OUTCOMES},
            "links": {o: explore["buckets"][o][i] for o in OUTCOMES},
            "delivery": data.delivery_failures[i],
            "webhook": data.webhook_failures[i],
        }
        for i, label in enumerate(data.labels)
    ]
    return render(
        request,
        "console/overview.html",
        {
            "title": "Overview",
            "periods": PERIODS,
            "period": chosen,
            "data": data,
            "outcomes": OUTCOMES,
            "statuses": STATUSES,
            "channels": CHANNELS,
            "decision_chart": decision_chart,
            "challenge_chart": challenge_chart,
            "conversion_chart": conversion_chart,
            "failure_chart": failure_chart,
            "palette": charts.PALETTE,
            "table": table,
            "breakers": [
                {**asdict(b), "changed_at": _iso(b.changed_at), "probe_at": _iso(b.probe_at)}
                for b in breakers
            ],
            "explore": explore,
        },
        user,
        nav="overview",
    )


def _iso(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


@router.get("/sessions")
async def sessions_page(
    request: Request,
    user: Reader,
    status: str = "",
    channel: str = "",
    account: str = "",
    q: str = "",
    before: str = "",
) -> Response:
    registry = registry_of(request)
    status_f = status if status in STATUSES else ""
    channel_f = channel if channel in CHANNELS else ""
    account_f = clean_param(account, 256) or ""
    q_f = clean_param(q, 64) or ""
    before_at: datetime | None = None
    if before:
        try:
            before_at = datetime.fromisoformat(before)
            if before_at.tzinfo is None:
                before_at = None
        except ValueError:
            before_at = None

    def work(session: Session) -> list[dict[str, Any]]:
        rows = search_sessions(
            session,
            user.client_id,
            status=status_f,
            channel=channel_f,
            account_id=account_f,
            q=q_f,
            before=before_at,
            limit=PAGE + 1,
        )
        return [
            {
                "id": m.id,
                "status": m.status,
                "channel": m.channel,
                "type": m.type,
                "destination": mask(m.channel, m.destination),
                "account": m.account_id,
                "created": _iso(m.created_at),
                "created_raw": m.created_at.isoformat(),
                "event": m.event_type,
            }
            for m in rows
        ]

    rows = await run(registry, work)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return render(
        request,
        "console/sessions.html",
        {
            "title": "MFA sessions",
            "rows": rows,
            "more": more,
            "next_before": rows[-1]["created_raw"] if rows and more else "",
            "filters": {"status": status_f, "channel": channel_f, "account": account_f, "q": q_f},
            "statuses": STATUSES,
            "channels": CHANNELS,
        },
        user,
        nav="sessions",
    )


@router.get("/sessions/{session_id}")
async def session_page(request: Request, session_id: str, user: Reader) -> Response:
    registry = registry_of(request)
    if not UUID.match(session_id):
        raise not_found(user, "such session")

    def work(session: Session) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        mfa = load_session(session, user.client_id, session_id)
        if mfa is None:
            return None
        entries = registry.mfa.timeline_entries(session, user.client_id, session_id)
        return session_view(mfa), timeline_view(entries)

    found = await run(registry, work)
    if found is None:
        raise not_found(user, "such session")
    view, timeline = found
    return render(
        request,
        "console/session.html",
        {"title": f"Session {session_id[:8]}", "s": view, "timeline": timeline},
        user,
        nav="sessions",
    )


@router.get("/audit")
async def audit_page(request: Request, user: Reader, before: str = "") -> Response:
    registry = registry_of(request)
    before_id = int(before) if before.isdigit() and len(before) < 12 else None
    rows = await run(registry, lambda s: audit_entries(s, user.client_id, PAGE + 1, before_id))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return render(
        request,
        "console/audit.html",
        {"title": "Audit log", "rows": rows, "more": more, "next_before": rows[-1]["id"] if more else ""},
        user,
        nav="audit",
    )
