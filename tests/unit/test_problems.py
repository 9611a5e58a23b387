"""One exception table for the API and the console: every domain exception is in it (or deliberately
not answered), and both front ends answer each with the table's status."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from passgate.api import errors as api_errors
from passgate.auth.exceptions import (
    InsufficientScope,
    InvalidClient,
    InvalidScope,
    InvalidToken,
    NotFound,
    TooManyFailedAttempts,
    TooManyKeys,
)
from passgate.console.exceptions import (
    BadCredentials,
    ChallengeNotStarted,
    InvalidUser,
    SignInLocked,
    UserExists,
)
from passgate.console.routes.common import page_problem
from passgate.idempotency.exceptions import InquiryReused, InvalidKey, KeyReused, RequestInProgress
from passgate.messaging.exceptions import (
    BuiltinTemplateReadOnly,
    InvalidBranding,
    InvalidTemplate,
    TemplateExists,
    TemplateNotFound,
    TestSendRateLimited,
    TooManyTemplates,
    Unprocessable,
)
from passgate.messaging.render_pool import RenderTimeout
from passgate.mfa.exceptions import (
    InvalidDestination,
    InvalidVerification,
    NoPendingVerification,
    SendLimitReached,
    SendRateLimited,
    SessionClosed,
    SessionNotFound,
    Throttled,
    WrongMethod,
)
from passgate.policy.exceptions import InvalidPolicySet, NoActiveVersion, VersionNotFound
from passgate.policy.lists import ImportTooLarge, ListExists, ListNotFound
from passgate.problems import NOT_ANSWERED, PROBLEMS, problem_for, spec_for
from passgate.webhooks.exceptions import (
    EndpointDisabled,
    EndpointNotFound,
    EventNotFound,
    InvalidWebhookUrl,
    TooManyEndpoints,
    WrongSignatureScheme,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "passgate"

# One instance of every class in the table, as the services raise them.
SAMPLES: list[Exception] = [
    InvalidClient(),
    InvalidToken("expired"),
    InsufficientScope("manage"),
    InvalidScope("manage"),
    TooManyFailedAttempts(30),
    TooManyKeys(5),
    NotFound("key", "k1"),
    VersionNotFound("v9"),
    ListNotFound("blocked"),
    NoActiveVersion("LOGIN"),
    ListExists("blocked"),
    ImportTooLarge(100_001),
    InvalidPolicySet("policies[0].conditions[0].field", "unknown field"),
    TemplateNotFound("otp"),
    TemplateExists("otp"),
    BuiltinTemplateReadOnly("otp"),
    TooManyTemplates(50),
    Unprocessable("no", [{"field": "to", "message": "not an address"}]),
    InvalidTemplate("the template cannot be saved: body", [{"field": "body", "message": "x", "line": 2}]),
    InvalidBranding([{"field": "logoUrl", "message": "must be https"}]),
    TestSendRateLimited(12),
    RenderTimeout(2.0),
    SessionNotFound("s1"),
    SessionClosed("EXPIRED", "TTL"),
    WrongMethod("this session takes a code"),
    SendLimitReached(3),
    SendRateLimited(40),
    Throttled(60, locked=False),
    InvalidDestination("destination", "not an email address"),
    InvalidVerification("templateName", "no template of this name"),
    NoPendingVerification(),
    EndpointNotFound("e1"),
    EventNotFound("ev1"),
    EndpointDisabled("e1"),
    WrongSignatureScheme("this endpoint signs with ed25519"),
    TooManyEndpoints(10),
    InvalidWebhookUrl("private address", "url"),
    InvalidUser("email", "not a valid email address"),
    UserExists("a@example.com"),
    BadCredentials(),
    SignInLocked(30, "email"),
    ChallengeNotStarted("RATE_LIMITED"),
    InquiryReused(),
    RequestInProgress("Idempotency-Key", 1),
    KeyReused(),
    InvalidKey("Idempotency-Key must be 1 to 255 printable ASCII characters"),
]


def _exception_modules() -> list[str]:
    return sorted(
        "passgate." + ".".join(p.relative_to(SRC).with_suffix("").parts) for p in SRC.rglob("exceptions.py")
    )


def _domain_exceptions() -> list[type[Exception]]:
    found: list[type[Exception]] = []
    for name in _exception_modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Exception) and obj.__module__ == name:
                found.append(obj)
    return found


def test_the_walk_finds_the_exception_modules() -> None:
    assert "passgate.mfa.exceptions" in _exception_modules()
    assert len(_domain_exceptions()) >= 30


@pytest.mark.parametrize("exc_type", _domain_exceptions(), ids=lambda t: f"{t.__module__}.{t.__name__}")
def test_every_domain_exception_has_an_entry(exc_type: type[Exception]) -> None:
    assert (exc_type in PROBLEMS) != (exc_type in NOT_ANSWERED), (
        f"{exc_type.__name__}: add it to passgate.problems.PROBLEMS (or, never answered, NOT_ANSWERED)"
    )


def test_every_entry_has_a_sample() -> None:
    assert {type(e) for e in SAMPLES} == set(PROBLEMS)


def _api_status(exc: Exception) -> tuple[int, dict[str, object], dict[str, str]]:
    app = FastAPI()
    api_errors.install(app)

    @app.get("/raise")
    def _raise() -> None:
        raise exc

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/raise")
    assert answer.headers["content-type"] == "application/problem+json"
    return answer.status_code, answer.json(), dict(answer.headers)


@pytest.mark.parametrize("exc", SAMPLES, ids=lambda e: type(e).__name__)
def test_the_api_and_the_console_give_the_same_status(exc: Exception) -> None:
    spec = spec_for(type(exc))
    assert spec is not None
    status, body, headers = _api_status(exc)
    page = page_problem(exc)
    assert page is not None
    assert status == page.status == spec.status
    assert body["type"] == f"urn:passgate:problem:{spec.slug}"
    assert body["title"] == spec.title
    if spec.retry_after:
        assert headers["retry-after"] == str(exc.retry_after)  # type: ignore[attr-defined]


def test_a_field_named_by_the_table_or_the_exception_is_in_errors() -> None:
    found = problem_for(ListExists("blocked"))
    assert found is not None and found.errors == [
        {"field": "name", "message": "a list named 'blocked' already exists"}
    ]
    found = problem_for(InvalidDestination("phone", "not a phone number"))
    assert found is not None and found.errors == [{"field": "phone", "message": "not a phone number"}]
    found = problem_for(SendLimitReached(3))
    assert found is not None and found.errors == [] and found.retry_after is None


def test_a_subclass_takes_its_nearest_listed_base() -> None:
    class LateTemplateError(InvalidTemplate):
        pass

    assert spec_for(LateTemplateError) is PROBLEMS[InvalidTemplate]
    assert spec_for(ValueError) is None
    assert problem_for(ValueError("x")) is None


def test_send_limits_and_throttling_are_429_in_both() -> None:
    """The console answered these with 409 before it shared the API's table."""
    for exc in (SendLimitReached(3), Throttled(60)):
        page = page_problem(exc)
        assert page is not None and page.status == 429
