"""The activity explorer's reads: the client's decisions, newest first, each with the MFA session it
started (if any), searched and filtered, one cursor-paged page at a time; and one decision with its session.

Every read is bounded to the signed-in person's client and starts from the decisions' (client_id,
created_at) index. The email and phone filters read the stored request's JSON (`person.emailAddress`,
`person.phoneNumber`), which no index covers: they narrow the client's rows as they are read in that
index's order (see docs/console.md, "Activity"). The console's own sign-in challenges (account ids
`console:…`) never made a decision row and are left out besides.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from passgate.console.stats import OUTCOMES
from passgate.contacts import email_verdict, mask
from passgate.mfa.models import MfaSession
from passgate.paging import KeysetCursor
from passgate.policy.models import Decision

PAGE = 25
CONSOLE_ACCOUNT_PREFIX = "console:"  # the console's own email-link sign-in (console/services.py)


@dataclass(frozen=True)
class ActivityFilters:
    """Each non-empty filter narrows the list; `created_from` is inclusive, `created_to` exclusive."""

    inquiry_id: str = ""
    account_id: str = ""
    email: str = ""
    phone: str = ""
    decision: str = ""
    status: str = ""  # the linked session's status
    channel: str = ""  # the linked session's channel
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass(frozen=True)
class ActivityRow:
    decision: Decision
    session: MfaSession | None


@dataclass(frozen=True)
class ActivityPage:
    rows: list[ActivityRow]
    next: KeysetCursor | None  # the cursor of the next (older) page, None on the last page


def _json_text(*path: str) -> ColumnElement[str]:
    """The text at `path` in the stored request (`->>`/`#>>` on PostgreSQL, json_extract on SQLite)."""
    found: ColumnElement[str] = Decision.request[path].as_string()
    return found


def _not_console() -> ColumnElement[bool]:
    return or_(Decision.account_id.is_(None), ~Decision.account_id.startswith(CONSOLE_ACCOUNT_PREFIX))


def normalised_email(value: str) -> str:
    """The address as the decision endpoint stores it (its check normalises the domain), lower-cased."""
    normalised, error = email_verdict(value)
    return (value if error else normalised).lower()


def search(
    session: Session,
    client_id: str,
    filters: ActivityFilters,
    after: KeysetCursor | None = None,
    limit: int = PAGE,
) -> ActivityPage:
    """One page of the client's decisions matching `filters`, newest first, after `after`."""
    stmt = select(Decision).where(Decision.client_id == client_id, _not_console())
    if filters.inquiry_id:
        stmt = stmt.where(Decision.inquiry_id == filters.inquiry_id)
    if filters.account_id:
        stmt = stmt.where(Decision.account_id == filters.account_id)
    if filters.decision:
        stmt = stmt.where(Decision.decision == filters.decision)
    if filters.created_from is not None:
        stmt = stmt.where(Decision.created_at >= filters.created_from)
    if filters.created_to is not None:
        stmt = stmt.where(Decision.created_at < filters.created_to)
    if filters.email:
        stmt = stmt.where(func.lower(_json_text("person", "emailAddress")) == normalised_email(filters.email))
    if filters.phone:
        stmt = stmt.where(_json_text("person", "phoneNumber") == filters.phone.replace(" ", ""))
    if filters.status or filters.channel:
        # Correlated on the id alone: PostgreSQL makes it a hash semi-join over the client's sessions of
        # that status and channel (a time bound here would turn it into a loop of index range scans).
        linked = select(MfaSession.id).where(
            MfaSession.client_id == client_id, MfaSession.decision_id == Decision.id
        )
        if filters.status:
            linked = linked.where(MfaSession.status == filters.status)
        if filters.channel:
            linked = linked.where(MfaSession.channel == filters.channel)
        stmt = stmt.where(linked.exists())
    if after is not None:
        stmt = stmt.where(
            or_(
                Decision.created_at < after.created_at,
                and_(Decision.created_at == after.created_at, Decision.id < after.id),
            )
        )
    stmt = stmt.order_by(Decision.created_at.desc(), Decision.id.desc()).limit(limit + 1)
    decisions = list(session.scalars(stmt).all())
    more = len(decisions) > limit
    decisions = decisions[:limit]
    linked_sessions = sessions_of(session, client_id, decisions)
    rows = [ActivityRow(d, linked_sessions.get(d.id)) for d in decisions]
    last = decisions[-1] if decisions else None
    return ActivityPage(rows, KeysetCursor(last.created_at, last.id) if more and last else None)


