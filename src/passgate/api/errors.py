"""The one place where exceptions become HTTP answers: RFC 9457 problem documents, never a trace."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import InterfaceError as PgInterfaceError
from psycopg import OperationalError as PgOperationalError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from passgate.auth.exceptions import (
    InsufficientScope,
    InvalidClient,
    InvalidScope,
    InvalidToken,
    NotFound,
    TooManyFailedAttempts,
    TooManyKeys,
)
from passgate.messaging.exceptions import (
    BuiltinTemplateReadOnly,
    InvalidBranding,
    InvalidTemplate,
    TemplateExists,
    TemplateNotFound,
    TestSendRateLimited,
    TooManyTemplates,
    Unprocessable,
)
from passgate.messaging.render_pool import RenderTimeout
from passgate.mfa.exceptions import (
    InvalidDestination,
    SendLimitReached,
    SendRateLimited,
    SessionClosed,
    SessionNotFound,
    Throttled,
    WrongMethod,
)
from passgate.policy.exceptions import InvalidPolicySet, NoActiveVersion, VersionNotFound
from passgate.policy.lists import ImportTooLarge, ListExists, ListNotFound
from passgate.webhooks.exceptions import (
    EndpointDisabled,
    EndpointNotFound,
    EventNotFound,
    InvalidWebhookUrl,
    TooManyEndpoints,
    WrongSignatureScheme,
)

log = logging.getLogger("passgate.api")
PROBLEM = "application/problem+json"


class ApiProblem(Exception):
    """Raised by routes for answers that need no domain exception of their own."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.slug = slug or title.lower().replace(" ", "-")
        self.headers = headers
        self.extra = extra or {}


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:passgate:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


_CEL_POSITION = re.compile(r"<input>:(\d+):(\d+)")
_UNION_TAGS = {"str", "bool", "int", "float", "constrained-str", "list", "dict", "none", "literal"}


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in _UNION_TAGS or part.startswith("function-") or "[" in part)


def field_path(loc: Sequence[Any], strip_tag: bool = False) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    if strip_tag and len(parts) > 1 and _is_tag(parts[-1]):
        parts.pop()
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


_PATTERN_MESSAGES = {
    "^[^-]+$": "must not contain '-'",
    "^[A-Za-z0-9_-]{1,32}$": "must be 1 to 32 characters of A-Z, a-z, 0-9, '_' and '-'",
    "^[A-Za-z0-9_-]{1,64}$": "must be an id: 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
    "^[^\\x00]*$": "must not contain a NUL character",
}


