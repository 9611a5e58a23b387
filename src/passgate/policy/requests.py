"""The request bodies of a decision, POST /login/v2 and /newaccountopening/v2 (Kount 360 wire format):
what the API, the console's simulation and the policy simulation take as a decision's input."""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Protocol

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic_core import SchemaValidator, to_jsonable_python

from passgate.contacts import email_verdict, is_possible_phone
from passgate.countries import UNKNOWN_COUNTRY, alpha2

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
CUSTOM_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

CustomValue = Annotated[StrictStr, Field(max_length=256)] | StrictBool | StrictInt | StrictFloat
TemplateValues = dict[Annotated[str, Field(max_length=64)], Annotated[StrictStr, Field(max_length=256)]]


@lru_cache(maxsize=20_000)
def _normalised_ip(value: str) -> str | None:
    # ipaddress parsing costs more than the rest of a login body's validation; addresses repeat.
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _no_nul(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain a NUL character")
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_nul(k)
            _no_nul(v)
    elif isinstance(value, list):
        for v in value:
            _no_nul(v)


class _In(BaseModel):
    # Unknown attributes are ignored so integrations sending Kount fields Passgate does not use still work.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _text_without_nul(cls, value: Any) -> Any:
        # No database stores NUL in text (PostgreSQL refuses it); refuse it here, naming the field.
        _no_nul(value)
        return value


class Name(_In):
    first: StrictStr | None = Field(default=None, max_length=256)
    last: StrictStr | None = Field(default=None, max_length=256)
    preferred: StrictStr | None = Field(default=None, max_length=256)


class Address(_In):
    addressType: StrictStr | None = Field(default=None, max_length=64)
    line1: StrictStr | None = Field(default=None, max_length=256)
    line2: StrictStr | None = Field(default=None, max_length=256)
    city: StrictStr | None = Field(default=None, max_length=256)
    region: StrictStr | None = Field(default=None, max_length=256)
    postalCode: StrictStr | None = Field(default=None, max_length=32)
    countryCode: StrictStr | None = Field(
        default=None,
        max_length=3,
        description="ISO 3166-1 alpha-2 or alpha-3 (`US` or `USA`); held and echoed as alpha-2",
        examples=["USA"],
    )

    @field_validator("countryCode")
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None  # an empty code, as some integrations send for "unknown", is no code
        code = alpha2(v)
        if code is None:
            raise ValueError(UNKNOWN_COUNTRY)
        return code


class Person(_In):
    name: Name | None = None
    emailAddress: StrictStr | None = Field(default=None, max_length=254, examples=["jo@example.com"])
    phoneNumber: StrictStr | None = Field(default=None, max_length=16, examples=["+15551234567"])
    addresses: list[Address] = Field(default_factory=list, max_length=10)

    @field_validator("emailAddress")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is None:
            return v
        normalised, error = email_verdict(v)
        if error is not None:
            raise ValueError(f"not a valid email address: {error}")
        return normalised

    @field_validator("phoneNumber")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is not None and not E164.match(v):
            raise ValueError("phone number must be in E.164 form, e.g. +15551234567")
        if v is not None and not is_possible_phone(v):
            raise ValueError("not a possible phone number (wrong length for its country code)")
        return v


class Account(_In):
    id: StrictStr = Field(min_length=1, max_length=256, examples=["acct-1001"])
    username: StrictStr = Field(min_length=1, max_length=256, examples=["jo"])
    type: StrictStr | None = Field(default=None, max_length=64)
    creationDateTime: datetime | None = Field(
        default=None,
        # Kount's published sample bodies spell it creationDate; both name the same attribute.
        validation_alias=AliasChoices("creationDateTime", "creationDate"),
    )
    userPassword: StrictStr | None = Field(
        default=None, max_length=1024, description="a hash of the password; used for signals, never stored"
    )
    accountIsActive: StrictBool | None = Field(
        default=None,
        # Kount's v2 change list names it account.IsActive; its reference accountIsActive.
        validation_alias=AliasChoices("accountIsActive", "isActive", "IsActive"),
    )


class LoginStrategy(_In):
    mfaTemplateName: StrictStr | None = Field(
        default=None,
        max_length=100,
        description="the template to send; `default`: the client's default for the channel (docs/templates.md)",
        examples=["email-link"],
    )
    mfaTemplateValues: TemplateValues = Field(default_factory=dict, max_length=20)
    type: StrictStr | None = Field(
        default=None,
        max_length=32,
        description="Kount's channel hint (`EMAIL` or `SMS`): only picks the channel of the template `default`",
        examples=["EMAIL"],
    )
    bindToDevice: StrictBool = False
    forceNewChallenge: StrictBool = Field(
        default=False,
        description=(
            "extension: start a new session and send a new message even when one for the same account, "
            "device and destination is still pending (by default that one is returned and nothing is sent)"
        ),
    )


class AccountOpeningStrategy(_In):
    verificationTemplateName: StrictStr | None = Field(
        default=None,
        max_length=100,
        description="the template to send; `default`: the client's default for the channel (docs/templates.md)",
        examples=["email-link"],
    )
    verificationTemplateValues: TemplateValues = Field(default_factory=dict, max_length=20)
    verificationTargetUrl: StrictStr | None = Field(default=None, max_length=2048)
    type: StrictStr | None = Field(
        default=None,
        max_length=32,
        description="Kount's channel hint (`EMAIL` or `SMS`): only picks the channel of the template `default`",
        examples=["EMAIL"],
    )
    bindToDevice: StrictBool = False
    forceNewChallenge: StrictBool = Field(
        default=False,
        description=(
            "extension: start a new session and send a new message even when one for the same account, "
            "device and destination is still pending (by default that one is returned and nothing is sent)"
        ),
    )

    @field_validator("verificationTargetUrl", mode="before")
    @classmethod
    def _empty_object_is_none(cls, v: Any) -> Any:
        # Kount's published account-opening sample sends `"verificationTargetUrl": {}` for "none".
        return None if v == {} else v

    @field_validator("verificationTargetUrl")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", v):
            raise ValueError("must be an absolute http(s) URL")
        return v


class _Decisionable(_In):
    inquiryId: StrictStr = Field(
        min_length=1, max_length=256, pattern=r"^[^-]+$", description="your id for this inquiry; no '-'"
    )
    channel: StrictStr | None = Field(default=None, max_length=64, examples=["WEB"])
    deviceSessionId: StrictStr = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$", examples=["a1b2c3d4e5"])
    userIp: StrictStr | None = Field(default=None, max_length=45, examples=["203.0.113.7"])
    person: Person | None = None
    account: Account | None = None
    customFields: dict[str, CustomValue] = Field(default_factory=dict, max_length=100)
    preferredLanguageCode: StrictStr | None = Field(
        default=None, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", description="extension: message locale"
    )

    @field_validator("userIp")
    @classmethod
    def _ip(cls, v: str | None) -> str | None:
        if v is None:
            return v
        normalised = _normalised_ip(v)
        if normalised is None:
            raise ValueError("not an IPv4 or IPv6 address")
        return normalised

    @field_validator("customFields")
    @classmethod
    def _custom_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k in v:
            if not CUSTOM_KEY.match(k):
                raise ValueError(f"custom field name {k!r} must be 1-64 characters of A-Z a-z 0-9 _ . -")
        return v


LOGIN_EXAMPLE: dict[str, Any] = {
    "inquiryId": "inq0001",
    "channel": "WEB",
    "deviceSessionId": "ds0001abc",
    "userIp": "203.0.113.7",
    "loginUrl": "https://shop.example.com/login",
    "person": {"name": {"first": "Jo", "last": "Doe"}, "emailAddress": "jo@example.com"},
    "account": {"id": "acct-1001", "username": "jo", "type": "PRO"},
    "strategy": {"mfaTemplateName": "email-link"},
    "customFields": {"loyaltyTier": "gold", "cartValue": 120.5},
}


class LoginRequest(_Decisionable):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [LOGIN_EXAMPLE]})

    loginUrl: StrictStr | None = Field(default=None, max_length=2048)
    strategy: LoginStrategy | None = None


