"""Preview of a template as it is being edited (not saved yet): the same checks as saving, then the same
rendering as the management API's preview, with the client's branding and sample values, in the same
bounded render pool (the live preview runs on every keystroke)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy.orm import Session

from passgate.auth.models import Client
from passgate.console.wording import plain
from passgate.messaging import samples
from passgate.messaging.catalog import render_problem
from passgate.messaging.exceptions import InvalidTemplate
from passgate.messaging.render_pool import EDITING
from passgate.messaging.sources import TemplateSource
from passgate.messaging.templates import (
    LocaleContent,
    MessageTemplate,
    TemplateRenderError,
    render,
    validate_template,
)
from passgate.messaging.templates.sms import sms_info

PARTS = {"EMAIL": ("subject", "html", "text"), "SMS": ("sms",)}


def draft_template(
    name: str,
    channel: str,
    kind: str,
    locale: str,
    parts: dict[str, str],
    others: dict[str, Any] | None = None,
    default_locale: str | None = None,
) -> MessageTemplate:
    """The template the editor's fields describe: `others` are the stored locales left as they are."""
    locales: dict[str, Any] = dict(others or {})
    locales[locale] = {p: parts.get(p, "") for p in PARTS.get(channel, ())}
    try:
        return MessageTemplate.model_validate(
            {
                "name": name,
                "channel": channel,
                "kind": kind,
                "locales": {k: LocaleContent.model_validate(v) for k, v in locales.items()},
                "defaultLocale": default_locale or locale,
            }
        )
    except ValidationError as exc:
        errors = [  # in plain words (console.wording), not pydantic's
            {"field": ".".join(str(p) for p in e["loc"]) or "template", "message": plain(e)}
            for e in exc.errors()
        ]
        raise InvalidTemplate("the template is not valid", errors) from None


def preview_draft(
    session: Session,
    client_id: str,
    source: TemplateSource,
    public_url: str,
    template: MessageTemplate,
    locale: str,
) -> dict[str, Any]:
    problems = EDITING.run(validate_template, template)
    if problems:
        raise InvalidTemplate.from_problems(problems)
    client = session.get(Client, client_id)
    minutes, code_length = samples.sample_settings(session, client, template)
    values = dict.fromkeys(samples.referenced_values(template), samples.SAMPLE_VALUE)
    context = samples.sample_context(
        source.brand(session, client_id),
        public_url,
        urlsplit(public_url).hostname or "localhost",
        minutes,
        code_length,
        values,
    )
    try:
        rendered = EDITING.run(render, template, locale, context)
    except TemplateRenderError as exc:
        raise InvalidTemplate("the template cannot be rendered", [render_problem(exc)]) from None
    out: dict[str, Any] = {"channel": template.channel, "locale": rendered.locale}
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