def _message(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "string_pattern_mismatch":
        pattern = str((err.get("ctx") or {}).get("pattern", ""))
        return _PATTERN_MESSAGES.get(pattern, msg)
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err.get("type") == "json_invalid":
        return "the body is not valid JSON"
    if err.get("type") == "model_attributes_type" or err.get("type") == "dict_type":
        return "must be a JSON object"
    return msg


def validation_errors(raw: Sequence[Any]) -> list[dict[str, str]]:
    """One entry per field; for union-typed fields the most specific complaint wins over 'wrong type'."""
    # Pydantic reports a union-typed value once per member, each loc ending in the member's tag
    # ("str", "int", ...); such a group is one field. A lone error ending in a tag-like name is a field.
    prefixes: dict[tuple[Any, ...], int] = {}
    for err in raw:
        loc = tuple(err.get("loc", ()))
        if loc and _is_tag(loc[-1]):
            prefixes[loc[:-1]] = prefixes.get(loc[:-1], 0) + 1
    by_field: dict[str, dict[str, Any]] = {}
    for err in raw:
        loc = tuple(err.get("loc", ()))
        path = field_path(loc, strip_tag=prefixes.get(loc[:-1], 0) > 1)
        kind = str(err.get("type", ""))
        current = by_field.get(path)
        generic = kind.endswith("_type") or kind.endswith("_parsing")
        if current is None or (current["generic"] and not generic):
            by_field[path] = {"generic": generic, "message": _message(err)}
    return [{"field": f, "message": v["message"]} for f, v in by_field.items()]


@dataclass(frozen=True)
class Rule:
    """How a domain exception is answered: status, title, problem slug, and optionally the field it names
    and whether it carries a Retry-After (its `retry_after` attribute)."""

    status: int
    title: str
    slug: str
    field: str | None = None
    retry_after: bool = False


RULES: dict[type[Exception], Rule] = {
    NotFound: Rule(404, "Not found", "not-found"),
    VersionNotFound: Rule(404, "Not found", "not-found"),
    ListNotFound: Rule(404, "Not found", "not-found"),
    TemplateNotFound: Rule(404, "Not found", "not-found"),
    SessionNotFound: Rule(404, "Not found", "not-found"),
    EndpointNotFound: Rule(404, "Not found", "not-found"),
    EventNotFound: Rule(404, "Not found", "not-found", field="eventId"),
    TooManyKeys: Rule(409, "Too many keys", "too-many-keys"),
    NoActiveVersion: Rule(409, "No active policy set", "no-active-version"),
    ListExists: Rule(409, "Conflict", "conflict", field="name"),
    TemplateExists: Rule(409, "Conflict", "conflict", field="name"),
    BuiltinTemplateReadOnly: Rule(409, "Built-in template", "builtin-template"),
    TooManyTemplates: Rule(409, "Too many templates", "too-many-templates"),
    WrongMethod: Rule(409, "Wrong verification method", "wrong-method"),
    EndpointDisabled: Rule(409, "Endpoint disabled", "endpoint-disabled"),
    WrongSignatureScheme: Rule(409, "Wrong signature scheme", "wrong-signature-scheme"),
    TooManyEndpoints: Rule(409, "Too many webhook endpoints", "too-many-endpoints"),
    InvalidDestination: Rule(400, "Invalid request", "validation"),
    ImportTooLarge: Rule(413, "Payload too large", "too-large", field="entries"),
    SendLimitReached: Rule(429, "Send limit reached", "send-limit"),
    SendRateLimited: Rule(429, "Rate limited", "rate-limited", retry_after=True),
    TestSendRateLimited: Rule(429, "Rate limited", "rate-limited", retry_after=True),
    RenderTimeout: Rule(503, "Busy", "rendering-busy", retry_after=True),
    TooManyFailedAttempts: Rule(429, "Too many failed attempts", "throttled", retry_after=True),
}


def _by_rule(rule: Rule) -> Any:
    async def handler(_: Request, exc: Exception) -> JSONResponse:
        detail = str(exc)
        field = rule.field or getattr(exc, "field", None)
        return problem(
            rule.status,
            rule.title,
            detail,
            slug=rule.slug,
            errors=[{"field": field, "message": detail}] if field else None,
            headers={"Retry-After": str(getattr(exc, "retry_after", 1))} if rule.retry_after else None,
        )

    return handler


# The database cannot be reached or cannot answer now (connection refused or lost, the file unreadable,
# the pool exhausted, SQLite's lock held past its timeout): the request did nothing (its transaction rolled
# back), and the same request can be sent again. The pool replaces broken connections (pre-ping on
# PostgreSQL), so the service recovers by itself once the database is back. Some statements run on the
# driver's own cursor (db.HotStatement), whose errors reach here unwrapped.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeout,
    sqlite3.OperationalError,
    PgOperationalError,
    PgInterfaceError,
)
DATABASE_RETRY_AFTER_S = 2


