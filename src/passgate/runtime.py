"""Process-wide settings for the long-running commands (`passgate serve`, `passgate worker`)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# Young-generation collections every 20,000 container allocations instead of 700: a decision allocates
# a few thousand, so the default collects several times per request for almost nothing.
GC_THRESHOLDS = (20_000, 50, 100)


def tune_gc() -> None:
    """Freeze what start-up built and collect the rest less often.

    Passgate's heap after start-up (FastAPI and pydantic models, SQLAlchemy mappers, CEL, the phone
    number metadata, ...) is hundreds of thousands of objects that live as long as the process. Python's
    full collections walk them all: measured here, they stalled the event loop for tens of milliseconds
    (decision p99 110 ms against p50 10 ms) and cost a fifth of the CPU of a decision. `gc.freeze()`
    moves them out of the collector's sight; cycles created later are still collected.

    Called once the application is built, just before serving. Not for tests: a frozen object is never
    freed, and test processes build many applications.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on uvloop where it is installed (it comes with uvicorn[standard] on Linux and macOS),
    as uvicorn does for `passgate serve`. A worker spends most of its CPU in the event loop between SMTP
    replies and HTTP responses; uvloop's loop costs a fraction of asyncio's pure-Python one."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
