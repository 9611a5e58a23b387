"""The template editor without JavaScript: a refused save or preview keeps a preview on screen, marked out
of date when it is not of the text in the form, and says what is wrong in plain words beside the field."""

from __future__ import annotations

import html
import re
from typing import Any

STALE = "Preview out of date — fix the errors below"
HIDDEN_STALE = re.compile(r'<p class="warning stale-label" id="preview-stale" hidden>')
SHOWN_STALE = re.compile(r'<p class="warning stale-label" id="preview-stale">')


def sms_form(sms: str, **extra: str) -> dict[str, str]:
    return {"name": "promo-code", "channel": "SMS", "kind": "OTP", "locale": "en", "sms": sms, **extra}


def preview_sms(page: str) -> str:
    found = re.search(r'<div class="sms" id="preview-sms">(.*?)</div>', page, re.S)
    assert found, "no SMS preview on the page"
    return html.unescape(found.group(1))


def sms_info(page: str) -> str:
    found = re.search(r'<p id="preview-sms-info">(.*?)</p>', page, re.S)
    assert found, "no SMS info on the page"
    return found.group(1)


def saved(analyst: Any) -> None:
    r = analyst.post("/console/templates/promo-code", sms_form("Promo code {{ code }}", new="1"))
    assert r.status_code == 303, r.text


def test_a_refused_save_shows_the_last_good_preview_marked_out_of_date(people: Any) -> None:
    analyst = people("analyst")
    saved(analyst)
    fresh = analyst.get("/console/templates/promo-code").text
    assert HIDDEN_STALE.search(fresh) and 'class="preview-body"' in fresh
    assert "1 segment" in sms_info(fresh)

    r = analyst.post("/console/templates/promo-code", sms_form("€" * 200 + " Promo code {{ code "))
    assert r.status_code == 422
    page = r.text
    # The last good preview (the saved text), dimmed and marked; its count is not shown as the new text's.
    assert SHOWN_STALE.search(page) and STALE in page
    assert 'class="preview-body is-stale" aria-describedby="preview-stale"' in page
    assert preview_sms(page).startswith("Promo code ") and "€" not in preview_sms(page)
    assert sms_info(page) == "Not counted: the text has errors."
    # Beside the field, in plain words, with its line; none of the template engine's own wording.
    error = re.search(r'<p class="field-error" id="part-sms-error">(.*?)</p>', page)
    assert error, page
    assert html.unescape(error.group(1)) == "line 1: A {{ … }} is not closed: end it with }}."
    assert 'aria-invalid="true" aria-describedby="part-sms-error"' in page
    assert "syntax error" not in page and "end of print statement" not in page
    # Listed under the label too, led by the part's name.
    assert "SMS text, line 1: A {{ … }} is not closed" in html.unescape(page)
    # What was typed stays in the field.
    assert "€" * 200 + " Promo code {{ code " in html.unescape(page)


def test_the_preview_button_without_javascript_marks_the_preview_out_of_date(people: Any) -> None:
    analyst = people("analyst")
    saved(analyst)
    r = analyst.post("/console/templates/promo-code/preview", sms_form("Promo {{ code|shout }}"))
    assert r.status_code == 422
    assert SHOWN_STALE.search(r.text)
    assert preview_sms(r.text).startswith("Promo code ")
    assert "There is no filter named shout: remove it or check its spelling." in html.unescape(r.text)
    assert "No filter named" not in r.text
    # Fixed, the same button shows the new text, not marked.
    ok = analyst.post("/console/templates/promo-code/preview", sms_form("Promo {{ code|upper }}"))
    assert ok.status_code == 200
    assert HIDDEN_STALE.search(ok.text) and "is-stale" not in ok.text
    assert preview_sms(ok.text).startswith("Promo ") and "1 segment" in sms_info(ok.text)


def test_a_save_refused_for_another_reason_previews_the_text_sent(people: Any) -> None:
    analyst = people("analyst")
    saved(analyst)
    # A new template of a name already taken: the text renders, so its own preview shows, not marked.
    r = analyst.post("/console/templates/promo-code", sms_form("Another {{ code }}", new="1"))
    assert r.status_code == 409, r.status_code
    assert HIDDEN_STALE.search(r.text) and "is-stale" not in r.text
    assert preview_sms(r.text).startswith("Another ")
    assert "Preview (not saved)" in r.text


def test_a_new_template_that_never_rendered_says_so(people: Any) -> None:
    analyst = people("analyst")
    r = analyst.post(
        "/console/templates/fresh-one", sms_form("{% if %}{{ code }}", name="fresh-one", new="1")
    )
    assert r.status_code == 422
    assert SHOWN_STALE.search(r.text) and "There is no earlier version to show." in r.text
    assert "Something is missing inside a tag" in html.unescape(r.text)
    assert "Expected an expression" not in r.text


def test_the_live_preview_answers_in_plain_words(people: Any) -> None:
    viewer = people("viewer")
    bad = viewer.http.post(
        "/console/api/templates/preview",
        headers={"x-csrf-token": viewer.csrf},
        data={
            "channel": "SMS",
            "kind": "OTP",
            "locale": "en",
            "sms": "Code {{ code }}\n{% for x in values %}",
        },
    )
    assert bad.status_code == 422
    [error] = bad.json()["errors"]
    assert error["field"] == "locales.en.sms" and error["line"] == 2
    assert error["message"] == "A tag is not closed: add {% endfor %} after it."
