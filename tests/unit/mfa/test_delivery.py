"""ChallengeDelivery, the "challenge" purpose's hooks: secrets made for a claimed message, and what the
claim reads of its session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from passgate.clock import FrozenClock
from passgate.keyring import KeyRing
from passgate.messaging.sources import DatabaseTemplateSource
from passgate.mfa import secrets as mfa_secrets
from passgate.mfa.delivery import ChallengeDelivery, SessionOfClaim
from passgate.mfa.services import MfaService
from passgate.ratelimit.memory import MemoryRateLimiter

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def hooks() -> ChallengeDelivery:
    keyring = KeyRing([b"unit-test-secret-key-0123456789-abcdefghijklmnop"])
    mfa = MfaService(
        keyring=keyring,
        clock=FrozenClock(NOW),
        limiter=MemoryRateLimiter(FrozenClock(NOW)),
        templates=DatabaseTemplateSource(),
        public_url="https://passgate.example.com",
    )
    return ChallengeDelivery(mfa=mfa, keyring=keyring)


def session(**fields: object) -> SessionOfClaim:
    values: dict[str, object] = dict(
        id="s1",
        status="UNKNOWN",
        ttl_seconds=600,
        type="OTP",
        sandbox=False,
        code_length=6,
        render_context={"person": {"first": "Jo"}},
    )
    values.update(fields)
    return SessionOfClaim(**values)  # type: ignore[arg-type]


def test_a_code_is_made_pending_hashed_and_sealed_to_its_message(hooks: ChallengeDelivery) -> None:
    secret, row = hooks.make_secret("m1", session(code_length=8), "SMS", "+15551234567")
    assert secret.value.isdigit() and len(secret.value) == 8
    assert row["kind"] == "CODE" and row["active"] is False and row["session_id"] == "s1"
    assert row["secret_hash"] == hooks.keyring.keyed_hash(mfa_secrets.CODE_PURPOSE, secret.value)
    assert row["expires_at"] == NOW + timedelta(seconds=600)
    assert hooks.keyring.unseal(secret.sealed, "m1") == secret.value
    with pytest.raises(ValueError):
        hooks.keyring.unseal(secret.sealed, "m2")  # sealed to its message only


def test_a_link_session_gets_a_link_token(hooks: ChallengeDelivery) -> None:
    secret, row = hooks.make_secret("m1", session(type="NONCE_OTH"), "EMAIL", "jo@example.com")
    assert row["kind"] == "LINK" and len(secret.value) == 43


def test_a_sandbox_session_to_a_sandbox_destination_gets_the_fixed_code(hooks: ChallengeDelivery) -> None:
    secret, _ = hooks.make_secret("m1", session(sandbox=True), "EMAIL", "jo@example.test")
    assert secret.value == "000000"
    real, _ = hooks.make_secret("m2", session(sandbox=True), "EMAIL", "jo@example.com")
    assert real.value.isdigit() and len(real.value) == 6  # a real code: not a sandbox destination


def test_the_claim_reads_the_session_from_its_labelled_columns(hooks: ChallengeDelivery) -> None:
    row = SimpleNamespace(
        s_id="s1",
        s_status="TERMINATED",
        s_ttl_seconds=60,
        s_type="OTP",
        s_sandbox=False,
        s_code_length=6,
        s_render_context={"person": {"first": "Jo"}},
    )
    owner = hooks.owner_of(row)
    assert owner == session(status="TERMINATED", ttl_seconds=60)
    assert hooks.closed(owner) == "session TERMINATED"
    assert hooks.closed(session()) is None
    assert hooks.owner_of(SimpleNamespace(**{k: None for k in vars(row)})) is None
    assert hooks.needs_secret(owner) and not hooks.needs_secret(None)
