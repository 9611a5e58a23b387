from __future__ import annotations


class AuthError(Exception):
    """Base for authentication and authorisation failures."""


class InvalidClient(AuthError):
    """Unknown client, wrong or revoked key."""


class TooManyFailedAttempts(AuthError):
    """Too many wrong client secrets lately from this address, or for this client from this address."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed attempts; retry in {retry_after} s")
        self.retry_after = retry_after


class InvalidScope(AuthError):
    def __init__(self, scope: str) -> None:
        super().__init__(f"scope not granted to this key: {scope}")
        self.scope = scope


class InvalidToken(AuthError):
    """Missing, malformed, expired or wrongly signed bearer token."""


class InsufficientScope(AuthError):
    def __init__(self, needed: str) -> None:
        super().__init__(f"this call needs a token with scope {needed}")
        self.needed = needed


class TooManyKeys(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"a client may have at most {limit} active API keys; revoke one first")
        self.limit = limit


class NotFound(Exception):
    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident} not found")
        self.what = what
        self.ident = ident
