"""The Verify API's domain: verification without a risk decision (sign-up, email change, password reset).

A verification is an MFA session like a decision's challenge, started by the same code
(`MfaService.start_session`: `MfaService.start` with the session's row in the answer, called with the
request spelled in Kount's shape and an `Origin` of its own; its writes wait for the commit, so a start
runs in the group commit as a decision does) and verified, resent, cancelled and listed by the same
`MfaService` methods. What is here is only what the Verify API adds: its channels and purposes, the
lookup by destination, the rule that a password reset start never tells whether anything was sent, and
that its calls see only its own sessions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from passgate.contacts import normalise_destination
from passgate.ids import new_uuid
from passgate.locales import choose_locale
from passgate.messaging.states import DeliveryStatus
from passgate.mfa import queries
from passgate.mfa.challenge import Origin
from passgate.mfa.exceptions import (
    InvalidDestination,
    InvalidVerification,
    NoPendingVerification,
    SendRateLimited,
    SessionNotFound,
    Throttled,
)
from passgate.mfa.queries import SessionRow
from passgate.mfa.results import AttemptResult, ChallengeRefused, TimelineEntry
from passgate.mfa.services import MAX_WAIT_SECONDS, MfaService
from passgate.mfa.states import Status

log = logging.getLogger("passgate.mfa")

# A Verify API session's `event_type` (its webhooks are `Verification.StatusUpdate` with `source`).
VERIFY_EVENT = "VERIFY"
SOURCE = "verify"
# The Verify API's channels: the channel and template kind of each, and the built-in template it uses
# when the request names none.
CHANNELS: dict[str, tuple[str, str]] = {
    "email-link": ("EMAIL", "OTH"),
    "email-code": ("EMAIL", "OTP"),
    "sms-link": ("SMS", "OTH"),
    "sms-code": ("SMS", "OTP"),
}
PURPOSES = ("signup", "email_change", "password_reset", "other")
# OWASP Forgot Password Cheat Sheet: reset links and codes are short-lived (and single use: a verified
# session is terminal).
PASSWORD_RESET_TTL_SECONDS = 15 * 60


def channel_name(channel: str, mfa_type: str) -> str:
    """The Verify API's name of a session's channel (`EMAIL` + `OTP` is `email-code`)."""
    return ("email" if channel == "EMAIL" else "sms") + ("-code" if mfa_type == "OTP" else "-link")


@dataclass(frozen=True, slots=True)
class VerifyStart:
    """A start, as the API parsed it (`to` already checked to be an address or an E.164 number)."""

    to: str
    channel: str  # one of CHANNELS
    purpose: str = "other"
    template_name: str | None = None
    locale: str | None = None
    redirect_url: str | None = None
    custom_values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Request:
    """A start in the shape `mfa.challenge` reads (`ChallengeRequest`)."""

    client_id: str
    body: dict[str, Any]
    now: datetime
    event_type: str = VERIFY_EVENT
    decision_id: str | None = None


@dataclass(frozen=True, slots=True)
class Started:
    """A start's answer: the session, and whether it is new (else a pending one returned). `exists` is
    False only for a password reset that sent nothing (`_unsent`: a row no session has)."""

    row: SessionRow
    created: bool
    exists: bool = True


@dataclass(frozen=True, slots=True)
class Refused:
    """A start refused, with the error the API answers. Returned rather than raised: a start runs as a
    unit of work in the group commit, and a unit that raises sends the other units of its batch to run
    again one by one (`db.group_commit`)."""

    error: Exception


def start_key(client_id: str, start: VerifyStart) -> tuple[str, str, str, str]:
    """What makes two starts the same verification (as `mfa.challenge.pending_key` compares them for a
    start: client, destination, purpose, template — the template names the channel): the key under which
    identical starts in one process run one after another (`api.verify`)."""
    channel = CHANNELS[start.channel][0]
    to = normalise_destination(channel, start.to)
    return client_id, to.value if to.ok else start.to, start.purpose, start.template_name or start.channel


def _kount_body(start: VerifyStart) -> dict[str, Any]:
    """The start spelled as an account opening's request, which `mfa.challenge` reads."""
    key = "emailAddress" if CHANNELS[start.channel][0] == "EMAIL" else "phoneNumber"
    strategy: dict[str, Any] = {
        "verificationTemplateName": start.template_name or start.channel,
        "verificationTemplateValues": dict(start.custom_values),
    }
    if start.redirect_url:
        strategy["verificationTargetUrl"] = start.redirect_url
    body: dict[str, Any] = {"person": {key: start.to}, "strategy": strategy}
    if start.locale:
        body["preferredLanguageCode"] = start.locale
    return body


