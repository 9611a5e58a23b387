"""Requests that are safe to retry: stored answers keyed by client, scope and key (docs/idempotency.md)."""
