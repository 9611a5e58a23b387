from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from passgate.bootstrap import Registry
from passgate.policy.models import Decision
from tests.factories import Tenant, allow_all_document, login_body, publish


def post_login(http: TestClient, tenant: Tenant, body: dict[str, Any]) -> Any:
    return http.post("/login/v2", json=body, headers=tenant.headers)


def test_first_login_from_a_device_is_challenged(http: TestClient, tenant: Tenant) -> None:
    r = post_login(http, tenant, login_body(strategy={"mfaTemplateName": "email-link"}))
    assert r.status_code == 200
    body = r.json()
    assert body["decision"] == "CHALLENGE"
    assert body["guidance"] == "CHALLENGE"
    assert body["tags"] == ["NEW_DEVICE"]
    assert body["tagWeights"] == [{"name": "NEW_DEVICE", "weight": 10}]
    assert body["userSegment"] == "default"
    assert body["set"] == {"name": "login", "versionName": "v1"}
    assert len(body["deviceId"]) == 32


def test_device_counts_as_seen_once_a_decision_allowed_it(http: TestClient, tenant: Tenant) -> None:
    body = login_body()
    assert post_login(http, tenant, body).json()["decision"] == "CHALLENGE"
    publish(http, tenant, allow_all_document())
    # A new inquiry (the same inquiryId would be a retry, answered as the first time).
    assert (
        post_login(http, tenant, {**body, "inquiryId": body["inquiryId"] + "a"}).json()["decision"] == "ALLOW"
    )
    publish(
        http,
        tenant,
        http.get("/manage/v1/policy-sets/LOGIN/draft", headers=tenant.admin_headers).json()["document"]
        | {
            "name": "login",
            "segments": [{"name": "default", "mfaEnabled": True, "policies": ["new-device"]}],
            "policies": [
                {
                    "name": "new-device",
                    "outcome": "CHALLENGE",
                    "conditions": [{"field": "device.seenForAccount", "operator": "equals", "value": False}],
                    "tags": [{"name": "NEW_DEVICE", "weight": 10}],
                }
            ],
        },
    )
    again = post_login(http, tenant, {**body, "inquiryId": body["inquiryId"] + "b"}).json()
    assert again["decision"] == "ALLOW"
    assert again["set"]["versionName"] == "v3"
    # Same device, other account: still new.
    other = {
        **body,
        "inquiryId": body["inquiryId"] + "c",
        "account": {"id": "someone-else", "username": "se"},
    }
    assert post_login(http, tenant, other).json()["decision"] == "CHALLENGE"


def test_new_account_opening_uses_its_own_set(http: TestClient, tenant: Tenant) -> None:
    publish(http, tenant, allow_all_document("login-allow"), "LOGIN")
    body = login_body(
        loginUrl=None,
        accountCreationUrl="https://shop.example.com/signup",
        strategy={
            "verificationTemplateName": "email-link",
            "verificationTargetUrl": "https://shop.example.com/welcome",
        },
    )
    r = http.post("/newaccountopening/v2", json=body, headers=tenant.headers)
    assert r.status_code == 200
    assert r.json()["decision"] == "CHALLENGE"
    assert r.json()["set"]["name"] == "new-account-opening"


