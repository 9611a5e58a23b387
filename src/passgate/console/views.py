"""The MFA session and its timeline as the console's session page shows them.

The console does not import the API, so it spells the session out here as GET /mfa/v2/{id} answers it
(`api/views.session_view`, which works from a read row rather than the ORM object the page loads).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from passgate.contacts import mask
from passgate.mfa.models import MfaSession
from passgate.mfa.results import TimelineEntry


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def session_view(mfa: MfaSession) -> dict[str, Any]:
    """The session as GET /mfa/v2/{id} answers it, for the console's session page."""
    out: dict[str, Any] = {
        "ID": mfa.id,
        "type": mfa.type,
        "channel": mfa.channel,
        "status": mfa.status,
        "expiresAt": _iso(mfa.expires_at),
        "sendAttempts": mfa.send_attempts,
        "verificationAttempts": mfa.verification_attempts,
        "error": None,
    }
    if mfa.match_number:
        out["matchNumber"] = mfa.match_number
    return {
        **out,
        "eventType": mfa.event_type,
        "templateName": mfa.template_name,
        "locale": mfa.locale,
        "destination": mask(mfa.channel, mfa.destination),
        "deliveryStatus": mfa.delivery_status,
        "terminationReason": mfa.termination_reason,
        "remainingAttempts": max(0, mfa.max_attempts - mfa.verification_attempts),
        "maxSends": mfa.max_sends,
        "accountId": mfa.account_id,
        "decisionId": mfa.decision_id,
        "createdAt": _iso(mfa.created_at),
        "updatedAt": _iso(mfa.updated_at),
        "verifiedAt": _iso(mfa.verified_at) if mfa.verified_at else None,
        "sandbox": mfa.sandbox,
        "linkOpens": mfa.link_opens,
        "source": mfa.source,
        "purpose": mfa.purpose,
    }


def timeline_view(entries: Iterable[TimelineEntry]) -> list[dict[str, Any]]:
    """`MfaService.timeline_entries` for the console's session page."""
    return [{"type": e.type, "at": _iso(e.at), "source": e.source, "data": e.data} for e in entries]
