"""Structured JSON logs with the correlation id, and Prometheus metrics (fed by passgate.api.middleware)."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
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

