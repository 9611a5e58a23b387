"""The purge's plan and the retention periods: pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from passgate.retention.plan import (
    BOUNDS,
    DEFAULTS,
    Kind,
    Periods,
    RetentionBody,
    Step,
    plan,
    view,
    wire_name,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@dataclass
class Stored:
    sessions_days: int | None = None
    decisions_days: int | None = None
    webhook_deliveries_days: int | None = None
    audit_log_days: int | None = None


def test_the_documented_defaults() -> None:
    assert view(DEFAULTS) == {
        "sessionsDays": 90,
        "decisionsDays": 365,
        "webhookDeliveriesDays": 30,
        "auditLogDays": 730,
    }


def test_a_stored_period_overrides_only_its_own_default() -> None:
    assert DEFAULTS.over(None) == DEFAULTS
    assert DEFAULTS.over(Stored(decisions_days=30)) == Periods(decisions_days=30)
    assert DEFAULTS.over(Stored(sessions_days=7, audit_log_days=3650)) == Periods(7, 365, 30, 3650)


def test_the_plan_has_one_step_per_client_and_kind_sessions_first() -> None:
    steps = plan(NOW, [("cl_b", Stored(sessions_days=10)), ("cl_a", None)])
    assert [(s.kind, s.client_id) for s in steps] == [(k, c) for k in Kind for c in ("cl_a", "cl_b")]
    cutoffs = {(s.client_id, s.kind): s.cutoff for s in steps}
    assert cutoffs["cl_a", Kind.SESSIONS] == NOW - timedelta(days=90)
    assert cutoffs["cl_b", Kind.SESSIONS] == NOW - timedelta(days=10)
    assert cutoffs["cl_b", Kind.DECISIONS] == NOW - timedelta(days=365)
    assert cutoffs["cl_a", Kind.WEBHOOK_DELIVERIES] == NOW - timedelta(days=30)
    assert cutoffs["cl_a", Kind.AUDIT_LOG] == NOW - timedelta(days=730)
    assert plan(NOW, []) == []
    assert plan(NOW, [("cl_a", None)], Periods(webhook_deliveries_days=60))[2] == Step(
        "cl_a", Kind.WEBHOOK_DELIVERIES, NOW - timedelta(days=60)
    )


@pytest.mark.parametrize("kind", list(Kind))
def test_each_period_is_bounded_and_the_refusal_names_it(kind: Kind) -> None:
    name = wire_name(kind)
    b = BOUNDS[kind]
    assert RetentionBody.model_validate({name: b.low}).stored()
    assert RetentionBody.model_validate({name: b.high})
    for bad in (b.low - 1, b.high + 1, "ninety", 1.5, True):
        with pytest.raises(ValidationError) as caught:
            RetentionBody.model_validate({name: bad})
        assert caught.value.errors()[0]["loc"] == (name,)
    with pytest.raises(ValidationError):
        RetentionBody.model_validate({"keepForever": True})


def test_a_body_maps_to_the_stored_columns_nulls_for_defaults() -> None:
    body = RetentionBody(sessionsDays=30)
    assert body.stored() == {
        "sessions_days": 30,
        "decisions_days": None,
        "webhook_deliveries_days": None,
        "audit_log_days": None,
    }
