"""db.types: the UTC column's SQLite text is the one SQLAlchemy's own processing gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from passgate.db.types import UTCDateTime, sqlite_utc_text


def test_sqlite_utc_text_matches_sqlalchemys_own_processing() -> None:
    dialect = sqlite.dialect()
    # SQLAlchemy's own path: the decorator's process_bind_param, then the dialect's DATETIME formatting.
    datetime_text = sqlite.DATETIME().bind_processor(dialect)
    assert datetime_text is not None

    def reference(value: datetime) -> str:
        return str(datetime_text(UTCDateTime().process_bind_param(value, dialect)))

    # and the type hands that work to sqlite_utc_text
    assert UTCDateTime().dialect_impl(dialect).bind_processor(dialect) is sqlite_utc_text
    rng = random.Random(3)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    for _ in range(500):
        value = datetime(1, 1, 1, tzinfo=UTC) + timedelta(
            days=rng.randrange(0, 3_000_000), microseconds=rng.choice([0, rng.randrange(1_000_000)])
        )
        if value.year > 9000:
            continue
        value = value.astimezone(rng.choice(zones))
        assert sqlite_utc_text(value) == reference(value), value
    assert sqlite_utc_text(None) is None
    with pytest.raises(ValueError):
        sqlite_utc_text(datetime(2026, 1, 1))  # naive
