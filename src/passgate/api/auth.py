"""POST /oauth2/token (client credentials) and the JWKS that verifies the tokens."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import RegistryDep
from passgate.api.errors import ApiProblem
from passgate.auth.exceptions import InvalidClient
from passgate.auth.services import TokenAttempts, grant_client_credentials
from passgate.db import transaction

router = APIRouter(tags=["authentication"])

TOKEN_RESPONSE_EXAMPLE = {
    "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiJ9.eyJzdWIiOiJjbF8uLi4ifQ.c2ln",
    "token_type": "Bearer",
    "expires_in": 1200,
    "scope": "k1_integration_api",
}


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("malformed Basic credentials")
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return unquote(client_id), unquote(secret)


@router.post(
    "/oauth2/token",
    summary="Get an access token (OAuth2 client credentials)",
    description=(
        "Send `Authorization: Basic base64(clientId:apiKey)` and a form body "
        "`grant_type=client_credentials[&scope=k1_integration_api|admin]`. The token lives 20 minutes."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "scope": {"type": "string", "example": "k1_integration_api"},
                        },
                    },
                    "example": {"grant_type": "client_credentials", "scope": "k1_integration_api"},
                }
            },
        }
    },
    responses={
        200: {"content": {"application/json": {"example": TOKEN_RESPONSE_EXAMPLE}}},
        429: {"description": "too many wrong secrets from this address, or for this client; see Retry-After"},
    },
)
async def token(request: Request, registry: RegistryDep) -> JSONResponse:
    settings = registry.settings
    attempts = TokenAttempts(
        registry.limiter, settings.oauth_failure_rates_ip, settings.oauth_failure_rates_client
    )
    ip = request.client.host if request.client else "unknown"
    attempts.check_address(ip)
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/x-www-form-urlencoded"):
        raise ApiProblem(
            400,
            "Invalid request",
            "send the token request as application/x-www-form-urlencoded",
            errors=[{"field": "body", "message": "expected a form body"}],
            slug="validation",
            extra={"error": "invalid_request"},
        )
    form = await request.form()
    grant_type = form.get("grant_type")
    if grant_type != "client_credentials":
        raise ApiProblem(
            400,
            "Unsupported grant type",
            "grant_type must be client_credentials",
            errors=[{"field": "grant_type", "message": "must be client_credentials"}],
            slug="unsupported-grant-type",
            extra={"error": "unsupported_grant_type"},
        )
    try:
        creds = _basic_credentials(request.headers.get("authorization", ""))
    except InvalidClient:
        attempts.failed(ip, None)
        raise
    if creds is None:
        form_id, form_secret = form.get("client_id"), form.get("client_secret")
        if isinstance(form_id, str) and isinstance(form_secret, str):
            creds = (form_id, form_secret)
    if creds is None:
        attempts.failed(ip, None)
        raise InvalidClient("client credentials are required")
    attempts.check_client(creds[0], ip)
    scope = form.get("scope")
    scope_str = scope if isinstance(scope, str) and scope.strip() else None

    def grant() -> Any:
        with transaction(registry.sessions) as session:
            return grant_client_credentials(
                session, registry.tokens, creds[0], creds[1], scope_str, registry.clock.now()
            )

    try:
        issued = await run_in_threadpool(grant)
    except InvalidClient:
        attempts.failed(ip, creds[0])
        raise
    attempts.succeeded(creds[0], ip)
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": issued.scope,
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@router.get("/.well-known/jwks.json", summary="Public keys that verify Passgate access tokens")
async def jwks(registry: RegistryDep) -> JSONResponse:
    return JSONResponse(registry.tokens.jwks(), headers={"Cache-Control": "public, max-age=300"})
