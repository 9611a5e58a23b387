"""`passgate purge`: a dry run counts and deletes nothing; the run deletes, in batches, with its report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from passgate.config import Settings
from passgate.db import make_sessionmaker, transaction
from passgate.mfa.models import MfaEvent, MfaSession
from tests.cli import passgate, passgate_json
from tests.unit.retention.test_services import add_session, new_client


def test_a_dry_run_then_the_purge(settings: Settings, engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    client = new_client(factory, sessionsDays=7)
    month_ago = datetime.now(UTC) - timedelta(days=30)
    with transaction(factory) as session:
        old = [add_session(session, client, month_ago)[0] for _ in range(3)]
        young = add_session(session, client, datetime.now(UTC) - timedelta(days=1))[0]

    def left() -> set[str]:
        with transaction(factory) as session:
            return set(session.scalars(select(MfaSession.id).where(MfaSession.client_id == client)))

    dry = passgate_json(settings, "purge", "--dry-run")
    assert dry["dryRun"] is True and dry["batches"] == 0
    assert dry["removed"]["mfa_sessions"] >= 3 and dry["removed"]["mfa_events"] >= 6
    assert left() == set(old) | {young}

    done = passgate_json(settings, "purge", "--batch-size", "16", "--pause", "0")
    assert done["complete"] is True and done["dryRun"] is False
    assert done["removed"]["mfa_sessions"] >= 3 and done["batches"] >= 2  # 2 sessions a batch of 16 rows
    assert left() == {young}
    with transaction(factory) as session:
        assert not list(session.scalars(select(MfaEvent.id).where(MfaEvent.session_id.in_(old))))

    human = passgate(settings, "purge", "--dry-run")
    assert human.returncode == 0, human.stderr
    assert "would remove" in human.stdout and "Traceback" not in human.stderr
    bad = passgate(settings, "purge", "--batch-size", "0")
    assert bad.returncode != 0 and "batch-size" in bad.stderr
