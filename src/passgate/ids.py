"""Identifiers. Random (not time-ordered) so ids leak nothing about volume or timing."""

from __future__ import annotations

import secrets
import uuid


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_client_id() -> str:
    return "cl_" + secrets.token_hex(10)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)
