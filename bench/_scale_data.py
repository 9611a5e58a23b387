"""A year of one client's data, written in bulk, and the query plans of the hot paths (bench/scale.py).

Seeding: every row is built from the ORM tables (src/passgate/*/models.py): each kind of row names every
column of its table, and a column the seed does not know (or one it names that the table no longer has)
stops the seed with the table's name (`SchemaDrift`). Statuses come from the lifecycle enums, timestamps
are spread over the year before `now`, ids are UUIDv7 of their row's own time (as `passgate.ids` makes
them), destination hashes are the keyed hashes of the installation's own secret keys, and every foreign
key points at a row written before it (SQLite checks them: `PRAGMA foreign_keys=ON`).

Plans: the statements of the hot paths are collected from the code — every module-level
`db.fastpath.CursorStatement` and Core statement in `passgate` (they are built once because they are hot),
the webhook claim's statements, the outbox claim composed with the challenge hook's join, the query
functions that build theirs per call (`query_functions`), and the insert of every large table — each run
as Core runs it up to the cursor, where its SQL and parameters are taken and explained instead (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL). A plan that reads a large
table whole (SQLite `SCAN <table>` without an index, PostgreSQL `Seq Scan` on it) is a problem.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import random
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, Engine, Table, event, func, insert, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import CompoundSelect, Select

from passgate.db.fastpath import CursorStatement, insert_statement
from passgate.db.types import UTCDateTime
from passgate.keyring import KeyRing
from passgate.messaging.models import Message, MessageAttempt
from passgate.messaging.states import DeliveryStatus as MessageDelivery
from passgate.messaging.states import MessageStatus
from passgate.mfa.models import MfaEvent, MfaSecret, MfaSession
from passgate.mfa.secrets import CODE_PURPOSE, LINK_PURPOSE
from passgate.mfa.states import Status, TerminationReason
from passgate.policy.models import Decision, Device
from passgate.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from passgate.webhooks.states import DeliveryStatus as WebhookStatus
from passgate.webhooks.states import DisabledReason

YEAR = timedelta(days=365)

SESSIONS = cast(Table, MfaSession.__table__)
SECRETS = cast(Table, MfaSecret.__table__)
EVENTS = cast(Table, MfaEvent.__table__)
MESSAGES = cast(Table, Message.__table__)
ATTEMPTS = cast(Table, MessageAttempt.__table__)
DECISIONS = cast(Table, Decision.__table__)
DEVICES = cast(Table, Device.__table__)
ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
WH_EVENTS = cast(Table, WebhookEvent.__table__)
DELIVERIES = cast(Table, WebhookDelivery.__table__)
WH_ATTEMPTS = cast(Table, WebhookAttempt.__table__)

# Every table the seed writes, in foreign-key order.
SEEDED = (
    DECISIONS,
    DEVICES,
    SESSIONS,
    SECRETS,
    MESSAGES,
    ATTEMPTS,
    EVENTS,
    ENDPOINTS,
    WH_EVENTS,
    DELIVERIES,
    WH_ATTEMPTS,
)


class SchemaDrift(Exception):
    """A seeded row and its table disagree on the columns: the seed must learn the schema's change."""


_COLUMNS: dict[str, frozenset[str]] = {}


