"""Real servers on loopback that functional tests share: an SMTP server, an HTTP SMS gateway and a webhook
receiver, each started for one test and stopped after it (a module or package may define its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import HttpReceiver, SmtpSink


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def gateway() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def hooks_server() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()
