"""The one place where exceptions become HTTP answers: RFC 9457 problem documents, never a trace."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from passgate import db
from passgate.auth.exceptions import InsufficientScope, InvalidClient, InvalidScope, InvalidToken
from passgate.messaging.exceptions import InvalidBranding, Unprocessable
from passgate.mfa.exceptions import SessionClosed, Throttled
from passgate.policy.exceptions import InvalidPolicySet
from passgate.problems import (
    PROBLEM_MEDIA_TYPE as PROBLEM,
)
from passgate.problems import (
    PROBLEMS,
    document,
    field_path,
    problem_for,
    validation_errors,
)

log = logging.getLogger("passgate.api")


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
    body = document(status, title, detail, slug=slug, errors=errors, extra=extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


_CEL_POSITION = re.compile(r"<input>:(\d+):(\d+)")
__all__ = ["DATABASE_RETRY_AFTER_S", "ApiProblem", "field_path", "install", "problem", "validation_errors"]


def _headers(exc: Exception, retry_after: int | None) -> dict[str, str] | None:
    """The headers a problem carries besides its body: Retry-After and the RFC 6750/7617 challenges."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if isinstance(exc, InvalidClient):
        headers["WWW-Authenticate"] = 'Basic realm="passgate"'
    elif isinstance(exc, InvalidToken):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    elif isinstance(exc, InsufficientScope):
        headers["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{exc.needed}"'
    return headers or None


def _extra(exc: Exception) -> dict[str, Any] | None:
    """Members some problems add to the document (OAuth error codes, the state of a closed session)."""
    if isinstance(exc, InvalidClient):
        return {"error": "invalid_client"}
    if isinstance(exc, InvalidScope):
        return {"error": "invalid_scope"}
    if isinstance(exc, SessionClosed):
        return {"sessionStatus": exc.status} | ({"terminationReason": exc.reason} if exc.reason else {})
    if isinstance(exc, Throttled):
        return {"locked": exc.locked}
    return None


def _detail(exc: Exception, detail: str) -> str:
    if isinstance(exc, InvalidClient):
        return "unknown client id or wrong secret"  # which of the two stays unsaid
    if isinstance(exc, InvalidToken):
        return detail or "a valid bearer token is required"
    return detail


def _errors(exc: Exception, errors: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    if isinstance(exc, Unprocessable | InvalidBranding):
        return errors  # these always carry their list, empty or not
    if isinstance(exc, InvalidPolicySet) and errors:
        where = _CEL_POSITION.search(exc.message)
        if where:  # a CEL complaint: where in the expression
            errors = [{**errors[0], "line": int(where.group(1)), "column": int(where.group(2))}]
    return errors or None


async def _domain_problem(_: Request, exc: Exception) -> JSONResponse:
    """Any exception of the table (`passgate.problems`) as its problem document."""
    found = problem_for(exc)
    if found is None:  # a handler is installed only for listed classes
        return await _unexpected(_, exc)
    spec = found.spec
    return problem(
        spec.status,
        spec.title,
        _detail(exc, found.detail),
        slug=spec.slug,
        errors=_errors(exc, found.errors),
        headers=_headers(exc, found.retry_after),
        extra=_extra(exc),
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "an unexpected error occurred; it has been logged", slug="internal")


# The database cannot be reached or cannot answer now (`db.is_unavailable`): the request did nothing, and
# the same request can be sent again shortly.
DATABASE_RETRY_AFTER_S = 2


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    if not db.is_unavailable(exc):  # installed for `db.UNAVAILABLE_ERRORS` only; anything else is a bug
        return await _unexpected(request, exc)
    log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return problem(
        503,
        "Service unavailable",
        "the database cannot be reached; nothing was changed, try again shortly",
        slug="unavailable",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


def install(app: FastAPI) -> None:
    for exc_type in PROBLEMS:
        app.add_exception_handler(exc_type, _domain_problem)
    # Starlette finds a handler by the exception's class: one per class the database layer names.
    for exc_type in db.UNAVAILABLE_ERRORS:
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

    app.add_exception_handler(Exception, _unexpected)
