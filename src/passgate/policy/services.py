"""Policy sets: the draft, publishing immutable versions, restoring and diffing them, the compiled-set cache."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from threading import Lock
from typing import Any

from pydantic import ValidationError
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from passgate.audit.services import record as audit
from passgate.caching import TtlCache
from passgate.clock import Clock
from passgate.ids import new_uuid
from passgate.policy.engine import (
    CompiledSet,
    PolicyCompileError,
    check_raw_cel,
    compile_set,
    referenced_lists,
)
from passgate.policy.exceptions import InvalidPolicySet, NoActiveVersion, VersionNotFound
from passgate.policy.lists import list_names
from passgate.policy.models import PolicySet, PolicySetVersion
from passgate.policy.schemas import EVENT_TYPES, PolicySetDocument, default_document


def install_default_sets(session: Session, client_id: str, now: datetime) -> None:
    for event_type in EVENT_TYPES:
        session.add(
            PolicySet(
                client_id=client_id,
                event_type=event_type,
                draft=default_document(event_type),
                draft_updated_at=now,
                next_version=1,
            )
        )
        session.flush()
        publish(session, client_id, event_type, author="system", now=now)


def unapplied_policies(document: dict[str, Any]) -> list[dict[str, str]]:
    """Warnings for the policies no segment applies (they never decide), each naming the policy's path.
    Reads the document as stored or typed, valid or not."""
    segments = document.get("segments")
    policies = document.get("policies")
    segments = segments if isinstance(segments, list) else []
    policies = policies if isinstance(policies, list) else []
    applied = {
        name
        for s in segments
        if isinstance(s, dict)
        for name in (s.get("policies") or [])
        if isinstance(name, str)
    }
    out = []
    for i, p in enumerate(policies):
        name = p.get("name") if isinstance(p, dict) else None
        if isinstance(name, str) and name not in applied:
            out.append(
                {"field": f"policies[{i}]", "message": f"no segment applies {name!r}: it never decides"}
            )
    return out


def validate_document(doc: PolicySetDocument, known_lists: set[str] | None = None) -> CompiledSet:
    try:
        compiled = compile_set(doc, "draft")
        check_raw_cel(doc)
    except PolicyCompileError as exc:
        raise InvalidPolicySet(exc.location, exc.message) from exc
    if known_lists is not None:
        for location, name in sorted(referenced_lists(doc)):
            if name not in known_lists:
                raise InvalidPolicySet(location, f"no list named {name!r} (create it under /manage/v1/lists)")
    return compiled


def _get_set(session: Session, client_id: str, event_type: str, lock: bool = False) -> PolicySet:
    stmt = select(PolicySet).where(PolicySet.client_id == client_id, PolicySet.event_type == event_type)
    if lock:
        stmt = stmt.with_for_update()
    ps = session.scalars(stmt).first()
    if ps is None:
        raise NoActiveVersion(event_type)
    return ps


def get_draft(session: Session, client_id: str, event_type: str) -> PolicySet:
    return _get_set(session, client_id, event_type)


def draft_document(session: Session, client_id: str, event_type: str) -> PolicySetDocument:
    try:
        return PolicySetDocument.model_validate(get_draft(session, client_id, event_type).draft)
    except ValidationError as exc:  # a draft saved by an older version of Passgate
        raise InvalidPolicySet("draft", str(exc)) from exc


def put_draft(
    session: Session,
    client_id: str,
    event_type: str,
    doc: PolicySetDocument,
    now: datetime,
    author: str = "system",
) -> PolicySet:
    validate_document(doc, list_names(session, client_id))
    ps = _get_set(session, client_id, event_type, lock=True)
    ps.draft = doc.model_dump(mode="json", exclude_none=True)
    # Always written: SQLAlchemy compares JSON values with `==`, which holds 1 == true, and would keep a
    # draft whose only change is a value going from 1 to true.
    flag_modified(ps, "draft")
    ps.draft_updated_at = now
    audit(session, client_id, author, "policy_set.draft_updated", event_type, now)
    return ps


def _new_version(
    session: Session,
    ps: PolicySet,
    doc: PolicySetDocument,
    author: str,
    now: datetime,
    restored_from: str | None,
) -> PolicySetVersion:
    version = PolicySetVersion(
        id=new_uuid(),
        client_id=ps.client_id,
        event_type=ps.event_type,
        version_name=f"v{ps.next_version}",
        document=doc.model_dump(mode="json", exclude_none=True),
        created_at=now,
        created_by=author,
        restored_from=restored_from,
    )
    session.add(version)
    ps.next_version += 1
    ps.active_version_id = version.id
    session.flush()
    return version


@dataclass(frozen=True)
class Publication:
    """The version live after a publish or restore; `new` is False when the document was the live
    version's already, and nothing was made."""

    version: PolicySetVersion
    new: bool


