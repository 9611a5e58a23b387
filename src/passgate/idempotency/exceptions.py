class IdempotencyError(Exception):
    """Base of the errors about retried requests."""

    field = "inquiryId"


class InquiryReused(IdempotencyError):
    """The inquiryId was used, within the retention, by this client on this endpoint for another request."""

    def __init__(self, field: str = "inquiryId") -> None:
        super().__init__(
            f"{field} was already used for a different request within the last 24 hours; a retry must "
            "send the same body, a new request a new id"
        )
        self.field = field


class RequestInProgress(IdempotencyError):
    """The first request with this key has not finished yet: retry after `retry_after` seconds."""

    def __init__(self, field: str, retry_after: int = 1) -> None:
        super().__init__(f"a request with this {field} is still being processed; retry shortly")
        self.field = field
        self.retry_after = retry_after


class KeyReused(IdempotencyError):
    """The Idempotency-Key was used, within the retention, for a different request (method, path, body)."""

    field = "Idempotency-Key"

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used for a different request (method, path or body) within "
            "the last 24 hours"
        )


class InvalidKey(IdempotencyError):
    """The Idempotency-Key header is empty, too long or not printable ASCII."""

    field = "Idempotency-Key"
