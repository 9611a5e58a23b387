"""Allow/block lists: normalised entries, CSV import, and membership checks that do not grow with the list.

Exact values are looked up in a set; CIDR ranges are looked up by masking the address once per prefix
length present in the list (at most 33 for IPv4, 129 for IPv6), whatever the number of entries.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from threading import Lock
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.orm import Session

from passgate.caching import TtlCache
from passgate.clock import Clock
from passgate.ids import new_uuid
from passgate.policy.models import PolicyList, PolicyListEntry

KINDS = ("email", "emailDomain", "phone", "ip", "country", "deviceId", "accountId")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
MAX_IMPORT = 10_000
MAX_ENTRY = 320


class ListError(Exception):
    pass


class ListNotFound(ListError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no list named {name!r}")
        self.name = name


class ListExists(ListError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a list named {name!r} already exists")
        self.name = name


class InvalidCsv(ListError, ValueError):
    """A CSV import that cannot be read as CSV; `line` is the line (from 1) where reading stopped."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class ImportTooLarge(ListError):
    def __init__(self, count: int) -> None:
        super().__init__(f"at most {MAX_IMPORT} entries per import, got {count}")


def normalise(kind: str, raw: Any) -> str:
    """The canonical form of a value for a list kind; raises ValueError for a value that cannot belong."""
    if not isinstance(raw, str):
        raise ValueError("not a string")
    return _normalise(kind, raw)


@lru_cache(maxsize=50_000)
def _normalise(kind: str, raw: str) -> str:
    # Decisions check the same addresses again and again; email normalisation is costly.
    value = raw.strip()
    if not value or len(value) > MAX_ENTRY:
        raise ValueError("empty or too long")
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    if kind == "email":
        try:
            return validate_email(value, check_deliverability=False, test_environment=True).normalized.lower()
        except EmailNotValidError as exc:
            raise ValueError(f"not an email address: {exc}") from None
    if kind == "emailDomain":
        domain = value.lstrip("@").lower().rstrip(".")
        if "." not in domain or any(c.isspace() or c in "@/:" for c in domain):
            raise ValueError("not a domain")
        return domain.encode("idna").decode() if not domain.isascii() else domain
    if kind == "phone":
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            raise ValueError("not an E.164 phone number") from None
        if not phonenumbers.is_possible_number(number):
            raise ValueError("not a possible phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind == "ip":
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError("not an IP address or CIDR range") from None
        return str(net.network_address) if net.num_addresses == 1 else str(net)
    if kind == "country":
        code = value.upper()
        if not _COUNTRY.match(code):
            raise ValueError("not a two-letter country code (ISO 3166-1 alpha-2)")
        return code
    if kind in ("deviceId", "accountId"):
        return value
    raise ValueError(f"unknown list kind {kind}")


@lru_cache(maxsize=50_000)
def _ip_parts(value: str) -> tuple[int, int, int]:
    """(IP version, network address as an integer, prefix length) of a normalised address or range;
    decisions see the same ones again."""
    net = ipaddress.ip_network(value)
    return net.version, int(net.network_address), net.prefixlen


@dataclass
class Membership:
    kind: str
    exact: frozenset[str]
    networks: dict[int, dict[int, frozenset[int]]] = field(default_factory=dict)  # version -> prefix -> nets

    @classmethod
    def build(cls, kind: str, values: list[str]) -> Membership:
        exact: set[str] = set()
        nets: dict[int, dict[int, set[int]]] = {}
        for v in values:
            if kind == "ip" and "/" in v:
                net = ipaddress.ip_network(v)
                nets.setdefault(net.version, {}).setdefault(net.prefixlen, set()).add(
                    int(net.network_address)
                )
            else:
                exact.add(v)
        frozen = {ver: {p: frozenset(s) for p, s in by.items()} for ver, by in nets.items()}
        return cls(kind, frozenset(exact), frozen)

    def contains(self, raw: Any) -> bool:
        """Whether the value's normal form is an entry or, in an IP list, lies inside a listed range (a
        range that a condition reads, from a custom field, must lie inside it whole)."""
        if raw is None:
            return False
        try:
            value = normalise(self.kind, raw)
        except ValueError:
            return False
        if value in self.exact:
            return True
        if self.kind == "ip" and self.networks:
            version, as_int, own_prefix = _ip_parts(value)
            bits = 32 if version == 4 else 128
            for prefix, nets in self.networks.get(version, {}).items():
                mask = ((1 << prefix) - 1) << (bits - prefix) if prefix else 0
                if prefix <= own_prefix and as_int & mask in nets:
                    return True
        return False


class ListCache:
    """Memberships by (client, name), rebuilt when the list's version changes.

    Which versions are current is remembered for `ttl` seconds per client: a change is seen at once by the
    process that made it (it calls `forget`) and by every other API process within that time.
    """

    def __init__(self, ttl: float = 1.0, clock: Clock | None = None) -> None:
        self._items: dict[tuple[str, str], tuple[int, Membership]] = {}
        self._versions: TtlCache[str, dict[str, Membership]] = TtlCache(ttl, clock)
        self._lock = Lock()

    def forget(self, client_id: str) -> None:
        self._versions.invalidate(client_id)

    def memberships(self, session: Session, client_id: str, names: set[str]) -> dict[str, Membership]:
        if not names:
            return {}
        hit = self._versions.get(client_id)
        if hit is not None and names <= hit.keys():
            return hit
        fresh = self._load(session, client_id, names)
        if names <= fresh.keys():
            self._versions.put(client_id, fresh)
        return fresh

    def _load(self, session: Session, client_id: str, names: set[str]) -> dict[str, Membership]:
        conn = session.connection()
        rows = conn.execute(_LIST_VERSIONS, {"client_id": client_id, "names": sorted(names)}).all()
        out: dict[str, Membership] = {}
        for row in rows:
            hit = self._items.get((client_id, row.name))
            if hit is not None and hit[0] == row.version:
                out[row.name] = hit[1]
                continue
            values = list(conn.execute(_LIST_VALUES, {"list_id": row.id}).scalars())
            membership = Membership.build(row.kind, values)
            with self._lock:
                self._items[(client_id, row.name)] = (row.version, membership)
            out[row.name] = membership
        return out


_LIST_VERSIONS = select(PolicyList.id, PolicyList.name, PolicyList.kind, PolicyList.version).where(
    PolicyList.client_id == bindparam("client_id"), PolicyList.name.in_(bindparam("names", expanding=True))
)
_LIST_VALUES = select(PolicyListEntry.value).where(PolicyListEntry.list_id == bindparam("list_id"))


@dataclass
class ImportReport:
    added: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "duplicates": self.duplicates, "rejected": self.rejected}


