"""An MFA session as Passgate shows it to the business: the body of GET /mfa/v2/{id} (and of a resend or
cancel, and of each item of GET /manage/v1/mfa-sessions), and the console's session page, which shows the
same fields. One spelling, so the page and the API cannot drift apart."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from passgate.contacts import mask
from passgate.mfa.queries import SessionRow


def iso(value: datetime) -> str:
    """A stored UTC time as the API writes it (RFC 3339 with a `Z`)."""
    return value.isoformat().replace("+00:00", "Z")


def session_view(row: SessionRow) -> dict[str, Any]:
    """GET /mfa/v2/{id}, and the answer of a resend or a cancel."""
    out: dict[str, Any] = {
        "ID": row.id,
        "type": row.type,
        "channel": row.channel,
        "status": row.status,
        "expiresAt": iso(row.expires_at),
        "sendAttempts": row.send_attempts,
        "verificationAttempts": row.verification_attempts,
        "error": None,
    }
    if row.match_number:
        out["matchNumber"] = row.match_number
    return {
        **out,
        "eventType": row.event_type,
        "templateName": row.template_name,
        "locale": row.locale,
        "destination": mask(row.channel, row.destination),
        "deliveryStatus": row.delivery_status,
        "terminationReason": row.termination_reason,
        "remainingAttempts": max(0, row.max_attempts - row.verification_attempts),
        "maxSends": row.max_sends,
        "accountId": row.account_id,
        "decisionId": row.decision_id,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "verifiedAt": iso(row.verified_at) if row.verified_at else None,
        "sandbox": row.sandbox,
        "linkOpens": row.link_opens,
        # Who started it (a decision, or the Verify API) and, for the Verify API, why.
        "source": row.source,
        "purpose": row.purpose,
    }
