"""Annotated dependencies: the registry and the authenticated client. Routes open their units of work
themselves, in the thread pool (`db.transaction`), rather than through a dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from passgate.auth.exceptions import InsufficientScope, InvalidToken
from passgate.auth.services import ADMIN_SCOPE, INTEGRATION_SCOPE
from passgate.auth.tokens import TokenClaims
from passgate.bootstrap import Registry


async def get_registry(request: Request) -> Registry:
    # async on purpose: FastAPI would run a plain function in the thread pool, a hop on every request.
    return request.app.state.registry  # type: ignore[no-any-return]


RegistryDep = Annotated[Registry, Depends(get_registry)]


@dataclass(frozen=True)
class Principal:
    client_id: str
    key_id: str
    scopes: frozenset[str]


def bearer_claims(request: Request, registry: Registry, needed: str) -> TokenClaims:
    """The claims of the request's bearer token: a valid token, of a live API key, with `needed` among its
    scopes (else InvalidToken or InsufficientScope). `principal` is these claims as the routes take them;
    the decision routes, which need only the client's id, read them here."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not token or scheme.lower() != "bearer":
        raise InvalidToken("a bearer token is required (POST /oauth2/token)")
    claims = registry.tokens.verify(token, registry.clock.now())
    if not registry.key_status.is_active(claims.key_id, claims.client_id):
        raise InvalidToken("the API key behind this token was revoked")
    if needed not in claims.scopes:
        raise InsufficientScope(needed)
    return claims


def principal(request: Request, registry: Registry, needed: str) -> Principal:
    claims = bearer_claims(request, registry, needed)
    return Principal(claims.client_id, claims.key_id, claims.scopes)


async def integration_principal(request: Request) -> Principal:
    return principal(request, request.app.state.registry, INTEGRATION_SCOPE)


async def admin_principal(request: Request) -> Principal:
    return principal(request, request.app.state.registry, ADMIN_SCOPE)


IntegrationAuth = Annotated[Principal, Depends(integration_principal)]
AdminAuth = Annotated[Principal, Depends(admin_principal)]
