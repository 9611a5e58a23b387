"""Requests that are safe to retry, on the HTTP side (docs/idempotency.md).

- `InFlight`: a duplicate decision that arrives while the first is being decided in this process waits
  for the first's answer; `decide_once` runs a decision's unit of work, and again (bounded) when it lost
  the race for its inquiry's record to a duplicate elsewhere: the next run replays the stored answer.
- `OneAtATime`: identical Verify API starts in this process run one after another until one has left a
  session pending; the others then run together and are handed that session (its pending reuse).
- `IdempotencyKeyMiddleware`: the `Idempotency-Key` header on every management POST (`/manage/v1/...`),
  after the IETF draft "The Idempotency-Key HTTP Header Field": the first request's answer is stored and
  replayed (with `Idempotent-Replayed: true`) to a repeat with the same key and the same request; the same
  key with another request is a 422, a repeat while the first still runs a 409 with Retry-After.
- `document`: the header and those answers in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from passgate import db
from passgate.api.deps import principal
from passgate.api.errors import DATABASE_RETRY_AFTER_S, problem
from passgate.auth.exceptions import AuthError
from passgate.auth.services import ADMIN_SCOPE
from passgate.idempotency import services
from passgate.idempotency.exceptions import IdempotencyError, InquiryReused, InvalidKey, RequestInProgress
from passgate.idempotency.services import StoredAnswer
from passgate.problems import problem_for

T = TypeVar("T")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MANAGE_PREFIX = "/manage/v1/"
MAX_KEY_LENGTH = 255
# Answers over this size are not kept (the request is then not protected against a repeat).
MAX_STORED_BODY = 1_000_000
# Answers that say "try again" are not kept: a repeat runs the request again.
NOT_KEPT = frozenset({401, 403, 408, 429})
# The response headers kept and replayed with an answer (x-correlation-id is kept apart).
KEPT_HEADERS = frozenset({"content-type", "location", "etag", "cache-control", "link"})
# A decision unit that lost its inquiry's record to a concurrent duplicate runs again at most this often.
DECISION_TRIES = 3


class InFlight:
    """The decisions this process is making, by (client, endpoint, inquiryId). A duplicate that arrives
    while the first is being decided waits for the first's answer (at most `WAIT_S`) instead of deciding
    too: it neither runs the policy nor spends the destination's send limits, and it never makes the
    first's batch fail on the record's primary key. (A duplicate in another process meets the first at
    the primary key instead: see `decide_once`.)"""

    WAIT_S = 5.0

    def __init__(self) -> None:
        self._running: dict[tuple[str, str, str], tuple[str, asyncio.Future[StoredAnswer | None]]] = {}

    async def decide(
        self,
        key: tuple[str, str, str],
        hashed: str,
        run: Callable[[], Awaitable[tuple[StoredAnswer, T | None]]],
    ) -> tuple[StoredAnswer, T | None]:
        """`run()` (through `decide_once`), or the answer of the same request already running."""
        found = self._running.get(key)
        if found is not None:
            first_hash, first = found
            if first_hash != hashed:
                raise InquiryReused()
            try:
                answer = await asyncio.wait_for(asyncio.shield(first), self.WAIT_S)
            except TimeoutError:
                raise RequestInProgress("inquiryId") from None
            if answer is not None:
                return answer, None
            # The first failed (its caller got the error): this one decides on its own.
            return await decide_once(run)
        future: asyncio.Future[StoredAnswer | None] = asyncio.get_running_loop().create_future()
        self._running[key] = (hashed, future)
        answer = None
        try:
            # decide_once's first try written out: one coroutine less to resume on every decision.
            try:
                result = await run()
            except Exception as exc:
                if not services.is_duplicate_record(exc):
                    raise
                result = await decide_once(run, DECISION_TRIES - 1)
            answer = result[0]
            return result
        finally:
            if self._running.get(key, (None, None))[1] is future:
                del self._running[key]
            future.set_result(answer)


class OneAtATime:
    """Runs of the same key one at a time, until one has `settled` it; those waiting then run together.

    Two identical starts in one group-commit batch would each make a session (a unit does not see the
    rows the others of its batch write at commit), and so would two whose reads both came before either
    commit. Here a start waits while another of the same key runs; once that one has committed a session
    (settled: a new one or a pending one), the waiting ones run at once, side by side, and each finds that
    session pending (`MfaService` pending reuse: nothing sent, one timeline row). When it settled nothing
    (refused, or failed), the next one runs alone, and so on. Keys are the caller's (`mfa.verify.start_key`)."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[bool]] = {}

    async def run(self, key: Hashable, run: Callable[[], Awaitable[T]], settled: Callable[[T], bool]) -> T:
        while (first := self._running.get(key)) is not None:
            if await asyncio.shield(first):
                return await run()
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        done = False
        try:
            result = await run()
            done = settled(result)
            return result
        finally:
            del self._running[key]
            future.set_result(done)


async def decide_once(run: Callable[[], Awaitable[T]], tries: int = DECISION_TRIES) -> T:
    """`await run()`, again when it failed because a concurrent duplicate (in another process, or one
    that arrived after the first was decided but before it committed) stored its inquiry's record first:
    the next run finds that record and replays its answer. RequestInProgress (409, Retry-After) if the
    race is lost every time (`tries` runs in all)."""
    for _ in range(tries):
        try:
            return await run()
        except Exception as exc:
            if not services.is_duplicate_record(exc):
                raise
    raise RequestInProgress("inquiryId")


