"""Where templates and branding come from: the client's own, else the built-ins."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from passgate.auth.models import Client
from passgate.messaging.templates import Brand, MessageTemplate, builtin_templates


class TemplateSource(Protocol):
    def get(self, session: Session, client_id: str, name: str) -> MessageTemplate | None: ...

    def brand(self, session: Session, client_id: str) -> Brand: ...


class BuiltinTemplateSource:
    """Built-in templates by name and a brand made of the client's name."""

    def get(self, session: Session, client_id: str, name: str) -> MessageTemplate | None:
        return builtin_templates().get(name)

    def brand(self, session: Session, client_id: str) -> Brand:
        client = session.get(Client, client_id)
        return Brand(company_name=(client.name if client else "Passgate")[:100] or "Passgate")
