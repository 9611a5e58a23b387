"""Schemathesis against the app's own OpenAPI document: every operation, with a token holding both scopes, on
each database, in positive (valid per the document) and negative (invalid) modes. Any 5xx, or any response
the document does not describe (status, content type, body schema), fails the test.

The run is bounded: PASSGATE_FUZZ_EXAMPLES examples per operation and mode (5 by default, a few hundred
requests in all); `make fuzz` sets it much higher. Past PASSGATE_FUZZ_SECONDS (per database) the operations
not yet run get 3 examples each, so every operation is still tried. PASSGATE_FUZZ_SEED repeats a run.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from passgate.bootstrap import Registry
from passgate.config import Settings
from tests.factories import Tenant, get_token, login_body, make_tenant

EXAMPLES = int(os.environ.get("PASSGATE_FUZZ_EXAMPLES", "5"))
MINIMUM_EXAMPLES = 3
BUDGET_S = float(os.environ.get("PASSGATE_FUZZ_SECONDS", "600"))
SEED = int(os.environ.get("PASSGATE_FUZZ_SEED") or random.randrange(2**32))


@schemathesis.serializer("message/rfc822")
def _raw_message(ctx: Any, value: Any) -> bytes:
    """POST /providers/bounces takes a raw message (a DSN): the generated string, sent as its bytes."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A webhook endpoint on loopback, to fuzz the operations on an existing one (nothing is delivered:
    # the app runs no workers in tests).
    return settings.model_copy(update={"webhook_allow_private": True})


def _send(http: TestClient, case: Any, headers: dict[str, str]) -> Any:
    """The case through the test client (the app's own lifespan and event loop), as schemathesis would send it."""
    kwargs = case.as_transport_kwargs(base_url=str(http.base_url), headers=headers)
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    if "data" in kwargs:
        data = kwargs["data"]
        body["content" if isinstance(data, str | bytes) else "data"] = data
    if "files" in kwargs:
        body["files"] = kwargs["files"]
    return http.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=kwargs.get("headers"),
        cookies=kwargs.get("cookies") or None,
        **body,
    )


