"""SMS through Twilio's REST API or a generic HTTP JSON gateway (httpx), and ordered failover."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

from passgate.messaging.senders.base import (
    OutgoingSms,
    PermanentSendError,
    ProviderAuthorizationError,
    SendError,
    TemporarySendError,
    provider_said,
)
from passgate.webhooks.signing import standard_headers

if TYPE_CHECKING:  # the protocol its senders implement; interfaces imports this package's types
    from passgate.messaging.interfaces import SmsSender


def _raise_for(resp: httpx.Response, provider: str) -> None:
    if resp.status_code in (401, 403):
        raise ProviderAuthorizationError(f"{provider} refused our credentials ({resp.status_code})")
    if resp.status_code == 429 or resp.status_code >= 500:
        raise TemporarySendError(f"{provider} answered {resp.status_code}")
    if resp.status_code >= 400:
        raise PermanentSendError(
            f"{provider} refused the message ({resp.status_code}): {provider_said(resp.text)}"
        )


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
        self.client = client or httpx.AsyncClient(timeout=15.0, follow_redirects=False)

    async def send_sms(self, message: OutgoingSms) -> str:
        data = {"To": message.to, "From": self.from_number, "Body": message.body}
        if self.status_callback:
            data["StatusCallback"] = self.status_callback
        try:
            resp = await self.client.post(
                f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json",
                data=data,
                auth=(self.account_sid, self.auth_token),
                headers={"Idempotency-Key": message.message_id},
            )
        except httpx.HTTPError as exc:
            raise TemporarySendError(f"twilio unreachable: {type(exc).__name__}") from exc
        _raise_for(resp, "twilio")
        try:
            return str(resp.json()["sid"])
        except (ValueError, KeyError) as exc:
            raise TemporarySendError("twilio answered without a message sid") from exc


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
        self.client = client or httpx.AsyncClient(timeout=15.0, follow_redirects=False)

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
        try:
            resp = await self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TemporarySendError(f"SMS gateway unreachable: {type(exc).__name__}") from exc
        _raise_for(resp, "SMS gateway")
        return message.message_id


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
