"""The request bodies of a decision, POST /login/v2 and /newaccountopening/v2 (Kount 360 wire format):
what the API, the console's simulation and the policy simulation take as a decision's input."""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

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
