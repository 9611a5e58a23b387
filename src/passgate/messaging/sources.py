"""Where templates and branding come from: the client's own, else the built-ins."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from passgate.auth.models import Client
from passgate.caching import TtlCache
from passgate.clock import Clock
from passgate.messaging.models import ClientBranding, ClientTemplate
from passgate.messaging.templates import _NAME_RE, Brand, MessageTemplate, builtin_templates

log = logging.getLogger("passgate.messaging")
# The rule validate_template holds every saved name to.
TEMPLATE_NAME = _NAME_RE


class TemplateSource(Protocol):
    def get(self, session: Session, client_id: str, name: str) -> MessageTemplate | None: ...

    def brand(self, session: Session, client_id: str) -> Brand: ...

    def from_address(self, session: Session, client_id: str) -> str | None:
        """The client's own From address, or None for the operator's PASSGATE_MAIL_FROM."""
        ...


def default_brand(session: Session, client_id: str) -> Brand:
    """The brand of a client that has not set one: its name and the default colour."""
    client = session.get(Client, client_id)
    name = " ".join((client.name if client else "").split())[:100]
    try:
        return Brand(company_name=name or "Passgate")
    except ValidationError:  # a client name Brand refuses (control characters) must not break sending
        return Brand(company_name="Passgate")


class BuiltinTemplateSource:
    """Built-in templates by name and a brand made of the client's name."""

    def get(self, session: Session, client_id: str, name: str) -> MessageTemplate | None:
        return builtin_templates().get(name)

    def brand(self, session: Session, client_id: str) -> Brand:
        return default_brand(session, client_id)

    def from_address(self, session: Session, client_id: str) -> str | None:
        return None


def template_from_row(row: ClientTemplate) -> MessageTemplate:
    return MessageTemplate.model_validate(
        {
            "name": row.name,
            "channel": row.channel,
            "kind": row.kind,
            "locales": row.locales,
            "defaultLocale": row.default_locale,
        }
    )


def brand_from_row(row: ClientBranding) -> Brand:
    return Brand(
        company_name=row.company_name,
        logo_url=row.logo_url,
        primary_color=row.primary_color,
        support_url=row.support_url,
        sender_name=row.sender_name,
    )


class DatabaseTemplateSource:
    """The client's templates and branding from the database; a client's template of a built-in's name
    overrides the built-in for that client only, and deleting it brings the built-in back.

    Lookups are remembered for `ttl` seconds per client (every challenge and every message reads them):
    a change made through this process is seen at once (`forget`), through another within the TTL.
    """

    def __init__(self, ttl: float = 1.0, clock: Clock | None = None) -> None:
        self.ttl = ttl
        self._cache: TtlCache[tuple[str, str, str], Any] = TtlCache(ttl, clock)

    def forget(self, client_id: str) -> None:
        self._cache.invalidate_where(lambda k: k[0] == client_id)

    def _cached(self, key: tuple[str, str, str], load: Callable[[], Any]) -> Any:
        return self._cache.get_or_load(key, load)

    def get(self, session: Session, client_id: str, name: str) -> MessageTemplate | None:
        return self._cached((client_id, "template", name), lambda: self._get(session, client_id, name))  # type: ignore[no-any-return]

    def _get(self, session: Session, client_id: str, name: str) -> MessageTemplate | None:
        if not TEMPLATE_NAME.fullmatch(name):
            # Saving enforces the name rule, so such a name was never stored; and a request's odd string
            # (a NUL byte, say) must not reach a database that refuses it.
            return builtin_templates().get(name)
        row = session.scalars(
            select(ClientTemplate).where(ClientTemplate.client_id == client_id, ClientTemplate.name == name)
        ).first()
        if row is None:
            return builtin_templates().get(name)
        try:
            return template_from_row(row)
        except ValidationError:
            # Only a hand-edited row can get here (the API validates before saving). Falling back to the
            # built-in would send words the client replaced on purpose, so the template counts as missing.
            log.error("stored template is unreadable", extra={"clientId": client_id, "template": name})
            return None

    def brand(self, session: Session, client_id: str) -> Brand:
        return self._cached((client_id, "brand", ""), lambda: self._brand(session, client_id))  # type: ignore[no-any-return]

    def _brand(self, session: Session, client_id: str) -> Brand:
        row = session.get(ClientBranding, client_id)
        if row is None:
            return default_brand(session, client_id)
        try:
            return brand_from_row(row)
        except ValidationError:
            log.error("stored branding is unreadable", extra={"clientId": client_id})
            return default_brand(session, client_id)

    def from_address(self, session: Session, client_id: str) -> str | None:
        def load() -> str | None:
            row = session.get(ClientBranding, client_id)
            return row.from_address if row is not None else None

        return self._cached((client_id, "from", ""), load)  # type: ignore[no-any-return]
