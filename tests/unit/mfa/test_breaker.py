"""The SMS pumping breaker's state machine (mfa/breaker.py): window, threshold, minimum volume, cool-down,
half-open probes, in enforce and monitor modes, driven through the memory store with explicit times."""

from __future__ import annotations

import random

import pytest

from passgate.auth.sms_breaker import BreakerConfig, SmsBreakerBody, breaker_config_from, breaker_view
from passgate.mfa.breaker import (
    BUCKET_SECONDS,
    PROBE_WAIT_SECONDS,
    TRANSITIONS,
    BreakerState,
    BreakerStatus,
    Counts,
    MemoryBreakerStore,
    buckets_between,
    country_of,
    on_send,
    on_verified,
    probes_needed,
    tripped,
    window_start,
)

T0 = 1_800_000_000.0  # a whole minute
ENFORCE = BreakerConfig(
    mode="enforce", window_seconds=600, min_sends=10, min_conversion=0.5, cool_down_seconds=300, probe_sends=4
)
MONITOR = BreakerConfig(**{**ENFORCE.__dict__, "mode": "monitor"})
KEY = "client:GB"


class Driver:
    """A breaker run as `SmsBreakerService` runs it, minus the database: read, decide, swap, count."""

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self.store = MemoryBreakerStore()
        self.moves: list[tuple[BreakerStatus, BreakerStatus]] = []

    @property
    def status(self) -> BreakerStatus:
        return self.store.state(KEY).status

    def send(self, now: float) -> bool:
        state = self.store.state(KEY)
        counts = self.store.counts(KEY, window_start(state, self.config, now), now)
        verdict = on_send(state, counts, self.config, now)
        if verdict.state is not None:
            assert self.store.swap(KEY, state, verdict.state)
        if verdict.counted:
            self.store.count(KEY, "sent", now)
        self.moves.extend(verdict.moves)
        return verdict.allowed

    def verified(self, now: float) -> None:
        self.store.count(KEY, "verified", now)
        state = self.store.state(KEY)
        moved = on_verified(state, self.config, now)
        if moved is not None:
            assert self.store.swap(KEY, state, moved)
            if moved.status != state.status:
                self.moves.append((state.status, moved.status))


def test_no_breaker_opens_below_the_minimum_volume() -> None:
    d = Driver(ENFORCE)
    for i in range(10):  # ten sends, none verified: the tenth is judged on nine
        assert d.send(T0 + i)
    assert d.status == BreakerStatus.CLOSED
    assert not tripped(Counts(9, 0), ENFORCE) and tripped(Counts(10, 0), ENFORCE)


def test_conversion_at_the_threshold_keeps_it_closed_and_below_opens_it() -> None:
    assert not tripped(Counts(10, 5), ENFORCE)  # 0.5 is not under 0.5
    assert tripped(Counts(10, 4), ENFORCE)
    d = Driver(ENFORCE)
    for i in range(10):
        assert d.send(T0 + i)
        if i % 2 == 0:
            d.verified(T0 + i)
    assert d.send(T0 + 20) and d.status == BreakerStatus.CLOSED  # judged on 5 of 10, then counted
    assert not d.send(T0 + 21)  # judged on 5 of 11 < 0.5: opens, refused
    assert d.status == BreakerStatus.OPEN and d.moves == [(BreakerStatus.CLOSED, BreakerStatus.OPEN)]


def test_enforce_refuses_during_the_cool_down_and_does_not_count_refusals() -> None:
    d = Driver(ENFORCE)
    for i in range(10):
        d.send(T0 + i)
    assert not d.send(T0 + 10)
    opened = d.store.state(KEY).since
    for t in (T0 + 11, opened + ENFORCE.cool_down_seconds - 1):
        assert not d.send(t)
    assert d.store.counts(KEY, T0 - 1, T0 + 299) == Counts(10, 0)  # the refused sends were not counted
    assert d.status == BreakerStatus.OPEN


def test_half_open_lets_a_few_probes_through_and_closes_when_they_verify() -> None:
    d = Driver(ENFORCE)
    for i in range(10):
        d.send(T0 + i)
    d.send(T0 + 10)
    probe_from = T0 + 10 + ENFORCE.cool_down_seconds
    assert [d.send(probe_from + i) for i in range(6)] == [True] * 4 + [False] * 2
    assert d.status == BreakerStatus.HALF_OPEN
    assert probes_needed(ENFORCE) == 2
    d.verified(probe_from + 30)
    assert d.status == BreakerStatus.HALF_OPEN
    d.verified(probe_from + 31)
    assert d.status == BreakerStatus.CLOSED
    # Closed again, the wave that opened it is no longer held against the country: sends go, and only
    # what is counted from now on is judged.
    assert window_start(d.store.state(KEY), ENFORCE, probe_from + 40) == probe_from + 31
    assert all(d.send(probe_from + 40 + i) for i in range(5))
    assert d.status == BreakerStatus.CLOSED
    assert d.moves == [
        (BreakerStatus.CLOSED, BreakerStatus.OPEN),
        (BreakerStatus.OPEN, BreakerStatus.HALF_OPEN),
        (BreakerStatus.HALF_OPEN, BreakerStatus.CLOSED),
    ]


