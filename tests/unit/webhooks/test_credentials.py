"""The worker's signing secrets: the previous one only during its overlap, each unsealed once."""

from datetime import timedelta

from passgate.clock import FrozenClock
from passgate.keyring import KeyRing
from passgate.webhooks.credentials import DeliveryCredentials
from passgate.webhooks.keys import SigningKeys, secret_context


class CountingKeyRing(KeyRing):
    def __init__(self) -> None:
        super().__init__([b"k" * 32])
        self.unsealed = 0

    def unseal(self, sealed: str, context: str) -> str:
        self.unsealed += 1
        return super().unseal(sealed, context)


def _setup() -> tuple[FrozenClock, CountingKeyRing, DeliveryCredentials]:
    clock, ring = FrozenClock(), CountingKeyRing()
    return clock, ring, DeliveryCredentials(SigningKeys(keyring=ring, clock=clock), clock)


def test_the_previous_secret_signs_only_until_its_overlap_ends() -> None:
    clock, ring, credentials = _setup()
    current = ring.seal("whsec_current", secret_context("ep"))
    previous = ring.seal("whsec_previous", secret_context("ep"))
    until = clock.now() + timedelta(hours=1)
    assert credentials.secrets("ep", current, previous, until, clock.now()) == (
        "whsec_current",
        "whsec_previous",
    )
    assert credentials.secrets("ep", current, previous, until, until) == ("whsec_current",)


def test_each_sealed_secret_is_unsealed_once() -> None:
    clock, ring, credentials = _setup()
    sealed = ring.seal("whsec_one", secret_context("ep"))
    for _ in range(3):
        assert credentials.secrets("ep", sealed, None, None, clock.now()) == ("whsec_one",)
    assert ring.unsealed == 1


def test_a_secret_that_does_not_open_is_left_out() -> None:
    clock, ring, credentials = _setup()
    sealed_for_another = ring.seal("whsec_other", secret_context("other-endpoint"))
    assert credentials.secrets("ep", sealed_for_another, None, None, clock.now()) == ()
    assert credentials.private_key(None) is None