def sessions_of(session: Session, client_id: str, decisions: Sequence[Decision]) -> dict[str, MfaSession]:
    """The MFA session each decision started, by decision id. Read by the decision ids alone (the
    `ix_mfa_sessions_decision` index: a handful of rows), then kept to the client's and put in order
    here: with the client or an order in the statement, a planner may prefer the (client_id, created_at)
    index and read every session the client has."""
    if not decisions:
        return {}
    rows = session.scalars(select(MfaSession).where(MfaSession.decision_id.in_([d.id for d in decisions])))
    found: dict[str, MfaSession] = {}
    for mfa in sorted(rows, key=lambda m: m.created_at):
        if mfa.decision_id is not None and mfa.client_id == client_id:
            found[mfa.decision_id] = mfa  # the newest wins (a decision starts at most one)
    return found


def decision_with_session(
    session: Session, client_id: str, decision_id: str
) -> tuple[Decision, MfaSession | None] | None:
    """One of the client's decisions with its session, or None (another client's, a console sign-in's,
    or no such decision)."""
    found = session.scalars(
        select(Decision).where(Decision.id == decision_id, Decision.client_id == client_id, _not_console())
    ).first()
    if found is None:
        return None
    return found, sessions_of(session, client_id, [found]).get(found.id)


def activity_links(start: datetime, bucket_seconds: int, count: int) -> dict[str, Any]:
    """The overview's ways into the explorer: every decision of the period (`all`), each outcome's
    (`outcomes`), and each outcome's in each time bucket (`buckets`: outcome -> one URL per bucket)."""

    def href(**params: str) -> str:
        return "/console/activity?" + urlencode(params)

    since = start.isoformat()
    bounds = [start + timedelta(seconds=i * bucket_seconds) for i in range(count + 1)]
    return {
        "all": href(**{"from": since}),
        "outcomes": {o: href(decision=o, **{"from": since}) for o in OUTCOMES},
        "buckets": {
            o: [
                href(decision=o, **{"from": bounds[i].isoformat(), "to": bounds[i + 1].isoformat()})
                for i in range(count)
            ]
            for o in OUTCOMES
        },
    }


# -- what the pages show -----------------------------------------------------------------------------------

# What a template value (which may hold a secret the client passes through) is shown as.
_HIDDEN = "•••"


def _mask_text(value: object) -> object:
    if not isinstance(value, str) or not value:
        return value
    if "@" in value:
        return mask("EMAIL", value)
    return value[:1] + "•" * max(1, len(value) - 1)


def masked_request(request: dict[str, Any]) -> dict[str, Any]:
    """The stored request with personal data and secrets masked: the email address and phone number as
    the API masks a destination, names, username and street lines to their first letter, template values
    hidden, and the password never (it is not stored; dropped here too, for rows written before that)."""
    out = copy.deepcopy(request)
    person = out.get("person")
    if isinstance(person, dict):
        if isinstance(person.get("emailAddress"), str):
            person["emailAddress"] = mask("EMAIL", person["emailAddress"])
        if isinstance(person.get("phoneNumber"), str):
            person["phoneNumber"] = mask("SMS", person["phoneNumber"])
        name = person.get("name")
        if isinstance(name, dict):
            for key in list(name):
                name[key] = _mask_text(name[key])
        for address in person.get("addresses") or []:
            if isinstance(address, dict):
                for key in ("line1", "line2", "postalCode"):
                    if key in address:
                        address[key] = _mask_text(address[key])
    account = out.get("account")
    if isinstance(account, dict):
        account.pop("userPassword", None)
        if "username" in account:
            account["username"] = _mask_text(account["username"])
    strategy = out.get("strategy")
    if isinstance(strategy, dict):
        for key in ("mfaTemplateValues", "verificationTemplateValues"):
            values = strategy.get(key)
            if isinstance(values, dict):
                strategy[key] = dict.fromkeys(values, _HIDDEN)
    return out


# Condition fields whose actual value is a person's contact or name (masked on the decision page).
MASKED_FIELDS = {
    "person.emailAddress": lambda v: mask("EMAIL", v) if isinstance(v, str) else v,
    "person.phoneNumber": lambda v: mask("SMS", v) if isinstance(v, str) else v,
    "person.name.first": _mask_text,
    "person.name.last": _mask_text,
    "person.name.preferred": _mask_text,
    "account.username": _mask_text,
}


def masked_explanation(explanation: dict[str, Any]) -> dict[str, Any]:
    """`engine.explain`'s answer with the actual values of personal fields masked."""
    out = copy.deepcopy(explanation)
    for group in ("segments", "policies"):
        for item in out.get(group) or []:
            for cond in item.get("conditions") or []:
                masker = MASKED_FIELDS.get(str(cond.get("field")))
                if masker is not None:
                    cond["actual"] = masker(cond.get("actual"))
    return out


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A nested request as (dotted path, value) pairs, for a definition list."""
    if isinstance(value, dict):
        pairs: list[tuple[str, Any]] = []
        for key, inner in value.items():
            pairs.extend(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return pairs
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        pairs = []
        for i, inner in enumerate(value):
            pairs.extend(flatten(inner, f"{prefix}[{i}]"))
        return pairs
    return [(prefix, value)]
