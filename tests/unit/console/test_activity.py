"""The activity explorer's pure parts: the page cursor, the masked request and explanation, the overview's
links into the explorer."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from passgate.console.activity import (
    activity_links,
    flatten,
    masked_explanation,
    masked_request,
)
from passgate.paging import KeysetCursor

ID = "01a24f54-0f14-7305-8067-204d4df82ebe"


def test_a_cursor_reads_back_what_it_wrote() -> None:
    cursor = KeysetCursor(datetime(2026, 12, 7, 6, 0, 1, 250_000, tzinfo=UTC), ID)
    assert KeysetCursor.parse(str(cursor)) == cursor


@pytest.mark.parametrize(
    "text",
    [
        "",
        "_",
        "bogus",
        f"2026-12-07T06:00:00_{ID}",
        f"x_{ID}",
        "2026-12-07T06:00:00+00:00_short",
        f"0001-01-01T00:00:00+14:00_{ID}",
    ],
)
def test_anything_else_is_no_cursor(text: str) -> None:
    assert KeysetCursor.parse(text) is None


def test_personal_data_and_secrets_are_masked() -> None:
    stored = {
        "inquiryId": "inq1",
        "userIp": "203.0.113.7",
        "person": {
            "name": {"first": "Mallory", "last": "Attacker"},
            "emailAddress": "mallory.attacker@blocked.example",
            "phoneNumber": "+16502530000",
            "addresses": [{"line1": "1 Main Street", "city": "Springfield", "postalCode": "12345"}],
        },
        "account": {"id": "acct-1", "username": "mallory@example.com", "userPassword": "hash"},
        "strategy": {"mfaTemplateName": "email-link", "mfaTemplateValues": {"otp": "secret-value"}},
    }
    shown = dict(flatten(masked_request(stored)))
    assert shown["person.emailAddress"] == "ma••••••••••••••@blocked.example"
    assert shown["person.phoneNumber"] == "+16•••••••00"
    assert shown["person.name.first"] == "M••••••"
    assert shown["person.addresses[0].line1"] == "1••••••••••••"
    assert shown["person.addresses[0].city"] == "Springfield"
    assert shown["account.username"] == "ma•••••@example.com"
    assert shown["strategy.mfaTemplateValues.otp"] == "•••"
    assert "account.userPassword" not in shown
    assert (shown["inquiryId"], shown["account.id"]) == ("inq1", "acct-1")
    assert stored["person"]["emailAddress"] == "mallory.attacker@blocked.example"  # the row is not changed


def test_a_personal_fields_actual_value_is_masked_in_the_explanation() -> None:
    explanation = {
        "segments": [],
        "policies": [
            {
                "name": "p",
                "conditions": [
                    {"field": "person.emailAddress", "actual": "jo.doe@example.com"},
                    {"field": "email.domain", "actual": "example.com"},
                ],
            }
        ],
    }
    conds = masked_explanation(explanation)["policies"][0]["conditions"]
    assert [c["actual"] for c in conds] == ["jo••••@example.com", "example.com"]


def test_the_overviews_links_cover_each_bucket() -> None:
    start = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    links = activity_links(start, 3600, 24)
    assert parse_qs(urlsplit(links["all"]).query) == {"from": ["2026-12-07T00:00:00+00:00"]}
    third = parse_qs(urlsplit(links["buckets"]["BLOCK"][2]).query)
    assert third == {
        "decision": ["BLOCK"],
        "from": ["2026-12-07T02:00:00+00:00"],
        "to": ["2026-12-07T03:00:00+00:00"],
    }
    assert all(len(v) == 24 for v in links["buckets"].values())