class AccountOpeningRequest(_Decisionable):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "inquiryId": "inq0002",
                    "deviceSessionId": "ds0002abc",
                    "accountCreationUrl": "https://shop.example.com/signup",
                    "person": {"emailAddress": "new@example.com", "phoneNumber": "+15551234567"},
                    "account": {"id": "acct-2002", "username": "newbie"},
                    "strategy": {
                        "verificationTemplateName": "sms-code",
                        "verificationTargetUrl": "https://shop.example.com/welcome",
                    },
                }
            ]
        },
    )

    accountCreationUrl: StrictStr | None = Field(default=None, max_length=2048)
    strategy: AccountOpeningStrategy | None = None


# --- reading a body ------------------------------------------------------------------------------------


class RequestReader(Protocol):
    """Reads a decision's request body from its JSON bytes into the payload the decision runs on: what
    `model.model_validate_json(raw).model_dump(mode="json", exclude_none=True)` gives (the same keys in
    the same order, the same values), or the `ValidationError` that validation raises."""

    model: type[BaseModel]

    def read(self, raw: bytes) -> dict[str, Any]: ...


class PlainReader:
    """The plain path, and the judge of `DirectReader`: the model validated, then dumped."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model

    def read(self, raw: bytes) -> dict[str, Any]:
        return self.model.model_validate_json(raw).model_dump(mode="json", exclude_none=True)


class _Unsupported(Exception):
    """A part of a model's schema `_as_dicts` does not rewrite: the reader takes the plain path."""


