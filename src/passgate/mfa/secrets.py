"""Codes and link tokens (pure): generated with `secrets`, never stored in clear."""

from __future__ import annotations

import secrets

CODE_PURPOSE = "mfa-code"
LINK_PURPOSE = "mfa-link"
SANDBOX_CODE_LENGTH_FILL = "0"


def new_code(length: int) -> str:
    if not 4 <= length <= 10:
        raise ValueError("code length must be 4 to 10 digits")
    return str(secrets.randbelow(10**length)).zfill(length)


def new_link_token() -> str:
    # 32 random bytes: 256 bits, well past the 128 the design asks for; URL-safe, 43 characters.
    return secrets.token_urlsafe(32)


def new_match_numbers(correct: str | None = None) -> tuple[str, list[str]]:
    """The two-digit number the business shows, and three choices (one correct) for the confirm page."""
    answer = correct or f"{secrets.randbelow(90) + 10}"
    choices = {answer}
    while len(choices) < 3:
        choices.add(f"{secrets.randbelow(90) + 10}")
    ordered = sorted(choices, key=lambda _: secrets.randbelow(1_000_000))
    return answer, ordered


def normalise_code(presented: str) -> str:
    """People type spaces and dashes; codes are digits only."""
    return "".join(ch for ch in presented if ch.isdigit())


def sandbox_code(length: int) -> str:
    return SANDBOX_CODE_LENGTH_FILL * length
