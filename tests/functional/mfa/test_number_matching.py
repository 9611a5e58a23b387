"""Number matching (`strategy.bindToDevice`) fails closed: the first wrong pick ends the session as "This
wasn't me" does, so trying the three numbers in turn proves nothing; opening the link changes nothing and
always offers the same three numbers."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.mfa.exceptions import SessionClosed
from passgate.mfa.models import MfaSession
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge, drain, session_of, timeline
from tests.functional.mfa.test_email_link import BROWSER, link_from
from tests.servers import SmtpSink

CHOICE = re.compile(r'name="number" id="n\d" value="(\d\d)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def bound_challenge(http: TestClient, tenant: Tenant, email: str) -> dict[str, Any]:
    return challenge(
        http, tenant, "email-link", person={"emailAddress": email}, strategy={"bindToDevice": True}
    )["mfa"]


def open_page(http: TestClient, registry: Registry, smtp: SmtpSink, email: str) -> tuple[str, list[str], str]:
    """The link's path, the three numbers its page offers and the page's CSRF token."""
    drain(registry)
    mail = next(m for m in smtp.wait_for(1) if m.rcpt_tos == [email])
    path = link_from(mail.part("text/plain")).removeprefix("http://127.0.0.1:8000")
    page = http.get(path, headers=BROWSER)
    assert page.status_code == 200
    return path, CHOICE.findall(page.text), CSRF.search(page.text).group(1)  # type: ignore[union-attr]


def test_picking_each_number_in_turn_never_verifies(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    # The review's attack: pick, go back, pick again; the third pick used to be the right one and verify.
    mfa = bound_challenge(http, tenant, "three.picks@example.com")
    path, choices, csrf = open_page(http, registry, smtp, "three.picks@example.com")
    right = mfa["matchNumber"]
    wrong = [c for c in choices if c != right]
    assert len(choices) == 3 and right in choices and len(wrong) == 2
    first = http.post(f"{path}/confirm", data={"csrf": csrf, "number": wrong[0]})
    assert first.status_code == 400 and "stopped this request" in first.text
    s = session_of(http, tenant, mfa["ID"])
    assert (s["status"], s["terminationReason"]) == ("TERMINATED", "NOT_ME")
    for number in (wrong[1], right):  # back to the page, and the other two numbers
        again = http.post(f"{path}/confirm", data={"csrf": csrf, "number": number})
        assert again.status_code == 200 and "already been used" in again.text
        assert http.get(path, headers=BROWSER).text.count('name="number"') == 0  # the neutral page
    s = session_of(http, tenant, mfa["ID"])
    assert (s["status"], s["terminationReason"], s["verifiedAt"]) == ("TERMINATED", "NOT_ME", None)
    attempts = [e["data"] for e in timeline(http, tenant, mfa["ID"]) if e["type"] == "VERIFY_ATTEMPT"]
    assert attempts == [{"attempt": 1, "ok": False, "reason": "NUMBER_MISMATCH"}]


def test_no_sequence_of_picks_verifies_without_the_right_number_first(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    """Generated sequences of picks (decoys, other numbers, nothing, junk, the right number) on real
    sessions: a session verifies exactly when its first pick is its number, and then only once."""
    rng = random.Random(20261217)
    for n in range(60):
        mfa = bound_challenge(http, tenant, f"seq{n}@example.com")
        right = mfa["matchNumber"]
        pool = [right, f"{(int(right) - 9) % 90 + 10}", "", "1", "100", "x" * 3, f" {right}x", None]
        picks = [rng.choice(pool) for _ in range(rng.randint(1, 6))]
        outcomes = []
        for pick in picks:
            with transaction(registry.sessions) as session:
                row = registry.mfa.load(session, tenant.client_id, mfa["ID"], lock=True)
                try:
                    outcomes.append(registry.mfa.confirm_link(session, row, pick).status)
                except SessionClosed as exc:
                    outcomes.append(f"closed:{exc.status}")
        final = session_of(http, tenant, mfa["ID"])
        if picks[0] == right:
            assert outcomes[0] == "VERIFIED" and final["status"] == "VERIFIED", (picks, outcomes)
        else:
            assert "VERIFIED" not in outcomes, (picks, outcomes)
            assert (final["status"], final["terminationReason"]) == ("TERMINATED", "NOT_ME"), picks
        assert all(o.startswith("closed:") for o in outcomes[1:]), (picks, outcomes)


def test_opening_the_link_changes_nothing_and_shows_the_same_numbers(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    mfa = bound_challenge(http, tenant, "look.only@example.com")
    path, choices, _ = open_page(http, registry, smtp, "look.only@example.com")
    before = session_of(http, tenant, mfa["ID"])
    for _ in range(5):
        assert CHOICE.findall(http.get(path, headers=BROWSER).text) == choices
        assert http.get(path, headers={"User-Agent": "curl/8"}).status_code == 200
        assert http.head(path, headers=BROWSER).status_code == 200
    after = session_of(http, tenant, mfa["ID"])
    assert (after["status"], after["verificationAttempts"]) == (before["status"], 0)
    # Opening twice used to draw new decoys: the right number was then the one on both pages.
    assert sorted(set(choices)) == sorted(choices) and mfa["matchNumber"] in choices


@pytest.mark.parametrize("how", ["deny", "wrong pick"])
def test_a_wrong_pick_is_told_to_listeners_as_this_wasnt_me(
    how: str, http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    seen: list[tuple[str | None, str, str | None]] = []

    def listener(session: Session, mfa: MfaSession, old: str | None, new: str, now: Any) -> None:
        seen.append((old, new, mfa.termination_reason))

    mfa = bound_challenge(http, tenant, f"{how.replace(' ', '.')}@example.com")
    registry.mfa.listeners.append(listener)
    try:
        with transaction(registry.sessions) as session:
            row = registry.mfa.load(session, tenant.client_id, mfa["ID"], lock=True)
            if how == "deny":
                registry.mfa.deny_link(session, row)
            else:
                wrong = f"{(int(mfa['matchNumber']) - 9) % 90 + 10}"
                registry.mfa.confirm_link(session, row, wrong)
    finally:
        registry.mfa.listeners.remove(listener)
    # The same status change, with the same reason, whichever way the person said no: the webhook
    # (built from this call) is the same.
    assert seen == [("UNKNOWN", "TERMINATED", "NOT_ME")]
