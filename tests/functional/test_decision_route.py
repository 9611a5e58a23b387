"""The decision routes called directly (`api.direct.DirectRoute`) against FastAPI's own request handling
(`APIRoute`), the plain path: the same generated requests — valid, invalid, retried, reused, without or with
a bad token, not JSON — through both give the same status, headers and body (ids made per request aside),
and the OpenAPI document is the same, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute, request_response
from fastapi.testclient import TestClient

from passgate.api import decisions
from passgate.api.direct import DirectRoute
from passgate.bootstrap import Registry
from passgate.main import create_app
from tests.factories import make_tenant

# Made per request or per client: correlation and decision ids, and the device id (a hash with the client).
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[0-9a-f]{32}\b")
PATHS = ("/login/v2", "/newaccountopening/v2")


def _body(rng: random.Random, n: int, path: str) -> dict[str, Any]:
    def pick(good: Any, *bad: Any) -> Any:  # now and then a bad or missing value
        return rng.choice(bad) if rng.random() < 0.06 else good

    body: dict[str, Any] = {
        "inquiryId": f"inq{n}",
        "channel": pick(rng.choice(["WEB", "APP", "PHONE"]), "web", 3),
        "deviceSessionId": pick(f"dev{n % 7}", "d" * 300, "", None),
        "userIp": pick(rng.choice(["203.0.113.7", "2001:db8::1"]), "not-an-ip", None),
        "person": {
            "name": {"first": pick(rng.choice(["Jo", "Zoë"]), "a\u0000b"), "last": "Doe"},
            "emailAddress": pick(f"jo{n % 5}@example.com", "no-at-sign", None),
        },
        "account": {"id": pick(f"acct{n % 9}", 12, None), "username": "jo", "type": "PRO"},
        "customFields": pick(rng.choice([{}, {"tier": "gold", "cart": 120.5, "ok": True}]), {"x": [1]}, "no"),
    }
    if path == "/login/v2":
        body["loginUrl"] = pick("https://shop.example.com/login", None)
    if rng.random() < 0.05:
        body.pop(rng.choice(list(body)))
    if rng.random() < 0.05:
        body["unexpected"] = 1
    return {k: v for k, v in body.items() if v is not None}


def _requests(seed: int, count: int) -> list[tuple[str, bytes, dict[str, str], str]]:
    """(path, body, headers, token kind) for `count` generated requests, repeats and reuses included."""
    rng = random.Random(seed)
    sent: list[tuple[str, bytes]] = []
    out = []
    for n in range(count):
        path = rng.choice(PATHS)
        roll = rng.random()
        if sent and roll < 0.15:  # a retry of an earlier request
            path, raw = rng.choice(sent)
        elif sent and roll < 0.2:  # an earlier inquiryId with another body
            path, raw = rng.choice(sent)
            raw = json.dumps({**json.loads(raw), "deviceSessionId": f"other{n}"}).encode()
        elif roll < 0.25:
            raw = rng.choice([b"", b"{", b"[]", b'{"inquiryId": 5}', b"null", b'"text"', b"\xff\xfe"])
        else:
            raw = json.dumps(_body(rng, n, path)).encode()
            sent.append((path, raw))
        headers = {"content-type": rng.choice(["application/json"] * 8 + ["text/plain", ""])}
        token = rng.choice(["good"] * 12 + ["none", "bad"])
        out.append((path, raw, headers, token))
    return out


def _normalised(r: Any) -> tuple[int, list[tuple[str, str]], str]:
    text = r.text
    cid = r.headers.get("x-correlation-id", "")
    if cid:
        text = text.replace(cid, "<cid>")
    headers = sorted(
        (k, "<cid>" if k == "x-correlation-id" else UUID.sub("<id>", v))
        for k, v in r.headers.items()
        if k not in ("date", "server-timing")
    )
    return r.status_code, headers, UUID.sub("<id>", text)


def test_openapi_document_is_the_plain_routes(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = create_app(registry=registry)
    assert all(isinstance(r, DirectRoute) for r in direct.routes if getattr(r, "path", "") in PATHS)
    monkeypatch.setattr(decisions, "ROUTE_CLASS", APIRoute)
    plain = create_app(registry=registry)
    assert not any(isinstance(r, DirectRoute) for r in plain.routes)
    assert json.dumps(direct.openapi(), sort_keys=True) == json.dumps(plain.openapi(), sort_keys=True)


def test_direct_route_refuses_an_endpoint_with_parameters() -> None:
    async def endpoint(inquiry: str) -> None: ...

    with pytest.raises(TypeError, match="nothing else"):
        DirectRoute("/x", endpoint, methods=["POST"])


@pytest.mark.parametrize("seed", [1, 2])
def test_direct_and_plain_routes_answer_alike(registry: Registry, seed: int) -> None:
    app = create_app(registry=registry)
    routes = [r for r in app.routes if isinstance(r, DirectRoute)]
    assert sorted(r.path for r in routes) == sorted(PATHS)
    direct_apps = {r.path: r.app for r in routes}
    # What APIRoute.__init__ makes: FastAPI's request handler (dependencies solved per request).
    plain_apps = {r.path: request_response(r.get_route_handler()) for r in routes}
    with TestClient(app, raise_server_exceptions=False) as http:
        # Two clients with the same history: each request goes to one through each path.
        a = make_tenant(http, registry, name="Direct Co")
        b = make_tenant(http, registry, name="Plain Co")
        tokens = {"none": None, "bad": "Bearer not.a.token"}
        compared = statuses = 0
        seen: set[int] = set()
        for path, raw, headers, kind in _requests(seed, 120):
            answers = []
            for tenant, apps in ((a, direct_apps), (b, plain_apps)):
                for route in routes:
                    route.app = apps[route.path]
                h = dict(headers)
                auth = f"Bearer {tenant.token}" if kind == "good" else tokens[kind]
                if auth:
                    h["authorization"] = auth
                if not h["content-type"]:
                    del h["content-type"]
                answers.append(_normalised(http.post(path, content=raw, headers=h)))
            assert answers[0] == answers[1], (path, raw, headers, kind)
            compared += 1
            seen.add(answers[0][0])
            statuses += answers[0][0] == 200
        for route in routes:
            route.app = direct_apps[route.path]
    assert compared == 120
    assert {200, 400, 401, 409} <= seen, seen
    assert statuses >= 30
