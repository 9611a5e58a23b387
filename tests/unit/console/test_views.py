"""The console's session page shows a session and its timeline as the API answers them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from passgate.api import views as api_views
from passgate.console.views import session_view, timeline_view
from passgate.contacts import mask
from passgate.mfa.models import MfaSession
from passgate.mfa.results import TimelineEntry

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _session(**changes):
    row = {
        "id": "8c1d3f1e-0000-4000-8000-000000000001",
        "client_id": "client",
        "event_type": "LOGIN",
        "type": "LINK",
        "channel": "EMAIL",
        "status": "MESSAGE_SENT",
        "termination_reason": None,
        "delivery_status": "SENT",
        "send_attempts": 1,
        "verification_attempts": 0,
        "ttl_seconds": 600,
        "expires_at": NOW + timedelta(minutes=10),
        "sequence": 2,
        "decision_id": "d-1",
        "template_name": "email-link",
        "locale": "en",
        "destination": "someone@example.com",
        "destination_hash": "h",
        "account_id": "a-1",
        "device_session_id": None,
        "max_sends": 3,
        "max_attempts": 5,
        "code_length": 6,
        "created_at": NOW,
        "updated_at": NOW + timedelta(seconds=3),
        "verified_at": None,
        "target_url": None,
        "bind_to_device": True,
        "match_number": "42",
        "sandbox": False,
        "render_context": {},
        "link_opens": 0,
        "source": "decision",
        "purpose": None,
        **changes,
    }
    return MfaSession(**row)


def test_the_session_is_shown_with_its_fields_spelt_as_the_api_does():
    shown = session_view(_session())
    assert shown["ID"] == "8c1d3f1e-0000-4000-8000-000000000001"
    assert shown["destination"] == mask("EMAIL", "someone@example.com") != "someone@example.com"
    assert shown["expiresAt"] == "2026-01-02T03:14:05Z"
    assert shown["updatedAt"] == "2026-01-02T03:04:08Z"
    assert shown["verifiedAt"] is None
    assert shown["matchNumber"] == "42"
    assert shown["remainingAttempts"] == 5
    assert shown["decisionId"] == "d-1"
    assert "destination_hash" not in shown and "render_context" not in shown and "code" not in shown


@pytest.mark.parametrize(
    "changes",
    [
        {"match_number": None, "type": "OTP", "channel": "SMS", "destination": "+15551234567"},
        {"status": "VERIFIED", "verified_at": NOW + timedelta(seconds=40), "verification_attempts": 6},
        {"source": "verify", "event_type": "VERIFY", "purpose": "signup", "account_id": None},
    ],
)
def test_the_page_shows_what_the_orm_object_holds(changes):
    mfa = _session(**changes)
    shown = session_view(mfa)
    assert shown["status"] == mfa.status and shown["source"] == mfa.source and shown["purpose"] == mfa.purpose
    assert shown["destination"] == mask(mfa.channel, mfa.destination)
    assert ("matchNumber" in shown) == bool(mfa.match_number)
    assert shown["remainingAttempts"] == max(0, mfa.max_attempts - mfa.verification_attempts)
    assert shown["verifiedAt"] == (
        mfa.verified_at.isoformat().replace("+00:00", "Z") if mfa.verified_at else None
    )


def test_the_timeline_is_shown_as_the_api_answers_it():
    entries = [
        TimelineEntry("CREATED", NOW, "api", {"templateName": "email-link"}),
        TimelineEntry("MESSAGE_QUEUED", NOW + timedelta(microseconds=5), "api", {"send": 1}),
    ]
    assert timeline_view(entries) == api_views.timeline_view("s", entries)["items"]
    assert timeline_view(entries)[0]["at"] == "2026-01-02T03:04:05Z"
