"""The MFA session and its timeline as the console's session page shows them.

The session's fields are spelt once, in `mfa/views.py`, for the API and the console alike; the page loads
the ORM object, so it is copied into a read row first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from passgate.mfa import views as mfa_views
from passgate.mfa.models import MfaSession
from passgate.mfa.queries import row_of
from passgate.mfa.results import TimelineEntry


def session_view(mfa: MfaSession) -> dict[str, Any]:
    """The session as GET /mfa/v2/{id} answers it, for the console's session page."""
    return mfa_views.session_view(row_of(mfa))


def timeline_view(entries: Iterable[TimelineEntry]) -> list[dict[str, Any]]:
    """`MfaService.timeline_entries` for the console's session page."""
    return [{"type": e.type, "at": mfa_views.iso(e.at), "source": e.source, "data": e.data} for e in entries]
