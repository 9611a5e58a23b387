"""A client's SMS pumping breaker settings: the stored value (a JSON object, null fields meaning the
documented defaults), the effective values the breaker uses, and the body the API and the console take.

Why here and not beside the breaker (`mfa/breaker.py`): the settings are part of the client's settings row,
which `auth.settings` owns and `mfa` reads; `auth` must not import `mfa`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class BreakerMode(StrEnum):
    OFF = "off"  # nothing counted, nothing refused
    MONITOR = "monitor"  # counted, state changes recorded and announced, nothing refused
    ENFORCE = "enforce"  # as monitor, and SMS to a country whose breaker is open are refused


@dataclass(frozen=True)
class BreakerConfig:
    """The breaker's effective settings for one client (docs/mfa.md, "SMS pumping breaker")."""

    mode: str = BreakerMode.MONITOR.value
    window_seconds: int = 3600
    min_sends: int = 50
    min_conversion: float = 0.2
    cool_down_seconds: int = 1800
    probe_sends: int = 5


DEFAULT_BREAKER = BreakerConfig()

# Stored (snake_case) name -> wire (camelCase) name.
WIRE_NAMES = {
    "mode": "mode",
    "window_seconds": "windowSeconds",
    "min_sends": "minSends",
    "min_conversion": "minConversion",
    "cool_down_seconds": "coolDownSeconds",
    "probe_sends": "probeSends",
}


class SmsBreakerBody(BaseModel):
    """`smsBreaker` in a settings change: omitted or null fields return to the defaults."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "mode": "enforce",
                    "windowSeconds": 3600,
                    "minSends": 50,
                    "minConversion": 0.2,
                    "coolDownSeconds": 1800,
                    "probeSends": 5,
                }
            ]
        },
    )

    mode: BreakerMode | None = Field(
        default=None,
        description="off: nothing counted; monitor (default): state changes recorded and announced, nothing "
        "refused; enforce: SMS to a country whose breaker is open are refused (RATE_LIMITED, "
        "COUNTRY_BREAKER_OPEN).",
    )
    windowSeconds: int | None = Field(
        default=None,
        ge=600,
        le=86400,
        multiple_of=60,
        description="Sliding window over which sends and verifications are counted (default 3600).",
    )
    minSends: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Sends to a country within the window before its conversion is judged (default 50).",
    )
    minConversion: float | None = Field(
        default=None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Verified / sent below which the breaker opens (default 0.2).",
    )
    coolDownSeconds: int | None = Field(
        default=None,
        ge=60,
        le=86400,
        description="How long an open breaker stays open before probing (default 1800).",
    )
    probeSends: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Sends allowed while half-open; enough of them verified closes the breaker (default 5).",
    )

    def stored(self) -> dict[str, Any] | None:
        """The JSON kept in `client_settings.sms_breaker`: only the fields given (None when none were)."""
        given = {
            snake: getattr(self, wire)
            for snake, wire in WIRE_NAMES.items()
            if getattr(self, wire) is not None
        }
        if "mode" in given:
            given["mode"] = BreakerMode(given["mode"]).value
        return given or None


def breaker_config_from(stored: Any) -> BreakerConfig:
    """The effective settings: the stored JSON (None, or some fields) over the defaults. A stored value
    that no longer fits (written by an older version) falls back to its default rather than failing."""
    if not isinstance(stored, dict):
        return DEFAULT_BREAKER
    base = asdict(DEFAULT_BREAKER)
    for key, default in base.items():
        value = stored.get(key)
        if value is not None and isinstance(
            value, type(default) if key != "min_conversion" else (int, float)
        ):
            base[key] = value
    if base["mode"] not in {m.value for m in BreakerMode}:
        base["mode"] = DEFAULT_BREAKER.mode
    base["min_conversion"] = float(base["min_conversion"])
    return BreakerConfig(**base)


def breaker_view(config: BreakerConfig) -> dict[str, Any]:
    """The effective settings as `GET /manage/v1/settings` spells them (`smsBreaker`)."""
    return {wire: getattr(config, snake) for snake, wire in WIRE_NAMES.items()}
