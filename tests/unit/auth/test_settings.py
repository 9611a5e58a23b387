"""A client's MFA settings: defaults, the stored row over them (read as an ORM row or as a plain row,
the same), and the one write the API and the console share."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from passgate.auth.models import Client
from passgate.auth.settings import (
    ClientSettings,
    MfaConfig,
    SettingsBody,
    StoredSettings,
    config_from,
    resolve_config,
    settings_view,
    update_settings,
)
from passgate.db import make_sessionmaker, transaction
from passgate.ids import new_uuid

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_no_row_means_the_defaults_with_the_home_country() -> None:
    assert config_from("FR", None) == MfaConfig(sms_allowed_countries=("FR",))
    assert MfaConfig().ttl("EMAIL", "NONCE_OTH", "LOGIN") == 600
    assert MfaConfig().ttl("EMAIL", "NONCE_OTH", "ACCOUNT_OPENING") == 86400
    assert MfaConfig().ttl("SMS", "OTP", "LOGIN") == 600


def test_a_stored_value_replaces_its_default_and_a_null_keeps_it() -> None:
    stored = StoredSettings(900, None, 8, None, 2, ["US", "CA"], True)
    config = config_from("US", stored)
    assert config == MfaConfig(
        otp_ttl=600,
        sms_link_ttl=900,
        login_email_link_ttl=900,
        opening_email_link_ttl=900,
        otp_length=8,
        max_attempts=5,
        max_sends=2,
        sms_allowed_countries=("US", "CA"),
        reject_voip=True,
    )


@pytest.mark.parametrize(
    "values",
    [
        (None, None, None, None, None, None, None),
        (120, 300, 4, 1, 10, ["GB"], False),
        (604800, 3600, 10, 10, 1, [], None),
    ],
)
def test_a_plain_row_reads_as_the_orm_row(values: tuple[object, ...]) -> None:
    """The challenge path reads the settings as a plain row (`StoredSettings`); resolve_config as an ORM
    object. Both give the same configuration."""
    plain = StoredSettings(*values)  # type: ignore[arg-type]
    orm = ClientSettings(client_id="c", updated_at=NOW, **plain._asdict())
    assert config_from("US", plain) == config_from("US", orm)


def test_update_settings_writes_and_resets(engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    client_id = "cl_" + new_uuid().replace("-", "")[:20]
    with transaction(sessions) as session:
        session.add(Client(id=client_id, name="Settings Co", country="DE", sandbox=False, created_at=NOW))
    body = SettingsBody(otpLength=8, smsAllowedCountries=["de", "at"], rejectVoip=True)
    with transaction(sessions) as session:
        update_settings(session, client_id, body, NOW)
    with transaction(sessions) as session:
        client = session.get(Client, client_id)
        assert client is not None
        config = resolve_config(session, client)
        assert (config.otp_length, config.sms_allowed_countries, config.reject_voip) == (
            8,
            ("AT", "DE"),
            True,
        )
        assert settings_view(session, client_id)["homeCountry"] == "DE"
        update_settings(session, client_id, SettingsBody(), NOW)  # everything back to the defaults
    with transaction(sessions) as session:
        client = session.get(Client, client_id)
        assert client is not None
        assert resolve_config(session, client) == MfaConfig(sms_allowed_countries=("DE",))
