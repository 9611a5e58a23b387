"""Tenants see only their own verifications; the Verify API sees only its own sessions; bad input is a 4xx
naming the field, with nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.mfa.models import MfaSession
from tests.factories import Tenant, login_body
from tests.functional.mfa.conftest import drain
from tests.functional.verify.conftest import (
    check,
    check_to,
    code_in_mail,
    fetch,
    fields_of,
    mails_to,
    start,
    started,
)
from tests.servers import SmtpSink


def sessions_of(registry: Registry, client_id: str) -> int:
    with transaction(registry.sessions) as s:
        return int(s.scalar(select(func.count()).where(MfaSession.client_id == client_id)) or 0)


def test_tenants_see_only_their_own_verifications(
    http: TestClient, tenant: Tenant, other_tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    to = "shared.person@example.com"
    mine = started(http, tenant, to=to, channel="email-code")
    # The other tenant's start for the same address is its own verification, not ours.
    theirs = started(http, other_tenant, to=to, channel="email-code")
    assert theirs["id"] != mine["id"]
    drain(registry)
    codes = [code_in_mail(m.part("text/plain")) for m in mails_to(smtp, to)]
    assert len(codes) == 2
    path = f"/verify/v1/verifications/{mine['id']}"
    assert fetch(http, other_tenant, mine["id"]).status_code == 404
    for suffix in ("/resend", "/cancel"):
        assert http.post(path + suffix, headers=other_tenant.headers).status_code == 404
    assert http.get(path + "/timeline", headers=other_tenant.headers).status_code == 404
    assert check(http, other_tenant, mine["id"], codes[0]).status_code == 404
    # By destination, the other tenant reaches only its own verification.
    for code in codes:
        check_to(http, other_tenant, to, code)
    assert fetch(http, tenant, mine["id"]).json()["verificationAttempts"] == 0
    assert fetch(http, other_tenant, theirs["id"]).json()["status"] == "VERIFIED"
    assert http.get(path, headers={}).status_code == 401


def test_a_decisions_session_is_not_a_verification(http: TestClient, tenant: Tenant) -> None:
    body = login_body(strategy={"mfaTemplateName": "email-code"})
    mfa = http.post("/login/v2", json=body, headers=tenant.headers).json()["mfa"]
    assert mfa["ID"]
    assert fetch(http, tenant, mfa["ID"]).status_code == 404
    assert check(http, tenant, mfa["ID"], "123456").status_code == 404
    assert check_to(http, tenant, body["person"]["emailAddress"], "123456").status_code == 404


GOOD: dict[str, Any] = {"to": "input.check@example.com", "channel": "email-code"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": None}, "to"),
        ({"to": 42}, "to"),
        ({"to": "not-an-address"}, "to"),
        ({"to": "x" * 300}, "to"),
        ({"channel": None}, "channel"),
        ({"channel": "fax"}, "channel"),
        ({"channel": "sms-code"}, "to"),  # an email address for an SMS channel
        ({"to": "+12015550123"}, "to"),  # a number for an email channel
        ({"purpose": "login"}, "purpose"),
        ({"redirectUrl": "javascript:alert(1)"}, "redirectUrl"),
        ({"templateName": "no-such-template"}, "templateName"),
        ({"templateName": "sms-code"}, "templateName"),  # an SMS template for an email channel
        ({"locale": "english please"}, "locale"),
        ({"customValues": {"a": 1}}, "customValues.a"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    http: TestClient, tenant: Tenant, registry: Registry, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    r = start(http, tenant, **body)
    assert r.status_code == 400, r.text
    assert fields_of(r) == [field]
    assert sessions_of(registry, tenant.client_id) == 0


def test_bad_checks_name_the_field(http: TestClient, tenant: Tenant) -> None:
    v = started(http, tenant, **GOOD)
    r = check(http, tenant, v["id"], "")
    assert r.status_code == 400 and fields_of(r) == ["code"]
    r = http.post("/verify/v1/verification-checks", json={"code": "123456"}, headers=tenant.headers)
    assert r.status_code == 400 and fields_of(r) == ["to"]
    r = check_to(http, tenant, "+1 nonsense", "123456")
    assert r.status_code == 400 and fields_of(r) == ["to"]
    assert fetch(http, tenant, "no-such-id").status_code == 404
    assert fetch(http, tenant, v["id"]).json()["verificationAttempts"] == 0
