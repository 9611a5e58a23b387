"""The activity explorer: each filter narrows the list, pages are stable, another client's decisions never
show, and a decision page explains the decision with personal data masked."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from passgate.mfa.models import MfaSession
from tests.factories import Tenant, login_body, publish

IDS = re.compile(r'href="/console/activity/([0-9a-f-]{36})"')
NEXT = re.compile(r'href="(/console/activity\?[^"]*after=[^"]+)" rel="next"')

BLOCKING_SET = {
    "name": "activity-test",
    "segments": [
        {"name": "default", "mfaEnabled": True, "policies": ["block-bad-domain", "challenge-risky"]},
    ],
    "policies": [
        {
            "name": "block-bad-domain",
            "outcome": "BLOCK",
            "conditions": [{"field": "email.domain", "operator": "equals", "value": "blocked.example"}],
            "tags": [{"name": "BAD_DOMAIN", "weight": 80}],
        },
        {
            "name": "challenge-risky",
            "outcome": "CHALLENGE",
            "conditions": [{"field": "customFields.risk", "operator": "equals", "value": "high"}],
            "tags": [{"name": "RISKY", "weight": 20}],
        },
    ],
}


def decide(http: TestClient, tenant: Tenant, **body: Any) -> str:
    r = http.post("/login/v2", json=login_body(**body), headers=tenant.headers)
    assert r.status_code == 200, r.text
    return str(r.headers["x-correlation-id"])


def listed(person: Any, query: str = "") -> list[str]:
    r = person.get("/console/activity" + query)
    assert r.status_code == 200, (query, r.status_code, r.text[:500])
    return IDS.findall(r.text)


@pytest.fixture
def seeded(http: TestClient, tenant: Tenant) -> dict[str, str]:
    """Four decisions of the tenant: a block, an email challenge, an SMS challenge and an allow."""
    publish(http, tenant, BLOCKING_SET)
    return {
        "block": decide(
            http,
            tenant,
            inquiryId="inqblocked",
            person={"emailAddress": "mallory.attacker@blocked.example"},
            account={"id": "acct-bad", "username": "mallory"},
        ),
        "email": decide(
            http,
            tenant,
            inquiryId="inqemail",
            person={"emailAddress": "jo.email@example.com"},
            account={"id": "acct-email", "username": "jo"},
            customFields={"risk": "high"},
            strategy={"mfaTemplateName": "email-link"},
        ),
        "sms": decide(
            http,
            tenant,
            inquiryId="inqsms",
            person={"emailAddress": "sam.sms@example.com", "phoneNumber": "+16502530000"},
            account={"id": "acct-sms", "username": "sam"},
            customFields={"risk": "high"},
            strategy={"mfaTemplateName": "sms-code"},
        ),
        "allow": decide(
            http,
            tenant,
            inquiryId="inqallow",
            person={"emailAddress": "al.allow@example.com"},
            account={"id": "acct-allow", "username": "al"},
        ),
    }


def test_each_filter_narrows_the_list(people: Any, seeded: dict[str, str], registry: Registry) -> None:
    owner = people("owner")
    everything = listed(owner)
    assert set(seeded.values()) <= set(everything)
    # Newest first (decision ids are time-ordered UUIDv7s, so ties on the frozen clock break by id too).
    assert [i for i in everything if i in seeded.values()] == sorted(seeded.values(), reverse=True)
    assert listed(owner, "?inquiryId=inqblocked") == [seeded["block"]]
    assert listed(owner, "?account=acct-sms") == [seeded["sms"]]
    assert listed(owner, "?email=" + quote("mallory.attacker@blocked.example")) == [seeded["block"]]
    assert listed(owner, "?email=" + quote("Mallory.Attacker@BLOCKED.example")) == [seeded["block"]]
    assert listed(owner, "?phone=" + quote("+16502530000")) == [seeded["sms"]]
    assert listed(owner, "?decision=BLOCK") == [seeded["block"]]
    assert listed(owner, "?decision=ALLOW") == [seeded["allow"]]
    assert set(listed(owner, "?decision=CHALLENGE")) == {seeded["email"], seeded["sms"]}
    assert listed(owner, "?channel=SMS") == [seeded["sms"]]
    assert listed(owner, "?channel=EMAIL&decision=CHALLENGE") == [seeded["email"]]
    assert listed(owner, "?status=VERIFIED") == []
    now = registry.clock.now()
    stamp = now.strftime("%Y-%m-%dT%H:%M")
    later = (now.replace(second=0) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    assert set(seeded.values()) <= set(listed(owner, f"?from={stamp}&to={later}"))
    assert listed(owner, f"?to={stamp}") == []
    assert listed(owner, f"?from={later}") == []
    # The session column shows the session with its masked destination, linked to its page.
    page = owner.get("/console/activity?inquiryId=inqsms").text
    assert "+16•••••••00" in page and "+16502530000" not in page


def test_the_sessions_status_filter_matches_the_linked_session(
    people: Any, seeded: dict[str, str], registry: Registry
) -> None:
    owner = people("owner")
    with registry.sessions() as session:
        status = session.scalars(
            select(MfaSession.status).where(MfaSession.decision_id == seeded["email"])
        ).one()
    assert seeded["email"] in listed(owner, f"?status={status}")
    assert seeded["block"] not in listed(owner, f"?status={status}")


def test_paging_is_stable_and_never_repeats(
    people: Any, http: TestClient, tenant: Tenant, clock: FrozenClock
) -> None:
    owner = people("owner")
    made = []
    for i in range(30):  # some share a moment (the ids break the tie), some do not
        made.append(decide(http, tenant, inquiryId=f"inqpage{i}"))
        if i % 7 == 0:
            clock.advance(1)
    first = owner.get("/console/activity").text
    ids = IDS.findall(first)
    assert len(ids) == 25
    link = NEXT.search(first)
    assert link, "no link to older decisions"
    # A decision made between two page views does not shift the next page.
    decide(http, tenant, inquiryId="inqlate")
    second = owner.get(link.group(1).replace("&amp;", "&")).text
    more = IDS.findall(second)
    assert not set(ids) & set(more)
    assert set(made) <= set(ids) | set(more)
    assert not NEXT.search(second)
    # A filter is kept across pages.
    filtered = owner.get("/console/activity?from=2000-01-01T00:00&channel=&email=").text
    kept = NEXT.search(filtered)
    assert (
        kept and "from=2000-01-01T00%3A00%3A00%2B00%3A00" in kept.group(1) and "email=" not in kept.group(1)
    )


def test_another_clients_decisions_are_invisible(
    people: Any, http: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    owner = people("owner")
    theirs = decide(http, other_tenant, inquiryId="inqtheirs")
    mine = decide(http, tenant, inquiryId="inqmine")
    assert listed(owner) == [mine]
    assert listed(owner, "?inquiryId=inqtheirs") == []
    assert owner.get(f"/console/activity/{theirs}").status_code == 404
    assert owner.get(f"/console/activity/{mine}").status_code == 200


def test_console_sign_ins_are_not_listed(people: Any, registry: Registry) -> None:
    owner = people("owner")  # signing in on a new device made an email-link session (account console:…)
    with registry.sessions() as session:
        sign_in = session.scalars(
            select(MfaSession).where(MfaSession.account_id.startswith("console:"))
        ).first()
    assert sign_in is not None and sign_in.decision_id
    assert listed(owner) == []
    assert listed(owner, "?account=" + quote(sign_in.account_id or "")) == []
    assert owner.get(f"/console/activity/{sign_in.decision_id}").status_code == 404
    # Its session page keeps the decision id as text, not as a link to a page that is not there.
    page = owner.get(f"/console/sessions/{sign_in.id}").text
    assert f"/console/activity/{sign_in.decision_id}" not in page


def test_a_blocked_decision_page_shows_why_with_personal_data_masked(
    people: Any, seeded: dict[str, str]
) -> None:
    viewer = people("viewer")
    page = viewer.get(f"/console/activity/{seeded['block']}")
    assert page.status_code == 200, page.text
    text = page.text
    assert "BLOCK" in text and "block-bad-domain" in text
    assert "re-evaluated now" in text.lower() and "velocities and device history" in text
    # The policy that fired, its condition with its actual value and result; the tag with its weight.
    assert re.search(r"block-bad-domain</strong> \(BLOCK\): fired", text)
    assert re.search(
        r"<code>email\.domain</code> equals <code>blocked\.example</code> — actual "
        r"<code>blocked\.example</code>: holds",
        text,
    )
    assert "BAD_DOMAIN (weight 80)" in text
    assert "challenge-risky</strong> (CHALLENGE): did not fire" in text
    # The request as received, masked: the full email never appears, nor the password.
    assert "mallory.attacker" not in text and "mallory.attacker@blocked.example" not in text
    assert "ma••••••••••••••@blocked.example" in text
    assert "userPassword" not in text and "5f4dcc3b5aa765d61d8327deb882cf99" not in text
    assert "m•••••@" not in text and "m•••••" in text  # the username, to its first letter
    assert "This decision started no MFA session." in text


def test_a_challenge_decision_page_shows_its_session_and_timeline(
    people: Any, seeded: dict[str, str], registry: Registry
) -> None:
    owner = people("owner")
    text = owner.get(f"/console/activity/{seeded['sms']}").text
    assert "+16502530000" not in text and "+16•••••••00" in text
    assert "sam.sms@example.com" not in text
    assert "<h3>Timeline</h3>" in text and "CREATED" in text.upper()
    assert "/console/sessions/" in text
    # The session page links back to the decision.
    session_id = re.search(r'href="/console/sessions/([0-9a-f-]{36})"', text).group(1)  # type: ignore[union-attr]
    back = owner.get(f"/console/sessions/{session_id}").text
    assert f'href="/console/activity/{seeded["sms"]}"' in back


ODD = [
    "?after=bogus",
    "?after=" + "x" * 500,
    "?after=2026-01-01T00:00:00_" + "0" * 36,
    "?after=2026-01-01T00:00:00%2B00:00_" + "0" * 36,
    "?from=yesterday&to=31-12-2026",
    "?from=2026-13-01T00:00&to=9999-12-31T23:59",
    "?from=0001-01-01T00:00%2B14:00",
    "?decision=MAYBE&status=%00&channel=PIGEON",
    "?email=%00%01&phone=abc",
    "?email=" + "a" * 5000,
    "?phone=%2B" + "9" * 40,
    "?inquiryId=" + quote("'; drop table decisions; --"),
    "?account=%E2%80%AE&email=not-an-address",
    "?inquiryId=a&inquiryId=b",
    "/00000000-0000-0000-0000-000000000000",
    "/not-a-uuid",
    "/" + "a" * 300,
]


@pytest.mark.parametrize("suffix", ODD)
def test_odd_parameters_never_give_a_5xx(people: Any, seeded: dict[str, str], suffix: str) -> None:
    owner = people("viewer")
    r = owner.get("/console/activity" + suffix)
    # A NUL byte is refused (400) before any page sees it; anything else shows a page or "not found".
    assert r.status_code in ((400,) if "%00" in suffix else (200, 404)), (suffix, r.status_code, r.text[:300])


def test_the_overview_links_into_the_explorer(people: Any, seeded: dict[str, str]) -> None:
    owner = people("owner")
    page = owner.get("/console/overview").text
    links = set(re.findall(r'href="(/console/activity\?[^"]+)"', page))
    blocks = [link for link in links if "decision=BLOCK" in link]
    assert blocks, "no link to the blocked decisions"
    # Every link the overview gives lands on a page listing what it counts.
    for link in links:
        r = owner.get(link.replace("&amp;", "&"))
        assert r.status_code == 200, link
    found = [
        i for link in blocks for i in listed(owner, link.replace("&amp;", "&")[len("/console/activity") :])
    ]
    assert seeded["block"] in found and seeded["allow"] not in found


SEGMENTED_SET = {
    "name": "segmented",
    "segments": [
        {
            "name": "vip",
            "conditions": [{"field": "account.id", "operator": "equals", "value": "acct-vip"}],
            "policies": ["vip-block"],
        },
        {
            "name": "risky",
            "mfaEnabled": True,
            "conditions": [{"field": "customFields.risk", "operator": "equals", "value": "high"}],
            "policies": ["block-bad-domain", "challenge-risky"],
        },
        {"name": "default", "policies": ["default-block", "block-bad-domain"]},
    ],
    "policies": [
        {
            "name": "vip-block",
            "outcome": "BLOCK",
            "conditions": [{"field": "email.domain", "operator": "equals", "value": "vip.example"}],
            "tags": [{"name": "VIP", "weight": 5}],
        },
        {
            "name": "block-bad-domain",
            "outcome": "BLOCK",
            "conditions": [{"field": "email.domain", "operator": "equals", "value": "blocked.example"}],
            "tags": [{"name": "BAD_DOMAIN", "weight": 80}],
        },
        {
            "name": "challenge-risky",
            "outcome": "CHALLENGE",
            "conditions": [{"field": "customFields.risk", "operator": "equals", "value": "high"}],
            "tags": [{"name": "RISKY", "weight": 20}],
        },
        {
            "name": "default-block",
            "outcome": "BLOCK",
            "conditions": [{"field": "customFields.risk", "operator": "equals", "value": "extreme"}],
            "tags": [{"name": "EXTREME", "weight": 99}],
        },
        {"name": "unused", "outcome": "BLOCK", "cel": "true"},
    ],
}


def _item(text: str, attr: str, name: str) -> str:
    """The list item of the decision page marked `data-<attr>="<name>"`, up to the next marked item or
    heading."""
    start = text.index(f'<li data-{attr}="{name}">')
    ends = [i for i in (text.find("<li data-", start + 1), text.find("<h3", start)) if i != -1]
    return text[start : min(ends)]


def test_the_why_shows_every_segment_and_every_policy(http: TestClient, tenant: Tenant, people: Any) -> None:
    publish(http, tenant, SEGMENTED_SET)
    decision_id = decide(
        http,
        tenant,
        inquiryId="inqsegments",
        person={"emailAddress": "pat@blocked.example"},
        account={"id": "acct-risky", "username": "pat"},
        customFields={"risk": "high"},
    )
    text = people("viewer").get(f"/console/activity/{decision_id}").text
    # Every segment in order: the one before the chosen did not match (with its condition's actual value),
    # the chosen one with its condition, and the one after it was never evaluated.
    vip, risky, default = (_item(text, "segment", n) for n in ("vip", "risky", "default"))
    assert text.index(vip) < text.index(risky) < text.index(default)
    assert "<strong>vip</strong>: did not match" in vip
    assert "<code>account.id</code> equals <code>acct-vip</code> — actual <code>acct-risky</code>" in vip
    assert "does not hold" in vip
    assert "<strong>risky</strong>: chosen" in risky
    assert (
        "<code>customFields.risk</code> equals <code>high</code> — actual <code>high</code>: holds" in risky
    )
    assert "<strong>default</strong> (default): not evaluated (an earlier segment was chosen)" in default
    assert "actual" not in default  # nothing of it ran
    # Every policy of the chosen segment: each condition's actual value and result, tags and weights.
    fired = _item(text, "policy", "block-bad-domain")
    assert "(BLOCK): fired · tags BAD_DOMAIN (weight 80)" in fired
    assert "(not counted)" not in fired
    assert "— actual <code>blocked.example</code>: holds" in fired
    risky_policy = _item(text, "policy", "challenge-risky")
    assert "(CHALLENGE): fired · tags RISKY (weight 20)" in risky_policy
    # The policies of other segments, collapsed, each marked as not evaluated, with where it belongs.
    others = text[
        text.index('<details class="why-others">') : text.index("</details>", text.index("why-others"))
    ]
    assert "3 policies not evaluated (segment not chosen)" in others
    assert "<strong>vip-block</strong> (BLOCK): not evaluated (segment not chosen) · in vip" in others
    assert "<strong>default-block</strong> (BLOCK): not evaluated (segment not chosen) · in default" in others
    assert "tags EXTREME (weight 99)" in others
    assert "<strong>unused</strong> (BLOCK): not evaluated (segment not chosen) · in no segment" in others
    assert "CEL <code>true</code>" in others
    assert "block-bad-domain" not in others and "challenge-risky" not in others


def test_a_policy_that_did_not_fire_has_its_tags_not_counted(
    http: TestClient, tenant: Tenant, people: Any
) -> None:
    publish(http, tenant, SEGMENTED_SET)
    decision_id = decide(
        http,
        tenant,
        inquiryId="inqdefault",
        person={"emailAddress": "kim@example.com"},
        account={"id": "acct-plain", "username": "kim"},
    )
    text = people("viewer").get(f"/console/activity/{decision_id}").text
    assert "<strong>vip</strong>: did not match" in _item(text, "segment", "vip")
    assert "<strong>risky</strong>: did not match" in _item(text, "segment", "risky")
    assert "<strong>default</strong> (default): chosen" in _item(text, "segment", "default")
    assert "No conditions: every request matches." in _item(text, "segment", "default")
    assert "tags EXTREME (weight 99) (not counted)" in _item(text, "policy", "default-block")
    assert "— actual <code>absent</code>: does not hold" in _item(text, "policy", "default-block")
    assert "(BLOCK): did not fire · tags BAD_DOMAIN (weight 80) (not counted)" in _item(
        text, "policy", "block-bad-domain"
    )
    assert "3 policies not evaluated (segment not chosen)" in text  # vip-block, challenge-risky, unused
