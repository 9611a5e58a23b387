"""Every setting is checked when the settings are read, and each mistake is one line naming its variable."""

from __future__ import annotations

import pytest

from passgate.config import (
    MIN_SECRET_KEY_LENGTH,
    InvalidConfiguration,
    generate_secret_key,
    load_settings,
)

PREFIX = "passgate: invalid configuration: "
GOOD_KEY = "k" * MIN_SECRET_KEY_LENGTH


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("PASSGATE_"):
            monkeypatch.delenv(name)


def problems(**settings: object) -> list[str]:
    with pytest.raises(InvalidConfiguration) as caught:
        load_settings(**settings)
    lines = caught.value.lines()
    assert all(line.startswith(PREFIX + "PASSGATE_") for line in lines), lines
    return [line.removeprefix(PREFIX) for line in lines]


@pytest.mark.parametrize(
    ("settings", "variable", "words"),
    [
        ({"environment": "production"}, "PASSGATE_SECRET_KEYS", "must be set in production"),
        ({"secret_keys": "short"}, "PASSGATE_SECRET_KEYS", "at least 32 characters"),
        ({"secret_keys": f"{GOOD_KEY},tooshort"}, "PASSGATE_SECRET_KEYS", "key 2 of 2 has 8"),
        ({"secret_keys": f"{GOOD_KEY},{GOOD_KEY}"}, "PASSGATE_SECRET_KEYS", "twice"),
        ({"sms_provider": "twillio"}, "PASSGATE_SMS_PROVIDER", "did you mean twilio?"),
        ({"sms_provider": "dev,dev"}, "PASSGATE_SMS_PROVIDER", "twice"),
        ({"smtp_url": "smtp//bad"}, "PASSGATE_SMTP_URL", "must be smtp://"),
        ({"smtp_url": "http://mail.example.com"}, "PASSGATE_SMTP_URL", "must be smtp://"),
        ({"smtp_url": "smtp://"}, "PASSGATE_SMTP_URL", "names no host"),
        ({"smtp_url": "smtp://mail.example.com:99999"}, "PASSGATE_SMTP_URL", "port"),
        ({"smtp_url": "smtp://mail.example.com?pool=0"}, "PASSGATE_SMTP_URL", "pool"),
        ({"smtp_url": "smtp://mail.example.com?pol=3"}, "PASSGATE_SMTP_URL", "unknown parameter"),
        ({"sms_provider": "http"}, "PASSGATE_SMS_HTTP_URL", "must be set"),
        ({"sms_provider": "http", "sms_http_url": "gateway:8080"}, "PASSGATE_SMS_HTTP_URL", "http://"),
        ({"database_url": "mysql://db/passgate"}, "PASSGATE_DATABASE_URL", "postgresql://"),
        ({"database_url": "passgate.db"}, "PASSGATE_DATABASE_URL", "sqlite:///"),
        ({"public_url": "localhost:8000"}, "PASSGATE_PUBLIC_URL", "http:// or https://"),
        ({"public_url": "https://"}, "PASSGATE_PUBLIC_URL", "names no host"),
        ({"public_url": "https://a.example/?x=1"}, "PASSGATE_PUBLIC_URL", "plain base URL"),
        ({"redis_url": "localhost:6379"}, "PASSGATE_REDIS_URL", "redis://"),
        ({"message_retry_seconds": "2,five"}, "PASSGATE_MESSAGE_RETRY_SECONDS", "'five' is not a number"),
        ({"message_retry_seconds": "2,-5"}, "PASSGATE_MESSAGE_RETRY_SECONDS", "'-5'"),
        ({"message_retry_seconds": " , "}, "PASSGATE_MESSAGE_RETRY_SECONDS", "at least one delay"),
        ({"webhook_retry_seconds": "5,nan"}, "PASSGATE_WEBHOOK_RETRY_SECONDS", "'nan'"),
        ({"webhook_retry_seconds": "inf"}, "PASSGATE_WEBHOOK_RETRY_SECONDS", "'inf'"),
        ({"log_level": "verbose"}, "PASSGATE_LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ({"environment": "prod"}, "PASSGATE_ENVIRONMENT", "must be development or production (got 'prod')"),
        ({"message_lock_seconds": "0"}, "PASSGATE_MESSAGE_LOCK_SECONDS", "at least 1"),
        ({"webhook_timeout_seconds": "99"}, "PASSGATE_WEBHOOK_TIMEOUT_SECONDS", "at most 60"),
        ({"token_ttl_seconds": "soon"}, "PASSGATE_TOKEN_TTL_SECONDS", "whole number"),
        ({"workers_in_process": "maybe"}, "PASSGATE_WORKERS_IN_PROCESS", "process, thread or off"),
        ({"mail_from": "nobody"}, "PASSGATE_MAIL_FROM", "email address"),
        ({"console_sign_in_rates_ip": "lots"}, "PASSGATE_CONSOLE_SIGN_IN_RATES_IP", "rates like"),
        ({"twilio_base_url": "api.twilio.com"}, "PASSGATE_TWILIO_BASE_URL", "http://"),
        ({"sms_http_secret": "not-a-secret"}, "PASSGATE_SMS_HTTP_SECRET", "whsec_"),
        ({"sms_http_secret": "whsec_c2hvcnQ="}, "PASSGATE_SMS_HTTP_SECRET", "bytes"),
        ({"oauth_failure_rates_ip": "lots"}, "PASSGATE_OAUTH_FAILURE_RATES_IP", "rates like"),
        ({"http_max_header_bytes": "10"}, "PASSGATE_HTTP_MAX_HEADER_BYTES", "at least 1024"),
        (
            {
                "environment": "production",
                "secret_keys": GOOD_KEY,
                "sms_provider": "http",
                "sms_http_url": "https://gw.example/send",
            },
            "PASSGATE_SMS_HTTP_SECRET",
            "must be set in production",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_its_variable(
    settings: dict[str, object], variable: str, words: str
) -> None:
    [line] = problems(**settings)
    assert line.startswith(f"{variable}: ") and words in line, line


def test_twilio_without_credentials_names_each_missing_variable() -> None:
    assert problems(
        sms_provider="http,twilio", sms_http_url="https://gw.example", twilio_from="+12015550100"
    ) == [
        "PASSGATE_TWILIO_ACCOUNT_SID: must be set when PASSGATE_SMS_PROVIDER names twilio",
        "PASSGATE_TWILIO_AUTH_TOKEN: must be set when PASSGATE_SMS_PROVIDER names twilio",
    ]


def test_several_mistakes_are_all_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSGATE_SMS_PROVIDER", "twillio")
    monkeypatch.setenv("PASSGATE_SMTP_URL", "smtp//bad")
    monkeypatch.setenv("PASSGATE_LOG_LEVEL", "loud")
    got = problems()
    assert sorted(line.split(":")[0] for line in got) == [
        "PASSGATE_LOG_LEVEL",
        "PASSGATE_SMS_PROVIDER",
        "PASSGATE_SMTP_URL",
    ]


def test_secret_values_are_never_repeated() -> None:
    secret = "hunter2-and-more"
    for line in (
        problems(secret_keys=secret)
        + problems(smtp_url=f"smtp://ann:{secret}@mail.example.com:notaport")
        + problems(database_url=f"mysql://ann:{secret}@db/x")
        + problems(key_cache_seconds=secret)
    ):
        assert secret not in line, line


def test_good_settings_are_kept_and_normalised() -> None:
    s = load_settings(
        environment="production",
        secret_keys=f" {GOOD_KEY} ,{'j' * 40}",
        sms_provider=" twilio , http ",
        sms_http_url="https://gw.example/send",
        sms_http_secret="whsec_" + "A" * 43,
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="token",
        twilio_from="+12015550100",
        smtp_url="smtps://u:p%40ss@mail.example.com?pool=4",
        database_url="postgresql://passgate:pw@db:5432/passgate",
        public_url="https://passgate.example.com/",
        redis_url="rediss://cache:6380/1",
        log_level="warning",
    )
    assert s.secret_key_list == [GOOD_KEY.encode(), b"j" * 40]
    assert s.sms_provider == "twilio,http"
    assert s.public_url == "https://passgate.example.com"
    assert s.log_level == "WARNING"
    assert load_settings(secret_keys="", smtp_url="").secret_keys is None  # empty means unset


def test_a_generated_key_is_a_valid_production_key() -> None:
    keys = {generate_secret_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(key) == 64 and key.replace("-", "").replace("_", "").isalnum()
        assert load_settings(environment="production", secret_keys=key).secret_key_list == [key.encode()]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("localhost", "domain name"),
        ("bounces..example.com", "domain name"),
        ("bounces_example.com", "domain name"),
        ("{domain}.{domain}", "domain name"),
        ("bounce.{domian}", "domain name"),
        ("bounces.example.com:25", "domain name"),
    ],
)
def test_a_bounce_domain_is_a_domain(value: str, words: str) -> None:
    [line] = problems(bounce_domain=value)
    assert line.startswith("PASSGATE_BOUNCE_DOMAIN: ") and words in line, line


def test_bounce_settings() -> None:
    s = load_settings(
        bounce_domain=" Bounce.{domain}. ", bounce_local_part="rt-1", bounce_secret="whsec_" + "A" * 43
    )
    assert (s.bounce_domain, s.bounce_local_part) == ("bounce.{domain}", "rt-1")
    assert load_settings(bounce_domain="").bounce_domain is None
    [line] = problems(bounce_local_part="Bounces+x")
    assert line.startswith("PASSGATE_BOUNCE_LOCAL_PART: "), line
    [line] = problems(bounce_local_part="a-very-long-local")
    assert line.startswith("PASSGATE_BOUNCE_LOCAL_PART: "), line
    [line] = problems(bounce_secret="not-a-secret")
    assert line.startswith("PASSGATE_BOUNCE_SECRET: ") and "whsec_" in line, line


@pytest.mark.parametrize(
    ("value", "layout"),
    [
        (None, "process"),
        ("process", "process"),
        ("Thread", "thread"),
        ("off", "off"),
        ("true", "thread"),  # what true meant before there were three
        ("1", "thread"),
        ("false", "off"),
        ("no", "off"),
    ],
)
def test_where_serve_runs_its_workers(
    monkeypatch: pytest.MonkeyPatch, value: str | None, layout: str
) -> None:
    if value is not None:
        monkeypatch.setenv("PASSGATE_WORKERS_IN_PROCESS", value)
    assert load_settings().workers_in_process == layout
