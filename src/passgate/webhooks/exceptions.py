"""Webhook exceptions; passgate/problems.py gives each its status, for the API and the console."""

from __future__ import annotations


class WebhookError(Exception):
    pass


class EndpointNotFound(WebhookError):
    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"webhook endpoint {endpoint_id} not found")
        self.endpoint_id = endpoint_id


class EventNotFound(WebhookError):
    def __init__(self, event_id: str) -> None:
        super().__init__(f"event {event_id} was not sent to this endpoint")
        self.event_id = event_id


class InvalidWebhookUrl(WebhookError):
    """The URL may not be called (scheme, syntax, private address...); `field` names the input."""

    def __init__(self, message: str, field: str = "url") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class WrongSignatureScheme(WebhookError):
    def __init__(self, message: str) -> None:
        super().__init__(message)


class EndpointDisabled(WebhookError):
    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"webhook endpoint {endpoint_id} is disabled; enable it before replaying")
        self.endpoint_id = endpoint_id


class TooManyEndpoints(WebhookError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"a client may have at most {limit} webhook endpoints")
        self.limit = limit


class DeliveryError(WebhookError):
    """A try that got no usable answer (refused target, connection, TLS, timeout). Always retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