def test_half_open_reopens_when_the_probes_do_not_verify_in_time() -> None:
    d = Driver(ENFORCE)
    for i in range(11):
        d.send(T0 + i)
    probe_from = T0 + 10 + ENFORCE.cool_down_seconds
    for i in range(4):
        assert d.send(probe_from + i)
    d.verified(probe_from + 5)  # one of the two needed
    assert not d.send(probe_from + PROBE_WAIT_SECONDS - 1) and d.status == BreakerStatus.HALF_OPEN
    assert not d.send(probe_from + PROBE_WAIT_SECONDS)
    assert d.status == BreakerStatus.OPEN
    assert d.moves[-1] == (BreakerStatus.HALF_OPEN, BreakerStatus.OPEN)
    # A new cool-down from the reopening.
    reopened = d.store.state(KEY).since
    assert not d.send(reopened + ENFORCE.cool_down_seconds - 1)
    assert d.send(reopened + ENFORCE.cool_down_seconds)


def test_monitor_moves_the_same_way_and_refuses_nothing() -> None:
    enforce, monitor = Driver(ENFORCE), Driver(MONITOR)
    rng = random.Random(7)
    refused = 0
    t = T0
    for _ in range(400):
        t += rng.choice([1, 5, 30, 90])
        if rng.random() < 0.15:
            enforce.verified(t)
            monitor.verified(t)
        else:
            refused += not enforce.send(t)
            assert monitor.send(t)
    assert refused > 0
    assert monitor.moves and set(monitor.moves) <= TRANSITIONS and set(enforce.moves) <= TRANSITIONS
    for d in (enforce, monitor):  # every move starts where the previous one ended
        for (_, to), (frm, _) in zip(d.moves, d.moves[1:], strict=False):
            assert to == frm


def test_the_window_slides_by_buckets() -> None:
    store = MemoryBreakerStore()
    for i in range(12):  # one send a minute for 12 minutes
        store.count(KEY, "sent", T0 + i * BUCKET_SECONDS)
    store.count(KEY, "verified", T0 + 11 * BUCKET_SECONDS)
    now = T0 + 11 * BUCKET_SECONDS + 10
    assert store.counts(KEY, now - 600, now) == Counts(10, 1)  # the two oldest minutes have left
    assert store.counts(KEY, now - 60, now) == Counts(1, 1)
    assert store.counts("client:US", now - 600, now) == Counts()
    assert list(buckets_between(T0 + 30, T0 + 30)) == [int(T0 // 60)]  # the current bucket is always in
    assert list(buckets_between(T0 + 30, T0 + 150)) == [int(T0 // 60) + 1, int(T0 // 60) + 2]


def test_a_tripped_closed_breaker_is_judged_over_its_window_only() -> None:
    d = Driver(ENFORCE)
    for i in range(9):
        d.send(T0 + i)
    # Ten minutes on, those nine have left the window: nine more sends do not open it.
    later = T0 + ENFORCE.window_seconds + 2 * BUCKET_SECONDS
    assert all(d.send(later + i) for i in range(10))
    assert d.status == BreakerStatus.CLOSED


def test_swap_is_a_compare_and_set() -> None:
    store = MemoryBreakerStore()
    start = store.state(KEY)
    opened = start.moved(BreakerStatus.OPEN, T0)
    assert store.swap(KEY, start, opened)
    assert not store.swap(KEY, start, start.moved(BreakerStatus.OPEN, T0 + 1))  # a second process lost
    assert store.state(KEY) == opened
    assert BreakerState.decode(opened.encode()) == opened


@pytest.mark.parametrize(
    ("number", "country"),
    [("+447400123456", "GB"), ("+12015550123", "US"), ("+33612345678", "FR"), ("+80012345678", None)],
)
def test_country_of(number: str, country: str | None) -> None:
    assert country_of(number) == country


def test_settings_default_to_monitor_and_keep_what_is_given() -> None:
    assert breaker_config_from(None) == BreakerConfig()
    assert BreakerConfig().mode == "monitor"
    body = SmsBreakerBody.model_validate({"mode": "enforce", "minSends": 20})
    stored = body.stored()
    assert stored == {"mode": "enforce", "min_sends": 20}
    config = breaker_config_from(stored)
    assert (config.mode, config.min_sends, config.window_seconds) == ("enforce", 20, 3600)
    assert breaker_view(config)["minSends"] == 20
    assert SmsBreakerBody.model_validate({}).stored() is None
    # A stored value that no longer fits falls back to the default.
    assert breaker_config_from({"mode": "loud", "min_sends": "x"}) == BreakerConfig()


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "on"},
        {"windowSeconds": 90},
        {"windowSeconds": 3601},
        {"minConversion": 1.5},
        {"minConversion": "NaN"},
        {"minSends": 0},
        {"coolDownSeconds": 10},
        {"probeSends": 0},
        {"other": 1},
    ],
)
def test_settings_refuse_values_out_of_range(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SmsBreakerBody.model_validate(bad)
