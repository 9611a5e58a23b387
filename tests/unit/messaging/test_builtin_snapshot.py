"""The built-in templates render byte for byte as the committed snapshot says (builtin_rendered.json).

The snapshot was taken before the built-in email bodies shared one HTML frame (builtin/_base.html): the
frame is a refactoring of the files, never a change of what a recipient gets. Rewrite the snapshot only
for a deliberate change of a built-in's wording or layout (`python tests/unit/messaging/test_builtin_snapshot.py`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from passgate.messaging.templates import Brand, PersonName, RenderContext, builtin_templates, render

SNAPSHOT = Path(__file__).with_name("builtin_rendered.json")
CONTEXTS = {
    "plain": RenderContext(
        brand=Brand(company_name="Northwind"),
        host="passgate.example.com",
        expires_in_minutes=1,
        link="https://passgate.example.com/v/abc",
        code="123456",
    ),
    "branded": RenderContext(
        brand=Brand(
            company_name="Fabrikam & Söhne <Bank>",
            logo_url="https://cdn.example.com/logo.png?a=1&b=2",
            primary_color="#ffcc00",
            support_url="mailto:help@example.com",
        ),
        host="passgate.example.com",
        expires_in_minutes=12,
        link="https://passgate.example.com/v/Xq3vT9pLm2Rk8sWd4YbN7cHf1JgZ5aEu6oIy0KtQwVx",
        code="98765432",
        person=PersonName(first="Zoë", last="O'Brien", preferred="<Zo>"),
    ),
}


def rendered_now() -> dict[str, dict[str, str | None]]:
    out: dict[str, dict[str, str | None]] = {}
    for name, template in sorted(builtin_templates().items()):
        for locale, content in sorted(template.locales.items()):
            sources = json.dumps(content.present_parts(), sort_keys=True).encode()
            out[f"{name}/{locale}/source"] = {"sha256": hashlib.sha256(sources).hexdigest()}
            for label, context in CONTEXTS.items():
                r = render(template, locale, context)
                out[f"{name}/{locale}/{label}"] = {
                    "subject": r.subject,
                    "html": r.html,
                    "text": r.text,
                    "sms": r.sms,
                }
    return out


@pytest.mark.parametrize("key", sorted(json.loads(SNAPSHOT.read_text(encoding="utf-8"))))
def test_each_builtin_renders_as_the_snapshot(key: str) -> None:
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))[key]
    assert rendered_now()[key] == expected


def test_the_snapshot_covers_every_builtin_and_locale() -> None:
    assert sorted(rendered_now()) == sorted(json.loads(SNAPSHOT.read_text(encoding="utf-8")))


if __name__ == "__main__":
    SNAPSHOT.write_text(
        json.dumps(rendered_now(), indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
