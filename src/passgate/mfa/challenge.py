"""The steps of starting a challenge that need no database: which template, which destination, which row.

Why apart: `MfaService.start_challenge` reads as the list of its steps; each step here is a pure
function of the request and the client's settings, tested without a transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from sqlalchemy.orm import Session

from passgate.contacts import check_email, check_phone, is_sandbox_destination
from passgate.ids import new_uuid
from passgate.locales import choose_locale
from passgate.messaging.sources import TemplateSource
from passgate.messaging.states import DeliveryStatus
from passgate.mfa import secrets as mfa_secrets
from passgate.mfa.default_template import DEFAULT_TEMPLATE, default_template_name
from passgate.mfa.queries import PendingKey
from passgate.mfa.results import ChallengeRefused
from passgate.mfa.states import Status

if TYPE_CHECKING:
    from passgate.auth.settings import MfaConfig

log = logging.getLogger("passgate.mfa")


class ChallengeRequest(Protocol):
    """What starting a challenge reads of its request: a decision's context (`policy.decisions.
    DecisionContext`), or a Verify API start (`mfa.verify`) spelled in the same Kount shape (`body`:
    `person`, `strategy`, `account`, `deviceSessionId`, `preferredLanguageCode`)."""

    @property
    def decision_id(self) -> str | None: ...
    @property
    def client_id(self) -> str: ...
    @property
    def event_type(self) -> str: ...  # LOGIN | NEW_ACCOUNT_OPENING | VERIFY
    @property
    def body(self) -> dict[str, Any]: ...
    @property
    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class Origin:
    """Who starts a challenge, and what that changes: the session's `source` and `purpose`, a cap on its
    life (a password reset link lives 15 minutes at most), and whether a pending session for the same
    person and destination is returned instead of a new one; and whether a start of the same key in
    another transaction (another API process) waits for this one's commit before it looks for a pending
    session (`mfa.queries.hold_pending_key`), so that it finds the session this one makes."""

    source: str = "decision"
    purpose: str | None = None
    max_ttl_seconds: int | None = None
    reuse_pending: bool = True
    one_at_a_time: bool = False


DECISION = Origin()
# The console's own sign-in (console.services): a session of the operator's client, kept out of that
# client's statistics and webhooks, never handed back as a pending one.
CONSOLE = Origin(source="console", reuse_pending=False)


def pending_key(ctx: ChallengeRequest, picked: Picked, dest_hash: str, origin: Origin) -> PendingKey:
    """What a pending session must share with this request to be returned for it: the client, the
    destination and the template, and for a decision the account and the device too (a session started
    on another device is not this login's: were it returned, the person confirming their own login would
    confirm the other one as well)."""
    body = ctx.body
    strategy = body.get("strategy") or {}
    return PendingKey(
        ctx.client_id,
        dest_hash,
        origin.source,
        ctx.event_type,
        picked.name,
        (body.get("account") or {}).get("id"),
        body.get("deviceSessionId"),
        origin.purpose,
        bool(strategy.get("bindToDevice")) and picked.mfa_type == "NONCE_OTH",
    )


class Picked(NamedTuple):
    """A challenge's template and the request attributes it needs (`pick_template`)."""

    template: Any
    name: str
    name_key: str
    values_key: str
    mfa_type: str
    channel: str
    echo_key: str
    raw_destination: str

    def echoed(self, destination: str) -> dict[str, Any]:
        return {"strategy": {self.name_key: self.name}, "person": {self.echo_key: destination}}

    def refused(self, error: str, destination: str, reason: str | None = None) -> ChallengeRefused:
        return ChallengeRefused(error, self.mfa_type, self.channel, reason, self.echoed(destination))


def pick_template(
    templates: TemplateSource, session: Session, ctx: ChallengeRequest
) -> Picked | ChallengeRefused:
    """The template the request names and the destination it needs, or why there is none."""
    login = ctx.event_type == "LOGIN"
    strategy = ctx.body.get("strategy") or {}
    name_key = "mfaTemplateName" if login else "verificationTemplateName"
    name = strategy.get(name_key)
    if not name:
        return ChallengeRefused("NOT_ENOUGH_INFO", echoed={})
    template = templates.get(session, ctx.client_id, name)
    if template is None and name == DEFAULT_TEMPLATE:
        # No template of the client's is named "default": the client's default for the channel and event.
        name = default_template_name(ctx.event_type, ctx.body)
        template = templates.get(session, ctx.client_id, name)
    if template is None:
        return ChallengeRefused("TEMPLATE_NOT_FOUND", echoed={"strategy": {name_key: name}})
    channel = template.channel
    mfa_type = "NONCE_OTH" if template.kind == "OTH" else "OTP"
    echo_key = "emailAddress" if channel == "EMAIL" else "phoneNumber"
    raw_destination = (ctx.body.get("person") or {}).get(echo_key)
    if not raw_destination:
        return ChallengeRefused("NOT_ENOUGH_INFO", mfa_type, channel, echoed={"strategy": {name_key: name}})
    values_key = "mfaTemplateValues" if login else "verificationTemplateValues"
    return Picked(template, name, name_key, values_key, mfa_type, channel, echo_key, raw_destination)


def checked_destination(picked: Picked, sandbox: bool, config: MfaConfig) -> str | ChallengeRefused:
    """The destination as challenges store it (normalised), or why it is refused."""
    raw = picked.raw_destination
    magic = is_sandbox_destination(picked.channel, raw)
    if magic and not sandbox:
        return picked.refused("INVALID_DESTINATION", raw)
    if picked.channel == "EMAIL":
        check = check_email(raw)
    elif magic:
        check = check_phone(raw, ["US"], False)
    else:
        check = check_phone(raw, list(config.sms_allowed_countries), config.reject_voip)
    if not check.ok:
        log.info("challenge refused: %s", check.reason, extra={"channel": picked.channel})
        return picked.refused("INVALID_DESTINATION", raw)
    return check.value


def new_session_row(
    ctx: ChallengeRequest,
    picked: Picked,
    destination: str,
    dest_hash: str,
    sandbox: bool,
    config: MfaConfig,
    origin: Origin = DECISION,
) -> dict[str, Any]:
    """The new session's row, as inserted."""
    body, now, mfa_type, channel = ctx.body, ctx.now, picked.mfa_type, picked.channel
    strategy = body.get("strategy") or {}
    person = body.get("person") or {}
    ttl = config.ttl(channel, mfa_type, ctx.event_type)
    if origin.max_ttl_seconds is not None:
        ttl = min(ttl, origin.max_ttl_seconds)
    bind = bool(strategy.get("bindToDevice")) and mfa_type == "NONCE_OTH"
    locale = choose_locale(
        list(picked.template.locales),
        picked.template.default_locale,
        body.get("preferredLanguageCode"),
        # The phone number's country decides next, for an email challenge too when the request gave
        # person.phoneNumber (E.164, already checked by the request schema).
        destination if channel == "SMS" else person.get("phoneNumber"),
    )
    name_parts = person.get("name") or {}
    return {
        "id": new_uuid(),
        "client_id": ctx.client_id,
        "decision_id": ctx.decision_id,
        "event_type": ctx.event_type,
        "type": mfa_type,
        "channel": channel,
        "template_name": picked.name,
        "locale": locale,
        "destination": destination,
        "destination_hash": dest_hash,
        "account_id": (body.get("account") or {}).get("id"),
        "device_session_id": body.get("deviceSessionId"),
        "status": Status.UNKNOWN.value,
        "termination_reason": None,
        "delivery_status": DeliveryStatus.QUEUED.value,
        "send_attempts": 0,
        "verification_attempts": 0,
        "max_sends": config.max_sends,
        "max_attempts": config.max_attempts,
        "ttl_seconds": ttl,
        "code_length": config.otp_length,
        "expires_at": now + timedelta(seconds=ttl),
        "created_at": now,
        "updated_at": now,
        "verified_at": None,
        "target_url": strategy.get("verificationTargetUrl"),
        "bind_to_device": bind,
        "match_number": mfa_secrets.new_match_number() if bind else None,
        "sandbox": sandbox,
        "render_context": {
            "values": dict(strategy.get(picked.values_key) or {}),
            "person": {k: name_parts.get(k) for k in ("first", "last", "preferred")},
        },
        "sequence": 0,
        "link_opens": 0,
        "source": origin.source,
        "purpose": origin.purpose,
    }
