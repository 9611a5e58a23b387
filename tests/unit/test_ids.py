"""passgate.ids: request ids are UUIDv7, so they sort by time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from passgate.ids import new_uuid


def test_request_ids_are_time_ordered_uuid7() -> None:
    ids = [new_uuid() for _ in range(50)]
    assert len(set(ids)) == 50
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    millis = [int(v.replace("-", "")[:12], 16) for v in ids]
    assert millis == sorted(millis)
    assert abs(millis[-1] / 1000 - datetime.now(UTC).timestamp()) < 5
