"""Sample (test) sends: a template rendered with sample values and sent like a real message, marked as a test.

A test send is an outbox row with purpose "test" and no MFA session: it goes through the same worker,
providers, retries and attempt log as a challenge, so it proves the whole delivery path. It carries no
secret. Its link points at a token that can never exist, its code is a fixed sample, and every part says
that it is a test, so a forwarded test message cannot be mistaken for (or used as) a real one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from passgate.auth.models import Client
from passgate.auth.settings import MfaConfig, resolve_config
from passgate.messaging.interfaces import Claimed, ClaimJoin, NewSecret, SentMessage
from passgate.messaging.models import Message
from passgate.messaging.senders.base import SendError
from passgate.messaging.sources import TemplateSource
from passgate.messaging.states import DeliveryStatus
from passgate.messaging.templates import (
    Brand,
    MessageTemplate,
    PersonName,
    RenderContext,
    RenderedMessage,
    render,
)

PURPOSE = "test"
# As long as a real token (43 characters), so SMS segment counts match real messages. It opens the same
# neutral "can't be used" page as any unknown token: real tokens are random 256-bit values.
SAMPLE_TOKEN = "TEST-SAMPLE-LINK-it-does-not-work----------"[:43]
SAMPLE_DIGITS = "1234567890"
SAMPLE_PERSON = PersonName(first="Alexandra", last="Fitzgerald", preferred="Alex")
SAMPLE_VALUE = "Sample value"

_NOTICE = "TEST MESSAGE - the link and code in it are samples and do not work."
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BANNER = (
    '<div dir="ltr" lang="en" style="margin:0;padding:10px 16px;background-color:#fef3c7;color:#78350f;'
    "font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;"
    f'font-size:14px;line-height:20px;font-weight:700;text-align:center;">{_NOTICE}</div>'
)


def sample_link(public_url: str) -> str:
    return f"{public_url}/v/{SAMPLE_TOKEN}"


def sample_code(length: int) -> str:
    return (SAMPLE_DIGITS * 2)[: max(1, length)]


def sample_context(
    brand: Brand,
    public_url: str,
    host: str,
    expires_in_minutes: int,
    code_length: int,
    values: dict[str, str],
) -> RenderContext:
    return RenderContext(
        brand=brand,
        host=host,
        expires_in_minutes=expires_in_minutes,
        link=sample_link(public_url),
        code=sample_code(code_length),
        person=SAMPLE_PERSON,
        values=values,
    )


def sample_settings(
    session: Session, client: Client | None, template: MessageTemplate | None
) -> tuple[int, int]:
    """Minutes until expiry and code length as the client's real messages of this kind would have."""
    config = resolve_config(session, client) if client is not None else MfaConfig()
    if template is None:
        return config.otp_ttl // 60, config.otp_length
    mfa_type = "NONCE_OTH" if template.kind == "OTH" else "OTP"
    return max(1, config.ttl(template.channel, mfa_type, "LOGIN") // 60), config.otp_length


def mark(rendered: RenderedMessage) -> RenderedMessage:
    """Label every part of a rendered message as a test."""
    if rendered.channel == "SMS":
        return replace(rendered, sms=f"[TEST] {rendered.sms or ''}")
    html = rendered.html or ""
    match = _BODY_TAG.search(html)
    html = html[: match.end()] + _BANNER + html[match.end() :] if match else _BANNER + html
    return replace(
        rendered,
        subject=f"[TEST] {rendered.subject or ''}",
        text=f"[{_NOTICE}]\n\n{rendered.text or ''}",
        html=html,
    )


def render_test(
    template: MessageTemplate,
    locale: str,
    brand: Brand,
    public_url: str,
    host: str,
    expires_in_minutes: int,
    code_length: int = 6,
) -> tuple[RenderedMessage, str | None, str | None]:
    """The marked message, and the sample link or code it carries (for the dev inbox)."""
    values = dict.fromkeys(referenced_values(template), SAMPLE_VALUE)
    context = sample_context(brand, public_url, host, expires_in_minutes, code_length, values)
    rendered = mark(render(template, locale, context))
    if template.kind == "OTH":
        return rendered, context.link, None
    return rendered, None, context.code


_VALUE_REF = re.compile(r"\bvalues\s*(?:\.\s*([A-Za-z0-9_]+)|\[\s*['\"]([A-Za-z0-9_]+)['\"]\s*\])")


def referenced_values(template: MessageTemplate) -> list[str]:
    """Keys of `values` the template names (values.x or values['x']), to fill with sample text.

    A textual scan is enough here: it only chooses which sample values to supply; anything it misses
    renders empty, exactly as a missing request value would.
    """
    keys: dict[str, None] = {}
    for content in template.locales.values():
        for source in (content.subject, content.html, content.text, content.sms):
            for m in _VALUE_REF.finditer(source or ""):
                keys[m.group(1) or m.group(2)] = None
    return list(keys)


class SampleDelivery:
    """The "test" purpose's hooks (`messaging.interfaces.DeliveryHooks`): a sample send has no owner row,
    no secret and nobody to tell; it renders with sample values, marked as a test."""

    purpose = PURPOSE
    join: ClaimJoin | None = None

    def owner_of(self, row: Any) -> None:
        return None

    def load_owners(self, session: Session, owner_ids: Sequence[str]) -> Mapping[str, Any]:
        return {}

    def closed(self, owner: Any | None) -> str | None:
        return None

    def needs_secret(self, owner: Any | None) -> bool:
        return False

    def make_secret(
        self, message_id: str, owner: Any, channel: str, destination: str
    ) -> tuple[NewSecret, dict[str, Any]]:
        raise TypeError("a sample send carries no secret")

    def store_secrets(self, session: Session, rows: list[dict[str, Any]]) -> None:
        return None

    def render_contexts(self, session: Session, owners: Sequence[Any]) -> Mapping[str, Any]:
        return {}

    def prepare(
        self,
        session: Session,
        templates: TemplateSource,
        message: Any,
        owner: Any | None,
        secret: str | None,
        contexts: Mapping[str, Any],
    ) -> Claimed:
        m = message
        template = templates.get(session, m.client_id, m.template_name)
        client = session.get(Client, m.client_id)
        minutes, code_length = sample_settings(session, client, template)
        return Claimed(
            message_id=m.id,
            client_id=m.client_id,
            channel=m.channel,
            destination=m.destination,
            attempt=m.attempts,
            secret=None,
            template=template,
            brand=templates.brand(session, m.client_id),
            locale=m.locale,
            context={"codeLength": code_length},
            ttl_minutes=minutes,
            mfa_type=None,
            # A sandbox client's test sends stay on the machine, like its challenges.
            sandbox=bool(client is None or client.sandbox),
            purpose=m.purpose,
            from_address=templates.from_address(session, m.client_id),
        )

    def render(
        self, claimed: Claimed, public_url: str, host: str
    ) -> tuple[RenderedMessage, str | None, str | None]:
        c = claimed
        if c.template is None:
            raise SendError("the message's template no longer exists")
        code_length = int(c.context.get("codeLength", 6))
        return render_test(c.template, c.locale, c.brand, public_url, host, c.ttl_minutes, code_length)

    def messages_sent(self, session: Session, sent: list[SentMessage], now: datetime) -> None:
        return None

    def message_failed(
        self, session: Session, message: Message, authorization: bool, reason: str, now: datetime
    ) -> None:
        return None

    def message_skipped(self, session: Session, message_id: str, owner_id: str | None) -> None:
        return None

    def delivery_report(
        self,
        session: Session,
        message: Message,
        status: DeliveryStatus,
        source: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        return None

    def delivery_delayed(
        self, session: Session, message: Message, source: str, detail: Mapping[str, Any]
    ) -> None:
        return None
