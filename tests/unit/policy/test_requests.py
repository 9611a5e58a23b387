"""`DirectReader` against `PlainReader`, its judge: on generated bodies of both request models — valid and
invalid, with unicode, NULs, nulls, aliases, alpha-3 country codes, datetimes, missing, extra and
duplicated fields, wrong types, nested objects, non-finite numbers, bytes that are not JSON — both give
the same payload (the same keys in the same order, values of the same types) or the same errors."""

from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, computed_field, field_serializer, model_validator

from passgate.idempotency.services import request_hash
from passgate.policy.requests import (
    LOGIN_EXAMPLE,
    AccountOpeningRequest,
    DirectReader,
    LoginRequest,
    PlainReader,
    _In,
)
from passgate.problems import validation_errors

MODELS = (LoginRequest, AccountOpeningRequest)

# --- what the generated bodies are made of ------------------------------------------------------------

TEXT = [
    "Jo",
    "Zoë",
    "李小龙",
    "🙂 emoji",
    "\u202eRTL",
    "e\u0301",
    "  padded  ",
    "",
    " ",
    "tab\there",
    "new\nline",
    'quote"s',
    "back\\slash",
    "\\u0000 as text",
    "a\u0000b",
    "\u0000",
    "x" * 64,
    "x" * 65,
    "y" * 256,
    "y" * 257,
    "ß" * 100,
    "-",
    "a-b",
    "\ufeffbom",
    "\u2028sep",
]
IDS = ["inq1", "INQ_2.x", "Zoë9", "a" * 256, "a" * 257, "", "a-b", "has space", "\u0000", "١٢٣"]
DEVICES = ["dev1", "a" * 32, "a" * 33, "", "bad device", "x_y-z", "dév", "d\u0000"]
IPS = [
    "203.0.113.7",
    "2001:db8::1",
    "2001:0db8:0000:0000:0000:0000:0000:0001",
    "::ffff:192.0.2.1",
    "::1",
    "fe80::1%eth0",
    "010.1.1.1",
    "256.1.1.1",
    "not-an-ip",
    "",
    " 203.0.113.7",
    "1" * 46,
]
EMAILS = [
    "jo@example.com",
    "Jo.Doe@Example.COM",
    "jo@bücher.example",
    "josé@example.com",
    "postmaster@example.com",
    "no-at-sign",
    "a@b",
    "@example.com",
    "jo@@example.com",
    "jo@example..com",
    "x" * 250 + "@e.com",
    "",
    "jo @example.com",
    '"quoted"@example.com',
]
PHONES = [
    "+15551234567",
    "+447911123456",
    "+4915123456789",
    "+1555",
    "15551234567",
    "+0123",
    "+" + "9" * 16,
    "",
]
COUNTRIES = [
    "US",
    "USA",
    "us",
    "usa",
    "GB",
    "GBR",
    "DE",
    "DEU",
    "",
    " ",
    "XX",
    "XXX",
    "U",
    "USAA",
    "ÜS",
    "FRA",
]
DATETIMES = [
    "2024-01-02T03:04:05Z",
    "2024-01-02T03:04:05.123456+02:00",
    "2024-01-02T03:04:05",
    "2024-01-02",
    "2024-01-02 03:04:05-0530",
    "2024-02-30T00:00:00Z",
    "yesterday",
    "",
    1_700_000_000,
    1_700_000_000.5,
    0,
    -1,
    10**20,
    "1700000000",
    True,
]
URLS = [
    "https://shop.example.com/welcome",
    "http://x.test",
    "https://x.test/a b",
    "ftp://x.test",
    "shop.example.com",
    "",
    "https://" + "x" * 2050,
]
LANGS = ["en", "fr-CA", "zh-Hant-TW", "e", "english", "en_US", "", "en-"]
CUSTOM_VALUES = [
    "gold",
    "",
    "z" * 256,
    "z" * 257,
    True,
    False,
    0,
    42,
    -7,
    2**63,
    2**70,
    120.5,
    -0.0,
    1e16,
    1e-7,
    1.0,
    1e300,
    None,
    [1],
    {"a": 1},
    "Zoë",
]
CUSTOM_KEYS = ["tier", "a.b_c-d", "x" * 64, "x" * 65, "", "bad key", "ü", "k\u0000"]
WRONG = [None, 1, 1.5, True, "text", [], ["a"], {}, {"a": 1}]


