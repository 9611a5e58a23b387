"""Requests that are safe to retry (docs/idempotency.md), on SQLite and PostgreSQL.

Decisions: the same inquiryId from the same client on the same endpoint within 24 hours gets the stored
answer (same status, body and x-correlation-id) and starts nothing: no second decision, session, message
(checked at a real SMTP server) or webhook event. Management POSTs: the Idempotency-Key header.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from passgate.api.idempotency import management_request_hash
from passgate.bootstrap import Registry, build_registry
from passgate.clock import FrozenClock
from passgate.config import Settings
from passgate.db import transaction
from passgate.idempotency import services as idempotency
from passgate.idempotency.models import IdempotencyRecord
from passgate.main import create_app
from passgate.messaging.models import Message
from passgate.mfa.models import MfaSession
from passgate.policy.models import Decision
from passgate.webhooks.models import WebhookEvent
from tests.factories import Tenant, login_body
from tests.functional.mfa.conftest import drain
from tests.servers import HttpReceiver, SmtpSink

EMAIL_LINK = {"mfaTemplateName": "email-link"}


@pytest.fixture
def settings(settings: Settings, smtp: SmtpSink) -> Settings:
    return settings.model_copy(
        update={
            "smtp_url": smtp.url,
            "mail_from": "Acme <no-reply@acme.example>",
            "webhook_allow_private": True,
        }
    )


@pytest.fixture
def hooked(http: TestClient, tenant: Tenant, hooks_server: HttpReceiver) -> Tenant:
    """The tenant with a webhook endpoint for every event (so every decision and status change writes one)."""
    body = {
        "url": f"{hooks_server.url}/hooks",
        "events": ["MFA.StatusUpdate", "Verification.StatusUpdate", "Decision.Created"],
        "signatureScheme": "standard-webhooks",
    }
    r = http.post("/manage/v1/webhooks", json=body, headers=tenant.admin_headers)
    assert r.status_code == 201, r.text
    return tenant


def counts(registry: Registry, tenant: Tenant, inquiry_id: str) -> dict[str, int]:
    """Rows the client has: decisions of the inquiry, and all its sessions, messages and webhook events."""
    with transaction(registry.sessions) as session:

        def count(model: Any, *where: Any) -> int:
            return int(
                session.scalar(
                    select(func.count()).select_from(model).where(model.client_id == tenant.client_id, *where)
                )
                or 0
            )

        return {
            "decisions": count(Decision, Decision.inquiry_id == inquiry_id),
            "sessions": count(MfaSession),
            "messages": count(Message),
            "events": count(WebhookEvent),
        }


def mails_to(registry: Registry, smtp: SmtpSink, body: dict[str, Any]) -> int:
    """Mails the SMTP server received for the request's address, once the outbox is drained."""
    address = body["person"]["emailAddress"]
    drain(registry)
    smtp.wait_for(1)
    drain(registry)
    return sum(1 for mail in smtp.received if mail.rcpt_tos == [address])


def post(http: TestClient, tenant: Tenant, body: Any, path: str = "/login/v2") -> httpx.Response:
    return http.post(path, json=body, headers=tenant.headers)


# -- decisions ----------------------------------------------------------------------------------------


def test_a_retried_challenge_gets_the_same_answer_and_starts_nothing(
    http: TestClient, hooked: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    tenant = hooked
    body = login_body(strategy=EMAIL_LINK)
    first = post(http, tenant, body)
    assert first.status_code == 200, first.text
    assert first.json()["decision"] == "CHALLENGE" and first.json()["mfa"]["status"] in (
        "UNKNOWN",
        "MESSAGE_SENT",
    )
    before = counts(registry, tenant, body["inquiryId"])
    assert before["decisions"] == 1 and before["sessions"] == 1 and before["messages"] == 1
    assert before["events"] >= 1

    # The same body again, and the same request written another way (key order, whitespace).
    again = post(http, tenant, body)
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=3).encode()
    other_spelling = http.post(
        "/login/v2", content=reordered, headers={**tenant.headers, "content-type": "application/json"}
    )
    for retry in (again, other_spelling):
        assert retry.status_code == 200
        assert retry.content == first.content
        assert retry.headers["x-correlation-id"] == first.headers["x-correlation-id"]
        assert retry.headers["content-type"] == first.headers["content-type"]
    assert counts(registry, tenant, body["inquiryId"]) == before

    # One mail at the SMTP server, whatever the retries.
    assert mails_to(registry, smtp, body) == 1
    # The decision row's id is the answer's correlation id (the client's own: other tests' clients may
    # have used the same inquiryId in this database).
    with transaction(registry.sessions) as session:
        ids = session.scalars(
            select(Decision.id).where(
                Decision.client_id == tenant.client_id, Decision.inquiry_id == body["inquiryId"]
            )
        ).all()
    assert ids == [first.headers["x-correlation-id"]]


