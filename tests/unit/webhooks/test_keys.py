"""Secret rotation on an endpoint (no database: the rotation only changes the row's sealed columns)."""

from datetime import timedelta

import pytest

from passgate.clock import FrozenClock
from passgate.keyring import KeyRing
from passgate.webhooks.exceptions import WrongSignatureScheme
from passgate.webhooks.keys import SigningKeys, secret_context
from passgate.webhooks.models import WebhookEndpoint


def _keys(clock: FrozenClock) -> SigningKeys:
    return SigningKeys(keyring=KeyRing([b"k" * 32]), clock=clock, secret_overlap=timedelta(hours=24))


def _endpoint(scheme: str = "standard-webhooks") -> WebhookEndpoint:
    return WebhookEndpoint(id="ep-1", client_id="c-1", url="https://x.example/h", signature_scheme=scheme)


def test_a_new_secret_is_sealed_to_its_endpoint() -> None:
    keys, endpoint = _keys(FrozenClock()), _endpoint()
    secret = keys.new_secret(endpoint)
    assert secret.startswith("whsec_")
    assert endpoint.sealed_secret and secret not in endpoint.sealed_secret
    assert keys.keyring.unseal(endpoint.sealed_secret, secret_context("ep-1")) == secret
    with pytest.raises(ValueError):
        keys.keyring.unseal(endpoint.sealed_secret, secret_context("ep-2"))


def test_rotation_keeps_the_previous_secret_signing_for_the_overlap() -> None:
    clock = FrozenClock()
    keys, endpoint = _keys(clock), _endpoint()
    first = keys.new_secret(endpoint)
    second = keys.rotate_secret(endpoint)
    assert endpoint.previous_secret_until == clock.now() + timedelta(hours=24)
    assert endpoint.updated_at == clock.now()
    assert keys.signing_secrets(endpoint, clock.now()) == [second, first]
    assert keys.signing_secrets(endpoint, clock.advance(hours=24)) == [second]


def test_rotation_without_overlap_drops_the_previous_secret() -> None:
    clock = FrozenClock()
    keys, endpoint = _keys(clock), _endpoint()
    keys.new_secret(endpoint)
    secret = keys.rotate_secret(endpoint, timedelta(0))
    assert endpoint.sealed_previous_secret is None and endpoint.previous_secret_until is None
    assert keys.signing_secrets(endpoint, clock.now()) == [secret]


def test_an_rsa_endpoint_has_no_secret_to_rotate() -> None:
    with pytest.raises(WrongSignatureScheme):
        _keys(FrozenClock()).rotate_secret(_endpoint("kount-rsa-pss"))