def _maybe(rng: random.Random, good: list[Any], wrong: float = 0.1) -> Any:
    return rng.choice(WRONG) if rng.random() < wrong else rng.choice(good)


def _obj(rng: random.Random, fields: dict[str, Any], keep: float = 0.6) -> dict[str, Any]:
    return {k: v() for k, v in fields.items() if rng.random() < keep}


def _address(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice(WRONG)
    return _obj(
        rng,
        {
            "addressType": lambda: _maybe(rng, ["HOME", "WORK", "x" * 65]),
            "line1": lambda: _maybe(rng, TEXT),
            "line2": lambda: _maybe(rng, TEXT),
            "city": lambda: _maybe(rng, TEXT),
            "region": lambda: _maybe(rng, TEXT),
            "postalCode": lambda: _maybe(rng, ["94105", "SW1A 1AA", "x" * 33]),
            "countryCode": lambda: _maybe(rng, COUNTRIES),
        },
    )


def _person(rng: random.Random) -> Any:
    return _obj(
        rng,
        {
            "name": lambda: (
                rng.choice(WRONG)
                if rng.random() < 0.05
                else _obj(rng, {k: (lambda: _maybe(rng, TEXT)) for k in ("first", "last", "preferred")})
            ),
            "emailAddress": lambda: _maybe(rng, EMAILS),
            "phoneNumber": lambda: _maybe(rng, PHONES),
            "addresses": lambda: (
                rng.choice(WRONG)
                if rng.random() < 0.05
                else [_address(rng) for _ in range(rng.choice([0, 1, 2, 11]))]
            ),
        },
    )


def _account(rng: random.Random) -> Any:
    fields = {
        "id": lambda: _maybe(rng, IDS),
        "username": lambda: _maybe(rng, TEXT),
        "type": lambda: _maybe(rng, ["PRO", "x" * 65]),
        "userPassword": lambda: _maybe(rng, ["5f4dcc3b5aa765d61d8327deb882cf99", "p" * 1025]),
    }
    when = rng.choice(["creationDateTime", "creationDate"])
    active = rng.choice(["accountIsActive", "isActive", "IsActive"])
    out = _obj(rng, fields, keep=0.85)
    if rng.random() < 0.5:
        out[when] = _maybe(rng, DATETIMES)
    if rng.random() < 0.5:
        out[active] = _maybe(rng, [True, False, "true", 1])
    if rng.random() < 0.1:  # both spellings: which one wins is the parser's business, the same in both
        out["creationDate"] = rng.choice(DATETIMES)
        out["creationDateTime"] = rng.choice(DATETIMES)
    return out


def _template_values(rng: random.Random) -> Any:
    if rng.random() < 0.1:
        return rng.choice(WRONG)
    return {rng.choice(CUSTOM_KEYS): _maybe(rng, TEXT) for _ in range(rng.choice([0, 1, 3, 21]))}


def _strategy(rng: random.Random, login: bool) -> Any:
    flag = lambda: _maybe(rng, [True, False])  # noqa: E731
    fields: dict[str, Any] = {
        "type": lambda: _maybe(rng, ["EMAIL", "SMS", "x" * 33]),
        "bindToDevice": flag,
        "forceNewChallenge": flag,
    }
    if login:
        fields["mfaTemplateName"] = lambda: _maybe(rng, ["email-link", "default", "x" * 101])
        fields["mfaTemplateValues"] = lambda: _template_values(rng)
    else:
        fields["verificationTemplateName"] = lambda: _maybe(rng, ["sms-code", "default"])
        fields["verificationTemplateValues"] = lambda: _template_values(rng)
        fields["verificationTargetUrl"] = lambda: rng.choice([{}, *URLS, None, 5, {"a": 1}])
    return _obj(rng, fields)


def _custom_fields(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice(WRONG)
    count = rng.choice([0, 1, 2, 4, 101])
    return {rng.choice(CUSTOM_KEYS) + str(i % 3): rng.choice(CUSTOM_VALUES) for i in range(count)}


def _body(rng: random.Random, login: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "inquiryId": lambda: _maybe(rng, IDS, wrong=0.05),
        "channel": lambda: _maybe(rng, ["WEB", "APP", "x" * 65]),
        "deviceSessionId": lambda: _maybe(rng, DEVICES, wrong=0.05),
        "userIp": lambda: _maybe(rng, IPS),
        "person": lambda: rng.choice(WRONG) if rng.random() < 0.05 else _person(rng),
        "account": lambda: rng.choice(WRONG) if rng.random() < 0.05 else _account(rng),
        "customFields": lambda: _custom_fields(rng),
        "preferredLanguageCode": lambda: _maybe(rng, LANGS),
        "strategy": lambda: rng.choice(WRONG) if rng.random() < 0.05 else _strategy(rng, login),
        # the other endpoint's fields, and fields no model has
        "loginUrl" if login else "accountCreationUrl": lambda: _maybe(rng, URLS),
        "accountCreationUrl" if login else "loginUrl": lambda: _maybe(rng, URLS),
        "unknownField": lambda: rng.choice([*WRONG, "\u0000", {"deep": ["\u0000"]}]),
    }
    body = _obj(rng, fields, keep=0.7)
    if rng.random() < 0.85:  # mostly present, so that the bodies get past them
        body.setdefault("inquiryId", rng.choice(IDS[:3]))
        body.setdefault("deviceSessionId", rng.choice(DEVICES[:2]))
    return body


def _valid_body(rng: random.Random, login: bool) -> dict[str, Any]:
    """A body of good values only (spelled variously), so that most reach the direct path."""
    body: dict[str, Any] = {
        "inquiryId": rng.choice(["inq1", "INQ_2.x", "Zoë9"]),
        "deviceSessionId": rng.choice(["dev1", "a" * 32, "x_y-z"]),
        "channel": rng.choice(["WEB", "APP"]),
        "userIp": rng.choice(IPS[:5]),
        "person": {
            "name": {"first": rng.choice(TEXT[:10]), "last": "Doe"},
            "emailAddress": rng.choice(EMAILS[:5]),
            "phoneNumber": rng.choice(PHONES[:3]),
            "addresses": [{"line1": "1 Main St", "countryCode": rng.choice(["US", "USA", "us", "GBR"])}],
        },
        "account": {
            "id": "acct-1",
            "username": rng.choice(TEXT[:7]),
            "creationDate": rng.choice(DATETIMES[:5]),
        },
        "customFields": {"tier": "gold", "cart": rng.choice([120.5, 7, 1e16, -0.0, True]), "a.b": "Zoë"},
        "strategy": {
            "type": rng.choice(["EMAIL", "SMS"]),
            "bindToDevice": rng.choice([True, False]),
            "mfaTemplateName" if login else "verificationTemplateName": "default",
            "mfaTemplateValues" if login else "verificationTemplateValues": {"code": rng.choice(TEXT[:7])},
        },
    }
    if not login and rng.random() < 0.5:
        body["strategy"]["verificationTargetUrl"] = URLS[0]
    for key in list(body):
        if key not in ("inquiryId", "deviceSessionId") and rng.random() < 0.3:
            del body[key]
    if rng.random() < 0.2:
        body["extra"] = {"ignored": [1, 2, None]}
    return body


def _raw(rng: random.Random, body: Any, clean: bool = False) -> bytes:
    """The body as JSON bytes, spelled one of several ways (`clean`: none that changes what it says)."""
    roll = rng.random() * (0.8 if clean else 1)
    if roll < 0.4:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    if roll < 0.7:
        return json.dumps(body, ensure_ascii=True).encode()  # non-ASCII as \\u escapes
    if roll < 0.8:
        return (" \n" + json.dumps(body, indent=2, ensure_ascii=False) + "\n ").encode()
    if roll < 0.9 and isinstance(body, dict) and body:  # a key sent twice (the last one counts)
        key = rng.choice(list(body))
        text = json.dumps(body, ensure_ascii=False)
        return (text[:-1] + f", {json.dumps(key)}: {json.dumps(rng.choice(WRONG))}" + "}").encode()
    text = json.dumps(body, ensure_ascii=False)
    return text.replace('"', "'", 1).encode() if rng.random() < 0.3 else text.encode()


ODD_BODIES = [
    b"",
    b" ",
    b"{",
    b"}",
    b"[]",
    b"null",
    b"true",
    b"1",
    b'"text"',
    b"\xff\xfe",
    b"\xef\xbb\xbf{}",
    b"{}",
    b'{"inquiryId": "a", "deviceSessionId": "b"}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "x": NaN}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "customFields": {"x": NaN}}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "customFields": {"x": Infinity, "y": -Infinity}}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "customFields": {"x": 1e999}}',
    b'{"inquiryId": "a\\u0000", "deviceSessionId": "b"}',
    b'{"inquiryId": "a\x00", "deviceSessionId": "b"}',
    b'{"inquiryId": "a\\\\u0000", "deviceSessionId": "b"}',
    b'{"inquiryId": "\\ud800", "deviceSessionId": "b"}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "person": null, "account": null, "strategy": null}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "person": {"addresses": [{"countryCode": ""}]}}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "person": {"addresses": [{"countryCode": null}]}}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "strategy": {"verificationTargetUrl": {}}}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "strategy": {"verificationTargetUrl": { }}}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "customFields": {"\\u0000": 1}}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "account": {"id": "x", "username": "y", "creationDate": null}}',
    b'{"inquiryId": "a", "inquiryId": "b", "deviceSessionId": "c"}',
    json.dumps(LOGIN_EXAMPLE).encode(),
]


# --- the comparison -----------------------------------------------------------------------------------


def _typed(value: Any) -> Any:
    """The value with every type spelled out and every dict's key order kept (1, 1.0 and True differ)."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, repr(value))


def _answer(read: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "payload", _typed(read(raw))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        return "errors", (
            [(e["type"], e["loc"], e["msg"], repr(e["input"])) for e in errors],
            validation_errors(errors),  # the fields and messages of the 400 answer
        )


def _check(model: type[BaseModel], bodies: list[bytes]) -> int:
    """Both readers on every body; how many the direct path answered itself."""
    direct, plain = DirectReader(model), PlainReader(model)
    assert direct.direct
    answered = 0
    for raw in bodies:
        expected = _answer(plain.read, raw)
        assert _answer(direct.read, raw) == expected, raw
        own = direct.direct_payload(raw)
        if own is not None:  # the direct path's own answer: a body the plain path accepts, read alike
            answered += 1
            assert expected == ("payload", _typed(own)), raw
            assert request_hash(own) == request_hash(plain.read(raw))
    return answered


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("seed", range(4))
def test_generated_bodies_read_alike(model: type[BaseModel], seed: int) -> None:
    rng = random.Random(f"{model.__name__}-{seed}")
    login = model is LoginRequest
    bodies = [_raw(rng, _body(rng, login)) for _ in range(1500)]
    bodies += [_raw(rng, _valid_body(rng, login), clean=True) for _ in range(1500)]
    answered = _check(model, bodies + ODD_BODIES)
    assert answered > 1000  # the direct path answers most good bodies itself (else this test proves little)


FALLBACKS = [
    b'{"inquiryId": "a\\u0000", "deviceSessionId": "b"}',  # a NUL: the NUL check is the plain path's
    b'{"inquiryId": "a\x00", "deviceSessionId": "b"}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "unknown": "\\u0000"}',  # even where it is ignored
    b'{"inquiryId": "a", "deviceSessionId": "b", "channel": null}',
    b'{"inquiryId": "a", "deviceSessionId": "b", "person": {"addresses": [{"countryCode": ""}]}}',
    b'{"inquiryId": "a-b", "deviceSessionId": "b"}',  # invalid: the errors are the plain path's
]
OPENING_FALLBACKS = [
    b'{"inquiryId": "a", "deviceSessionId": "b", "strategy": {"verificationTargetUrl": { }}}'
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_fallback_bodies_read_alike(model: type[BaseModel]) -> None:
    """The bodies the direct path leaves to the plain one: NULs, JSON nulls, empty codes and URLs, invalid
    ones."""
    reader = DirectReader(model)
    fallbacks = FALLBACKS + (OPENING_FALLBACKS if model is AccountOpeningRequest else [])
    for raw in fallbacks:
        assert reader.direct_payload(raw) is None, raw
    assert _check(model, ODD_BODIES + fallbacks) >= 2


def test_a_datetime_is_written_as_the_dump_writes_it() -> None:
    for when in DATETIMES[:5] + [1_700_000_000, 1_700_000_000.25, "2024-01-02T03:04:05.000001-00:00"]:
        body = {
            "inquiryId": "a",
            "deviceSessionId": "b",
            "account": {"id": "x", "username": "y", "creationDate": when},
        }
        raw = json.dumps(body).encode()
        payload = DirectReader(LoginRequest).direct_payload(raw)
        assert payload is not None
        assert payload == PlainReader(LoginRequest).read(raw)
        assert isinstance(payload["account"]["creationDateTime"], str)


def test_explicit_nulls_are_left_out_as_the_dump_leaves_them_out() -> None:
    raw = b'{"inquiryId": "a", "deviceSessionId": "b", "channel": null, "person": {"name": null}}'
    assert DirectReader(LoginRequest).read(raw) == {
        "inquiryId": "a",
        "deviceSessionId": "b",
        "person": {"addresses": []},
        "customFields": {},
    }


# --- what the rewrite refuses: such models are read by the plain path -----------------------------------


class _WithComputed(_In):
    a: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def b(self) -> str:
        return self.a * 2


class _WithSerializer(_In):
    a: str

    @field_serializer("a")
    def _upper(self, value: str) -> str:
        return value.upper()


class _WithModelValidator(_In):
    a: str

    @model_validator(mode="after")
    def _check(self) -> _WithModelValidator:
        return self


class _Inner(_In):
    a: str

    @model_validator(mode="before")
    @classmethod
    def _rename(cls, data: Any) -> Any:
        return {"a": data.get("x", "")} if isinstance(data, dict) else data


class _WithNested(_In):
    inner: _Inner
    when: datetime | None = None


class _WithAnyDefault(_In):
    a: list[str] = ["x"]  # noqa: RUF012


class _WithAllowedExtra(_In):
    model_config = {"extra": "allow"}
    a: str


class _WithSet(_In):
    a: set[int]


@pytest.mark.parametrize(
    "model",
    [
        _WithComputed,
        _WithSerializer,
        _WithModelValidator,
        _WithNested,
        _WithAnyDefault,
        _WithAllowedExtra,
        _WithSet,
    ],
    ids=lambda m: m.__name__,
)
def test_what_the_rewrite_cannot_keep_takes_the_plain_path(model: type[BaseModel]) -> None:
    reader = DirectReader(model)
    assert not reader.direct
    for raw in (b'{"a": "v", "b": 1}', b'{"inner": {"x": "y"}}', b'{"a": [1, 2]}', b"{}"):
        assert _answer(reader.read, raw) == _answer(PlainReader(model).read, raw)


def test_the_decision_routes_read_directly() -> None:
    from passgate.api.decisions import READERS

    assert set(READERS) == set(MODELS)
    assert all(isinstance(r, DirectReader) and r.direct for r in READERS.values())
