"""Facts about a request that conditions can read, computed only when the active set needs them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from passgate.policy.models import Device


def request_facts(event_type: str, body: dict[str, Any]) -> dict[str, Any]:
    """The request as CEL facts, every known attribute present (null when absent)."""
    person = body.get("person") or {}
    name = person.get("name") or {}
    account = body.get("account") or {}
    return {
        "eventType": event_type,
        "inquiryId": body.get("inquiryId"),
        "channel": body.get("channel"),
        "deviceSessionId": body.get("deviceSessionId"),
        "userIp": body.get("userIp"),
        "loginUrl": body.get("loginUrl"),
        "accountCreationUrl": body.get("accountCreationUrl"),
        "preferredLanguageCode": body.get("preferredLanguageCode"),
        "person": {
            "name": {
                "first": name.get("first"),
                "last": name.get("last"),
                "preferred": name.get("preferred"),
            },
            "emailAddress": person.get("emailAddress"),
            "phoneNumber": person.get("phoneNumber"),
        },
        "account": {
            "id": account.get("id"),
            "username": account.get("username"),
            "type": account.get("type"),
            "creationDateTime": account.get("creationDateTime"),
            "accountIsActive": account.get("accountIsActive"),
        },
        "customFields": body.get("customFields") or {},
        "lists": {},
    }


def device_facts(
    session: Session, client_id: str, account_id: str | None, device_session_id: str
) -> dict[str, Any]:
    if account_id is None:
        return {"seenForAccount": False, "trusted": False, "banned": False}
    row = session.execute(
        select(Device.seen, Device.trust_state).where(
            Device.client_id == client_id,
            Device.account_id == account_id,
            Device.device_session_id == device_session_id,
        )
    ).first()
    if row is None:
        return {"seenForAccount": False, "trusted": False, "banned": False}
    trusted = row.trust_state == "TRUSTED"
    return {
        "seenForAccount": bool(row.seen) or trusted,
        "trusted": trusted,
        "banned": row.trust_state == "BANNED",
    }
