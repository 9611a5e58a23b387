"""Email over SMTP with aiosmtplib: smtp:// (STARTTLS when offered), smtps:// (implicit TLS), auth."""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

import aiosmtplib

from passgate.messaging.senders.base import (
    OutgoingEmail,
    PermanentSendError,
    ProviderAuthorizationError,
    TemporarySendError,
)


class SmtpEmailSender:
    name = "smtp"

    def __init__(self, url: str, timeout: float = 15.0, tls_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("PASSGATE_SMTP_URL must start with smtp:// or smtps://")
        self.hostname = parts.hostname or "localhost"
        self.implicit_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.tls_context = tls_context
        self.domain = "passgate.local"

    def build(self, message: OutgoingEmail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = message.from_addr
        msg["To"] = message.to
        msg["Subject"] = message.subject
        msg["Date"] = formatdate(localtime=False)
        # The outbox id doubles as Message-ID so a resent duplicate is recognisable downstream.
        domain = message.from_addr.rsplit("@", 1)[-1].strip("> ") or self.domain
        msg["Message-ID"] = f"<{message.message_id}@{domain}>"
        msg["Auto-Submitted"] = "auto-generated"
        for k, v in message.headers.items():
            msg[k] = v
        msg.set_content(message.text)
        msg.add_alternative(message.html, subtype="html")
        return msg

    async def send_email(self, message: OutgoingEmail) -> str:
        msg = self.build(message)
        try:
            await aiosmtplib.send(
                msg,
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.implicit_tls,
                start_tls=None if not self.implicit_tls else False,
                timeout=self.timeout,
                tls_context=self.tls_context,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise ProviderAuthorizationError(f"SMTP authentication failed ({exc.code})") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if codes and all(c >= 500 for c in codes):
                raise PermanentSendError(f"recipient refused ({codes[0]})") from exc
            raise TemporarySendError(f"recipient deferred ({codes[:1]})") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentSendError(f"SMTP {exc.code}: {exc.message[:200]}") from exc
            raise TemporarySendError(f"SMTP {exc.code}: {exc.message[:200]}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporarySendError(f"SMTP unavailable: {type(exc).__name__}") from exc
        return str(msg["Message-ID"])
