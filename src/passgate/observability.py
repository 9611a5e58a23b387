"""Structured JSON logs with the correlation id, Prometheus metrics and the ASGI middleware feeding both.

Access logs name the route template (`/v/{token}`), never the raw path, so no link token reaches a log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from passgate.api import inputs
from passgate.ids import new_uuid

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = correlation_id.get()
        if cid:
            out["correlationId"] = cid
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log prints raw paths (which may hold link tokens); ours logs route templates.
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic announces each of its autogenerate plugins at INFO on every start: noise before the banner
    # (and before a one-line refusal), nothing an operator acts on.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


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


class _GroupCommitCollector:
    """Reads the group committer's counters at scrape time (nothing is counted twice on the hot path)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        yield CounterMetricFamily(
            "passgate_group_commit_batches",
            "Transactions committed by the group committer",
            value=self.source.batches,
        )
        yield CounterMetricFamily(
            "passgate_group_commit_units",
            "Units of work (decisions) committed by the group committer",
            value=self.source.units,
        )
        yield CounterMetricFamily(
            "passgate_group_commit_lock_retries",
            "Batches put off because another process held SQLite's write lock (tried again shortly)",
            value=self.source.lock_retries,
        )


class Metrics:
    """Prometheus collectors on a registry of their own (one per app, so tests do not collide)."""

    def decision_counter(self, event_type: str, decision: str) -> Any:
        """The child counter for these labels, looked up once (labels() costs more than inc())."""
        key = (event_type, decision)
        child = self._decision_children.get(key)
        if child is None:
            child = self._decision_children[key] = self.decisions.labels(event_type, decision)
        return child

    def rate_limit_outage(self, scope: str, outcome: str) -> None:
        """Counts a rate-limit check that could not reach its storage (passgate.ratelimit.OutageHook)."""
        self.rate_limit_outages.labels(scope, outcome).inc()

    def watch_group_commit(self, committer: Any) -> None:
        self.registry.register(_GroupCommitCollector(committer))

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._decision_children: dict[tuple[str, str], Any] = {}
        self.requests = Counter(
            "passgate_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "passgate_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.decisions = Counter(
            "passgate_decisions_total",
            "Decisions by event type and outcome",
            ["event_type", "decision"],
            registry=self.registry,
        )
        self.challenges = Counter(
            "passgate_challenges_total",
            "Challenges started by channel and type",
            ["channel", "type"],
            registry=self.registry,
        )
        self.status_changes = Counter(
            "passgate_mfa_status_changes_total",
            "MFA session status changes",
            ["status"],
            registry=self.registry,
        )
        self.messages = Counter(
            "passgate_messages_total",
            "Message send attempts by channel and result",
            ["channel", "result"],
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "passgate_webhook_deliveries_total",
            "Webhook delivery attempts by result",
            ["result"],
            registry=self.registry,
        )
        self.rate_limit_outages = Counter(
            "passgate_rate_limit_outages_total",
            "Rate-limit checks that could not reach Redis, by limit and what was done (open: admitted, "
            "closed: refused, clear-skipped)",
            ["scope", "outcome"],
            registry=self.registry,
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
