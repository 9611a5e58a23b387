"""Policy sets (draft, publish, active version) and the compiled-set cache."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from threading import Lock
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from passgate.ids import new_uuid
from passgate.policy.engine import CompiledSet, PolicyCompileError, compile_set
from passgate.policy.exceptions import InvalidPolicySet, NoActiveVersion
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


def validate_document(doc: PolicySetDocument) -> CompiledSet:
    try:
        return compile_set(doc, "draft")
    except PolicyCompileError as exc:
        raise InvalidPolicySet(exc.location, exc.message) from exc


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


def put_draft(
    session: Session, client_id: str, event_type: str, doc: PolicySetDocument, now: datetime
) -> PolicySet:
    validate_document(doc)
    ps = _get_set(session, client_id, event_type, lock=True)
    ps.draft = doc.model_dump(mode="json", exclude_none=True)
    ps.draft_updated_at = now
    return ps


def publish(
    session: Session, client_id: str, event_type: str, author: str, now: datetime
) -> PolicySetVersion:
    ps = _get_set(session, client_id, event_type, lock=True)
    try:
        doc = PolicySetDocument.model_validate(ps.draft)
    except ValidationError as exc:  # a draft saved by an older version of Passgate
        raise InvalidPolicySet("draft", str(exc)) from exc
    validate_document(doc)
    version = PolicySetVersion(
        id=new_uuid(),
        client_id=client_id,
        event_type=event_type,
        version_name=f"v{ps.next_version}",
        document=doc.model_dump(mode="json", exclude_none=True),
        created_at=now,
        created_by=author,
    )
    session.add(version)
    ps.next_version += 1
    ps.active_version_id = version.id
    session.flush()
    return version


def get_active_version(session: Session, client_id: str, event_type: str) -> PolicySetVersion:
    ps = _get_set(session, client_id, event_type)
    if ps.active_version_id is None:
        raise NoActiveVersion(event_type)
    version = session.get(PolicySetVersion, ps.active_version_id)
    if version is None:
        raise NoActiveVersion(event_type)
    return version


def active_version_id(session: Session, client_id: str, event_type: str) -> str:
    vid = session.scalar(
        select(PolicySet.active_version_id).where(
            PolicySet.client_id == client_id, PolicySet.event_type == event_type
        )
    )
    if vid is None:
        raise NoActiveVersion(event_type)
    return vid


class CompiledSetCache:
    """Compiled sets by version id. Versions are immutable, so entries never go stale."""

    def __init__(self, size: int = 2048) -> None:
        self._items: OrderedDict[str, CompiledSet] = OrderedDict()
        self._size = size
        self._lock = Lock()

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


def document_of(version: PolicySetVersion) -> dict[str, Any]:
    return dict(version.document)
