"""`api.decisions.read_body` against Starlette's `Request.body()`, its plain path: on generated sequences of
ASGI messages (one chunk or many, empty chunks, a disconnect before the end, messages of other kinds)
both give the same bytes or the same refusal, and keep the bytes for a later `body()`."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from passgate.api.decisions import read_body

SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "POST",
    "path": "/login/v2",
    "headers": [],
    "query_string": b"",
}


def _messages(rng: random.Random) -> list[dict[str, Any]]:
    body = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 50, 3000])))
    cuts = sorted(rng.sample(range(len(body) + 1), k=min(len(body) + 1, rng.choice([0, 1, 3]))))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    out: list[dict[str, Any]] = []
    for i, piece in enumerate(pieces):
        message: dict[str, Any] = {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        if not piece and rng.random() < 0.3:
            del message["body"]
        out.append(message)
        if rng.random() < 0.1:
            out.insert(rng.randrange(len(out) + 1), {"type": "http.other"})
    if rng.random() < 0.15:  # the client goes away before the end
        out.insert(rng.randrange(len(out)), {"type": "http.disconnect"})
    return out


def _receiver(messages: list[dict[str, Any]]) -> Callable[[], Awaitable[dict[str, Any]]]:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive


async def _outcome(read: Callable[[Request], Awaitable[bytes]], messages: list[dict[str, Any]]) -> Any:
    request = Request(SCOPE, _receiver(messages))
    try:
        body = await read(request)
    except ClientDisconnect:
        return "disconnect"
    return body, type(body), await request.body()  # kept: asked again, the same bytes


async def _plain(request: Request) -> bytes:
    return await request.body()


@pytest.mark.parametrize("seed", range(3))
def test_the_same_bytes_as_starlette(seed: int) -> None:
    rng = random.Random(seed)

    async def run() -> int:
        compared = 0
        for _ in range(400):
            messages = _messages(rng)
            assert await _outcome(read_body, messages) == await _outcome(_plain, messages), messages
            compared += 1
        return compared

    assert asyncio.run(run()) == 400


def test_a_body_in_one_message() -> None:
    messages = [{"type": "http.request", "body": b'{"a": 1}', "more_body": False}]
    assert asyncio.run(_outcome(read_body, messages)) == (b'{"a": 1}', bytes, b'{"a": 1}')


def test_a_disconnect_is_refused_as_starlette_refuses_it() -> None:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert asyncio.run(_outcome(read_body, messages)) == "disconnect"