def get_list(session: Session, client_id: str, name: str, lock: bool = False) -> PolicyList:
    stmt = select(PolicyList).where(PolicyList.client_id == client_id, PolicyList.name == name)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
    if row is None:
        raise ListNotFound(name)
    return row


def list_view(session: Session, row: PolicyList) -> dict[str, Any]:
    count = session.scalar(
        select(func.count()).select_from(PolicyListEntry).where(PolicyListEntry.list_id == row.id)
    )
    return {
        "name": row.name,
        "kind": row.kind,
        "description": row.description,
        "entries": int(count or 0),
        "version": row.version,
        "createdAt": row.created_at.isoformat().replace("+00:00", "Z"),
        "updatedAt": row.updated_at.isoformat().replace("+00:00", "Z"),
    }


def all_lists(session: Session, client_id: str) -> list[PolicyList]:
    return list(
        session.scalars(select(PolicyList).where(PolicyList.client_id == client_id).order_by(PolicyList.name))
    )


def list_names(session: Session, client_id: str) -> set[str]:
    return set(session.scalars(select(PolicyList.name).where(PolicyList.client_id == client_id)))


def create_list(
    session: Session, client_id: str, name: str, kind: str, description: str | None, now: datetime
) -> PolicyList:
    if session.scalars(
        select(PolicyList.id).where(PolicyList.client_id == client_id, PolicyList.name == name)
    ).first():
        raise ListExists(name)
    row = PolicyList(
        id=new_uuid(),
        client_id=client_id,
        name=name,
        kind=kind,
        description=description,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def delete_list(session: Session, client_id: str, name: str) -> None:
    row = get_list(session, client_id, name, lock=True)
    session.execute(delete(PolicyListEntry).where(PolicyListEntry.list_id == row.id))
    session.delete(row)


def add_entries(
    session: Session, row: PolicyList, raw_values: list[tuple[int, Any]], now: datetime
) -> ImportReport:
    """Add values (each with its line or index for the report); bad ones are reported, good ones kept."""
    if len(raw_values) > MAX_IMPORT:
        raise ImportTooLarge(len(raw_values))
    report = ImportReport()
    existing = set(session.scalars(select(PolicyListEntry.value).where(PolicyListEntry.list_id == row.id)))
    fresh: list[dict[str, Any]] = []
    for line, raw in raw_values:
        try:
            value = normalise(row.kind, raw)
        except ValueError as exc:
            report.rejected.append({"line": line, "value": str(raw)[:100], "reason": str(exc)})
            continue
        if value in existing:
            report.duplicates += 1
            continue
        existing.add(value)
        fresh.append({"list_id": row.id, "value": value, "created_at": now})
    if fresh:
        session.execute(insert(PolicyListEntry), fresh)
        report.added = len(fresh)
        row.version += 1
        row.updated_at = now
    return report


def remove_entries(session: Session, row: PolicyList, raw_values: list[Any], now: datetime) -> int:
    values = []
    for raw in raw_values:
        try:
            values.append(normalise(row.kind, raw))
        except ValueError:
            continue
    if not values:
        return 0
    result = session.execute(
        delete(PolicyListEntry).where(PolicyListEntry.list_id == row.id, PolicyListEntry.value.in_(values))
    )
    removed = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if removed:
        row.version += 1
        row.updated_at = now
    return removed


def entries_page(session: Session, row: PolicyList, limit: int, after: str | None) -> list[str]:
    stmt = select(PolicyListEntry.value).where(PolicyListEntry.list_id == row.id)
    if after:
        stmt = stmt.where(PolicyListEntry.value > after)
    return list(session.scalars(stmt.order_by(PolicyListEntry.value).limit(limit)))


def parse_csv(text: str) -> list[tuple[int, Any]]:
    """First column of each line; a first line reading `value` (any case) is a header. Line numbers from 1,
    counted the way the file was written: lines may end in LF, CRLF or a bare CR (old Mac exports), in any
    mix. Raises InvalidCsv naming the line where the text stops being CSV."""
    out: list[tuple[int, Any]] = []
    # newline="": the reader sees each line ending as written and splits on all three itself; a quoted
    # field may then span lines.
    reader = csv.reader(io.StringIO(text, newline=""))
    first_line = 1
    try:
        for record in reader:
            lineno, first_line = first_line, reader.line_num + 1
            if not record or not any(cell.strip() for cell in record):
                continue
            first = record[0]
            if lineno == 1 and first.strip().lower() in ("value", "entry", "values"):
                continue
            out.append((lineno, first))
    except csv.Error as exc:
        raise InvalidCsv(first_line, str(exc)) from None
    return out