def test_the_same_inquiry_with_another_body_is_a_conflict_naming_inquiry_id(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    body = login_body(strategy=EMAIL_LINK)
    assert post(http, tenant, body).status_code == 200
    before = counts(registry, tenant, body["inquiryId"])
    changed = {**body, "userIp": "198.51.100.9"}
    r = post(http, tenant, changed)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "urn:passgate:problem:inquiry-reused"
    assert [e["field"] for e in problem["errors"]] == ["inquiryId"]
    assert counts(registry, tenant, body["inquiryId"]) == before
    # A field left out is a different body too; the first request still replays.
    assert post(http, tenant, {k: v for k, v in body.items() if k != "userIp"}).status_code == 409
    assert post(http, tenant, body).status_code == 200


def test_another_client_and_another_endpoint_are_other_inquiries(
    http: TestClient, tenant: Tenant, other_tenant: Tenant, registry: Registry
) -> None:
    body = login_body()
    mine = post(http, tenant, body)
    theirs = post(http, other_tenant, body)
    opening = post(http, tenant, body | {"loginUrl": None}, "/newaccountopening/v2")
    assert mine.status_code == theirs.status_code == opening.status_code == 200, opening.text
    ids = {r.headers["x-correlation-id"] for r in (mine, theirs, opening)}
    assert len(ids) == 3
    assert counts(registry, tenant, body["inquiryId"])["decisions"] == 2
    assert counts(registry, other_tenant, body["inquiryId"])["decisions"] == 1
    # Each replays its own answer.
    assert post(http, other_tenant, body).headers["x-correlation-id"] == theirs.headers["x-correlation-id"]
    replay = post(http, tenant, body | {"loginUrl": None}, "/newaccountopening/v2")
    assert replay.headers["x-correlation-id"] == opening.headers["x-correlation-id"]


def test_an_inquiry_older_than_a_day_is_decided_again_and_purged(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock
) -> None:
    body = login_body()
    first = post(http, tenant, body)
    clock.advance(hours=23, minutes=59)
    tenant.refresh(http)  # tokens live 20 minutes
    assert post(http, tenant, body).headers["x-correlation-id"] == first.headers["x-correlation-id"]
    clock.advance(minutes=2)
    tenant.refresh(http)
    later = post(http, tenant, body)
    assert later.status_code == 200
    assert later.headers["x-correlation-id"] != first.headers["x-correlation-id"]
    assert counts(registry, tenant, body["inquiryId"])["decisions"] == 2
    # The record now holds the new answer; a day after it, the purge removes it.
    assert post(http, tenant, body).headers["x-correlation-id"] == later.headers["x-correlation-id"]
    clock.advance(hours=24, seconds=1)
    with transaction(registry.sessions) as session:
        assert idempotency.purge(session, clock.now()) >= 1
        left = session.scalar(
            select(func.count())
            .select_from(IdempotencyRecord)
            .where(IdempotencyRecord.client_id == tenant.client_id)
        )
    assert left == 0


def test_twenty_concurrent_duplicates_make_one_decision_and_one_message(
    http: TestClient, hooked: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    tenant = hooked
    body = login_body(strategy=EMAIL_LINK)
    events_before = counts(registry, tenant, body["inquiryId"])["events"]
    start = threading.Barrier(20)

    def send(_: int) -> httpx.Response:
        start.wait(timeout=10)
        return post(http, tenant, body)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(send, range(20)))
    assert [r.status_code for r in answers] == [200] * 20, [r.text for r in answers if r.status_code != 200]
    assert len({r.content for r in answers}) == 1
    assert len({r.headers["x-correlation-id"] for r in answers}) == 1
    after = counts(registry, tenant, body["inquiryId"])
    assert after["decisions"] == 1 and after["sessions"] == 1 and after["messages"] == 1
    # Decision.Created and the session's first status: written once, by the one decision.
    assert after["events"] - events_before == counts_of_one_challenge(http, registry)
    assert mails_to(registry, smtp, body) == 1


def test_duplicates_sent_to_two_api_processes_make_one_decision(
    http: TestClient,
    hooked: Tenant,
    registry: Registry,
    settings: Settings,
    engine: Engine,
    clock: FrozenClock,
    smtp: SmtpSink,
) -> None:
    """Two apps on the same database, each with its own group commit (as two API processes are): the
    duplicates meet at the record's primary key, and the losing unit, run again, replays the answer."""
    tenant = hooked
    second = build_registry(settings, clock=clock, engine=engine)
    body = login_body(strategy=EMAIL_LINK)
    start = threading.Barrier(16)
    with TestClient(create_app(registry=second), raise_server_exceptions=False) as other:

        def send(i: int) -> httpx.Response:
            start.wait(timeout=10)
            return post(http if i % 2 else other, tenant, body)

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(send, range(16)))
    assert [r.status_code for r in answers] == [200] * 16, [r.text for r in answers if r.status_code != 200]
    assert len({r.content for r in answers}) == 1
    assert len({r.headers["x-correlation-id"] for r in answers}) == 1
    after = counts(registry, tenant, body["inquiryId"])
    assert after["decisions"] == 1 and after["sessions"] == 1 and after["messages"] == 1
    assert mails_to(registry, smtp, body) == 1