async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return problem(
        503,
        "Service unavailable",
        "the database cannot be reached; nothing was changed, try again shortly",
        slug="unavailable",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


def install(app: FastAPI) -> None:
    for exc_type, rule in RULES.items():
        app.add_exception_handler(exc_type, _by_rule(rule))
    for exc_type in DATABASE_UNAVAILABLE:
        app.add_exception_handler(exc_type, _database_unavailable)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        names = ", ".join(e["field"] for e in errors[:5])
        return problem(400, "Invalid request", f"invalid value for {names}", slug="validation", errors=errors)

    @app.exception_handler(ApiProblem)
    async def _api_problem(_: Request, exc: ApiProblem) -> JSONResponse:
        return problem(
            exc.status,
            exc.title,
            exc.detail,
            slug=exc.slug,
            errors=exc.errors,
            headers=exc.headers,
            extra=exc.extra,
        )

    @app.exception_handler(InvalidClient)
    async def _invalid_client(_: Request, exc: InvalidClient) -> JSONResponse:
        return problem(
            401,
            "Invalid client",
            "unknown client id or wrong secret",
            slug="invalid-client",
            headers={"WWW-Authenticate": 'Basic realm="passgate"'},
            extra={"error": "invalid_client"},
        )

    @app.exception_handler(InvalidScope)
    async def _invalid_scope(_: Request, exc: InvalidScope) -> JSONResponse:
        return problem(
            400,
            "Invalid scope",
            str(exc),
            slug="invalid-scope",
            errors=[{"field": "scope", "message": str(exc)}],
            extra={"error": "invalid_scope"},
        )

    @app.exception_handler(InvalidToken)
    async def _invalid_token(_: Request, exc: InvalidToken) -> JSONResponse:
        return problem(
            401,
            "Unauthorized",
            str(exc) or "a valid bearer token is required",
            slug="unauthorized",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    @app.exception_handler(InsufficientScope)
    async def _insufficient_scope(_: Request, exc: InsufficientScope) -> JSONResponse:
        return problem(
            403,
            "Forbidden",
            str(exc),
            slug="insufficient-scope",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{exc.needed}"'},
        )

    @app.exception_handler(InvalidPolicySet)
    async def _invalid_set(_: Request, exc: InvalidPolicySet) -> JSONResponse:
        entry: dict[str, Any] = {"field": exc.location, "message": exc.message}
        where = _CEL_POSITION.search(exc.message)
        if where:
            entry["line"], entry["column"] = int(where.group(1)), int(where.group(2))
        return problem(422, "Invalid policy set", str(exc), slug="invalid-policy-set", errors=[entry])

    @app.exception_handler(Unprocessable)
    async def _unprocessable(_: Request, exc: Unprocessable) -> JSONResponse:
        # errors[] go through `extra`: template problems carry an int `line` besides field and message.
        if isinstance(exc, InvalidTemplate):
            return problem(
                422, "Invalid template", str(exc), slug="invalid-template", extra={"errors": exc.errors}
            )
        return problem(
            422, "Unprocessable request", str(exc), slug="unprocessable", extra={"errors": exc.errors}
        )

    @app.exception_handler(InvalidBranding)
    async def _invalid_branding(_: Request, exc: InvalidBranding) -> JSONResponse:
        return problem(
            422, "Invalid branding", str(exc), slug="invalid-branding", extra={"errors": exc.errors}
        )

    @app.exception_handler(SessionClosed)
    async def _closed(_: Request, exc: SessionClosed) -> JSONResponse:
        extra: dict[str, Any] = {"sessionStatus": exc.status}
        if exc.reason:
            extra["terminationReason"] = exc.reason
        return problem(409, "Session closed", str(exc), slug="session-closed", extra=extra)

    @app.exception_handler(Throttled)
    async def _throttled(_: Request, exc: Throttled) -> JSONResponse:
        return problem(
            429,
            "Too many failed attempts",
            str(exc),
            slug="throttled",
            headers={"Retry-After": str(exc.retry_after)},
            extra={"locked": exc.locked},
        )

    @app.exception_handler(InvalidWebhookUrl)
    async def _webhook_url(_: Request, exc: InvalidWebhookUrl) -> JSONResponse:
        return problem(
            422,
            "Invalid webhook URL",
            exc.message,
            slug="invalid-webhook-url",
            errors=[{"field": exc.field, "message": exc.message}],
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}
        title = titles.get(exc.status_code, "Error")
        return problem(
            exc.status_code,
            title,
            str(exc.detail),
            slug=title.lower().replace(" ", "-"),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(
            500, "Internal error", "an unexpected error occurred; it has been logged", slug="internal"
        )
