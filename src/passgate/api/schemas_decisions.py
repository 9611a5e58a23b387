"""The answer of POST /login/v2 and /newaccountopening/v2 (Kount 360 wire format); the request bodies are
in passgate.policy.requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class TagWeight(BaseModel):
    name: str
    weight: int


class SetRef(BaseModel):
    name: str
    versionName: str


class ChallengeInfo(BaseModel):
    ID: str | None = None
    type: str | None = None
    channel: str | None = None
    status: str | None = None
    expiresAt: datetime | None = None
    sendAttempts: int = 0
    verificationAttempts: int = 0
    matchNumber: str | None = None
    error: str | None = None
    # Why, for some errors (RATE_LIMITED: TOO_MANY_SENDS, DESTINATION_LOCKED, ACCOUNT_LOCKED,
    # COUNTRY_BREAKER_OPEN); absent else.
    errorReason: str | None = None


class DecisionResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "decision": "CHALLENGE",
                    "guidance": "CHALLENGE",
                    "inquiryId": "inq0001",
                    "deviceSessionId": "ds0001abc",
                    "deviceId": "5f1c0d2e9b7a4c3d8e6f1a2b3c4d5e6f",
                    "tags": ["NEW_DEVICE"],
                    "userSegment": "default",
                    "set": {"name": "login", "versionName": "v1"},
                    "tagWeights": [{"name": "NEW_DEVICE", "weight": 10}],
                    "person": {"emailAddress": "jo@example.com"},
                    "strategy": {"mfaTemplateName": "email-link"},
                    "mfa": {
                        "ID": "0b6f3c1e-2a4d-4e5f-8a9b-0c1d2e3f4a5b",
                        "type": "NONCE_OTH",
                        "channel": "EMAIL",
                        "status": "UNKNOWN",
                        "expiresAt": "2026-11-29T10:10:00Z",
                        "sendAttempts": 1,
                        "verificationAttempts": 0,
                        "error": None,
                    },
                }
            ]
        }
    )

    decision: str
    guidance: str
    inquiryId: str
    deviceSessionId: str
    deviceId: str
    tags: list[str]
    userSegment: str
    set: SetRef
    tagWeights: list[TagWeight]
    person: dict[str, Any] | None = None
    strategy: dict[str, Any] | None = None
    mfa: ChallengeInfo | None = None
    verification: ChallengeInfo | None = None
