"""The JSON response of the busiest routes (decisions, MFA sessions).

Starlette's JSONResponse writes with `json.dumps`; pydantic-core's serialiser (Rust, already what writes the
JSON columns) gives the same bytes — compact separators, UTF-8 rather than escapes, keys in order — in about
a fifth of the time (2 against 8-10 µs for a decision answer on the development machine). One difference:
a NaN or infinity, which `json.dumps(allow_nan=False)` refuses with an exception (a 500), is written as
null.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic_core import to_json


def compact_json(content: Any) -> bytes:
    """The bytes CompactJSONResponse sends for `content`."""
    return to_json(content, inf_nan_mode="null")


class CompactJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return to_json(content, inf_nan_mode="null")
