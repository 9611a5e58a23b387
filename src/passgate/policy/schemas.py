"""The policy-set document as it travels over the management API and is stored per version."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

EventType = Literal["LOGIN", "NEW_ACCOUNT_OPENING"]
EVENT_TYPES: tuple[str, ...] = ("LOGIN", "NEW_ACCOUNT_OPENING")
Outcome = Literal["BLOCK", "CHALLENGE", "NO_CHANGE"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,79}$"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Condition(_Doc):
    field: StrictStr = Field(max_length=200, examples=["device.seenForAccount"])
    operator: StrictStr = Field(max_length=20, examples=["equals"])
    value: Any = Field(examples=[False])


class Tag(_Doc):
    name: StrictStr = Field(pattern=r"^[A-Z0-9_]{1,64}$", examples=["NEW_DEVICE"])
    weight: int = Field(default=0, ge=-1000, le=1000)


class Policy(_Doc):
    name: StrictStr = Field(pattern=NAME_PATTERN, examples=["new-device"])
    description: StrictStr | None = Field(default=None, max_length=1000)
    conditions: list[Condition] = Field(default_factory=list, max_length=50)
    cel: StrictStr | None = Field(default=None, max_length=4000, description="a raw CEL expression")
    outcome: Outcome
    tags: list[Tag] = Field(default_factory=list, max_length=20)


class Segment(_Doc):
    name: StrictStr = Field(pattern=NAME_PATTERN, examples=["default"])
    conditions: list[Condition] = Field(default_factory=list, max_length=50)
    cel: StrictStr | None = Field(default=None, max_length=4000)
    mfaEnabled: StrictBool = Field(default=False, description="challenge with MFA/verification")
    policies: list[StrictStr] = Field(default_factory=list, max_length=200)


class PolicySetDocument(_Doc):
    name: StrictStr = Field(pattern=NAME_PATTERN, examples=["login"])
    segments: list[Segment] = Field(min_length=1, max_length=50)
    policies: list[Policy] = Field(default_factory=list, max_length=500)


def default_document(event_type: str) -> dict[str, Any]:
    """Every new client starts with this set: allow known devices, challenge new ones."""
    return {
        "name": "login" if event_type == "LOGIN" else "new-account-opening",
        "segments": [{"name": "default", "conditions": [], "mfaEnabled": True, "policies": ["new-device"]}],
        "policies": [
            {
                "name": "new-device",
                "description": "Challenge when this device has not been seen for this account.",
                "conditions": [{"field": "device.seenForAccount", "operator": "equals", "value": False}],
                "outcome": "CHALLENGE",
                "tags": [{"name": "NEW_DEVICE", "weight": 10}],
            }
        ],
    }