def existing_resources(http: TestClient, tenant: Tenant) -> dict[str, dict[str, str]]:
    """Path parameter values naming things that exist, by the first segments of the paths that take them, so
    the fuzz also reaches the code behind a found resource (generated ids are almost never found)."""
    admin = tenant.admin_headers
    r = http.post("/manage/v1/lists", json={"name": "fuzz-list", "kind": "emailDomain"}, headers=admin)
    assert r.status_code == 201, r.text
    http.post("/manage/v1/lists/fuzz-list/entries", json={"entries": ["mailinator.com"]}, headers=admin)
    r = http.post(
        "/manage/v1/webhooks",
        json={"url": "http://127.0.0.1:9/fuzz", "events": ["Decision.Created"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    endpoint_id = r.json()["id"]
    login = login_body(strategy={"mfaTemplateName": "email-link"})
    r = http.post("/login/v2", json=login, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["mfa"]["ID"], r.text
    device = {"accountId": login["account"]["id"], "deviceSessionId": login["deviceSessionId"]}
    return {
        "/manage/v1/lists": {"name": "fuzz-list"},
        "/manage/v1/templates": {"name": "email-link"},
        "/manage/v1/policy-sets": {"eventType": "LOGIN", "versionName": "v1"},
        "/manage/v1/webhooks": {"endpoint_id": endpoint_id},
        "/mfa/v2": {"session_id": r.json()["mfa"]["ID"]},
        "/trusted-device": device,
    }


def _known(path: str, resources: dict[str, dict[str, str]]) -> dict[str, str]:
    names = set(re.findall(r"{(\w+)}", path))
    for prefix, values in resources.items():
        if path.startswith(prefix + "/"):
            return {k: v for k, v in values.items() if k in names}
    return {}


def fuzz(
    http: TestClient,
    spec: dict[str, Any],
    headers: dict[str, str],
    examples: int,
    resources: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Every operation of `spec`, `examples` cases per generation mode (and positive cases on existing
    resources, for operations with path parameters); returns what was sent and what failed."""
    schema = schemathesis.openapi.from_dict(spec)
    deadline = time.monotonic() + BUDGET_S
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        known = _known(operation.path, resources or {})
        variants = [(GenerationMode.POSITIVE, {}), (GenerationMode.NEGATIVE, {})]
        if known:
            variants.append((GenerationMode.POSITIVE, known))
        for mode, path_parameters in variants:
            label = f"{operation.label} ({mode.value}{', existing' if path_parameters else ''})"
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)

            @seed(SEED)
            @hypothesis_settings(
                max_examples=examples if time.monotonic() < deadline else min(examples, MINIMUM_EXAMPLES),
                deadline=None,
                database=None,
                derandomize=False,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )
            @given(case=strategy)
            def run(case: Any) -> None:
                response = _send(http, case, headers)
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                pass  # nothing to negate: an operation without inputs, or with free-form strings only
            except (
                Exception,
                BaseExceptionGroup,
            ) as exc:  # one operation's failure does not hide the others'
                failures.append(f"{label}: {str(exc)[:3000]}")
    return {"statuses": statuses, "failures": failures}


@pytest.mark.slow
def test_fuzz_every_operation(http: TestClient, registry: Registry, app: Any) -> None:
    tenant = make_tenant(http, registry, name="Fuzz Co")
    resources = existing_resources(http, tenant)
    token = get_token(http, tenant.client_id, tenant.api_key, "k1_integration_api admin")
    started = time.monotonic()
    outcome = fuzz(http, app.openapi(), {"Authorization": f"Bearer {token}"}, EXAMPLES, resources)
    statuses = outcome["statuses"]
    print(
        f"\nfuzz ({registry.engine.dialect.name}, seed {SEED}): {sum(statuses.values())} requests in "
        f"{time.monotonic() - started:.0f} s; by status {dict(sorted(statuses.items()))}"
    )
    assert not outcome["failures"], f"seed {SEED}\n\n" + "\n\n".join(outcome["failures"])


def test_every_error_response_documented_is_a_problem_document(app: Any) -> None:
    spec = app.openapi()
    assert "HTTPValidationError" not in str(spec)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "400" in responses, (method, path)
            for status, response in responses.items():
                if int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)


def test_security_schemes_are_declared_for_the_reference_page(app: Any) -> None:
    spec = app.openapi()
    schemes = spec["components"]["securitySchemes"]
    flow = schemes["clientCredentials"]["flows"]["clientCredentials"]
    assert schemes["clientCredentials"]["type"] == "oauth2"
    assert flow["tokenUrl"] == "/oauth2/token" and set(flow["scopes"]) == {"k1_integration_api", "admin"}
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            security = operation.get("security")
            if path == "/metrics":
                assert security == [{}, {"metricsToken": []}]
            elif "401" in operation["responses"] and "403" in operation["responses"] and security:
                scope = "admin" if path.startswith("/manage/") else "k1_integration_api"
                assert security == [{"clientCredentials": [scope]}, {"bearerToken": []}], (method, path)
            else:
                assert security is None, (method, path)
    needing = {(m, p) for p, item in spec["paths"].items() for m, op in item.items() if op.get("security")}
    assert ("post", "/login/v2") in needing and ("post", "/newaccountopening/v2") in needing
    assert ("get", "/mfa/v2/{session_id}") in needing and ("get", "/manage/v1/settings") in needing
    for public in (
        "/oauth2/token",
        "/healthz",
        "/readyz",
        "/.well-known/jwks.json",
        "/providers/twilio/status",
    ):
        assert not any(op.get("security") for op in spec["paths"][public].values()), public


def test_each_security_requirement_is_what_the_api_enforces(
    http: TestClient, tenant: Tenant, app: Any
) -> None:
    """Every operation the document says needs a token answers 401 without one and 403 with a token of the
    other scope; every one it says is open does not answer 401 or 403 to a call without a token."""
    tokens = {"admin": tenant.token, "k1_integration_api": tenant.admin_token}  # the other scope's token
    # Open operations that authenticate their caller in another way: the token endpoint (client
    # credentials), a provider's signed callback, the metrics token when set.
    own_auth = {"/oauth2/token", "/providers/twilio/status", "/providers/http/status", "/metrics"}
    wrong = []
    for path, item in app.openapi()["paths"].items():
        url = re.sub(r"{\w+}", "x", path)
        for method, operation in item.items():
            bare = http.request(method.upper(), url).status_code
            security = operation.get("security")
            if security and security[0]:
                scope = security[0]["clientCredentials"][0]
                other = http.request(
                    method.upper(), url, headers={"Authorization": f"Bearer {tokens[scope]}"}
                )
                if (bare, other.status_code) != (401, 403):
                    wrong.append(
                        f"{method.upper()} {path}: {bare} without a token, {other.status_code} with {scope!r} missing"
                    )
            elif path not in own_auth and bare in (401, 403):
                wrong.append(f"{method.upper()} {path}: {bare} without a token, documented as open")
    assert not wrong, wrong
