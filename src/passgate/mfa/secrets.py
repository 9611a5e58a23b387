"""Codes and link tokens (pure): generated with `secrets`, never stored in clear."""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_PURPOSE = "mfa-code"
LINK_PURPOSE = "mfa-link"
SANDBOX_CODE_LENGTH_FILL = "0"
# The last three codes (or links) issued stay valid: a resend does not break one in flight.
VALID_CODES = 3


def new_code(length: int) -> str:
    if not 4 <= length <= 10:
        raise ValueError("code length must be 4 to 10 digits")
    return str(secrets.randbelow(10**length)).zfill(length)


def new_link_token() -> str:
    # 32 random bytes: 256 bits, well past the 128 the design asks for; URL-safe, 43 characters.
    return secrets.token_urlsafe(32)


def new_match_number() -> str:
    """The two-digit number the business shows on its screen (`strategy.bindToDevice`)."""
    return f"{secrets.randbelow(90) + 10}"


def match_choices(answer: str, seed: str) -> list[str]:
    """The three numbers the confirm page offers (the answer and two decoys, in an order of their own),
    the same on every open of the session's link. `seed` is a keyed hash of the session: secret, and fixed
    for the session. Decoys drawn afresh on each open would give the answer away to anyone who opened the
    link twice: it would be the one number on both pages."""
    choices = [answer]
    counter = 0
    while len(choices) < 3:
        digest = hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        candidate = f"{int.from_bytes(digest[:4], 'big') % 90 + 10}"
        if candidate not in choices:
            choices.append(candidate)
        counter += 1
    position = hashlib.sha256(f"{seed}:order".encode()).digest()[0] % 3
    decoys = choices[1:]
    decoys.insert(position, answer)
    return decoys


def same_number(chosen: str | None, answer: str | None) -> bool:
    """Whether the number picked on the confirm page is the session's (compared in constant time)."""
    if chosen is None or answer is None:
        return False
    return hmac.compare_digest(chosen.strip().encode(), answer.encode())


def normalise_code(presented: str) -> str:
    """People type spaces and dashes; codes are digits only."""
    return "".join(ch for ch in presented if ch.isdigit())


def sandbox_code(length: int) -> str:
    return SANDBOX_CODE_LENGTH_FILL * length