def check_columns(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """The row, once it is sure to name every column of the table (an autoincrement key aside) and no
    other."""
    wanted = _COLUMNS.get(table.name)
    if wanted is None:
        wanted = _COLUMNS[table.name] = frozenset(
            c.name for c in table.c if not (c.primary_key and c.autoincrement is True)
        )
    if row.keys() != wanted:
        missing, extra = sorted(wanted - set(row)), sorted(set(row) - wanted)
        raise SchemaDrift(f"{table.name}: the seed does not write {missing}; it writes unknown {extra}")
    return row


def uuid7_at(when: datetime, rng: random.Random) -> str:
    """A UUIDv7 of `when` (the layout of passgate.ids.new_uuid, at a time of the past)."""
    value = (
        int(when.timestamp() * 1000) << 80
        | 0x7 << 76
        | rng.getrandbits(80) & 0x0FFF_3FFF_FFFF_FFFF_FFFF
        | 0x8000_0000_0000_0000
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class SeedSize:
    """How many of each: MFA sessions (each with a secret, a message, its attempt and three timeline rows),
    decisions (one per session is that session's CHALLENGE), webhook deliveries (each with its event and
    an attempt)."""

    sessions: int
    decisions: int
    deliveries: int

    @classmethod
    def of(cls, rows: int) -> SeedSize:
        """`--rows N`: N sessions, N decisions, N/10 deliveries (the year of the contract at 1,000,000)."""
        return cls(sessions=rows, decisions=max(rows, 1), deliveries=max(rows // 10, 1))

    def rows_by_table(self) -> dict[str, int]:
        n = self.sessions
        return {
            "decisions": max(self.decisions, n),
            "devices": _accounts(n),
            "mfa_sessions": n,
            "mfa_secrets": n,
            "messages": n,
            "message_attempts": n,
            "mfa_events": 3 * n,
            "webhook_endpoints": 1,
            "webhook_events": self.deliveries,
            "webhook_deliveries": self.deliveries,
            "webhook_attempts": self.deliveries,
        }


def _accounts(sessions: int) -> int:
    return max(1, sessions // 5)


@dataclass
class Seeder:
    """Writes `size` rows for `client_id` into a migrated database, in batches of `batch` sessions (one
    transaction each). On SQLite, Core `insert()` statements run with executemany on the cursor
    (`db.fastpath.insert_statement`, the inserter of the decision path's deferred rows); on PostgreSQL,
    COPY of the same values (`copy_rows`)."""

    engine: Engine
    client_id: str
    keyring: KeyRing
    now: datetime
    size: SeedSize
    batch: int = 5000
    report: Callable[[str], None] = lambda _msg: None
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    written: dict[str, int] = field(default_factory=dict)
    _dest_hashes: dict[str, str] = field(default_factory=dict)
    _endpoint_id: str = ""

    def run(self) -> dict[str, int]:
        t0 = time.monotonic()
        self.report(
            f"seeding {self.size.sessions:,} sessions, {self.size.decisions:,} decisions, "
            f"{self.size.deliveries:,} webhook deliveries over the year before {self.now:%Y-%m-%d}"
        )
        self._insert_all(DEVICES, [self.device_row(a) for a in range(_accounts(self.size.sessions))])
        total = max(self.size.sessions, self.size.decisions)
        step, next_report = self.batch, 0.0
        for start in range(0, total, step):
            stop = min(total, start + step)
            rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in SEEDED}
            for i in range(start, stop):
                self._one(i, total, rows)
            with self.engine.begin() as conn:
                for table in SEEDED:
                    self._insert(conn, table, rows[table.name])
            done = stop / total
            if done >= next_report or stop == total:
                rate = sum(self.written.values()) / max(1e-3, time.monotonic() - t0)
                self.report(
                    f"    {done * 100:5.1f}%  {sum(self.written.values()):,} rows, {rate:,.0f} rows/s"
                )
                next_report = done + 0.05
        self._webhooks()
        self.report(f"seeded {sum(self.written.values()):,} rows in {time.monotonic() - t0:,.0f} s")
        return dict(self.written)

    # -- the rows ------------------------------------------------------------------------------------

    def at(self, i: int, total: int) -> datetime:
        """Row i of `total`, spread evenly over the year (oldest first), a few seconds of jitter."""
        return self.now - YEAR + YEAR * (i / total) + timedelta(seconds=self.rng.random() * 5)

    def _one(self, i: int, total: int, rows: dict[str, list[dict[str, Any]]]) -> None:
        created = self.at(i, total)
        decision_id = uuid7_at(created, self.rng)
        challenged = i < self.size.sessions  # the decision that started session i
        account = f"acct-{i % _accounts(self.size.sessions)}"
        rows["decisions"].append(self.decision_row(decision_id, account, challenged, i, created))
        if i < self.size.sessions:
            self.session_rows(i, decision_id, account, created, rows)

    def decision_row(
        self, decision_id: str, account: str, challenged: bool, i: int, at: datetime
    ) -> dict[str, Any]:
        decision = "CHALLENGE" if challenged else ("BLOCK" if i % 50 == 0 else "ALLOW")
        body = {
            "inquiryId": f"inq-{i}",
            "channel": "WEB",
            "deviceSessionId": f"dev{i % 7}{account[-6:]}",
            "userIp": f"198.51.100.{i % 250}",
            "person": {"name": {"first": "Jo", "last": "Doe"}, "emailAddress": f"{account}@example.com"},
            "account": {"id": account, "username": account, "type": "PRO"},
            "customFields": {"loyaltyTier": "gold", "cartValue": i % 500 + 0.5},
        }
        return check_columns(
            DECISIONS,
            {
                "id": decision_id,
                "client_id": self.client_id,
                "event_type": "LOGIN",
                "inquiry_id": body["inquiryId"],
                "device_session_id": body["deviceSessionId"],
                "account_id": account,
                "decision": decision,
                "segment": "default",
                "set_version": "v1",
                "tags": ["new-device"] if challenged else [],
                "request": body,
                "created_at": at,
            },
        )

    def device_row(self, a: int) -> dict[str, Any]:
        seen = self.now - YEAR + YEAR * (a / _accounts(self.size.sessions))
        return check_columns(
            DEVICES,
            {
                "client_id": self.client_id,
                "account_id": f"acct-{a}",
                "device_session_id": f"dev0{f'acct-{a}'[-6:]}",
                "seen": True,
                "trust_state": "TRUSTED" if a % 10 == 0 else None,
                "first_seen_at": seen,
                "last_seen_at": self.now - timedelta(days=a % 30),
                # Trusted through POST /trusted-device (Kount's shape) for some, with a name.
                "friendly_name": f"Laptop {a}" if a % 20 == 0 else None,
                "trust_created_at": seen if a % 10 == 0 else None,
                "trust_updated_at": seen if a % 10 == 0 else None,
            },
        )

    def _hash(self, destination: str) -> str:
        known = self._dest_hashes.get(destination)
        if known is None:
            known = self._dest_hashes[destination] = self.keyring.keyed_hash("destination", destination)
        return known

    def session_rows(
        self, i: int, decision_id: str, account: str, created: datetime, rows: dict[str, list[dict[str, Any]]]
    ) -> None:
        rng = self.rng
        kind = i % 4  # email link, email code, email code, SMS code
        channel, mfa_type, template = (
            ("EMAIL", "NONCE_OTH", "email-link")
            if kind == 0
            else ("SMS", "OTP", "sms-code")
            if kind == 3
            else ("EMAIL", "OTP", "email-code")
        )
        destination = f"+1202555{i % 10000:04d}" if channel == "SMS" else f"{account}@example.com"
        ttl = 900 if mfa_type == "NONCE_OTH" else 300
        sent = created + timedelta(seconds=0.4 + rng.random())
        outcome = rng.random()
        if outcome < 0.78:
            status, reason, ended = Status.VERIFIED, None, sent + timedelta(seconds=20 + rng.random() * 60)
        elif outcome < 0.95:
            status, reason, ended = (
                Status.TERMINATED,
                TerminationReason.EXPIRED,
                created + timedelta(seconds=ttl),
            )
        elif outcome < 0.99:
            status, reason, ended = (
                Status.TERMINATED,
                TerminationReason.MAX_ATTEMPTS,
                sent + timedelta(seconds=90),
            )
        else:
            status, reason, ended = (
                Status.TERMINATED,
                TerminationReason.CANCELLED,
                sent + timedelta(seconds=30),
            )
        session_id = uuid7_at(created, rng)
        secret_id = uuid7_at(created, rng)
        message_id = uuid7_at(created, rng)
        attempts = 1 if status is Status.VERIFIED else (3 if reason is TerminationReason.MAX_ATTEMPTS else 0)
        rows["mfa_sessions"].append(
            check_columns(
                SESSIONS,
                {
                    "id": session_id,
                    "client_id": self.client_id,
                    "decision_id": decision_id,
                    "event_type": "LOGIN",
                    "type": mfa_type,
                    "channel": channel,
                    "template_name": template,
                    "locale": "en",
                    "destination": destination,
                    "destination_hash": self._hash(destination),
                    "account_id": account,
                    "device_session_id": f"dev{i % 7}{account[-6:]}",
                    "status": status.value,
                    "termination_reason": reason.value if reason else None,
                    "delivery_status": MessageDelivery.DELIVERED.value
                    if i % 3
                    else MessageDelivery.SENT.value,
                    "send_attempts": 1,
                    "verification_attempts": attempts,
                    "max_sends": 3,
                    "max_attempts": 3,
                    "ttl_seconds": ttl,
                    "code_length": 6,
                    "expires_at": sent + timedelta(seconds=ttl),
                    "created_at": created,
                    "updated_at": ended,
                    "verified_at": ended if status is Status.VERIFIED else None,
                    "target_url": "https://shop.example.com/welcome" if mfa_type == "NONCE_OTH" else None,
                    "bind_to_device": False,
                    "match_number": None,
                    "sandbox": False,
                    "render_context": {
                        "values": {},
                        "person": {"first": "Jo", "last": "Doe", "preferred": None},
                    },
                    "sequence": 2,
                    # Every tenth a Verify API sign-up verification (no decision behind it).
                    "source": "verify" if i % 10 == 0 else "decision",
                    "purpose": "signup" if i % 10 == 0 else None,
                    "link_opens": 1 if mfa_type == "NONCE_OTH" and status is Status.VERIFIED else 0,
                },
            )
        )
        purpose = LINK_PURPOSE if mfa_type == "NONCE_OTH" else CODE_PURPOSE
        rows["mfa_secrets"].append(
            check_columns(
                SECRETS,
                {
                    "id": secret_id,
                    "session_id": session_id,
                    "kind": "LINK" if mfa_type == "NONCE_OTH" else "CODE",
                    # The keyed hash of a value nobody holds (the real one left with its message).
                    "secret_hash": self.keyring.keyed_hash(purpose, secrets.token_urlsafe(12)),
                    "key_id": self.keyring.current_hash_key_id,
                    "active": True,
                    "created_at": created,
                    "activated_at": sent,
                    "expires_at": sent + timedelta(seconds=ttl),
                },
            )
        )
        rows["messages"].append(
            check_columns(
                MESSAGES,
                {
                    "id": message_id,
                    "client_id": self.client_id,
                    "session_id": session_id,
                    "secret_id": secret_id,
                    "channel": channel,
                    "destination": destination,
                    "template_name": template,
                    "locale": "en",
                    "purpose": "challenge",
                    "sealed_secret": None,  # erased once the provider accepted it
                    "status": MessageStatus.SENT.value,
                    "delivery_status": MessageDelivery.DELIVERED.value
                    if i % 3
                    else MessageDelivery.SENT.value,
                    "attempts": 1,
                    "next_attempt_at": created,
                    "locked_until": None,
                    "locked_by": None,
                    "provider": "smtp" if channel == "EMAIL" else "twilio",
                    "provider_message_id": f"SM{message_id.replace('-', '')}" if channel == "SMS" else None,
                    "last_error": None,
                    "created_at": created,
                    "sent_at": sent,
                },
            )
        )
        rows["message_attempts"].append(
            check_columns(
                ATTEMPTS,
                {
                    "message_id": message_id,
                    "attempt": 1,
                    "provider": "smtp" if channel == "EMAIL" else "twilio",
                    "result": "sent",
                    "error": None,
                    "started_at": created + timedelta(milliseconds=50),
                    "finished_at": sent,
                },
            )
        )
        timeline = (
            ("CREATED", "api", {"channel": channel, "type": mfa_type}, created),
            ("MESSAGE_SENT", "worker", {"messageId": message_id, "provider": "smtp"}, sent),
            ("STATUS_CHANGED", "api", {"from": Status.MESSAGE_SENT.value, "to": status.value}, ended),
        )
        for kind_, source, data, at in timeline:
            rows["mfa_events"].append(
                check_columns(
                    EVENTS,
                    {
                        "session_id": session_id,
                        "client_id": self.client_id,
                        "type": kind_,
                        "source": source,
                        "data": data,
                        "created_at": at,
                    },
                )
            )

    def _webhooks(self) -> None:
        """One endpoint (disabled, so that the measured requests fan out to nothing, as on the empty
        database) and its year of deliveries: most delivered at once, some after retries, some given up."""
        start = self.now - YEAR
        self._endpoint_id = uuid7_at(start, self.rng)
        endpoint = check_columns(
            ENDPOINTS,
            {
                "id": self._endpoint_id,
                "client_id": self.client_id,
                "url": "https://hooks.example.com/passgate",
                "description": "a year of deliveries (bench/scale.py)",
                "events": ["*"],
                "channel": None,
                "signature_scheme": "standard-webhooks",
                "enabled": False,
                "disabled_reason": DisabledReason.MANUAL.value,
                "disabled_at": self.now - timedelta(hours=1),
                "sealed_secret": self.keyring.seal("whsec_" + secrets.token_urlsafe(24), self._endpoint_id),
                "sealed_previous_secret": None,
                "previous_secret_until": None,
                "failing_since": None,
                "last_success_at": self.now - timedelta(hours=1),
                "last_failure_at": None,
                "created_at": start,
                "updated_at": self.now - timedelta(hours=1),
            },
        )
        with self.engine.begin() as conn:
            self._insert(conn, ENDPOINTS, [endpoint])
        n = self.size.deliveries
        for lo in range(0, n, self.batch):
            rows: dict[str, list[dict[str, Any]]] = {
                "webhook_events": [],
                "webhook_deliveries": [],
                "attempts": [],
            }
            for j in range(lo, min(n, lo + self.batch)):
                self._delivery(j, n, rows)
            with self.engine.begin() as conn:
                self._insert(conn, WH_EVENTS, rows["webhook_events"])
                self._insert(conn, DELIVERIES, rows["webhook_deliveries"])
                self._insert(conn, WH_ATTEMPTS, rows["attempts"])
        self.report(f"    webhooks: {n:,} events, deliveries and attempts")

    def _delivery(self, j: int, n: int, rows: dict[str, list[dict[str, Any]]]) -> None:
        created = self.at(j, n)
        event_id = uuid7_at(created, self.rng)
        delivery_id = uuid7_at(created, self.rng)
        failed = j % 100 == 0
        done = created + timedelta(seconds=0.2 + (3600 if j % 20 == 0 else 0))
        body = {
            "id": event_id,
            "eventType": "Decision.Created",
            "occurredAt": created.isoformat(),
            "data": {},
        }
        rows["webhook_events"].append(
            check_columns(
                WH_EVENTS,
                {
                    "id": event_id,
                    "client_id": self.client_id,
                    "event_type": "Decision.Created",
                    "session_id": None,
                    "sequence": None,
                    "channel": None,
                    "body": json.dumps(body, separators=(",", ":")),
                    "created_at": created,
                },
            )
        )
        rows["webhook_deliveries"].append(
            check_columns(
                DELIVERIES,
                {
                    "id": delivery_id,
                    "event_id": event_id,
                    "endpoint_id": self._endpoint_id,
                    "client_id": self.client_id,
                    "session_id": None,
                    "sequence": None,
                    "status": (WebhookStatus.FAILED if failed else WebhookStatus.DELIVERED).value,
                    "tries": 1,
                    "attempts": 1,
                    "next_attempt_at": done,
                    "locked_until": None,
                    "locked_by": None,
                    "lock_token": None,
                    "last_status_code": 410 if failed else 200,
                    "last_error": "HTTP 410" if failed else None,
                    "created_at": created,
                    "delivered_at": None if failed else done,
                },
            )
        )
        rows["attempts"].append(
            check_columns(
                WH_ATTEMPTS,
                {
                    "delivery_id": delivery_id,
                    "attempt": 1,
                    "result": "failed" if failed else "delivered",
                    "status_code": 410 if failed else 200,
                    "latency_ms": 40.0 + j % 50,
                    "error": "HTTP 410" if failed else None,
                    "worker": "worker-1",
                    "started_at": done - timedelta(milliseconds=60),
                    "finished_at": done,
                    "next_attempt_at": None,
                },
            )
        )

    # -- writing -------------------------------------------------------------------------------------

    def _insert(self, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
        if rows:
            check_columns(table, rows[0])
            if conn.dialect.name == "postgresql":
                copy_rows(conn, table, rows)
            else:
                insert_statement(table).executemany(conn, rows)
            self.written[table.name] = self.written.get(table.name, 0) + len(rows)

    def _insert_all(self, table: Table, rows: list[dict[str, Any]]) -> None:
        for lo in range(0, len(rows), self.batch * 4):
            with self.engine.begin() as conn:
                self._insert(conn, table, rows[lo : lo + self.batch * 4])


def copy_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL's COPY of the rows (each value through its column type's bind processor, as an insert
    would send it): several times the rate of an executemany."""
    dialect = conn.dialect
    names = list(rows[0])
    processors = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    pairs = list(zip(names, processors, strict=True))
    raw = conn.connection.driver_connection
    assert raw is not None
    columns = ", ".join(f'"{n}"' for n in names)
    with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([row[n] if p is None else p(row[n]) for n, p in pairs])


def keyring_of(secret_keys: str) -> KeyRing:
    """The installation's key ring, as `passgate.config.Settings.secret_key_list` reads PASSGATE_SECRET_KEYS."""
    return KeyRing([k.encode() for k in secret_keys.split(",")])


def table_counts(engine: Engine, tables: tuple[Table, ...] = SEEDED) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: int(conn.scalar(select(func.count()).select_from(t)) or 0) for t in tables}


def analyze(engine: Engine) -> None:
    """PostgreSQL's statistics brought up to date, as autovacuum would after a bulk load (SQLite is left
    as Passgate leaves it: no ANALYZE, the planner's defaults)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


# ----------------------------------------------------------------------------------------------------
# The hot paths' statements


@dataclass(frozen=True)
class HotStatement:
    name: str
    statement: Any = None  # a Core statement, or a function of the dialect's name giving one
    values: dict[str, Any] | None = None  # the row of an insert
    # Or a query function called on an ORM session (its first statement is the one explained).
    call: Callable[[Session, Sample], Any] | None = None


class Sample(NamedTuple):
    """What a query function is called with: the seeded client, one of its sessions' ids, now, and the
    client's webhook endpoint."""

    client_id: str
    id: str
    now: datetime
    endpoint_id: str = ""


def query_functions() -> list[HotStatement]:
    """The hot paths' statements that their functions build per call (an ORM session is enough to call
    them): a decision and a session by id, a session's timeline, its last send, a link token's lookup, the
    console's session list, the expiry sweep, the sessions of the activity explorer's decisions, and the
    webhook deliveries log and purge."""
    from passgate.console.activity import sessions_of
    from passgate.mfa import queries as mfa
    from passgate.policy import queries as policy
    from passgate.webhooks import queries as webhooks
    from passgate.webhooks.services import WebhookService

    calls: dict[str, Callable[[Session, Sample], Any]] = {
        "policy.queries.decision_of": lambda s, x: policy.decision_of(s, x.client_id, x.id),
        "mfa.queries.load": lambda s, x: mfa.load(s, x.client_id, x.id, lock=True),
        "mfa.queries.events (timeline)": lambda s, x: mfa.events(s, x.id),
        "mfa.queries.last_sent_at": lambda s, x: mfa.last_sent_at(s, x.id),
        "mfa.queries.link_secret": lambda s, x: mfa.link_secret(s, ["0" * 64, "1" * 64]),
        "mfa.queries.recent_secret_ids": lambda s, x: mfa.recent_secret_ids(s, x.id),
        "mfa.queries.search_sessions": lambda s, x: mfa.search_sessions(s, x.client_id, limit=50),
        "mfa.queries.search_sessions(account)": lambda s, x: mfa.search_sessions(
            s, x.client_id, account_id="acct-7", limit=50
        ),
        "mfa.queries.any_expired": lambda s, x: mfa.any_expired(s, x.now),
        "mfa.queries.expire_due": lambda s, x: mfa.expire_due(s, x.now, 100),
        "mfa.queries.search_sessions(q)": lambda s, x: mfa.search_sessions(
            s, x.client_id, q="acct-7", limit=50
        ),
        # The activity list's sessions of a page of decisions (ids of the seed's shape; the plan is the same).
        "console.activity.sessions_of": lambda s, x: sessions_of(
            s,
            x.client_id,
            [SimpleNamespace(id=x.id), SimpleNamespace(id=x.client_id)],  # type: ignore[list-item]
        ),
        "webhooks.queries.reclaim_expired": lambda s, x: webhooks.reclaim_expired(s, x.now, "bench", 30.0),
        # The deliveries log (its endpoint's check stubbed out: the log's own statement comes first).
        "webhooks.services.WebhookService.deliveries": lambda s, x: WebhookService.deliveries(
            SimpleNamespace(get_endpoint=lambda *_a, **_k: None),  # type: ignore[arg-type]
            s,
            x.client_id,
            x.endpoint_id,
        ),
    }
    return [HotStatement(name, call=call) for name, call in calls.items()]


def hot_statements() -> list[HotStatement]:
    """Every statement the hot paths run, found in the code: module-level CursorStatements and Core
    statements of `passgate` (built once because they are hot), the velocity counts, the webhook claim's
    statements, the outbox claim with the challenge hook's join, and the insert of each seeded table."""
    import passgate
    from passgate.messaging.queries import RoundStatements
    from passgate.policy.queries import _counts_statement
    from passgate.webhooks.queries import _statements

    found: list[HotStatement] = [
        HotStatement(
            "policy.queries.velocity_counts(email,ip,deviceId)",
            _counts_statement(("email", "ip", "deviceId")).statement,
        ),
    ]
    seen: set[int] = set()
    for info in pkgutil.walk_packages(passgate.__path__, "passgate."):
        if info.name.startswith("passgate.migrations"):
            continue
        module = importlib.import_module(info.name)
        for attr, value in sorted(vars(module).items()):
            if id(value) in seen:
                continue
            name = f"{info.name.removeprefix('passgate.')}.{attr}"
            if isinstance(value, CursorStatement):
                seen.add(id(value))
                found.append(HotStatement(name, value.statement))
            elif isinstance(value, Select | CompoundSelect | UpdateBase):
                seen.add(id(value))
                found.append(HotStatement(name, value))
    claims = _statements()
    for attr in claims.__dataclass_fields__:
        found.append(HotStatement(f"webhooks.queries._statements().{attr}", getattr(claims, attr)))
    rounds = RoundStatements.compose([_challenge_join()])
    found.append(HotStatement("messaging.queries.RoundStatements.due_round", rounds.due_round))
    return found


def _challenge_join() -> Any:
    from passgate.messaging.interfaces import ClaimJoin
    from passgate.mfa import delivery

    return ClaimJoin(delivery._sessions, delivery._OWNER_COLUMNS, delivery._PREFIX)


def insert_statements(seeder: Seeder) -> list[HotStatement]:
    """The insert of each large table, with a row of the seed's own (the decision, the session, its
    secret, message, attempt and timeline row)."""
    rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in SEEDED}
    seeder._one(0, 1, rows)
    out = []
    for table in (DECISIONS, SESSIONS, SECRETS, MESSAGES, ATTEMPTS, EVENTS):
        out.append(HotStatement(f"insert {table.name}", insert(table), rows[table.name][0]))
    return out


# ----------------------------------------------------------------------------------------------------
# Plans


@dataclass
class Plan:
    name: str
    sql: str
    lines: list[str]
    problems: list[str]
    error: str | None = None


class _Taken(Exception):
    """Raised at the cursor, once the statement's SQL and parameters are in hand."""


def driver_sql(conn: Connection, statement: Any, values: dict[str, Any]) -> tuple[str, Any]:
    """The SQL and parameters Core sends to the cursor for `statement` with `values` (taken at the cursor
    and never run)."""
    return first_sql(conn, lambda: conn.execute(statement, values))


def first_sql(conn: Connection, run: Callable[[], Any]) -> tuple[str, Any]:
    """The SQL and parameters of the first statement `run` sends to the cursor on `conn` (taken there, and
    `run` stopped before the statement runs)."""
    taken: list[tuple[str, Any]] = []

    def take(_c: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, _many: bool) -> None:
        taken.append((sql, params))
        raise _Taken

    event.listen(conn, "before_cursor_execute", take)
    try:
        run()
    except _Taken:
        pass
    finally:
        event.remove(conn, "before_cursor_execute", take)
    if not taken:
        raise RuntimeError("the statement never reached the cursor")
    return taken[0]


def sample_values(
    statement: Any, dialect: Any, client_id: str, sample_id: str, now: datetime
) -> dict[str, Any]:
    """A value for every bind the caller gives, by type (the client's id where the name says client)."""
    compiled = statement.compile(dialect=dialect)
    values: dict[str, Any] = {}
    for key, bind in compiled.binds.items():
        if not (bind.required or bind.value is None or callable(bind.value)):
            continue
        one = _sample(key, bind.type, client_id, sample_id, now)
        values[key] = [one, one] if bind.expanding else one
    return values


def _sample(key: str, type_: Any, client_id: str, sample_id: str, now: datetime) -> Any:
    if isinstance(type_, UTCDateTime):
        return now
    try:
        python = type_.python_type
    except (NotImplementedError, AttributeError):
        python = None
    if python is int or key in ("limit", "room"):
        return 5
    if python is float:
        return 1.5
    if python is bool:
        return True
    if python is dict:
        return {}
    if python is list:
        return []
    if python is datetime:
        return now
    if python is bytes:
        return sample_id.encode()
    value = client_id if "client" in key else sample_id
    length = getattr(type_, "length", None)
    return value[:length] if length else value  # a column narrower than an id gets a prefix of it


def explain(conn: Connection, sql: str, params: Any) -> list[str]:
    """The plan of SQL as sent to the cursor: EXPLAIN QUERY PLAN's details on SQLite, EXPLAIN's lines on
    PostgreSQL."""
    raw = conn.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        if conn.dialect.name == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            return [str(row[3]) for row in cursor.fetchall()]
        cursor.execute("EXPLAIN " + sql, params)
        return [str(row[0]) for row in cursor.fetchall()]
    finally:
        cursor.close()


_SQLITE_SCAN = re.compile(r"^SCAN (\w+)(?: AS (\w+))?(.*)$")
_PG_SEQ = re.compile(r"Seq Scan on (\w+)")
_ALIAS = re.compile(r"\b(\w+) AS (\w+)\b", re.IGNORECASE)


def full_scans(dialect_name: str, sql: str, lines: list[str], large: set[str]) -> list[str]:
    """The plan's full scans of large tables: SQLite `SCAN <table>` without an index, PostgreSQL
    `Seq Scan on <table>`. An alias (`webhook_deliveries AS earlier`) counts as its table."""
    aliases = {alias: table for table, alias in _ALIAS.findall(sql)}
    problems = []
    for line in lines:
        detail = line.strip().lstrip("->").strip()
        if dialect_name == "sqlite":
            m = _SQLITE_SCAN.match(detail)
            if not m or "USING" in m.group(3):
                continue
            table = aliases.get(m.group(1), m.group(1))
        else:
            m2 = _PG_SEQ.search(detail)
            if not m2:
                continue
            table = m2.group(1)
        if table in large:
            problems.append(f"full scan of {table} ({detail})")
    return problems


def check_plans(
    engine: Engine,
    statements: list[HotStatement],
    *,
    client_id: str,
    sample_id: str,
    now: datetime,
    large: set[str],
    endpoint_id: str = "",
    strict: bool = False,
) -> list[Plan]:
    """Each statement's plan and its full scans of `large` tables. `strict` (PostgreSQL) forbids
    sequential scans where an index can serve (`enable_seqscan = off`), so that a small database shows the
    plan a large one gets: a Seq Scan left then has no index to use."""
    plans = []
    dialect = engine.dialect
    for hot in statements:
        with engine.connect() as conn:
            trans = conn.begin()
            try:
                if strict and dialect.name == "postgresql":
                    conn.execute(text("SET LOCAL enable_seqscan = off"))
                if hot.call is not None:
                    orm = Session(bind=conn)
                    sample = Sample(client_id, sample_id, now, endpoint_id)
                    sql, params = first_sql(conn, partial(hot.call, orm, sample))
                else:
                    stmt = hot.statement(dialect.name) if callable(hot.statement) else hot.statement
                    values = (
                        hot.values
                        if hot.values is not None
                        else sample_values(stmt, dialect, client_id, sample_id, now)
                    )
                    sql, params = driver_sql(conn, stmt, values)
                lines = explain(conn, sql, params)
                plans.append(Plan(hot.name, sql, lines, full_scans(dialect.name, sql, lines, large)))
            except Exception as exc:  # reported: a statement that cannot be explained is a finding too
                plans.append(Plan(hot.name, "", [], [], error=f"{type(exc).__name__}: {exc}"[:300]))
            finally:
                trans.rollback()
    return plans


def plan_report(plans: list[Plan], verbose: bool = False) -> Iterator[str]:
    """Lines to print: every plan's name and lines (only those with a problem unless `verbose`)."""
    for plan in plans:
        flag = "FULL SCAN" if plan.problems else ("ERROR" if plan.error else "ok")
        yield f"{flag:9}  {plan.name}"
        if verbose or plan.problems or plan.error:
            for line in plan.lines:
                yield f"             {line}"
            if plan.error:
                yield f"             {plan.error}"


__all__ = [
    "SEEDED",
    "HotStatement",
    "Plan",
    "SchemaDrift",
    "SeedSize",
    "Seeder",
    "analyze",
    "check_plans",
    "full_scans",
    "hot_statements",
    "insert_statements",
    "keyring_of",
    "plan_report",
    "table_counts",
]
