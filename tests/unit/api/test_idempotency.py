"""The Idempotency-Key header's parsing and the request hash of a management POST."""

from __future__ import annotations

import pytest

from passgate.api.idempotency import management_request_hash, parse_key
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