# Model configuration that only bears on validation, where `_as_dicts` takes the model's configuration
# over to the dict it builds instead. Anything else (serialisation settings say) leaves the plain path.
_VALIDATION_CONFIG = frozenset(
    {
        "title",
        "extra_fields_behavior",
        "str_strip_whitespace",
        "strict",
        "validate_by_alias",
        "validate_by_name",
        "loc_by_alias",
        "hide_input_in_errors",
        "validation_error_cause",
        "regex_engine",
    }
)
_MODEL_KEYS = frozenset({"type", "cls", "schema", "config", "ref", "metadata", "custom_init", "root_model"})
_MODEL_FIELDS_KEYS = frozenset({"type", "fields", "model_name", "computed_fields"})
_SCALARS = frozenset({"str", "bool", "int", "float"})
_CONSTANT_DEFAULTS = (str, bool, int, float)
_NUL_CHECK = _In._text_without_nul.__func__  # type: ignore[attr-defined]


def _json_datetime(value: datetime) -> Any:
    return to_jsonable_python(value)  # what model_dump(mode="json") writes for a datetime


def _refusing_none(function: Any, with_info: bool) -> Any:
    """`function`, but a None it returns fails validation (the reader then takes the plain path, where
    None is a value `exclude_none` drops)."""
    if with_info:

        def checked_with_info(value: Any, info: Any) -> Any:
            result = function(value, info)
            if result is None:
                raise ValueError("None")
            return result

        return checked_with_info

    def checked(value: Any) -> Any:
        result = function(value)
        if result is None:
            raise ValueError("None")
        return result

    return checked


def _unwrapped(schema: dict[str, Any]) -> dict[str, Any]:
    while schema["type"] in ("nullable", "default"):
        schema = schema["schema"]
    return schema


