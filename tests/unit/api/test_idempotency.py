"""The Idempotency-Key header's parsing and the request hash of a management POST."""

from __future__ import annotations

import asyncio

import pytest

from passgate.api.idempotency import OneAtATime, management_request_hash, parse_key
from passgate.idempotency.exceptions import InvalidKey


@pytest.mark.parametrize(
    "raw,key", [("abc", "abc"), ('"abc"', "abc"), ("  a b  ", "a b"), ("x" * 255, "x" * 255)]
)
def test_keys_as_tokens_or_quoted_strings(raw: str, key: str) -> None:
    assert parse_key(raw) == key


@pytest.mark.parametrize("raw", ["", '""', "x" * 256, "caf\u00e9", "a\tb"])
def test_bad_keys(raw: str) -> None:
    with pytest.raises(InvalidKey):
        parse_key(raw)


def test_the_request_hash_reads_json_by_value_and_other_bodies_by_bytes() -> None:
    def h(
        body: bytes, path: str = "/manage/v1/lists", query: bytes = b"", ctype: str = "application/json"
    ) -> str:
        return management_request_hash("POST", path, query, ctype, body)

    assert h(b'{"a":1,"b":[1,2]}') == h(b'{ "b": [1, 2],\n "a": 1 }')
    assert h(b'{"a":1}') != h(b'{"a":2}')
    assert h(b'{"a":1}') != h(b'{"a":1}', "/manage/v1/webhooks")
    assert h(b'{"a":1}') != h(b'{"a":1}', query=b"x=1")
    assert h(b"a,b\n", ctype="text/csv") != h(b"a,b\r\n", ctype="text/csv")
    assert h(b"not json") == h(b"not json")


def _runs(outcomes: list[bool], n: int) -> tuple[list[tuple[str, int]], list[bool]]:
    """`n` runs of one key through OneAtATime; the k-th run to start settles as `outcomes[k]` says. The
    log of starts and ends, and each caller's answer."""
    log: list[tuple[str, int]] = []
    started = 0

    async def main() -> list[bool]:
        gate = OneAtATime()

        async def work() -> bool:
            nonlocal started
            me = started
            started += 1
            log.append(("start", me))
            await asyncio.sleep(0.01)
            log.append(("end", me))
            return outcomes[me]

        return list(await asyncio.gather(*(gate.run("key", work, lambda ok: ok) for _ in range(n))))

    return log, asyncio.run(main())


def test_one_at_a_time_runs_the_waiting_together_once_one_settled() -> None:
    log, answers = _runs([True] * 6, 6)
    # The first ran alone; the five waiting ran side by side after it (each started before any ended).
    assert log[:2] == [("start", 0), ("end", 0)]
    assert [kind for kind, _ in log[2:7]] == ["start"] * 5
    assert answers == [True] * 6


def test_one_at_a_time_runs_one_by_one_while_none_settles() -> None:
    log, answers = _runs([False, False, True, True, True], 5)
    # Two that settled nothing, each alone; then one settles, and the last two run together.
    assert log[:6] == [("start", 0), ("end", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    assert [kind for kind, _ in log[6:8]] == ["start", "start"]
    assert sorted(answers) == [False, False, True, True, True]


def test_one_at_a_time_lets_a_failure_through_and_the_next_run_on() -> None:
    async def main() -> list[object]:
        gate = OneAtATime()
        calls = 0

        async def work() -> bool:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            if calls == 1:
                raise RuntimeError("first fails")
            return True

        return list(
            await asyncio.gather(
                *(gate.run("k", work, lambda ok: ok) for _ in range(3)), return_exceptions=True
            )
        )

    answers = asyncio.run(main())
    assert isinstance(answers[0], RuntimeError) and answers[1:] == [True, True]
