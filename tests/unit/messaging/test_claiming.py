"""The claim side of a round: `RoundTemplates` asks the template source once per client and name in a
round, and answers what the source answered."""

from __future__ import annotations

from collections import Counter
from typing import Any

from passgate.messaging.claiming import Premade, RoundTemplates
from passgate.messaging.templates import Brand, builtin_templates


class CountingSource:
    def __init__(self) -> None:
        self.asked: Counter[tuple[str, ...]] = Counter()

    def get(self, session: Any, client_id: str, name: str) -> Any:
        self.asked["get", client_id, name] += 1
        return builtin_templates().get(name)

    def brand(self, session: Any, client_id: str) -> Brand:
        self.asked["brand", client_id] += 1
        return Brand(company_name=f"Brand {client_id}")

    def from_address(self, session: Any, client_id: str) -> str | None:
        self.asked["from", client_id] += 1
        return None if client_id == "c1" else f"no-reply@{client_id}.example"


def test_a_round_asks_the_source_once_per_client_and_answers_the_same() -> None:
    source = CountingSource()
    templates = RoundTemplates(source)
    for _ in range(50):
        for client in ("c1", "c2"):
            assert templates.get(None, client, "email-link") is builtin_templates()["email-link"]
            assert templates.get(None, client, "missing") is None
            assert templates.brand(None, client) == Brand(company_name=f"Brand {client}")
            assert templates.from_address(None, client) == (None if client == "c1" else "no-reply@c2.example")
    assert set(source.asked.values()) == {1}
    assert len(source.asked) == 8  # two names, a brand and a sender, for each of two clients


def test_premade_secrets_are_a_mapping_that_carries_the_rows_read() -> None:
    premade = Premade()
    assert premade.rows is None and not premade and dict(premade) == {}
