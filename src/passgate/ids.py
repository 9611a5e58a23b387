"""Identifiers. Random (not time-ordered) so ids leak nothing about volume or timing — except request
(correlation) ids, which are also the ids of stored decisions: see `new_request_id`."""

from __future__ import annotations

import os
import secrets
import time
import uuid


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Request ids become decision ids, the primary key of the busiest table. A random key puts each new
    row on a different index page, so every commit rewrote as many index pages as it held decisions;
    time-ordered keys append to the end of the index. The id reveals only when the request arrived —
    which its caller knows — and nothing about volume (no counter).
    """
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
