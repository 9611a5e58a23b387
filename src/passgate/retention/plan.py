"""What the purge removes and when: pure (no database, no clock).

A client keeps each kind of record for its own period (`Periods`), the documented default where it set
none. The purge is planned as steps, one per client and kind, each with the cutoff before which that
kind of record goes; `services.purge_once` carries the steps out in batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class Kind(StrEnum):
    """The kinds of record a client's retention covers, in the order the purge visits them."""

    # MFA and verification sessions, with their messages (and each message's attempts), secrets and
    # timeline rows; also the client's test sends (messages without a session).
    SESSIONS = "sessions"
    DECISIONS = "decisions"
    # Finished webhook deliveries (with their attempts) and the events left without any delivery.
    WEBHOOK_DELIVERIES = "webhookDeliveries"
    AUDIT_LOG = "auditLog"


@dataclass(frozen=True)
class Bound:
    low: int
    high: int


# Days. A period shorter than a day would remove what a session's own lifetime (up to 7 days) or a
# webhook's retry schedule (about 3 days) still needs; the lower bounds leave room for both.
BOUNDS: Final[dict[Kind, Bound]] = {
    Kind.SESSIONS: Bound(7, 3650),
    Kind.DECISIONS: Bound(7, 3650),
    Kind.WEBHOOK_DELIVERIES: Bound(7, 365),
    Kind.AUDIT_LOG: Bound(90, 3650),
}


@dataclass(frozen=True)
class Periods:
    """How many days a client keeps each kind of record."""

    sessions_days: int = 90
    decisions_days: int = 365
    webhook_deliveries_days: int = 30
    audit_log_days: int = 730

    def days(self, kind: Kind) -> int:
        return int(getattr(self, _FIELD[kind]))

    def over(self, stored: Any) -> Periods:
        """These periods with the ones `stored` sets (a row or object with the same attribute names; None
        or a null attribute keeps the value here)."""
        if stored is None:
            return self
        changes = {
            f.name: getattr(stored, f.name) for f in fields(self) if getattr(stored, f.name, None) is not None
        }
        return replace(self, **changes)


DEFAULTS: Final = Periods()

_FIELD: Final[dict[Kind, str]] = {
    Kind.SESSIONS: "sessions_days",
    Kind.DECISIONS: "decisions_days",
    Kind.WEBHOOK_DELIVERIES: "webhook_deliveries_days",
    Kind.AUDIT_LOG: "audit_log_days",
}
_WIRE: Final[dict[Kind, str]] = {
    Kind.SESSIONS: "sessionsDays",
    Kind.DECISIONS: "decisionsDays",
    Kind.WEBHOOK_DELIVERIES: "webhookDeliveriesDays",
    Kind.AUDIT_LOG: "auditLogDays",
}


def _days(kind: Kind) -> Any:
    b = BOUNDS[kind]
    return Field(
        default=None,
        ge=b.low,
        le=b.high,
        description=f"days to keep {_HELP[kind]}; {b.low} to {b.high}, default {DEFAULTS.days(kind)}",
        examples=[DEFAULTS.days(kind)],
    )


_HELP: Final[dict[Kind, str]] = {
    Kind.SESSIONS: "MFA and verification sessions with their messages, attempts and timeline",
    Kind.DECISIONS: "decisions",
    Kind.WEBHOOK_DELIVERIES: "finished webhook deliveries and their events",
    Kind.AUDIT_LOG: "audit log entries",
}


class RetentionBody(BaseModel):
    """A client's retention periods as `PUT /manage/v1/settings` takes them (`retention`); an omitted or
    null field returns to its default."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"sessionsDays": 90, "decisionsDays": 365, "webhookDeliveriesDays": 30, "auditLogDays": 730}
            ]
        },
    )

    sessionsDays: StrictInt | None = _days(Kind.SESSIONS)
    decisionsDays: StrictInt | None = _days(Kind.DECISIONS)
    webhookDeliveriesDays: StrictInt | None = _days(Kind.WEBHOOK_DELIVERIES)
    auditLogDays: StrictInt | None = _days(Kind.AUDIT_LOG)

    def stored(self) -> dict[str, int | None]:
        """The columns of a client_retention row."""
        return {_FIELD[k]: getattr(self, _WIRE[k]) for k in Kind}


def wire_name(kind: Kind) -> str:
    return _WIRE[kind]


def view(periods: Periods) -> dict[str, int]:
    """The periods in force, as GET /manage/v1/settings answers them under `retention`."""
    return {_WIRE[k]: periods.days(k) for k in Kind}


@dataclass(frozen=True)
class Step:
    """Remove the client's records of one kind made before `cutoff`."""

    client_id: str
    kind: Kind
    cutoff: datetime


def plan(now: datetime, clients: Iterable[tuple[str, Any]], defaults: Periods = DEFAULTS) -> list[Step]:
    """The purge's steps at `now`: for each client (its id and its stored periods, None when it set
    none), one step per kind. Ordered by kind, then client, so sessions go first everywhere."""
    rows = sorted((client_id, defaults.over(stored)) for client_id, stored in clients)
    return [
        Step(client_id, kind, now - timedelta(days=periods.days(kind)))
        for kind in Kind
        for client_id, periods in rows
    ]


# What an erasure does to each table holding an account's personal data, and why (docs/operations.md).
ERASURE: Final[dict[str, str]] = {
    "mfa_sessions": "deleted: the destination, the person's name in the render context, the device",
    "mfa_secrets": "deleted with their sessions",
    "mfa_events": "deleted with their sessions (the timeline: user agents, IP addresses)",
    "messages": "deleted with their sessions, sent or not (a pending one is never sent)",
    "message_attempts": "deleted with their messages",
    "dev_inbox": "deleted with their messages",
    "decisions": "anonymised: the request, account id, inquiry id and device blanked; the outcome, "
    "segment, tags and time kept, so the client's decision statistics stay true",
    "webhook_events": "Decision.Created events of the account's decisions deleted (they carry the account "
    "and device ids), with their deliveries; status events carry no personal data and stay",
    "devices": "deleted (trusted and banned devices, devices seen)",
    "mfa_failure_counters": "the account's counter deleted",
    "velocity_counters": "the account's and its email addresses' counters deleted (database or Redis)",
}