def counts_of_one_challenge(http: TestClient, registry: Registry) -> int:
    """The webhook events one challenged login writes (measured on a tenant of its own)."""
    from tests.factories import make_tenant

    fresh = make_tenant(http, registry, name="Reference", admin=True)
    r = http.post(
        "/manage/v1/webhooks",
        json={
            "url": "http://127.0.0.1:9/hooks",
            "events": ["MFA.StatusUpdate", "Verification.StatusUpdate", "Decision.Created"],
            "signatureScheme": "standard-webhooks",
        },
        headers=fresh.admin_headers,
    )
    assert r.status_code == 201, r.text
    body = login_body(strategy=EMAIL_LINK)
    assert post(http, fresh, body).status_code == 200
    n = counts(registry, fresh, body["inquiryId"])["events"]
    assert n >= 1
    return n


# -- management POSTs: Idempotency-Key ----------------------------------------------------------------


def create_list(http: TestClient, tenant: Tenant, name: str, key: str | None, **extra: Any) -> httpx.Response:
    headers = {**tenant.admin_headers, **({"Idempotency-Key": key} if key else {})}
    return http.post("/manage/v1/lists", json={"name": name, "kind": "email", **extra}, headers=headers)


def test_a_repeated_key_replays_the_first_answer(http: TestClient, tenant: Tenant) -> None:
    first = create_list(http, tenant, "vip", "key-1")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = create_list(http, tenant, "vip", "key-1")
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["x-correlation-id"] == first.headers["x-correlation-id"]
    # Without the key the route runs: the list exists.
    assert create_list(http, tenant, "vip", None).status_code == 409
    # A quoted key (an RFC 8941 string, as the draft writes it) is the same key.
    assert create_list(http, tenant, "vip", '"key-1"').headers["idempotent-replayed"] == "true"


