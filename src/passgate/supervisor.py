"""The delivery workers of `passgate serve` in a child process it supervises (PASSGATE_WORKERS_IN_PROCESS=process).

Why a process and not a thread of the API: the workers render, claim, send and record, and a thread of
the API's process takes that CPU under the API's GIL, between its requests. Measured on the development
machine with the challenge benchmark, the thread layout completed half the email challenges per second of
a `passgate worker` beside `passgate serve`, with mail p99 above 2 s under load; the child process is that
split layout, started, watched and stopped by `serve` itself.

The child is `passgate worker` with the same environment (the public URL `serve` chose included). It is
restarted when it exits while `serve` runs (after `RESTART_DELAY` seconds, doubling up to `MAX_DELAY` while
it keeps dying within `STEADY_SECONDS` of its start), and stopped (SIGTERM, then SIGKILL after the grace)
when `serve` stops. A pipe joins them: `wake()` writes a byte to it when a request queued work, so that
the child looks at once instead of at its next poll; and when `serve` dies without stopping it (SIGKILL),
the pipe's end closes and the child stops by itself (`passgate worker --wake-fd`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

log = logging.getLogger("passgate.supervisor")

RESTART_DELAY = 0.5
MAX_DELAY = 30.0
STEADY_SECONDS = 10.0


def worker_argv(extra: Sequence[str] = ()) -> list[str]:
    """`passgate worker` run by this interpreter (the one `serve` runs on, whatever its installation)."""
    return [sys.executable, "-m", "passgate.cli", "worker", *extra]


class WorkerProcess:
    """A `passgate worker` child: started by `start`, restarted when it dies, stopped by `stop`."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        restart_delay: float = RESTART_DELAY,
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        self.extra_args = list(extra_args)
        self.restart_delay = restart_delay
        self.restarts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, name="passgate-worker-supervisor", daemon=True)
        self._wake_r, self._wake_w = os.pipe()
        self._fds: tuple[int, ...] = (self._wake_r, self._wake_w)
        os.set_blocking(self._wake_w, False)

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None else None

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def _spawn(self) -> None:
        argv = worker_argv([*self.extra_args, "--wake-fd", str(self._wake_r)])
        with self._lock:
            if self._stopping.is_set():
                return
            # A session of its own: a Ctrl-C at the terminal reaches serve, which stops it, not it first.
            self.proc = subprocess.Popen(  # noqa: S603  (this interpreter, argv of our own)
                argv, env=self.env, stdin=subprocess.DEVNULL, pass_fds=(self._wake_r,), start_new_session=True
            )
        log.info("delivery worker started", extra={"pid": self.proc.pid})

    def _watch(self) -> None:
        delay = self.restart_delay
        while not self._stopping.is_set():
            proc = self.proc
            assert proc is not None
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            # Dying right after its start again and again (a bad setting, the database away): wait longer.
            delay = (
                self.restart_delay
                if time.monotonic() - started >= STEADY_SECONDS
                else min(delay * 2, MAX_DELAY)
            )
            log.warning(
                "delivery worker exited (%s); restarting it in %.1f s", code, delay, extra={"pid": proc.pid}
            )
            if self._stopping.wait(delay):
                return
            self.restarts += 1
            try:
                self._spawn()
            except OSError:
                log.exception("restarting the delivery worker failed; trying again")
                time.sleep(delay)

    def wake(self) -> None:
        """A request queued work: the child looks now. Never blocks (a full pipe already says so)."""
        if not self._fds:  # stopped: the number may be another file's by now
            return
        try:
            os.write(self._wake_w, b"w")
        except (BlockingIOError, OSError):
            pass

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (the worker finishes its round), SIGKILL after `grace` seconds."""
        with self._lock:
            self._stopping.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("delivery worker did not stop within %.0f s; killed", grace)
                proc.kill()
                proc.wait(5)
        if self._watcher.is_alive():
            self._watcher.join(5)
        with self._lock:
            fds, self._fds = self._fds, ()
        for fd in fds:  # once: a number closed twice may by then be another file's
            os.close(fd)
