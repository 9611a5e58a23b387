"""The render pools: renders run off the event loop, every wait has a timeout."""

import asyncio
import time

import pytest

from passgate.messaging.render_pool import RenderPool, RenderTimeout


def busy(seconds: float) -> int:
    # Pure Python work, as a render is: the GIL is handed over every switch interval.
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


async def test_the_event_loop_keeps_running_while_a_render_runs():
    pool = RenderPool("test-render", threads=1, timeout=5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        assert await pool.run_async(busy, 0.5) > 0
    finally:
        task.cancel()
        pool.shutdown()
    assert ticks >= 10  # inline, the loop would not have ticked once


async def test_a_render_that_does_not_finish_in_time_is_a_timeout_not_a_wait():
    pool = RenderPool("test-render", threads=1, timeout=0.1)
    started = time.monotonic()
    try:
        with pytest.raises(RenderTimeout, match="within 0.1 s"):
            await pool.run_async(time.sleep, 1.0)
    finally:
        pool.shutdown()
    assert time.monotonic() - started < 0.9


def test_from_a_thread_too():
    pool = RenderPool("test-render", threads=1, timeout=0.1)
    try:
        assert pool.run(sum, [1, 2]) == 3
        with pytest.raises(RenderTimeout):
            pool.run(time.sleep, 1.0)
    finally:
        pool.shutdown()
