"""Identifiers.

Row ids are UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. A random key puts each new
row on a different page of its table's primary-key index, so every commit rewrote as many index pages as
it inserted rows (a challenge inserts four or five); time-ordered keys append to the end of the index. An
id reveals when its object was created — which the API states anyway (`createdAt`, timelines, the
`Date` of a mail) — and nothing about volume: there is no counter, and 74 random bits cannot be guessed.
Client and key ids stay wholly random.
"""

from __future__ import annotations

import os
import secrets
import time


def new_uuid() -> str:
    """A UUIDv7 as text."""
    value = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7 << 76
        | int.from_bytes(os.urandom(10), "big") & 0x0FFF_3FFF_FFFF_FFFF_FFFF
        | 0x8000_0000_0000_0000
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_client_id() -> str:
    return "cl_" + secrets.token_hex(10)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)
