"""Console sign-in: users with argon2id passwords, server-side sessions behind signed cookies, trusted
devices, the email-link step on a new device (Passgate's own MFA), CSRF tokens and sign-in rate limits.

Tokens: every cookie carries a random 256-bit token and an HMAC over it; the database keeps only a keyed
hash of the token. Sign-out and revocation delete nothing a browser holds: they mark the row, and the next
request with that cookie finds no live row.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from passgate.auth.models import Client
from passgate.clock import Clock
from passgate.console.exceptions import (
    BadCredentials,
    ChallengeNotStarted,
    InvalidUser,
    SignInLocked,
    UserExists,
)
from passgate.console.models import ConsoleDevice, ConsoleSession, ConsoleSignIn, ConsoleUser
from passgate.console.permissions import Role
from passgate.ids import new_uuid
from passgate.keyring import KeyRing
from passgate.mfa.challenge import CONSOLE
from passgate.mfa.models import MfaSession
from passgate.mfa.results import ChallengeRefused
from passgate.mfa.services import MfaService
from passgate.policy.decisions import DecisionContext
from passgate.policy.engine import Outcome
from passgate.ratelimit import RateLimiter

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; this bounds the work one request can ask for
SIGN_IN_TEMPLATE = "email-link"
SESSION_IDLE = timedelta(hours=2)
SESSION_MAX = timedelta(hours=12)
DEVICE_TTL = timedelta(days=30)
# Writing last_seen_at on every page view would make every read a write; once a minute is enough.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class CurrentUser:
    user_id: str
    client_id: str
    client_name: str
    email: str
    role: str
    session_id: str
    csrf: str

    @property
    def actor(self) -> str:
        """How the audit log names this person."""
        return f"console:{self.email}"


@dataclass(frozen=True)
class PendingView:
    sign_in: ConsoleSignIn
    status: str  # the MFA session's status
    reason: str | None
    expired: bool


def normalise_email(raw: str) -> str:
    return raw.strip().lower()


class ConsoleAuth:
    def __init__(
        self,
        *,
        keyring: KeyRing,
        clock: Clock,
        limiter: RateLimiter,
        mfa: MfaService,
        public_url: str,
        email_rates: str,
        ip_rates: str,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.keyring = keyring
        self.clock = clock
        self.limiter = limiter
        self.mfa = mfa
        self.public_url = public_url
        self.email_rates = email_rates
        self.ip_rates = ip_rates
        # argon2-cffi's defaults are RFC 9106's low-memory profile of argon2id (t=3, m=64 MiB, p=4).
        self.hasher = hasher or PasswordHasher()
        # Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    # -- tokens and cookies --------------------------------------------------------------------------

    def _hash(self, purpose: str, token: str) -> str:
        return self.keyring.keyed_hash(f"console-{purpose}", token)

    def _hashes(self, purpose: str, token: str) -> list[str]:
        return self.keyring.all_hashes(f"console-{purpose}", token)

    def sign(self, token: str) -> str:
        return f"{token}.{self.keyring.keyed_hash('console-cookie', token)[:32]}"

    def unsign(self, value: str | None) -> str | None:
        """The token of a cookie this server signed, else None (before any database work)."""
        if not value or len(value) > 200:
            return None
        token, _, sig = value.rpartition(".")
        if not token or not sig:
            return None
        for candidate in self.keyring.all_hashes("console-cookie", token):
            if hmac.compare_digest(candidate[:32], sig):
                return token
        return None

    def csrf_for_session(self, session_id: str) -> str:
        return self.keyring.keyed_hash("console-csrf", session_id)[:40]

    def csrf_for_nonce(self, nonce: str) -> str:
        """CSRF token of the pages shown before sign-in, bound to a random cookie (double submit)."""
        return self.keyring.keyed_hash("console-login-csrf", nonce)[:40]

    @staticmethod
    def same_token(given: str | None, expected: str) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())

    # -- users ---------------------------------------------------------------------------------------

    def create_user(
        self, session: Session, client_id: str, email: str, password: str, role: str, now: datetime
    ) -> ConsoleUser:
        if session.get(Client, client_id) is None:
            raise InvalidUser("client", f"no client {client_id!r}")
        try:
            Role(role)
        except ValueError:
            raise InvalidUser("role", "must be owner, analyst or viewer") from None
        try:
            address = validate_email(email.strip(), check_deliverability=False, test_environment=True)
        except EmailNotValidError as exc:
            raise InvalidUser("email", f"not a valid email address: {exc}") from None
        normalised = normalise_email(address.normalized)
        check_password_rules(password)
        if session.scalars(select(ConsoleUser.id).where(ConsoleUser.email == normalised)).first():
            raise UserExists(normalised)
        user = ConsoleUser(
            id="cu_" + secrets.token_hex(10),
            client_id=client_id,
            email=normalised,
            password_hash=self.hasher.hash(password),
            role=role,
            created_at=now,
            updated_at=now,
        )
        session.add(user)
        session.flush()
        return user

    def user_by_email(self, session: Session, email: str) -> ConsoleUser:
        address = normalise_email(email)
        user = None
        if "\x00" not in address:
            user = session.scalars(select(ConsoleUser).where(ConsoleUser.email == address)).first()
        if user is None:
            raise InvalidUser("email", f"no console user {address!r}")
        return user

    def set_password(self, session: Session, user: ConsoleUser, password: str, now: datetime) -> int:
        """A new password; every browser signed in as this user is signed out (how many comes back)."""
        check_password_rules(password)
        user.password_hash = self.hasher.hash(password)
        user.updated_at = now
        return self._end_sessions(session, user.id, now)

    def set_role(self, session: Session, user: ConsoleUser, role: str, now: datetime) -> None:
        try:
            Role(role)
        except ValueError:
            raise InvalidUser("role", "must be owner, analyst or viewer") from None
        user.role = role
        user.updated_at = now

    def set_disabled(self, session: Session, user: ConsoleUser, disabled: bool, now: datetime) -> int:
        """Disable (signing out every browser of the user; how many comes back) or enable again."""
        user.disabled_at = now if disabled else None
        user.updated_at = now
        return self._end_sessions(session, user.id, now) if disabled else 0

    def _end_sessions(self, session: Session, user_id: str, now: datetime) -> int:
        result = session.execute(
            update(ConsoleSession)
            .where(ConsoleSession.user_id == user_id, ConsoleSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- sign-in -------------------------------------------------------------------------------------

    def check_password(self, session: Session, email: str, password: str, ip: str) -> ConsoleUser:
        """The user whose email and password these are; raises SignInLocked or BadCredentials.

        Every attempt counts against the email and the IP address; a success clears the email's count.
        """
        address = normalise_email(email)[:254]
        by_ip = self.limiter.hit("console-sign-in:ip", ip, self.ip_rates)
        if not by_ip.allowed:
            raise SignInLocked(by_ip.retry_after, "ip")
        by_email = self.limiter.hit("console-sign-in:email", address, self.email_rates)
        if not by_email.allowed:
            raise SignInLocked(by_email.retry_after, "email")
        user = None
        if "\x00" not in address:  # PostgreSQL refuses NUL in text; such an email matches no one
            user = session.scalars(select(ConsoleUser).where(ConsoleUser.email == address)).first()
        if not password or len(password) > MAX_PASSWORD:
            raise BadCredentials()
        stored = user.password_hash if user is not None else self._dummy_hash
        try:
            self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            raise BadCredentials() from None
        if user is None or user.disabled_at is not None:
            raise BadCredentials()
        client = session.get(Client, user.client_id)
        if client is None or client.disabled_at is not None:
            raise BadCredentials()
        if self.hasher.check_needs_rehash(user.password_hash):
            user.password_hash = self.hasher.hash(password)
        self.limiter.clear("console-sign-in:email", address, self.email_rates)
        return user

    def device_trusted(self, session: Session, user: ConsoleUser, cookie: str | None, now: datetime) -> bool:
        token = self.unsign(cookie)
        if token is None:
            return False
        device = session.scalars(
            select(ConsoleDevice).where(ConsoleDevice.token_hash.in_(self._hashes("device", token)))
        ).first()
        if device is None or device.user_id != user.id or device.revoked_at is not None:
            return False
        if device.expires_at <= now:
            return False
        device.last_used_at = now
        return True

    def remember_device(self, session: Session, user_id: str, user_agent: str, now: datetime) -> str:
        """A new trusted-device token for this browser (the cookie value, signed)."""
        token = secrets.token_urlsafe(32)
        session.add(
            ConsoleDevice(
                id=new_uuid(),
                token_hash=self._hash("device", token),
                user_id=user_id,
                created_at=now,
                last_used_at=now,
                expires_at=now + DEVICE_TTL,
                user_agent=user_agent[:300],
            )
        )
        return self.sign(token)

    def start_email_step(self, session: Session, user: ConsoleUser, now: datetime) -> str:
        """Start a Passgate email-link challenge to the user's address, for the user's client; returns the
        signed token of the pending sign-in (a cookie on the device that typed the password)."""
        client = session.get(Client, user.client_id)
        assert client is not None
        device_session_id = "console-" + secrets.token_hex(8)
        body: dict[str, Any] = {
            "deviceSessionId": device_session_id,
            "person": {"emailAddress": user.email},
            "account": {"id": f"console:{user.id}", "username": user.email},
            # The confirm page sends the person back to the waiting page; on the device that signed in it
            # finishes the sign-in, anywhere else it says to go back to that device.
            "strategy": {
                "mfaTemplateName": SIGN_IN_TEMPLATE,
                "verificationTargetUrl": f"{self.public_url}/console/sign-in/check-email",
            },
        }
        ctx = DecisionContext(
            decision_id=new_uuid(),
            client_id=user.client_id,
            sandbox=client.sandbox,
            event_type="LOGIN",
            body=body,
            outcome=Outcome(decision="CHALLENGE", segment="console", mfa_enabled=True),
            now=now,
        )
        # Its own origin: kept out of the client's statistics and webhooks (mfa.challenge.CONSOLE).
        started = self.mfa.start(session, ctx, CONSOLE, at_commit=False)  # read back below
        if isinstance(started, ChallengeRefused):
            raise ChallengeNotStarted(started.error)
        mfa = session.get(MfaSession, started.session_id)
        assert mfa is not None
        token = secrets.token_urlsafe(32)
        session.add(
            ConsoleSignIn(
                id=new_uuid(),
                token_hash=self._hash("sign-in", token),
                user_id=user.id,
                client_id=user.client_id,
                mfa_session_id=mfa.id,
                created_at=now,
                expires_at=mfa.expires_at + timedelta(minutes=5),
            )
        )
        return self.sign(token)

    def pending(self, session: Session, cookie: str | None, now: datetime) -> PendingView | None:
        token = self.unsign(cookie)
        if token is None:
            return None
        row = session.scalars(
            select(ConsoleSignIn).where(ConsoleSignIn.token_hash.in_(self._hashes("sign-in", token)))
        ).first()
        if row is None or row.completed_at is not None:
            return None
        mfa = session.get(MfaSession, row.mfa_session_id)
        if mfa is None or mfa.client_id != row.client_id:
            return None
        expired = row.expires_at <= now
        return PendingView(row, mfa.status, mfa.termination_reason, expired)

    def resend(self, session: Session, pending: PendingView) -> None:
        self.mfa.resend(session, pending.sign_in.client_id, pending.sign_in.mfa_session_id)

    def complete(self, session: Session, pending: PendingView, now: datetime) -> ConsoleUser | None:
        """Consume a verified pending sign-in (once: two polls racing get one winner)."""
        if pending.status != "VERIFIED" or pending.expired:
            return None
        done = session.execute(
            update(ConsoleSignIn)
            .where(ConsoleSignIn.id == pending.sign_in.id, ConsoleSignIn.completed_at.is_(None))
            .values(completed_at=now)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return None
        user = session.get(ConsoleUser, pending.sign_in.user_id)
        if user is None or user.disabled_at is not None:
            return None
        return user

    # -- sessions ------------------------------------------------------------------------------------

    def open_session(
        self, session: Session, user: ConsoleUser, ip: str, user_agent: str, now: datetime
    ) -> str:
        token = secrets.token_urlsafe(32)
        session.add(
            ConsoleSession(
                id=new_uuid(),
                token_hash=self._hash("session", token),
                user_id=user.id,
                client_id=user.client_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + SESSION_MAX,
                ip=ip[:64],
                user_agent=user_agent[:300],
            )
        )
        user.last_sign_in_at = now
        return self.sign(token)

    def resolve(self, session: Session, cookie: str | None, now: datetime) -> CurrentUser | None:
        token = self.unsign(cookie)
        if token is None:
            return None
        row = session.execute(
            select(ConsoleSession, ConsoleUser, Client.name, Client.disabled_at)
            .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
            .join(Client, Client.id == ConsoleUser.client_id)
            .where(ConsoleSession.token_hash.in_(self._hashes("session", token)))
        ).first()
        if row is None:
            return None
        cs, user, client_name, client_disabled_at = row
        if cs.revoked_at is not None or user.disabled_at is not None or cs.client_id != user.client_id:
            return None
        if client_disabled_at is not None:
            return None
        if cs.expires_at <= now or cs.last_seen_at + SESSION_IDLE <= now:
            return None
        if now - cs.last_seen_at >= TOUCH_EVERY:
            cs.last_seen_at = now
        return CurrentUser(
            user_id=user.id,
            client_id=user.client_id,
            client_name=client_name,
            email=user.email,
            role=user.role,
            session_id=cs.id,
            csrf=self.csrf_for_session(cs.id),
        )

    def sign_out(self, session: Session, session_id: str, now: datetime) -> None:
        session.execute(
            update(ConsoleSession)
            .where(ConsoleSession.id == session_id, ConsoleSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    def sign_out_others(self, session: Session, user: CurrentUser, now: datetime) -> int:
        result = session.execute(
            update(ConsoleSession)
            .where(
                ConsoleSession.user_id == user.user_id,
                ConsoleSession.id != user.session_id,
                ConsoleSession.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def forget_devices(self, session: Session, user: CurrentUser, now: datetime) -> int:
        result = session.execute(
            update(ConsoleDevice)
            .where(ConsoleDevice.user_id == user.user_id, ConsoleDevice.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def sessions_of(self, session: Session, user: CurrentUser, now: datetime) -> list[ConsoleSession]:
        rows = session.scalars(
            select(ConsoleSession)
            .where(
                ConsoleSession.user_id == user.user_id,
                ConsoleSession.revoked_at.is_(None),
                ConsoleSession.expires_at > now,
            )
            .order_by(ConsoleSession.created_at.desc())
            .limit(50)
        ).all()
        return [r for r in rows if r.last_seen_at + SESSION_IDLE > now]

    def devices_of(self, session: Session, user: CurrentUser, now: datetime) -> list[ConsoleDevice]:
        return list(
            session.scalars(
                select(ConsoleDevice)
                .where(
                    ConsoleDevice.user_id == user.user_id,
                    ConsoleDevice.revoked_at.is_(None),
                    ConsoleDevice.expires_at > now,
                )
                .order_by(ConsoleDevice.created_at.desc())
                .limit(50)
            )
        )


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidUser("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidUser("password", f"must be at most {MAX_PASSWORD} characters")
    if "\x00" in password:
        raise InvalidUser("password", "must not contain a NUL character")