def _live_if_same(session: Session, ps: PolicySet, doc: PolicySetDocument) -> PolicySetVersion | None:
    if ps.active_version_id is None:
        return None
    live = session.get(PolicySetVersion, ps.active_version_id)
    if live is not None and _same(live.document, doc.model_dump(mode="json", exclude_none=True)):
        return live
    return None


def publish(session: Session, client_id: str, event_type: str, author: str, now: datetime) -> Publication:
    """The draft becomes a new live version, unless it is the live version's document already."""
    ps = _get_set(session, client_id, event_type, lock=True)
    try:
        doc = PolicySetDocument.model_validate(ps.draft)
    except ValidationError as exc:
        raise InvalidPolicySet("draft", str(exc)) from exc
    validate_document(doc, list_names(session, client_id))
    same = _live_if_same(session, ps, doc)
    if same is not None:
        return Publication(same, new=False)
    version = _new_version(session, ps, doc, author, now, None)
    audit(
        session,
        client_id,
        author,
        "policy_set.published",
        event_type,
        now,
        {"versionName": version.version_name},
    )
    return Publication(version, new=True)


def list_versions(
    session: Session, client_id: str, event_type: str
) -> tuple[PolicySet, list[PolicySetVersion]]:
    ps = _get_set(session, client_id, event_type)
    rows = session.scalars(
        select(PolicySetVersion)
        .where(PolicySetVersion.client_id == client_id, PolicySetVersion.event_type == event_type)
        .order_by(PolicySetVersion.created_at.desc(), PolicySetVersion.version_name.desc())
    ).all()
    # Order by number, not text: v10 after v9.
    return ps, sorted(rows, key=lambda v: int(v.version_name[1:]), reverse=True)


def get_version(session: Session, client_id: str, event_type: str, version_name: str) -> PolicySetVersion:
    row = session.scalars(
        select(PolicySetVersion).where(
            PolicySetVersion.client_id == client_id,
            PolicySetVersion.event_type == event_type,
            PolicySetVersion.version_name == version_name,
        )
    ).first()
    if row is None:
        raise VersionNotFound(version_name)
    return row


def restore(
    session: Session, client_id: str, event_type: str, version_name: str, author: str, now: datetime
) -> Publication:
    """Make an old version's document live again, as a new version. The draft is left as it was: work not
    yet published is never lost to a restore."""
    old = get_version(session, client_id, event_type, version_name)
    doc = PolicySetDocument.model_validate(old.document)
    validate_document(doc, list_names(session, client_id))
    ps = _get_set(session, client_id, event_type, lock=True)
    same = _live_if_same(session, ps, doc)
    if same is not None:
        return Publication(same, new=False)
    version = _new_version(session, ps, doc, author, now, version_name)
    audit(
        session,
        client_id,
        author,
        "policy_set.restored",
        event_type,
        now,
        {"versionName": version.version_name, "restoredFrom": version_name},
    )
    return Publication(version, new=True)


