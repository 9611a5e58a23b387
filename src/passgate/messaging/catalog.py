"""A client's messaging templates: list (with the built-ins), read, save, delete, preview, test-send.

Override rule: a client's template whose name is a built-in's replaces that built-in for this client only;
deleting it brings the built-in back. Built-ins themselves are read-only and shared by every client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from passgate.auth.models import Client
from passgate.auth.settings import MfaConfig, resolve_config
from passgate.contacts import check_email, check_phone, is_sandbox_destination, mask
from passgate.ids import new_uuid
from passgate.locales import choose_locale
from passgate.messaging import outbox, samples
from passgate.messaging.exceptions import (
    BuiltinTemplateReadOnly,
    InvalidTemplate,
    TemplateExists,
    TemplateNotFound,
    TestSendRateLimited,
    TooManyTemplates,
    Unprocessable,
)
from passgate.messaging.models import ClientTemplate
from passgate.messaging.outbox import OutboxMessage
from passgate.messaging.render_pool import EDITING
from passgate.messaging.sources import TEMPLATE_NAME, TemplateSource, template_from_row
from passgate.messaging.states import MessageStatus
from passgate.messaging.templates import (
    MessageTemplate,
    TemplateProblem,
    TemplateRenderError,
    TemplateValuesError,
    builtin_templates,
    clean_template_values,
    render,
    validate_template,
)
from passgate.messaging.templates.sms import sms_info
from passgate.ratelimit import RateLimiter

MAX_CLIENT_TEMPLATES = 100
# All parts of all locales together. Far above any real template (a rich HTML email is ~10 KB a locale),
# far below what would make every save and render slow.
MAX_TEMPLATE_CHARS = 1_000_000
# Test sends reach real inboxes and phones and cost money: a few a minute per client is plenty for
# someone checking a template, and too few to be worth abusing.
TEST_SEND_RATES = "5/minute;50/day"
_STRAY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class StoredTemplate:
    """The template a name resolves to for a client, and where it came from."""

    template: MessageTemplate
    builtin: bool
    overrides_builtin: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None


def summary(t: StoredTemplate) -> dict[str, Any]:
    return {
        "name": t.template.name,
        "channel": t.template.channel,
        "kind": t.template.kind,
        "defaultLocale": t.template.default_locale,
        "availableLocales": sorted(t.template.locales),
        "builtIn": t.builtin,
        "overridesBuiltIn": t.overrides_builtin,
        "createdAt": t.created_at.isoformat() if t.created_at else None,
        "updatedAt": t.updated_at.isoformat() if t.updated_at else None,
    }


def full_view(t: StoredTemplate) -> dict[str, Any]:
    locales = {
        tag: {k: v for k, v in content.present_parts().items() if v is not None}
        for tag, content in sorted(t.template.locales.items())
    }
    return {**summary(t), "locales": locales}


def _stored(row: ClientTemplate) -> StoredTemplate:
    return StoredTemplate(
        template=template_from_row(row),
        builtin=False,
        overrides_builtin=row.name in builtin_templates(),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _config(session: Session, client_id: str) -> tuple[Client, MfaConfig]:
    client = session.get(Client, client_id)
    assert client is not None  # the caller was authenticated as this client
    return client, resolve_config(session, client)


def render_problem(exc: TemplateRenderError) -> dict[str, Any]:
    """An errors[] entry for a render that failed: field, locale, part and (when known) line."""
    entry: dict[str, Any] = {
        "field": f"locales.{exc.locale}.{exc.part}",
        "message": str(exc),
        "locale": exc.locale,
        "part": exc.part,
    }
    if exc.line is not None:
        entry["line"] = exc.line
    return entry


def _explicit_locale(template: MessageTemplate, wanted: str, field: str) -> str:
    """The template's locale for an explicitly asked tag (es-MX finds es), or a 422 naming the field."""
    chosen = choose_locale(list(template.locales), template.default_locale, wanted, None)
    if chosen == template.default_locale:
        # choose_locale falls back to the default silently; for an explicit ask that would preview
        # something other than what was asked for, so only a real match of the language is accepted.
        if chosen.split("-")[0].lower() != wanted.replace("_", "-").split("-")[0].lower():
            have = ", ".join(sorted(template.locales))
            raise Unprocessable(
                f"the template has no locale for {wanted!r}",
                [{"field": field, "message": f"no locale matches {wanted!r}; the template has {have}"}],
            )
    return chosen


