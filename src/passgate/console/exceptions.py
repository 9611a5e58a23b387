"""What the console services raise; the console routes turn each into a page, never a trace."""

from __future__ import annotations


class ConsoleError(Exception):
    pass


class InvalidUser(ConsoleError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UserExists(ConsoleError):
    def __init__(self, email: str) -> None:
        super().__init__(f"a console user with the email {email} already exists")


class BadCredentials(ConsoleError):
    """Unknown email, wrong password or disabled user: one answer for all, so none is revealed."""


class SignInLocked(ConsoleError):
    def __init__(self, retry_after: int, scope: str) -> None:
        super().__init__(f"too many sign-in attempts ({scope}); wait {retry_after} s")
        self.retry_after = retry_after
        self.scope = scope  # "email" or "ip"


class ChallengeNotStarted(ConsoleError):
    """The sign-in email could not be started (`code` is the MFA error: RATE_LIMITED, …)."""

    def __init__(self, code: str) -> None:
        super().__init__(f"the sign-in email could not be sent: {code}")
        self.code = code