def test_correlation_id_is_the_stored_decision_and_password_is_not_stored(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    body = login_body(customFields={"tier": "gold", "n": 3, "ok": True, "ratio": 0.5})
    r = post_login(http, tenant, body)
    cid = r.headers["x-correlation-id"]
    with registry.sessions() as s:
        row = s.get(Decision, cid)
    assert row is not None
    assert row.client_id == tenant.client_id
    assert row.decision == "CHALLENGE"
    assert row.request["customFields"] == {"tier": "gold", "n": 3, "ok": True, "ratio": 0.5}
    assert "userPassword" not in row.request["account"]
    assert body["account"]["userPassword"] not in str(row.request)


def test_every_response_has_a_correlation_id(http: TestClient) -> None:
    for r in (http.get("/healthz"), http.post("/login/v2", json={}), http.get("/no-such-page")):
        assert len(r.headers["x-correlation-id"]) == 36


LONG = "x" * 257


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"inquiryId": None}, "inquiryId"),
        ({"inquiryId": "has-dash"}, "inquiryId"),
        ({"deviceSessionId": "d" * 33}, "deviceSessionId"),
        ({"deviceSessionId": "bad space"}, "deviceSessionId"),
        ({"deviceSessionId": None}, "deviceSessionId"),
        ({"person": {"emailAddress": "not-an-email"}}, "person.emailAddress"),
        ({"person": {"phoneNumber": "5551234567"}}, "person.phoneNumber"),
        ({"person": {"phoneNumber": "+1 555 123 4567"}}, "person.phoneNumber"),
        ({"customFields": {"note": LONG}}, "customFields.note"),
        ({"customFields": {"list": [1, 2]}}, "customFields.list"),
        ({"customFields": {"bad key!": 1}}, "customFields"),
        ({"inquiryId": 123}, "inquiryId"),
        ({"account": {"id": "a"}}, "account.username"),
        ({"account": "acct"}, "account"),
        ({"userIp": "999.1.1.1"}, "userIp"),
        ({"strategy": {"mfaTemplateValues": {"k": 5}}}, "strategy.mfaTemplateValues.k"),
        ({"person": {"addresses": [{"city": 5}]}}, "person.addresses[0].city"),
    ],
)
def test_bad_input_names_the_field(
    http: TestClient, tenant: Tenant, registry: Registry, change: dict[str, Any], field: str
) -> None:
    body = login_body(**change)
    with registry.sessions() as s:
        before = s.scalar(
            select(func.count()).select_from(Decision).where(Decision.client_id == tenant.client_id)
        )
    r = post_login(http, tenant, body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 400 and problem["type"].startswith("urn:passgate:problem:")
    assert field in [e["field"] for e in problem["errors"]], problem
    with registry.sessions() as s:
        after = s.scalar(
            select(func.count()).select_from(Decision).where(Decision.client_id == tenant.client_id)
        )
    assert after == before  # nothing written


def test_body_that_is_not_json(http: TestClient, tenant: Tenant) -> None:
    r = http.post(
        "/login/v2", content=b"{not json", headers={**tenant.headers, "content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["message"] == "the body is not valid JSON"
    r = http.post(
        "/login/v2", content=b"[1,2]", headers={**tenant.headers, "content-type": "application/json"}
    )
    assert r.status_code == 400


def test_unknown_event_type(http: TestClient, tenant: Tenant) -> None:
    r = http.get("/manage/v1/policy-sets/CHECKOUT", headers=tenant.admin_headers)
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "eventType"


def test_unknown_attributes_are_ignored(http: TestClient, tenant: Tenant) -> None:
    r = post_login(http, tenant, login_body(somethingKountAdded={"x": 1}))
    assert r.status_code == 200


def test_nothing_half_written_when_a_step_fails(http: TestClient, tenant: Tenant, registry: Registry) -> None:
    def explode(session: Any, ctx: Any) -> None:
        raise RuntimeError("challenge could not start")

    registry.decisions.start_challenge = explode  # type: ignore[assignment]
    r = post_login(http, tenant, login_body())
    assert r.status_code == 500
    assert "RuntimeError" not in r.text and "Traceback" not in r.text
    with registry.sessions() as s:
        count = s.scalar(
            select(func.count()).select_from(Decision).where(Decision.client_id == tenant.client_id)
        )
    assert count == 0


def test_nul_characters_are_refused_naming_the_field(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    body = login_body(customFields={"note": "a\x00b"}, person={"name": {"first": "J\x00"}})
    r = http.post("/login/v2", json=body, headers=tenant.headers)
    assert r.status_code == 400
    assert {e["field"] for e in r.json()["errors"]} == {"customFields.note", "person.name.first"}
    r = http.put(
        "/manage/v1/policy-sets/LOGIN/draft",
        headers=tenant.admin_headers,
        json={
            "name": "x",
            "segments": [{"name": "d", "policies": []}],
            "policies": [
                {
                    "name": "p",
                    "outcome": "BLOCK",
                    "conditions": [{"field": "channel", "operator": "equals", "value": "\x00"}],
                }
            ],
        },
    )
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "policies[0].conditions[0].value"


def test_oversized_bodies_are_refused(http: TestClient, tenant: Tenant) -> None:
    r = http.post(
        "/login/v2",
        content=b"{" + b" " * 2_100_000 + b"}",
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"


def test_the_token_is_checked_before_the_body(http: TestClient) -> None:
    # An unauthenticated caller learns nothing from validation: 401 whatever the body.
    for content in (b"{not json", b'{"inquiryId": "a-b"}', b""):
        r = http.post("/login/v2", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 401, content
    r = http.post("/newaccountopening/v2", content=b"[]", headers={"content-type": "application/json"})
    assert r.status_code == 401


def test_a_body_that_is_not_declared_json_is_refused(http: TestClient, tenant: Tenant) -> None:
    import json

    r = http.post(
        "/login/v2",
        content=json.dumps(login_body()).encode(),
        headers={**tenant.headers, "content-type": "text/plain"},
    )
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == "body"
    # Without a content type the body is read as JSON (as FastAPI does for a JSON body).
    r = http.post("/login/v2", content=json.dumps(login_body()).encode(), headers=tenant.headers)
    assert r.status_code == 200, r.text


def test_openapi_describes_the_decision_bodies(http: TestClient) -> None:
    spec = http.get("/openapi.json").json()
    for path, model in (("/login/v2", "LoginRequest"), ("/newaccountopening/v2", "AccountOpeningRequest")):
        media = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert media["schema"]["$ref"] == f"#/components/schemas/{model}"
        schema = spec["components"]["schemas"][model]
        assert "inquiryId" in schema["required"] and schema["examples"]
        for ref in _refs(schema):
            assert ref.rsplit("/", 1)[-1] in spec["components"]["schemas"], ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []
