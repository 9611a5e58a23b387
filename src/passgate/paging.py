"""Keyset paging of newest-first lists (the console's activity explorer, a webhook endpoint's deliveries).

Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class KeysetCursor:
    """Where a page of a newest-first list ends: its last row's creation time and id (`str` spells it for a
    URL). Keyset paging: a row made meanwhile neither shifts nor repeats a page."""

    created_at: datetime
    id: str

    def __str__(self) -> str:
        return f"{self.created_at.isoformat()}_{self.id}"

    @classmethod
    def parse(cls, text: str) -> KeysetCursor | None:
        """None for anything that is not a cursor this class wrote (a tampered URL shows the first page)."""
        at, sep, ident = text.rpartition("_")
        if not sep or len(ident) != 36:
            return None
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None
        try:
            return cls(moment.astimezone(UTC), ident)
        except OverflowError:
            return None
