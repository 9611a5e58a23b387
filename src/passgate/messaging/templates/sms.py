"""SMS encoding: which alphabet a body needs, and how many segments it costs."""

from __future__ import annotations

from typing import Literal

from passgate.messaging.templates.models import (
    SmsInfo,
)

# GSM 03.38 default alphabet (ESC at 0x1B left out: it is not a character) and its extension table,
# whose characters cost an escape plus the character.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
_LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


def sms_info(body: str) -> SmsInfo:
    """Encoding, length and segment count of an SMS body, as a carrier would bill it."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in body):
        encoding: Literal["GSM-7", "UCS-2"] = "GSM-7"
        costs = [2 if c in _GSM_EXTENSION else 1 for c in body]
    else:
        encoding = "UCS-2"
        costs = [2 if ord(c) > 0xFFFF else 1 for c in body]
    units = sum(costs)
    single, per_part = _LIMITS[encoding]
    if units == 0:
        segments = 0
    elif units <= single:
        segments = 1
    else:
        # An escape pair or a surrogate pair is never split across parts, so pack greedily rather than
        # divide: a part can end a unit short.
        segments, used = 1, 0
        for cost in costs:
            if used + cost > per_part:
                segments, used = segments + 1, 0
            used += cost
    return SmsInfo(encoding=encoding, characters=len(body), segments=segments, units=units)
