"""The ASGI middleware in front of every route: correlation id, timing, access log and metrics, and the
inputs no route can take (passgate.api.inputs).

Access logs name the route template (`/v/{token}`), never the raw path, so no link token reaches a log.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from passgate.api import inputs
from passgate.ids import new_uuid
from passgate.observability import Metrics, correlation_id


async def _problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    slug: str | None = None,
) -> None:
    body: dict[str, Any] = {
        "type": f"urn:passgate:problem:{slug or title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(raw)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


async def _invalid(send: Send, problems: list[dict[str, str]]) -> None:
    names = ", ".join(p["field"] for p in problems[:5])
    await _problem(
        send, 400, "Invalid request", f"invalid value for {names}", problems[:20], slug="validation"
    )


MAX_BODY = 2_000_000
_NOT_CHECKED = (b"multipart/", b"application/octet-stream")


def _body_problems(content_type: bytes, body: bytes) -> list[dict[str, str]]:
    content_type = content_type.lower()
    # No content type at all: the JSON routes read such a body as JSON.
    if not content_type or b"json" in content_type:
        return inputs.json_problems(body)
    if content_type.startswith(b"application/x-www-form-urlencoded"):
        return inputs.query_problems(body)
    if content_type.startswith(_NOT_CHECKED):
        return []  # files (a logo) may hold any byte; their fields are checked where they are read
    return inputs.text_problems(body)


class RequestContextMiddleware:
    """Gives every request a correlation id (echoed as x-correlation-id), times it and logs it; refuses
    bodies over MAX_BODY bytes, and any input no route can take (passgate.api.inputs): a NUL character in
    the path, a query value, a header or a body; in a JSON body, a non-finite number, an integer past 64
    bits or a lone UTF-16 surrogate."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.log = logging.getLogger("passgate.access")

    @staticmethod
    def _request_problems(scope: Scope) -> list[dict[str, str]]:
        if "\x00" in scope["path"]:
            return [{"field": "path", "message": inputs.NUL_MESSAGE}]
        return inputs.query_problems(scope.get("query_string", b"")) + inputs.header_problems(
            scope.get("headers", [])
        )

    async def _checked_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        problems = self._request_problems(scope)
        if problems:
            await _invalid(send, problems)
            return None
        if scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            return receive
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return receive  # the client went away; let the app see it
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                await _problem(send, 413, "Payload too large", f"the body is over {MAX_BODY} bytes")
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
            problems = _body_problems(content_type, body)
            if problems:
                await _invalid(send, problems)
                return None
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = new_uuid()  # also the id of the decision the request stores (UUIDv7: see passgate.ids)
        scope.setdefault("state", {})["correlation_id"] = cid
        token = correlation_id.set(cid)
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A route may have replaced the id (decision endpoints use the decision's id).
                final = scope["state"].get("correlation_id", cid)
                headers = list(message.get("headers", []))
                headers.append((b"x-correlation-id", final.encode()))
                message["headers"] = headers
            await send(message)

        try:
            replay = await self._checked_body(scope, receive, send_wrapper)
            if replay is not None:
                await self.app(scope, replay, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.latency.labels(template).observe(elapsed)
            if self.log.isEnabledFor(logging.INFO):
                self.log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                        "correlationId": scope["state"].get("correlation_id", cid),
                    },
                )
            correlation_id.reset(token)
