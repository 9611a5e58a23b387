"""The save-time bounds give, template by template, the totals and refusals the committed snapshot says.

The snapshot (template_bounds_snapshot.json) holds every template the messaging unit tests and the
template functional tests had bounded (the built-ins, the hostile and legitimate examples, the generated
templates of the differential test): for each, its part, its source, the bound of its total cost
(iterations, calls, work, output, long prints) and its problems, line and message. The analysis is a
refactoring target (its expression, filter and statement bounds live apart); none of that may change a
single bound or message. Rewrite the snapshot only for a deliberate change of the bounds
(`python tests/unit/messaging/test_template_bounds_snapshot.py`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from passgate.messaging import template_bounds
from passgate.messaging.templates import _environment

SNAPSHOT = Path(__file__).with_name("template_bounds_snapshot.json")


def _bounds(part: str, source: str) -> dict[str, Any]:
    analysis = template_bounds.analyse(_environment(part).parse(source), part)
    return {
        "part": part,
        "source": source,
        "total": list(dataclasses.astuple(analysis.total)),
        "problems": [list(problem) for problem in analysis.problems],
    }


def _entries() -> list[dict[str, Any]]:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_the_snapshot_covers_every_part_and_both_outcomes():
    entries = _entries()
    assert len(entries) > 500
    assert {e["part"] for e in entries} == {"html", "text", "subject", "sms"}
    assert any(e["problems"] for e in entries) and any(not e["problems"] for e in entries)


@pytest.mark.parametrize("chunk", range(8))
def test_every_template_is_bounded_as_the_snapshot_says(chunk):
    for expected in _entries()[chunk::8]:
        assert _bounds(expected["part"], expected["source"]) == expected, expected["source"]


if __name__ == "__main__":
    fresh = [_bounds(e["part"], e["source"]) for e in _entries()]
    SNAPSHOT.write_text(
        "[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in fresh) + "\n]\n", encoding="utf-8"
    )
