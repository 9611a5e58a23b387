"""Bounded pools that message templates render in, off the event loops that serve requests and send mail.

What bounds a render is the sandbox: its budgets end every render within a few milliseconds of work and
a quarter of a second of wall clock (`passgate.messaging.sandbox`), including the C-level operations
(big integers, long strings) that hold the GIL and that nothing can interrupt once started. What the
pools add is that no render runs on an event loop: the API's loop and the worker's loop only wait on a
future, and keep serving other tenants' requests and SMTP conversations meanwhile. They are small (a
render is CPU work: more threads than cores only add GIL contention, which would slow the event loops),
and every wait has a timeout, so a caller is never stuck behind a render whatever happens.

Threads, not processes: a render is about 50 µs and its inputs are a template and a few strings; a
process pool measured 0.2 ms per hand-off (pickling, a pipe round trip), several times the render, and
its isolation is not needed when the sandbox already stops every render by itself
(bench/template_render.py measures both).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")


class RenderTimeout(Exception):
    """A render did not finish within the pool's timeout (the pool is busy, or the machine is)."""

    retry_after = 1

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rendering did not finish within {seconds:g} s; try again")
        self.seconds = seconds


class RenderPool:
    """A few threads that run renders, waited on with a timeout (from a thread or an event loop)."""

    def __init__(self, name: str, threads: int, timeout: float) -> None:
        self.name = name
        self.threads = threads
        self.timeout = timeout
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
                executor = self._executor
        return executor.submit(fn, *args, **kwargs)

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """From a worker thread (a request's): run `fn` in the pool and wait for it."""
        future = self._submit(fn, *args, **kwargs)
        try:
            return future.result(self.timeout)
        except FutureTimeout:
            future.cancel()  # if it has not started yet, it never will
            raise RenderTimeout(self.timeout) from None

    async def run_async(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """From an event loop: run `fn` in the pool; the loop keeps running while it does."""
        future = self._submit(fn, *args, **kwargs)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            future.cancel()
            raise RenderTimeout(self.timeout) from None

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


# A render's own deadline is a quarter of a second; these timeouts are for a pool that is busy, and are
# the longest anyone waits. Two threads: on a small machine one render can always start while another
# runs long, and two CPU-bound threads leave the event loops most of the GIL.
_THREADS = max(2, min(4, (os.cpu_count() or 2) // 2))
# Challenge mail and test sends (the dispatcher).
SENDING = RenderPool("passgate-render-send", threads=_THREADS, timeout=5.0)
# Save-time checks and previews (management API and console).
EDITING = RenderPool("passgate-render-edit", threads=_THREADS, timeout=10.0)
