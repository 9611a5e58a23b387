from __future__ import annotations


class MfaError(Exception):
    pass


class SessionNotFound(MfaError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"MFA session {session_id} not found")
        self.session_id = session_id


class SessionClosed(MfaError):
    """The session is in a terminal status; nothing more can happen to it."""

    def __init__(self, status: str, reason: str | None = None) -> None:
        super().__init__(f"the session is {status}" + (f" ({reason})" if reason else ""))
        self.status = status
        self.reason = reason


class WrongMethod(MfaError):
    def __init__(self, message: str) -> None:
        super().__init__(message)


class SendLimitReached(MfaError):
    def __init__(self, max_sends: int) -> None:
        super().__init__(f"this session has used all of its {max_sends} sends")
        self.max_sends = max_sends


class Throttled(MfaError):
    """Too many consecutive failures for this destination or account: wait, or it is locked."""

    def __init__(self, retry_after: int, locked: bool = False) -> None:
        msg = "too many failed attempts; " + (
            "this destination is locked until an operator clears it"
            if locked
            else f"retry in {retry_after} s"
        )
        super().__init__(msg)
        self.retry_after = retry_after
        self.locked = locked


class SendRateLimited(MfaError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many messages to this destination; retry in {retry_after} s")
        self.retry_after = retry_after


class InvalidDestination(MfaError):
    """An email address or phone number given to an operator call that is not one (`field` names it)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


class InvalidVerification(MfaError):
    """A Verify API start that names a template it cannot use (`field` names the request's field)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


class NoPendingVerification(MfaError):
    """A check by destination when the client has no pending verification for it."""

    def __init__(self) -> None:
        super().__init__("no pending verification for this destination")
        self.field = "to"
