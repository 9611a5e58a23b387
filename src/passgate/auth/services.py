"""Clients, API keys and the token grant."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from passgate.auth.exceptions import InvalidClient, InvalidScope, NotFound, TooManyFailedAttempts, TooManyKeys
from passgate.auth.models import ApiKey, Client
from passgate.auth.tokens import TokenService
from passgate.caching import TtlCache
from passgate.clock import Clock
from passgate.ids import new_client_id, new_key_id, new_uuid
from passgate.ratelimit import RateLimiter

MAX_ACTIVE_KEYS = 2
INTEGRATION_SCOPE = "k1_integration_api"
ADMIN_SCOPE = "admin"
KNOWN_SCOPES = (INTEGRATION_SCOPE, ADMIN_SCOPE)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str


def create_client(session: Session, name: str, country: str, sandbox: bool, now: datetime) -> Client:
    from passgate.policy.services import install_default_sets

    client = Client(id=new_client_id(), name=name, country=country.upper(), sandbox=sandbox, created_at=now)
    session.add(client)
    session.flush()
    install_default_sets(session, client.id, now)
    return client


def get_client(session: Session, client_id: str) -> Client:
    client = session.get(Client, client_id)
    if client is None:
        raise NotFound("client", client_id)
    return client


def create_api_key(
    session: Session, client_id: str, scopes: list[str], now: datetime, name: str | None = None
) -> CreatedKey:
    get_client(session, client_id)
    for s in scopes:
        if s not in KNOWN_SCOPES:
            raise InvalidScope(s)
    # Lock the client row so two concurrent creations cannot both pass the limit check.
    session.execute(select(Client.id).where(Client.id == client_id).with_for_update())
    active = session.scalars(
        select(ApiKey).where(ApiKey.client_id == client_id, ApiKey.revoked_at.is_(None))
    ).all()
    if len(active) >= MAX_ACTIVE_KEYS:
        raise TooManyKeys(MAX_ACTIVE_KEYS)
    secret = "pgk_" + secrets.token_urlsafe(32)
    all_scopes = sorted({INTEGRATION_SCOPE, *scopes})
    key = ApiKey(
        id=new_key_id(),
        client_id=client_id,
        key_hash=hash_key(secret),
        prefix=secret[:10],
        scopes=" ".join(all_scopes),
        name=name,
        created_at=now,
    )
    session.add(key)
    session.flush()
    return CreatedKey(key=key, secret=secret)


def list_api_keys(session: Session, client_id: str) -> list[ApiKey]:
    return list(
        session.scalars(select(ApiKey).where(ApiKey.client_id == client_id).order_by(ApiKey.created_at))
    )


def revoke_api_key(session: Session, client_id: str, key_id: str, now: datetime) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None or key.client_id != client_id:
        raise NotFound("API key", key_id)
    if key.revoked_at is None:
        key.revoked_at = now
    return key


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str


def grant_client_credentials(
    session: Session,
    tokens: TokenService,
    client_id: str,
    secret: str,
    requested_scope: str | None,
    now: datetime,
) -> IssuedToken:
    rows = session.execute(
        select(ApiKey, Client.disabled_at)
        .join(Client, Client.id == ApiKey.client_id)
        .where(ApiKey.client_id == client_id, ApiKey.revoked_at.is_(None))
    ).all()
    presented = hash_key(secret)
    match = None
    disabled = False
    for k, disabled_at in rows:
        # Compare every candidate so the time taken does not reveal which one matched.
        if hmac.compare_digest(k.key_hash, presented):
            match, disabled = k, disabled_at is not None
    if match is None:
        raise InvalidClient("unknown client or wrong secret")
    if disabled:  # said only to the holder of a right key
        raise InvalidClient("this client is disabled; ask the Passgate operator")
    granted = set(match.scopes.split())
    wanted = (requested_scope or INTEGRATION_SCOPE).split()
    for s in wanted:
        if s not in granted:
            raise InvalidScope(s)
    session.execute(update(ApiKey).where(ApiKey.id == match.id).values(last_used_at=now))
    token = tokens.issue(client_id, match.id, wanted, now, new_uuid())
    return IssuedToken(token, tokens.ttl_seconds, " ".join(wanted))


@dataclass(frozen=True)
class TokenAttempts:
    """Limits on wrong secrets at `POST /oauth2/token`, per IP address and per client id.

    An address past its limit is refused before anything is checked. A client id past its limit refuses
    only the addresses that sent a wrong secret for it within the window: its own servers, which present
    the right key, keep getting tokens while someone elsewhere guesses (and a guesser moving to a new
    address gets one try there before it is refused too)."""

    limiter: RateLimiter
    ip_rates: str
    client_rates: str

    @property
    def _pair_rates(self) -> str:
        # "Had a failure for this client within the client window": one hit fills it.
        return "1/" + self.client_rates.split(";")[-1].split("/", 1)[1].strip()

    def check_address(self, ip: str) -> None:
        by_ip = self.limiter.test("token-failures:ip", ip, self.ip_rates)
        if not by_ip.allowed:
            raise TooManyFailedAttempts(by_ip.retry_after)

    def check_client(self, client_id: str, ip: str) -> None:
        by_client = self.limiter.test("token-failures:client", client_id[:100], self.client_rates)
        if by_client.allowed:
            return
        if not self.limiter.test("token-failures:pair", self._pair(client_id, ip), self._pair_rates).allowed:
            raise TooManyFailedAttempts(by_client.retry_after)

    def failed(self, ip: str, client_id: str | None) -> None:
        self.limiter.hit("token-failures:ip", ip, self.ip_rates)
        if client_id is not None:
            self.limiter.hit("token-failures:client", client_id[:100], self.client_rates)
            self.limiter.hit("token-failures:pair", self._pair(client_id, ip), self._pair_rates)

    def succeeded(self, client_id: str, ip: str) -> None:
        self.limiter.clear("token-failures:pair", self._pair(client_id, ip), self._pair_rates)

    @staticmethod
    def _pair(client_id: str, ip: str) -> str:
        return f"{client_id[:100]}\x00{ip}"


class KeyStatusCache:
    """Whether a key is still active (not revoked, its client not disabled), remembered for a few seconds
    to keep a query off every request.

    Revoking a key or disabling its client therefore takes effect within `ttl` seconds on every API process.
    """

    def __init__(self, factory: sessionmaker[Session], ttl: float, clock: Clock | None = None) -> None:
        self._factory = factory
        self._seen: TtlCache[str, bool] = TtlCache(ttl, clock, maxsize=50_000)

    def is_active(self, key_id: str, client_id: str) -> bool:
        hit = self._seen.get(key_id)
        if hit is not None:
            return hit
        with self._factory() as session:
            row = session.execute(
                select(ApiKey.revoked_at, ApiKey.client_id, Client.disabled_at)
                .join(Client, Client.id == ApiKey.client_id)
                .where(ApiKey.id == key_id)
            ).first()
        active = (
            row is not None
            and row.revoked_at is None
            and row.disabled_at is None
            and row.client_id == client_id
        )
        return self._seen.put(key_id, active)

    def forget(self, key_id: str) -> None:
        self._seen.invalidate(key_id)


_CLIENT_SANDBOX = select(Client.sandbox).where(Client.id == bindparam("client_id"))


class ClientCache:
    """Whether a client exists and is a sandbox: fixed at creation, so remembered for good once read."""

    def __init__(self) -> None:
        self._sandbox: dict[str, bool] = {}

    def sandbox(self, session: Session, client_id: str) -> bool | None:
        hit = self._sandbox.get(client_id)
        if hit is not None:
            return hit
        value = session.connection().execute(_CLIENT_SANDBOX, {"client_id": client_id}).scalar()
        if value is None:
            return None
        if len(self._sandbox) > 100_000:
            self._sandbox.clear()
        self._sandbox[client_id] = bool(value)
        return bool(value)