def test_the_same_key_with_another_request_is_422(http: TestClient, tenant: Tenant) -> None:
    assert create_list(http, tenant, "blocked", "key-2").status_code == 201
    r = create_list(http, tenant, "blocked-2", "key-2")
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:passgate:problem:idempotency-key-reused"
    assert [e["field"] for e in r.json()["errors"]] == ["Idempotency-Key"]
    # Nothing was created by the refused request.
    names = [i["name"] for i in http.get("/manage/v1/lists", headers=tenant.admin_headers).json()["items"]]
    assert "blocked-2" not in names
    # Another path with the same key is another request too.
    r = http.post(
        "/manage/v1/lists/blocked/entries",
        json={"entries": ["a@example.com"]},
        headers={**tenant.admin_headers, "Idempotency-Key": "key-2"},
    )
    assert r.status_code == 422


def test_keys_are_per_client(http: TestClient, tenant: Tenant, other_tenant: Tenant) -> None:
    assert create_list(http, tenant, "mine", "shared-key").status_code == 201
    theirs = create_list(http, other_tenant, "theirs", "shared-key")
    assert theirs.status_code == 201 and "idempotent-replayed" not in theirs.headers


def test_a_repeat_while_the_first_runs_is_409_and_an_abandoned_one_runs_again(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock
) -> None:
    body = json.dumps({"name": "slow", "kind": "email"}).encode()
    hashed = management_request_hash("POST", "/manage/v1/lists", b"", "application/json", body)
    # Another process has claimed the key and is still running the request.
    claimed = idempotency.begin_request(
        registry.sessions, registry.keyring, tenant.client_id, "key-3", hashed, "cid", clock.now()
    )
    assert claimed is None
    r = create_list(http, tenant, "slow", "key-3")
    assert r.status_code == 409
    assert r.json()["type"] == "urn:passgate:problem:request-in-progress"
    assert r.headers["retry-after"] == "1"
    # The other process never finished: after a minute the claim counts as abandoned.
    clock.advance(61)
    r = create_list(http, tenant, "slow", "key-3")
    assert r.status_code == 201, r.text
    assert create_list(http, tenant, "slow", "key-3").headers["idempotent-replayed"] == "true"


def test_an_answer_saying_try_again_is_not_kept_and_bad_keys_are_refused(
    http: TestClient, tenant: Tenant
) -> None:
    # 401: nothing stored, so the same key with a good token runs.
    r = http.post(
        "/manage/v1/lists",
        json={"name": "later", "kind": "email"},
        headers={"Authorization": "Bearer nope", "Idempotency-Key": "key-4"},
    )
    assert r.status_code == 401
    assert create_list(http, tenant, "later", "key-4").status_code == 201
    for bad in (b"", b"x" * 256, "caf\u00e9".encode()):
        r = http.post(
            "/manage/v1/lists",
            json={"name": "bad", "kind": "email"},
            headers={**tenant.admin_headers, "Idempotency-Key": bad},  # type: ignore[dict-item]
        )
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["errors"][0]["field"] == "Idempotency-Key"


def test_a_stored_answer_with_a_secret_is_sealed_and_replayed(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    headers = {**tenant.admin_headers, "Idempotency-Key": "key-5"}
    first = http.post("/manage/v1/api-keys", json={}, headers=headers)
    assert first.status_code == 201, first.text
    again = http.post("/manage/v1/api-keys", json={}, headers=headers)
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    secret = first.json()["apiKey"]
    with transaction(registry.sessions) as session:
        stored = session.scalar(
            select(IdempotencyRecord.body).where(
                IdempotencyRecord.client_id == tenant.client_id, IdempotencyRecord.key == "key-5"
            )
        )
    assert stored is not None and secret.encode() not in bytes(stored)


def test_the_header_is_in_the_openapi_document(http: TestClient) -> None:
    spec = http.get("/openapi.json").json()
    posts = [
        (p, item["post"])
        for p, item in spec["paths"].items()
        if p.startswith("/manage/v1/") and "post" in item
    ]
    assert len(posts) >= 10
    for path, operation in posts:
        names = [p["name"] for p in operation.get("parameters", [])]
        assert "Idempotency-Key" in names, path
        assert {"409", "422"} <= set(operation["responses"]), path
    login = spec["paths"]["/login/v2"]["post"]
    assert "409" in login["responses"]
