"""The canonical request hash, and the claim of a management request, on both databases."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from passgate.db import make_sessionmaker, transaction
from passgate.idempotency import services
from passgate.idempotency.exceptions import KeyReused, RequestInProgress
from passgate.keyring import KeyRing

BODY = {"inquiryId": "inq1", "person": {"name": {"first": "Jo", "last": "Doe"}, "emailAddress": "jo@x.test"}}


def test_whitespace_and_key_order_do_not_change_the_hash() -> None:
    respelled = json.loads(
        json.dumps(
            {
                "person": {"emailAddress": "jo@x.test", "name": {"last": "Doe", "first": "Jo"}},
                "inquiryId": "inq1",
            },
            indent=4,
        )
    )
    assert services.request_hash(respelled) == services.request_hash(BODY)


@pytest.mark.parametrize(
    "changed",
    [
        {**BODY, "inquiryId": "inq2"},
        {**BODY, "person": {**BODY["person"], "emailAddress": "jo@y.test"}},
        {**BODY, "extra": None},
        {k: v for k, v in BODY.items() if k != "person"},
        {**BODY, "person": {**BODY["person"], "name": {"first": "Jö", "last": "Doe"}}},
    ],
)
def test_any_value_changes_the_hash(changed: dict[str, object]) -> None:
    assert services.request_hash(changed) != services.request_hash(BODY)


@pytest.fixture
def client_id(engine: Engine) -> str:
    cid = "cl_idem_" + datetime.now(UTC).strftime("%H%M%S%f")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO clients (id, name, country, sandbox, created_at) VALUES (:id, 'x', 'US', :f, :now)"
            ),
            {"id": cid, "f": False, "now": datetime.now(UTC).replace(tzinfo=None)},
        )
    return cid


def test_a_management_claim_goes_running_then_answered_then_expired(engine: Engine, client_id: str) -> None:
    sessions = make_sessionmaker(engine)
    keyring = KeyRing([b"k" * 32])
    now = datetime.now(UTC)

    def begin(hashed: str, at: datetime) -> services.StoredAnswer | None:
        return services.begin_request(sessions, keyring, client_id, "key", hashed, "cid-1", at)

    assert begin("h1", now) is None  # claimed
    with pytest.raises(RequestInProgress):
        begin("h1", now + timedelta(seconds=1))
    with pytest.raises(KeyReused):
        begin("h2", now + timedelta(seconds=1))
    assert services.finish_request(
        sessions, keyring, client_id, "key", "h1", 201, [("content-type", "application/json")], b'{"id":"x"}'
    )
    stored = begin("h1", now + timedelta(hours=1))
    assert stored == services.StoredAnswer(
        201, [("content-type", "application/json")], b'{"id":"x"}', "cid-1"
    )
    # Sealed: another key ring cannot read it, and says so rather than running the request again.
    with pytest.raises(RequestInProgress):
        services.begin_request(sessions, KeyRing([b"j" * 32]), client_id, "key", "h1", "c", now)
    # After the retention the key is free again, for any request.
    assert begin("h2", now + timedelta(hours=24, seconds=1)) is None
    with transaction(sessions) as session:
        assert services.purge(session, now + timedelta(hours=48, seconds=2)) >= 1
    assert begin("h3", now + timedelta(hours=48, seconds=3)) is None


def test_a_release_frees_the_key(engine: Engine, client_id: str) -> None:
    sessions = make_sessionmaker(engine)
    keyring = KeyRing([b"k" * 32])
    now = datetime.now(UTC)
    assert services.begin_request(sessions, keyring, client_id, "k2", "h", "c", now) is None
    services.release_request(sessions, client_id, "k2", "h")
    assert services.begin_request(sessions, keyring, client_id, "k2", "other", "c", now) is None


# -- the canonical form: the encoder made once against json.dumps -------------------------------------------

_texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and the infinities too: json.dumps writes them, and so must the fast path
    st.sampled_from([1e-5, 1e16, -0.0, 1e308, 5e-324, 120.5, 0.1]),
)
_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), _numbers, _texts),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_texts, inner, max_size=4)),
    max_leaves=20,
)


def _outcome(fn: Callable[[Any], str], value: Any) -> tuple[str, str]:
    try:
        return "ok", fn(value)
    except Exception as exc:  # the same error, or the same text
        return type(exc).__name__, str(exc)


@settings(max_examples=1500, deadline=None)
@given(_json_values)
def test_the_canonical_form_is_json_dumps_text(value: Any) -> None:
    assert services.canonical_json(value) == services.canonical_json_plain(value)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.one_of(_texts, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none()),
        _json_values,
        max_size=4,
    )
)
def test_keys_that_are_not_text_go_as_json_dumps_takes_them(value: dict[Any, Any]) -> None:
    assert _outcome(services.canonical_json, value) == _outcome(services.canonical_json_plain, value)


def test_what_json_cannot_write_fails_alike() -> None:
    for value in ({"a": {1, 2}}, [b"bytes"], {"when": datetime(2026, 1, 1)}, "\ud800", {"x": "\ud83d"}):
        assert _outcome(services.canonical_json, value) == _outcome(services.canonical_json_plain, value)


def test_a_login_body_hashes_as_before() -> None:
    body = {
        "inquiryId": "inq1",
        "customFields": {"visits": 42, "cartValue": 120.5, "small": 1e-05, "returning": True},
        "person": {"name": {"last": "Doe", "first": "Jö"}, "emailAddress": "jo@x.test", "addresses": []},
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert services.request_hash(body) == hashlib.sha256(canonical.encode()).hexdigest()
