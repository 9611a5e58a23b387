"""`queries.PlainSession` (the plain object a challenge's creation works on) against the plain path it
replaces, `queries.transient_session` (an ORM object built without the mapper): a differential test on
generated rows. Both are given the same row and the same changes a creation makes (the listeners'
`sequence`, the first send's `send_attempts` and `delivery_status`) and a worker's record of a sent
message makes (the status, the delivery status, the expiry); every column and the listeners'
snapshot must read the same from both, before and after."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import configure_mappers

import passgate.bootstrap  # noqa: F401  (every model, for the mappers' relationships)
from passgate.mfa import queries
from passgate.mfa.queries import SessionSnapshot

_STATUSES = ("UNKNOWN", "PENDING", "VERIFIED", "FAILED", "TERMINATED", "EXPIRED")


def _maybe(rng: random.Random, value: Any) -> Any:
    return value if rng.random() < 0.7 else None


def _row(rng: random.Random, n: int) -> dict[str, Any]:
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(10**8))
    ttl = rng.randrange(30, 86_400)
    return {
        "id": f"{n:08x}-{rng.getrandbits(64):016x}",
        "client_id": rng.choice(("c1", "c2", "client-ü")),
        "decision_id": _maybe(rng, f"d{n}"),
        "event_type": rng.choice(("LOGIN", "ACCOUNT_OPENING", "VERIFY")),
        "type": rng.choice(("NONCE_OTH", "OTP")),
        "channel": rng.choice(("EMAIL", "SMS")),
        "template_name": rng.choice(("default", "email-link", "sms-otp", "x" * 60)),
        "locale": rng.choice(("en", "fr-CA", "ar")),
        "destination": f"u{n}@ex.example",
        "destination_hash": f"{rng.getrandbits(256):064x}",
        "account_id": _maybe(rng, f"a{n}"),
        "device_session_id": _maybe(rng, f"dev{n}"),
        "status": rng.choice(_STATUSES),
        "termination_reason": _maybe(rng, "REPLACED"),
        "delivery_status": rng.choice(("QUEUED", "SENT", None)),
        "send_attempts": rng.randrange(0, 5),
        "verification_attempts": rng.randrange(0, 5),
        "max_sends": rng.randrange(1, 10),
        "max_attempts": rng.randrange(1, 10),
        "ttl_seconds": ttl,
        "code_length": rng.choice((6, 7, 8)),
        "expires_at": now + timedelta(seconds=ttl),
        "created_at": now,
        "updated_at": now,
        "verified_at": None,
        "target_url": _maybe(rng, "https://app.example/ok"),
        "bind_to_device": rng.random() < 0.5,
        "match_number": _maybe(rng, rng.randrange(10, 100)),
        "sandbox": rng.random() < 0.2,
        "render_context": {"values": {"k": str(n)}, "person": {"first": _maybe(rng, "Jo")}},
        "sequence": rng.randrange(0, 3),
        "link_opens": 0,
        "source": rng.choice(("decision", "verify", "console")),
        "purpose": _maybe(rng, "signup"),
    }


def _columns(mfa: Any, row: dict[str, Any]) -> dict[str, Any]:
    return {name: getattr(mfa, name) for name in row}


def test_plain_session_reads_and_moves_as_the_transient_session_on_generated_rows() -> None:
    configure_mappers()  # as the app's first query would: the ORM object's attributes need the mapper
    rng = random.Random(20261207)
    for n in range(2_000):
        row = _row(rng, n)
        plain = queries.transient_session(dict(row))
        fast = queries.PlainSession(dict(row))
        assert _columns(fast, row) == _columns(plain, row)
        assert SessionSnapshot.of(fast) == SessionSnapshot.of(plain)
        later = row["created_at"] + timedelta(seconds=rng.randrange(1, 600))
        for mfa in (plain, fast):  # what `MfaService._create` does to it: the listeners, the first send
            mfa.sequence += 1
            mfa.send_attempts += 1
            mfa.delivery_status = "QUEUED"
        assert SessionSnapshot.of(fast) == SessionSnapshot.of(plain)
        assert _columns(fast, row) == _columns(plain, row)
        for mfa in (plain, fast):  # what a worker's `messages_sent` does: the delivery, expiry, status
            mfa.delivery_status = "SENT"
            mfa.updated_at = later
            mfa.expires_at = max(mfa.expires_at, later)
            mfa.status = "MESSAGE_SENT"
            mfa.sequence += 1
        assert SessionSnapshot.of(fast) == SessionSnapshot.of(plain)
        assert _columns(fast, row) == _columns(plain, row)
