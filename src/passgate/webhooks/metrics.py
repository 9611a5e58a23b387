"""The webhooks' Prometheus metrics: what the outbox writes and what the worker's tries come to."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from passgate.observability import Metrics


class WebhookMetrics:
    """Per-endpoint counters and latency on the app's Prometheus registry (besides the global counter)."""

    def __init__(self, metrics: Metrics) -> None:
        self.global_deliveries = metrics.webhook_deliveries
        self.deliveries = Counter(
            "passgate_webhook_endpoint_deliveries_total",
            "Webhook delivery tries per endpoint by result (delivered, retry, failed)",
            ["client", "endpoint", "result"],
            registry=metrics.registry,
        )
        self.latency = Histogram(
            "passgate_webhook_delivery_seconds",
            "Webhook delivery latency per endpoint (request sent to answer read)",
            ["client", "endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
            registry=metrics.registry,
        )
        self.events = Counter(
            "passgate_webhook_events_total",
            "Webhook events written to the outbox by event type",
            ["event_type"],
            registry=metrics.registry,
        )
        self.disabled = Counter(
            "passgate_webhook_endpoints_disabled_total",
            "Endpoints disabled automatically, by reason (GONE, FAILING)",
            ["reason"],
            registry=metrics.registry,
        )
