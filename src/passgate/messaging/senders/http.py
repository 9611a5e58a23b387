"""SMS through Twilio's REST API or a generic HTTP JSON gateway, and ordered failover.

Each sender posts over `http_wire.HttpPoster` (kept-alive connections per event loop, a request's bytes
written at once), or through httpx when it is given an `httpx.AsyncClient` or when a proxy setting of the
environment covers its URL (`http_wire.proxied`). Both ways send the same request and read the answer the
same way (tests/contract/test_sms_senders.py runs every case through both).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

import httpx

from passgate.messaging.senders.base import (
    OutgoingSms,
    PermanentSendError,
    ProviderAuthorizationError,
    SendError,
    TemporarySendError,
    provider_said,
)
from passgate.messaging.senders.http_wire import HttpPoster, WireError, proxied
from passgate.webhooks.signing import standard_headers

if TYPE_CHECKING:  # the protocol its senders implement; interfaces imports this package's types
    from passgate.messaging.interfaces import SmsSender


def _raise_for(status: int, text: Callable[[], str], provider: str) -> None:
    if status in (401, 403):
        raise ProviderAuthorizationError(f"{provider} refused our credentials ({status})")
    if status == 429 or status >= 500:
        raise TemporarySendError(f"{provider} answered {status}")
    if status >= 400:
        raise PermanentSendError(f"{provider} refused the message ({status}): {provider_said(text())}")


def _target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class _Post:
    """One provider URL's way out: `HttpPoster`, or an httpx client (given, or for a proxied URL)."""

    def __init__(self, url: str, client: httpx.AsyncClient | None) -> None:
        self.poster = HttpPoster(url) if client is None and not proxied(url) else None
        self.client = client
        if self.poster is None and client is None:
            self.client = httpx.AsyncClient(timeout=15.0, follow_redirects=False)

    async def __call__(
        self, url: str, headers: dict[str, str], body: bytes, provider: str
    ) -> tuple[int, bytes]:
        """(status, body) of a POST of `body` to `url` (of this sender's origin)."""
        if self.poster is not None:
            try:
                answer = await self.poster.post(_target(url), headers, body)
            except WireError as exc:
                raise TemporarySendError(f"{provider} unreachable: {exc}") from exc
            return answer.status, answer.body
        assert self.client is not None
        try:
            resp = await self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TemporarySendError(f"{provider} unreachable: {type(exc).__name__}") from exc
        return resp.status_code, resp.content

    async def release(self) -> None:
        if self.poster is not None:
            await self.poster.release()


class TwilioSmsSender:
    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str,
        status_callback: str | None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.base_url = base_url.rstrip("/")
        self.status_callback = status_callback
        self.url = f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        self._post = _Post(self.url, client)
        self.client = self._post.client
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        self._authorization = f"Basic {credentials}"

    async def send_sms(self, message: OutgoingSms) -> str:
        data = {"To": message.to, "From": self.from_number, "Body": message.body}
        if self.status_callback:
            data["StatusCallback"] = self.status_callback
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": self._authorization,
            "Idempotency-Key": message.message_id,
        }
        # The form as httpx encodes `data=` (urlencode, spaces as +).
        body = urlencode(data).encode("ascii")
        status, answer = await self._post(self.url, headers, body, "twilio")
        _raise_for(status, lambda: answer.decode("utf-8", "replace"), "twilio")
        try:
            return str(json.loads(answer)["sid"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TemporarySendError("twilio answered without a message sid") from exc

    async def release(self) -> None:
        """Close the connections kept open on this event loop."""
        await self._post.release()


class HttpGatewaySmsSender:
    """POSTs {"to", "from", "body", "messageId"}; any 2xx is acceptance. messageId is the idempotency key.

    With a secret, each request carries a Standard Webhooks signature (`webhook-id` is the messageId,
    `webhook-timestamp`, `webhook-signature`) so the gateway can tell Passgate's requests from anyone
    else's; the gateway signs its delivery reports with the same secret (api/providers.py)."""

    name = "http"

    def __init__(
        self,
        url: str,
        from_name: str,
        secret: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.from_name = from_name
        self.secret = secret
        self._post = _Post(url, client)
        self.client = self._post.client

    async def send_sms(self, message: OutgoingSms) -> str:
        payload = {
            "to": message.to,
            "from": self.from_name,
            "body": message.body,
            "messageId": message.message_id,
        }
        # Serialised here: the signature is over these exact bytes.
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.message_id}
        if self.secret is not None:
            headers.update(standard_headers([self.secret], message.message_id, datetime.now(UTC), body))
        status, answer = await self._post(self.url, headers, body, "SMS gateway")
        _raise_for(status, lambda: answer.decode("utf-8", "replace"), "SMS gateway")
        return message.message_id

    async def release(self) -> None:
        """Close the connections kept open on this event loop."""
        await self._post.release()


class FailoverSmsSender:
    """Ordered providers: the next takes over when one fails with anything but a permanent refusal."""

    def __init__(self, senders: list[SmsSender]) -> None:
        if not senders:
            raise ValueError("at least one SMS provider")
        self.senders = senders
        self.name = senders[0].name
        self.last_used = senders[0].name

    async def send_sms(self, message: OutgoingSms) -> str:
        error: SendError | None = None
        for sender in self.senders:
            try:
                result = await sender.send_sms(message)
                self.last_used = sender.name
                return result
            except PermanentSendError:
                raise
            except SendError as exc:
                error = exc
        assert error is not None
        raise error

    async def release(self) -> None:
        for sender in self.senders:
            release = getattr(sender, "release", None)
            if release is not None:
                await release()
