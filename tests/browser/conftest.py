"""Browser fixtures for the console: headless Chromium, and a real uvicorn server of the app on a free
loopback port, on the test database, with its workers running in the process (one per module and database)."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, sync_playwright
from sqlalchemy import Engine

from passgate.bootstrap import Registry, build_registry
from passgate.config import Settings
from passgate.main import create_app
from tests.conftest import TEST_SECRET
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _script(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)  # CI must run these, never quietly skip them
    pytest.skip(message)


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """A Chromium per test. Not shared further: Playwright's sync API keeps an event loop running on this
    thread while it is open, and the other tests (run in between, grouped by database) call asyncio.run()."""
    path = _script("ensure_browser").find()
    if path is None:
        _missing("no Chromium found: install Debian's chromium or set PASSGATE_CHROMIUM")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    path = _script("ensure_axe").ensure()
    if path is None:
        _missing("axe-core could not be installed from npm (scripts/ensure_axe.py)")
    return Path(path).read_text()


@dataclass
class LiveServer:
    url: str
    registry: Registry


@pytest.fixture(scope="module")
def live_server(
    database_url: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    port = free_port()
    settings = Settings(
        database_url=database_url,
        secret_keys=TEST_SECRET,
        data_dir=tmp_path_factory.mktemp("console-data"),
        public_url=f"http://127.0.0.1:{port}",
        workers_in_process="thread",
        key_cache_seconds=0,
        log_level="WARNING",
        # The webhook receiver is a real server on 127.0.0.1; failed tries are retried within a second.
        webhook_allow_private=True,
        webhook_retry_seconds="0.3",
        webhook_timeout_seconds=2.0,
        message_retry_seconds="0.5,0.5",
    )
    registry = build_registry(settings, engine=engine)
    app = create_app(registry=registry)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="console-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the console test server did not start")
        time.sleep(0.05)
    yield LiveServer(settings.public_url, registry)
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture
def browser_context(chromium: Browser) -> Iterator[BrowserContext]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(8000)  # a missing element fails in seconds, not after Playwright's 30
    context.on("page", lambda p: p.on("dialog", lambda d: d.accept()))
    yield context
    context.close()
