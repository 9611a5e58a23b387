"""The overview's figures: decisions by outcome over time, challenges by status and channel, conversion,
delivery and webhook failures. Counted by the database (grouped by time bucket), never row by row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Integer, cast, func, literal_column, or_, select
from sqlalchemy.orm import Session

from passgate.messaging.models import Message
from passgate.mfa.models import MfaSession
from passgate.policy.models import Decision
from passgate.webhooks.models import WebhookAttempt, WebhookDelivery


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    span: timedelta
    bucket_seconds: int
    bucket_label: str


PERIODS: dict[str, Period] = {
    "24h": Period("24h", "last 24 hours", timedelta(hours=24), 3600, "hour"),
    "7d": Period("7d", "last 7 days", timedelta(days=7), 6 * 3600, "6 hours"),
    "30d": Period("30d", "last 30 days", timedelta(days=30), 86400, "day"),
}
OUTCOMES = ("ALLOW", "CHALLENGE", "BLOCK")
STATUSES = (
    "UNKNOWN",
    "MESSAGE_SENT",
    "VERIFICATION_ATTEMPT_FAILED",
    "VERIFIED",
    "TERMINATED",
    "FAILED_AUTHORIZATION",
    "INVALID",
)
CHANNELS = ("EMAIL", "SMS")


@dataclass
class Overview:
    period: Period
    start: datetime
    labels: list[str]
    decisions: dict[str, list[int]]
    challenges: dict[str, dict[str, int]]  # channel -> status -> count
    conversion: dict[str, tuple[int, int]]  # channel -> (verified, started)
    delivery_failures: list[int]
    webhook_failures: list[int]
    totals: dict[str, Any] = field(default_factory=dict)


def _epoch(column: Any, dialect: str) -> Any:
    # Stored as naive UTC on both databases, so both read it as seconds since 1970 UTC.
    if dialect == "postgresql":
        return cast(func.extract("epoch", column), BigInteger)
    return cast(func.strftime("%s", column), Integer)


def _bucket(column: Any, dialect: str, start: datetime, size: int) -> Any:
    # Integer division of integers on both databases ("/" as written, not SQLAlchemy's true division).
    # Labelled, and grouped by the label: PostgreSQL would not match two copies of an expression whose
    # bound parameters differ.
    return (_epoch(column, dialect) - int(start.timestamp())).self_group().op("/")(size).label("bucket")


def period_start(now: datetime, period: Period) -> tuple[datetime, int]:
    """The start of the first bucket (buckets end with the one holding `now`) and how many there are."""
    size = period.bucket_seconds
    count = int(period.span.total_seconds()) // size
    current = int(now.timestamp()) // size * size
    return datetime.fromtimestamp(current - (count - 1) * size, tz=UTC), count


def overview(session: Session, client_id: str, now: datetime, period: Period) -> Overview:
    dialect = session.get_bind().dialect.name
    start, count = period_start(now, period)
    size = period.bucket_seconds
    fmt = "%H:%M" if size < 86400 else "%b %d"
    labels = [
        (start + timedelta(seconds=i * size)).strftime(fmt if size < 86400 else "%b %d") for i in range(count)
    ]
    if period.key == "7d":
        labels = [(start + timedelta(seconds=i * size)).strftime("%a %H:%M") for i in range(count)]

    decisions = {o: [0] * count for o in OUTCOMES}
    b = _bucket(Decision.created_at, dialect, start, size)
    for bucket, outcome, n in session.execute(
        select(b, Decision.decision, func.count())
        .where(Decision.client_id == client_id, Decision.created_at >= start)
        .group_by(literal_column("bucket"), Decision.decision)
    ):
        if outcome in decisions and bucket is not None and 0 <= int(bucket) < count:
            decisions[outcome][int(bucket)] += int(n)

    challenges = {c: dict.fromkeys(STATUSES, 0) for c in CHANNELS}
    for channel, status, n in session.execute(
        select(MfaSession.channel, MfaSession.status, func.count())
        .where(
            MfaSession.client_id == client_id,
            MfaSession.created_at >= start,
            MfaSession.source != "console",  # the console's own sign-ins are not the business's traffic
        )
        .group_by(MfaSession.channel, MfaSession.status)
    ):
        if channel in challenges and status in challenges[channel]:
            challenges[channel][status] += int(n)
    conversion = {c: (challenges[c]["VERIFIED"], sum(challenges[c].values())) for c in CHANNELS}

    delivery = [0] * count
    b = _bucket(Message.created_at, dialect, start, size)
    for bucket, n in session.execute(
        select(b, func.count())
        .where(
            Message.client_id == client_id,
            Message.created_at >= start,
            or_(Message.status == "FAILED", Message.delivery_status.in_(("UNDELIVERED", "BOUNCED"))),
        )
        .group_by(literal_column("bucket"))
    ):
        if bucket is not None and 0 <= int(bucket) < count:
            delivery[int(bucket)] += int(n)

    hooks = [0] * count
    b = _bucket(WebhookAttempt.started_at, dialect, start, size)
    for bucket, n in session.execute(
        select(b, func.count())
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .where(
            WebhookDelivery.client_id == client_id,
            WebhookAttempt.started_at >= start,
            WebhookAttempt.result != "delivered",
        )
        .group_by(literal_column("bucket"))
    ):
        if bucket is not None and 0 <= int(bucket) < count:
            hooks[int(bucket)] += int(n)

    verified = sum(v for v, _ in conversion.values())
    started = sum(s for _, s in conversion.values())
    totals = {
        "decisions": sum(sum(v) for v in decisions.values()),
        "byOutcome": {o: sum(v) for o, v in decisions.items()},
        "challenges": started,
        "verified": verified,
        "conversion": (verified / started) if started else None,
        "deliveryFailures": sum(delivery),
        "webhookFailures": sum(hooks),
    }
    return Overview(period, start, labels, decisions, challenges, conversion, delivery, hooks, totals)