def parse_key(raw: str) -> str:
    """The key of the header: a token, or an RFC 8941 sf-string (quoted) as the draft writes it."""
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or len(key) > MAX_KEY_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise InvalidKey(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


def management_request_hash(method: str, path: str, query: bytes, content_type: str, body: bytes) -> str:
    """What a repeat must match: method, path with its query, and the body — a JSON body by its
    canonical form (services.request_hash: whitespace and key order do not count), any other by its bytes."""
    body_hash: str | None = None
    if body and (not content_type or "json" in content_type.lower()):
        try:
            body_hash = services.request_hash(json.loads(body))
        except ValueError:
            body_hash = None
    if body_hash is None:
        body_hash = hashlib.sha256(body).hexdigest()
    line = f"{method}\n{path}?{query.decode('latin-1')}\n{body_hash}"
    return hashlib.sha256(line.encode()).hexdigest()


async def _answer_problem(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    found = problem_for(exc)
    if found is None:
        raise exc
    headers = {"Retry-After": str(found.retry_after)} if found.retry_after is not None else None
    response = problem(
        found.status,
        found.spec.title,
        found.detail,
        slug=found.spec.slug,
        errors=found.errors or None,
        headers=headers,
    )
    await response(scope, receive, send)


class IdempotencyKeyMiddleware:
    """The Idempotency-Key header on management POSTs (see the module docstring). Requests without the
    header, other methods and other paths pass through untouched; so does a request whose bearer token
    is not good for the management API (the route answers it 401 or 403, and nothing is stored)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith(MANAGE_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        raw = None
        for name, value in scope.get("headers", ()):
            if name == b"idempotency-key":
                raw = value.decode("latin-1")
                break
        if raw is None:
            await self.app(scope, receive, send)
            return
        try:
            key = parse_key(raw)
        except InvalidKey as exc:
            await _answer_problem(scope, receive, send, exc)
            return
        registry = scope["app"].state.registry
        request = Request(scope)
        try:
            client_id = principal(request, registry, ADMIN_SCOPE).client_id
        except AuthError:
            await self.app(scope, receive, send)
            return

        body, receive = await _buffered(receive)
        hashed = management_request_hash(
            scope["method"],
            scope["path"],
            scope.get("query_string", b""),
            request.headers.get("content-type", ""),
            body,
        )
        state = scope.setdefault("state", {})
        now = registry.clock.now()
        try:
            stored = await asyncio.to_thread(
                services.begin_request,
                registry.sessions,
                registry.keyring,
                client_id,
                key,
                hashed,
                state.get("correlation_id", ""),
                now,
            )
        except IdempotencyError as exc:
            await _answer_problem(scope, receive, send, exc)
            return
        except Exception as exc:
            if not db.is_unavailable(exc):
                raise
            response = problem(
                503,
                "Service unavailable",
                "the database cannot be reached; nothing was changed, try again shortly",
                slug="unavailable",
                headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
            )
            await response(scope, receive, send)
            return
        if stored is not None:
            if stored.correlation_id:
                state["correlation_id"] = stored.correlation_id
            headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in stored.headers]
            headers.append((b"content-length", str(len(stored.body)).encode()))
            headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
            await send({"type": "http.response.start", "status": stored.status, "headers": headers})
            await send({"type": "http.response.body", "body": stored.body})
            return

        status = 500
        kept: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        size = 0

        async def capture(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.decode("latin-1").lower() in KEPT_HEADERS:
                        kept.append((name.decode("latin-1").lower(), value.decode("latin-1")))
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
                if size <= MAX_STORED_BODY:
                    chunks.append(message.get("body", b""))
            await send(message)

        finished = False
        try:
            await self.app(scope, receive, capture)
            if status < 500 and status not in NOT_KEPT and size <= MAX_STORED_BODY:
                finished = await asyncio.to_thread(
                    services.finish_request,
                    registry.sessions,
                    registry.keyring,
                    client_id,
                    key,
                    hashed,
                    status,
                    kept,
                    b"".join(chunks),
                )
        finally:
            if not finished:
                await asyncio.to_thread(services.release_request, registry.sessions, client_id, key, hashed)


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The request's whole body, and a `receive` that gives it to the app again."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), receive
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


# -- the OpenAPI document --------------------------------------------------------------------------------

PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        'Makes the request safe to retry (IETF draft "The Idempotency-Key HTTP Header Field"): a unique '
        "value per operation, such as a UUID, 1 to 255 printable ASCII characters (optionally quoted). "
        "For 24 hours a repeat with the same key and the same request (method, path, body) gets the first "
        "answer again, with `Idempotent-Replayed: true`; the same key with a different request is "
        "answered 422, and a repeat while the first is still running 409 with Retry-After."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    "example": "5f0c8a52-7d1e-4c39-9a0e-2d4b7e3f6a10",
}


def document(spec: dict[str, Any]) -> dict[str, Any]:
    """The header on every management POST, with the 409 and 422 it may answer."""
    from passgate.api.openapi import problem_response

    for path, item in spec.get("paths", {}).items():
        operation = item.get("post")
        if not path.startswith(MANAGE_PREFIX) or operation is None:
            continue
        parameters = operation.setdefault("parameters", [])
        if not any(p.get("name") == HEADER for p in parameters):
            parameters.append(dict(PARAMETER))
        responses = operation.setdefault("responses", {})
        for status in ("409", "422"):
            responses.setdefault(status, problem_response(int(status), None))
        operation["responses"] = dict(sorted(responses.items()))
    return spec


def install(app: FastAPI) -> None:
    """The middleware, and the header in the OpenAPI document (after `api.openapi.install`)."""
    app.add_middleware(IdempotencyKeyMiddleware)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