@dataclass
class VerifyService:
    """The Verify API over the MFA service: the same sessions, limits, templates and webhooks."""

    mfa: MfaService

    def start(self, session: Session, client_id: str, start: VerifyStart) -> Started | Refused:
        """A pending verification of the same destination, purpose and template, or a new one (its
        session, message, timeline and webhook rows written when the transaction commits: the unit only
        reads, as a decision's CHALLENGE does, and runs in the group commit beside decisions). Refusals
        are errors naming the field, except for a password reset, whose answer never tells whether a
        message goes out (`_unsent`)."""
        now = self.mfa.clock.now()
        channel, kind = CHANNELS[start.channel]
        to = normalise_destination(channel, start.to)
        if not to.ok:  # a malformed address or number, whatever the purpose: it tells nothing of accounts
            return Refused(InvalidDestination("to", to.reason))
        template = self.mfa.templates.get(session, client_id, start.template_name or start.channel)
        if template is None:
            return Refused(InvalidVerification("templateName", "no template of this name"))
        if (template.channel, template.kind) != (channel, kind):
            return Refused(
                InvalidVerification(
                    "templateName",
                    f"the template is for {template.channel} {template.kind}, not {start.channel}",
                )
            )
        origin = Origin(
            source=SOURCE,
            purpose=start.purpose,
            max_ttl_seconds=PASSWORD_RESET_TTL_SECONDS if start.purpose == "password_reset" else None,
            one_at_a_time=True,
        )
        result, row = self.mfa.start_session(session, _Request(client_id, _kount_body(start), now), origin)
        if isinstance(result, ChallengeRefused) or row is None:
            assert isinstance(result, ChallengeRefused)
            if start.purpose == "password_reset":
                return self._unsent(session, client_id, start, template, result, now)
            return Refused(_refusal(result))
        return Started(row, not result.reused)

    def _unsent(
        self,
        session: Session,
        client_id: str,
        start: VerifyStart,
        template: Any,
        refused: ChallengeRefused,
        now: datetime,
    ) -> Started:
        """A password reset to a destination that gets no message (refused, locked, or over its limits)
        answers as a new one would: same status, same shape, an id of the same kind (one that no session
        has, so it reads as not found later, as any unknown id). Whether an address belongs to an account
        is the business's secret: Passgate does not know it, and its answer must not help to guess it."""
        log.info(
            "password reset not sent: %s", refused.reason or refused.error, extra={"channel": refused.channel}
        )
        channel, kind = CHANNELS[start.channel]
        mfa_type = "OTP" if kind == "OTP" else "NONCE_OTH"
        sandbox, config = self.mfa.client_config(session, client_id)
        ttl = min(config.ttl(channel, mfa_type, VERIFY_EVENT), PASSWORD_RESET_TTL_SECONDS)
        check = normalise_destination(channel, start.to)
        phone = check.value if channel == "SMS" else None
        locale = choose_locale(list(template.locales), template.default_locale, start.locale, phone)
        return Started(
            SessionRow(
                id=new_uuid(),
                client_id=client_id,
                event_type=VERIFY_EVENT,
                type=mfa_type,
                channel=channel,
                status=Status.UNKNOWN.value,
                termination_reason=None,
                delivery_status=DeliveryStatus.QUEUED.value,
                send_attempts=1,
                verification_attempts=0,
                ttl_seconds=ttl,
                expires_at=now + timedelta(seconds=ttl),
                sequence=1,
                decision_id=None,
                template_name=start.template_name or start.channel,
                locale=locale,
                destination=check.value or start.to,
                destination_hash="",
                account_id=None,
                device_session_id=None,
                max_sends=config.max_sends,
                max_attempts=config.max_attempts,
                code_length=config.otp_length,
                created_at=now,
                updated_at=now,
                verified_at=None,
                target_url=start.redirect_url,
                bind_to_device=False,
                match_number=None,
                sandbox=sandbox,
                render_context={},
                link_opens=0,
                source=SOURCE,
                purpose=start.purpose,
            ),
            True,
            exists=False,
        )

    # -- one verification, by id ----------------------------------------------------------------------

    def get(self, session: Session, client_id: str, session_id: str) -> SessionRow:
        """The client's verification (SessionNotFound for a decision's session: this API sees its own)."""
        row = self.mfa.get(session, client_id, session_id)
        if row.source != SOURCE:
            raise SessionNotFound(session_id)
        return row

    def check(
        self, session: Session, client_id: str, session_id: str, code: str
    ) -> tuple[AttemptResult, SessionRow]:
        """A code check: `MfaService.verify_code` (attempts per session and per person), and the session
        as it now is."""
        return self.mfa.check_code(session, client_id, session_id, code, SOURCE)

    def check_destination(
        self, session: Session, client_id: str, to: str, code: str
    ) -> tuple[AttemptResult, SessionRow]:
        """A code check by destination, for callers that keep no id: the client's newest pending
        verification of that address or number."""
        channel = "EMAIL" if "@" in to else "SMS"
        checked = normalise_destination(channel, to)
        if not checked.ok:
            raise InvalidDestination("to", checked.reason)
        hashes = self.mfa.keyring.all_hashes("destination", checked.value)
        row = queries.newest_pending(session.connection(), client_id, hashes, SOURCE, self.mfa.clock.now())
        if row is None:
            raise NoPendingVerification()
        return self.check(session, client_id, row.id, code)

    def resend(self, session: Session, client_id: str, session_id: str) -> SessionRow:
        self.get(session, client_id, session_id)
        return self.mfa.resend(session, client_id, session_id)

    def cancel(self, session: Session, client_id: str, session_id: str) -> SessionRow:
        self.get(session, client_id, session_id)
        return self.mfa.cancel(session, client_id, session_id)

    def timeline(self, session: Session, client_id: str, session_id: str) -> list[TimelineEntry]:
        self.get(session, client_id, session_id)
        return self.mfa.timeline_entries(session, client_id, session_id)


def _refusal(refused: ChallengeRefused) -> Exception:
    """A refused start (other than a password reset's) as the error the API answers."""
    if refused.error == "RATE_LIMITED":
        if refused.reason in ("DESTINATION_LOCKED", "ACCOUNT_LOCKED"):
            return Throttled(MAX_WAIT_SECONDS, locked=True)
        return SendRateLimited(60)
    if refused.error == "INVALID_DESTINATION":
        return InvalidDestination("to", "this destination is refused (country, number type or test address)")
    return InvalidVerification("templateName", refused.error)
