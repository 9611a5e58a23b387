"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, always returns aware UTC, so comparisons agree on both databases."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)

    def bind_processor(self, dialect: Any) -> Any:
        # On SQLite, the value's final text in one step instead of process_bind_param and then the
        # dialect's DATETIME formatting (a third of a challenge's insert work); the same text either way.
        if dialect.name == "sqlite":
            return sqlite_utc_text
        return super().bind_processor(dialect)


def sqlite_utc_text(value: datetime | None) -> str | None:
    """A UTC column's value as SQLAlchemy's SQLite DATETIME stores it: naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff`."""
    if value is None:
        return None
    return _utc_text(value)


@lru_cache(maxsize=4096)
def _utc_text(value: datetime) -> str:
    # Remembered: the rows of one request carry the same few instants over and over (a challenge binds 14
    # dates, most of them its `now`). Equal aware datetimes are one instant, whatever their zone, so the
    # text is the same; a naive one raises, and a raise is not remembered.
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


JSONType = JSON().with_variant(JSONB(), "postgresql")
