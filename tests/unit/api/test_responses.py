"""The compact JSON response writes the bytes Starlette's JSONResponse writes, faster."""

from __future__ import annotations

import math

import pytest
from fastapi.responses import JSONResponse

from passgate.api.responses import CompactJSONResponse

SAMPLES = [
    {"decision": "CHALLENGE", "mfa": {"id": "019a", "error": None, "maxAttempts": 5}, "tags": ["a", "b"]},
    {"person": {"name": {"first": "Zoë", "last": "Ōtsuka"}}, "text": "quote \" backslash \\ tab \t nl \n"},
    {"emoji": "🙂", "control": "\x01\x1f", "separator": "\u2028\u2029", "big": 2**63, "float": 0.1},
    [1, 2.5, True, False, None, {"nested": []}],
    {},
]


@pytest.mark.parametrize("content", SAMPLES)
def test_the_same_bytes_as_starlettes_json_response(content: object) -> None:
    ours, theirs = CompactJSONResponse(content), JSONResponse(content)
    assert ours.body == theirs.body
    assert ours.headers["content-type"] == theirs.headers["content-type"] == "application/json"


def test_a_nan_is_written_as_null_instead_of_failing() -> None:
    with pytest.raises(ValueError):
        JSONResponse({"score": math.nan})
    assert CompactJSONResponse({"score": math.nan, "x": math.inf}).body == b'{"score":null,"x":null}'