@dataclass
class TemplateCatalog:
    source: TemplateSource
    limiter: RateLimiter
    public_url: str

    @property
    def host(self) -> str:
        return urlsplit(self.public_url).hostname or "localhost"

    # -- reading -------------------------------------------------------------------------------------

    def _row(self, session: Session, client_id: str, name: str, lock: bool = False) -> ClientTemplate | None:
        if not TEMPLATE_NAME.fullmatch(name):
            return None  # never saved (see DatabaseTemplateSource.get)
        stmt = select(ClientTemplate).where(
            ClientTemplate.client_id == client_id, ClientTemplate.name == name
        )
        if lock:
            stmt = stmt.with_for_update()
        return session.scalars(stmt).first()

    def _forget(self, client_id: str) -> None:
        forget = getattr(self.source, "forget", None)
        if forget is not None:
            forget(client_id)

    def list(self, session: Session, client_id: str) -> list[StoredTemplate]:
        """Every template a request can name: the client's own, and the built-ins it has not overridden."""
        rows = session.scalars(select(ClientTemplate).where(ClientTemplate.client_id == client_id)).all()
        own = {row.name: _stored(row) for row in rows}
        for name, template in builtin_templates().items():
            if name not in own:
                own[name] = StoredTemplate(template, builtin=True, overrides_builtin=False)
        return [own[name] for name in sorted(own)]

    def get(self, session: Session, client_id: str, name: str) -> StoredTemplate:
        row = self._row(session, client_id, name)
        if row is not None:
            return _stored(row)
        builtin = builtin_templates().get(name)
        if builtin is None:
            raise TemplateNotFound(name)
        return StoredTemplate(builtin, builtin=True, overrides_builtin=False)

    # -- writing -------------------------------------------------------------------------------------

    def _check(self, template: MessageTemplate) -> None:
        size = sum(
            len(str(part))
            for content in template.locales.values()
            for part in content.present_parts().values()
        )
        if size > MAX_TEMPLATE_CHARS:
            raise InvalidTemplate(
                "the template is too large",
                [
                    {
                        "field": "locales",
                        "message": f"all parts together exceed {MAX_TEMPLATE_CHARS} characters",
                    }
                ],
            )
        problems = EDITING.run(validate_template, template)
        for tag, content in template.locales.items():
            for part, source in content.present_parts().items():
                if isinstance(source, str) and _STRAY_CONTROL.search(source):
                    # Invisible in every editor, meaningless in mail, and refused by PostgreSQL (NUL).
                    problems.append(
                        TemplateProblem(
                            f"locales.{tag}.{part}",
                            "control characters other than tab and line breaks are not allowed",
                            tag,
                            part,
                        )
                    )
        if problems:
            raise InvalidTemplate.from_problems(problems)

    def create(
        self, session: Session, client_id: str, template: MessageTemplate, now: datetime
    ) -> StoredTemplate:
        self._check(template)
        if self._row(session, client_id, template.name) is not None:
            raise TemplateExists(template.name)
        return self._insert(session, client_id, template, now)

    def replace(
        self, session: Session, client_id: str, template: MessageTemplate, now: datetime
    ) -> tuple[StoredTemplate, bool]:
        """Create or replace the client's template of this name; True when it was created."""
        self._check(template)
        row = self._row(session, client_id, template.name, lock=True)
        if row is None:
            return self._insert(session, client_id, template, now), True
        row.channel = template.channel
        row.kind = template.kind
        row.default_locale = template.default_locale
        row.locales = _locales_json(template)
        row.updated_at = now
        session.flush()
        self._forget(client_id)
        return _stored(row), False

    def _insert(
        self, session: Session, client_id: str, template: MessageTemplate, now: datetime
    ) -> StoredTemplate:
        count = session.scalar(
            select(func.count()).select_from(ClientTemplate).where(ClientTemplate.client_id == client_id)
        )
        if (count or 0) >= MAX_CLIENT_TEMPLATES:
            raise TooManyTemplates(MAX_CLIENT_TEMPLATES)
        row = ClientTemplate(
            id=new_uuid(),
            client_id=client_id,
            name=template.name,
            channel=template.channel,
            kind=template.kind,
            default_locale=template.default_locale,
            locales=_locales_json(template),
            created_at=now,
            updated_at=now,
        )
        try:
            # A savepoint, so a concurrent create of the same name fails alone, as a conflict.
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            raise TemplateExists(template.name) from None
        self._forget(client_id)
        return _stored(row)

    def delete(self, session: Session, client_id: str, name: str) -> bool:
        """Delete the client's template; True when a built-in of that name now applies again."""
        row = self._row(session, client_id, name, lock=True)
        if row is None:
            if name in builtin_templates():
                raise BuiltinTemplateReadOnly(name)
            raise TemplateNotFound(name)
        session.delete(row)
        session.flush()
        self._forget(client_id)
        return name in builtin_templates()

    # -- preview and test send -----------------------------------------------------------------------

    def preview(
        self,
        session: Session,
        client_id: str,
        name: str,
        locale: str | None,
        values: dict[str, str] | None,
    ) -> dict[str, Any]:
        """The template rendered with the client's branding and sample values, as a message would be."""
        stored = self.get(session, client_id, name)
        template = stored.template
        try:
            given = clean_template_values(values)
        except TemplateValuesError as exc:
            field = f"values.{exc.key}" if exc.key else "values"
            raise Unprocessable(str(exc), [{"field": field, "message": str(exc)}]) from None
        chosen = _explicit_locale(template, locale, "locale") if locale else template.default_locale
        client, _ = _config(session, client_id)
        minutes, code_length = samples.sample_settings(session, client, template)
        sample_values = dict.fromkeys(samples.referenced_values(template), samples.SAMPLE_VALUE)
        sample_values.update(given)
        context = samples.sample_context(
            self.source.brand(session, client_id),
            self.public_url,
            self.host,
            minutes,
            code_length,
            sample_values,
        )
        try:
            rendered = EDITING.run(render, template, chosen, context)
        except TemplateRenderError as exc:
            # Save-time checks render with sample values; values given here can still trip template code
            # (say, `values.n|int * 1000`), and the author should see why rather than a 500.
            raise InvalidTemplate(
                "the template cannot be rendered with these values", [render_problem(exc)]
            ) from None
        out: dict[str, Any] = {
            "name": template.name,
            "channel": template.channel,
            "kind": template.kind,
            "builtIn": stored.builtin,
            "locale": rendered.locale,
            "sample": {
                "link": context.link if template.kind == "OTH" else None,
                "code": context.code if template.kind == "OTP" else None,
                "expiresInMinutes": minutes,
                "values": sample_values,
            },
        }
        if template.channel == "EMAIL":
            out.update(subject=rendered.subject, html=rendered.html, text=rendered.text)
        else:
            body = rendered.sms or ""
            info = sms_info(body)
            out["sms"] = {
                "body": body,
                "encoding": info.encoding,
                "characters": info.characters,
                "segments": info.segments,
                "units": info.units,
            }
        return out

    def test_send(
        self, session: Session, client_id: str, name: str, to: str, locale: str | None, now: datetime
    ) -> dict[str, Any]:
        """Queue a test message in the outbox (the worker sends it); rate limited per client."""
        template = self.get(session, client_id, name).template
        client, config = _config(session, client_id)
        destination = self._destination(template.channel, to, client, config)
        if locale:
            chosen = _explicit_locale(template, locale, "locale")
        else:
            # As a real challenge would choose, short of a preferredLanguageCode: by the phone's country.
            phone = destination if template.channel == "SMS" else None
            chosen = choose_locale(list(template.locales), template.default_locale, None, phone)
        allowed = self.limiter.hit("test-send:client", client_id, TEST_SEND_RATES)
        if not allowed.allowed:
            raise TestSendRateLimited(allowed.retry_after)
        message_id = outbox.queue(
            session,
            OutboxMessage(
                client_id=client_id,
                channel=template.channel,
                destination=destination,
                template_name=template.name,
                locale=chosen,
                purpose=samples.PURPOSE,
                queued_at=now,
            ),
        )
        return {
            "messageId": message_id,
            "status": MessageStatus.QUEUED.value,
            "templateName": template.name,
            "channel": template.channel,
            "locale": chosen,
            "to": mask(template.channel, destination),
            "sandbox": client.sandbox,
        }

    def _destination(self, channel: str, to: str, client: Client, config: MfaConfig) -> str:
        # The same destination rules as a real challenge: test sends must not be a way around the SMS
        # country allow-list or the premium-rate refusals (SMS pumping).
        if is_sandbox_destination(channel, to) and not client.sandbox:
            raise Unprocessable(
                "sandbox destinations are for sandbox clients",
                [{"field": "to", "message": "this magic test destination works only for sandbox clients"}],
            )
        if channel == "EMAIL":
            check = check_email(to)
        else:
            countries = list(config.sms_allowed_countries)
            if client.sandbox and is_sandbox_destination(channel, to):
                countries = ["US"]
            check = check_phone(to, countries, config.reject_voip)
        if not check.ok:
            what = "an email address" if channel == "EMAIL" else "an E.164 phone number such as +15551234567"
            raise Unprocessable(
                f"cannot send a test {channel} message there",
                [{"field": "to", "message": f"{check.reason} (this template needs {what})"}],
            )
        return check.value


def _locales_json(template: MessageTemplate) -> dict[str, Any]:
    return {
        tag: {k: v for k, v in content.present_parts().items() if v is not None}
        for tag, content in template.locales.items()
    }