def _as_dicts(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's core schema rewritten to validate straight into the payload `PlainReader` makes, for a
    body without NUL characters: every model a typed dict of the same fields (key order is field order,
    as model_dump's); a field defaulting to None left out when missing; None refused wherever it could
    come from (a JSON null, a validator's result); datetimes written as
    model_dump(mode="json") writes them; the NUL check (`_In._text_without_nul`) left out. What it cannot
    rewrite raises `_Unsupported`."""
    if "serialization" in schema or ("ref" in schema and schema["type"] != "model"):
        raise _Unsupported("a serialiser or a shared definition")
    kind = schema["type"]
    if kind == "model":
        return _model_as_dict(schema)
    if kind == "nullable":
        return _as_dicts(schema["schema"])
    if kind in ("function-after", "function-before"):
        function = schema["function"]
        if getattr(function["function"], "__func__", None) is _NUL_CHECK:
            return _as_dicts(schema["schema"])
        if _unwrapped(schema["schema"])["type"] == "model":
            raise _Unsupported("a validator of a model")
        with_info = function["type"] == "with-info"
        checked = {**function, "function": _refusing_none(function["function"], with_info)}
        return {**schema, "function": checked, "schema": _as_dicts(schema["schema"])}
    if kind in _SCALARS:
        return schema
    if kind == "datetime":
        after = {"type": "no-info", "function": _json_datetime}
        return {"type": "function-after", "function": after, "schema": schema}
    if kind == "list" and "items_schema" in schema:
        return {**schema, "items_schema": _as_dicts(schema["items_schema"])}
    if kind == "dict" and "keys_schema" in schema and "values_schema" in schema:
        keys, values = _as_dicts(schema["keys_schema"]), _as_dicts(schema["values_schema"])
        return {**schema, "keys_schema": keys, "values_schema": values}
    if kind == "union":
        choices = [
            _as_dicts(c) if isinstance(c, dict) else (_as_dicts(c[0]), c[1]) for c in schema["choices"]
        ]
        return {**schema, "choices": choices}
    raise _Unsupported(kind)


def _model_as_dict(schema: dict[str, Any]) -> dict[str, Any]:
    fields_schema = schema["schema"]
    config = schema.get("config", {})
    plain_model = (
        set(schema) <= _MODEL_KEYS
        and not schema.get("root_model")
        and not schema.get("custom_init")
        and fields_schema["type"] == "model-fields"
        and set(fields_schema) <= _MODEL_FIELDS_KEYS
        and not fields_schema.get("computed_fields")
        and set(config) <= _VALIDATION_CONFIG
        and config.get("extra_fields_behavior", "ignore") != "allow"
    )
    if not plain_model:
        raise _Unsupported("a model with more than fields")
    fields: dict[str, Any] = {}
    for name, field in fields_schema["fields"].items():
        if set(field) - {"type", "schema", "validation_alias", "metadata"}:
            raise _Unsupported("a field with serialisation settings")
        inner = field["schema"]
        required = inner["type"] != "default"
        if not required:
            if set(inner) - {"type", "schema", "default", "default_factory", "default_factory_takes_data"}:
                raise _Unsupported("a default with settings")
            if "default_factory" in inner:
                if inner["default_factory"] not in (dict, list) or inner.get("default_factory_takes_data"):
                    raise _Unsupported("a default factory")
                inner = {**inner, "schema": _as_dicts(inner["schema"])}
            elif inner["default"] is None:
                inner = _as_dicts(inner["schema"])  # missing stays missing: exclude_none drops it
            elif type(inner["default"]) in _CONSTANT_DEFAULTS:
                inner = {**inner, "schema": _as_dicts(inner["schema"])}
            else:
                raise _Unsupported("a default that is not a JSON scalar")
        else:
            inner = _as_dicts(inner)
        typed: dict[str, Any] = {"type": "typed-dict-field", "schema": inner, "required": required}
        if "validation_alias" in field:
            typed["validation_alias"] = field["validation_alias"]
        fields[name] = typed
    return {
        "type": "typed-dict",
        "fields": fields,
        "extra_behavior": config.get("extra_fields_behavior", "ignore"),
        "config": config,
    }


class DirectReader:
    """Validates straight into the payload, with no model instances and no dump: the model's schema
    rewritten by `_as_dicts`. A body it does not accept, or one with a NUL character (`\\u0000` or a zero
    byte: the NUL check was left out), is read by the plain path, which gives the payload or the errors;
    so every error comes from the plain path, and the direct one only answers bodies that both accept.
    tests/unit/policy/test_requests.py holds the two to the same answers on generated bodies."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self.plain = PlainReader(model)
        try:
            self._validator: SchemaValidator | None = SchemaValidator(
                _as_dicts(dict(model.__pydantic_core_schema__))
            )
        except _Unsupported:
            self._validator = None

    @property
    def direct(self) -> bool:
        """Whether the model's schema could be rewritten (else every body takes the plain path)."""
        return self._validator is not None

    def direct_payload(self, raw: bytes) -> dict[str, Any] | None:
        """The payload read by the rewritten schema; None where the plain path has to read the body."""
        if self._validator is None or b"\\u0000" in raw or b"\x00" in raw:
            return None
        try:
            return self._validator.validate_json(raw)  # type: ignore[no-any-return]
        except ValidationError:
            return None

    def read(self, raw: bytes) -> dict[str, Any]:
        payload = self.direct_payload(raw)
        return self.plain.read(raw) if payload is None else payload