def get_active_version(session: Session, client_id: str, event_type: str) -> PolicySetVersion:
    ps = _get_set(session, client_id, event_type)
    if ps.active_version_id is None:
        raise NoActiveVersion(event_type)
    version = session.get(PolicySetVersion, ps.active_version_id)
    if version is None:
        raise NoActiveVersion(event_type)
    return version


# Built once: on the decision path, constructing the statement costs more than running it.
_ACTIVE_VERSION = select(PolicySet.active_version_id).where(
    PolicySet.client_id == bindparam("client_id"), PolicySet.event_type == bindparam("event_type")
)


def active_version_id(session: Session, client_id: str, event_type: str) -> str:
    vid = (
        session.connection()
        .execute(_ACTIVE_VERSION, {"client_id": client_id, "event_type": event_type})
        .scalar()
    )
    if vid is None:
        raise NoActiveVersion(event_type)
    return vid


def _same(x: Any, y: Any) -> bool:
    """Equal as JSON: Python's `==` holds 1 == 1.0 == True, which a document tells apart."""
    return json.dumps(x, sort_keys=True) == json.dumps(y, sort_keys=True)


def diff_documents(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What changed from `a` to `b`: policies and segments by name (added, removed, changed fields), order.
    Values are compared as JSON: a condition's value going from 1 to true is a change."""

    def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {str(i["name"]): i for i in items}

    def compare(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, Any]:
        o, n = by_name(old), by_name(new)
        changed = []
        for name in sorted(set(o) & set(n)):
            fields = sorted(
                k for k in set(o[name]) | set(n[name]) if not _same(o[name].get(k), n[name].get(k))
            )
            if fields:
                change: dict[str, Any] = {
                    "name": name,
                    "fields": {k: {"from": o[name].get(k), "to": n[name].get(k)} for k in fields},
                }
                if "policies" in fields:  # a segment's links, by policy name
                    was, now = o[name].get("policies") or [], n[name].get("policies") or []
                    change["linksAdded"] = [p for p in now if p not in was]
                    change["linksRemoved"] = [p for p in was if p not in now]
                changed.append(change)
        return {
            "added": sorted(set(n) - set(o)),
            "removed": sorted(set(o) - set(n)),
            "changed": changed,
            "orderChanged": [x["name"] for x in old if x["name"] in n]
            != [x["name"] for x in new if x["name"] in o],
        }

    out = {
        "policies": compare(a.get("policies", []), b.get("policies", [])),
        "segments": compare(a.get("segments", []), b.get("segments", [])),
    }
    if a.get("name") != b.get("name"):
        out["name"] = {"from": a.get("name"), "to": b.get("name")}
    return out


class CompiledSetCache:
    """Compiled sets by version id (versions are immutable, so these never go stale), and which version is
    active per client and event type (remembered for `active_ttl` seconds: a publish is seen at once by the
    process that made it, and by every other API process within that time)."""

    def __init__(self, size: int = 2048, active_ttl: float = 1.0, clock: Clock | None = None) -> None:
        self._items: OrderedDict[str, CompiledSet] = OrderedDict()
        self._size = size
        self._lock = Lock()
        self._active: TtlCache[tuple[str, str], str] = TtlCache(active_ttl, clock)

    def active(self, session: Session, client_id: str, event_type: str) -> CompiledSet:
        key = (client_id, event_type)
        vid = self._active.get(key)
        if vid is None:
            vid = self._active.put(key, active_version_id(session, client_id, event_type))
        return self.get(session, vid)

    def forget_active(self, client_id: str, event_type: str) -> None:
        self._active.invalidate((client_id, event_type))

    def get(self, session: Session, version_id: str) -> CompiledSet:
        hit = self._items.get(version_id)
        if hit is not None:
            return hit
        version = session.get(PolicySetVersion, version_id)
        if version is None:
            raise NoActiveVersion(version_id)
        compiled = compile_set(PolicySetDocument.model_validate(version.document), version.version_name)
        with self._lock:
            self._items[version_id] = compiled
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return compiled
