"""The policy editor's typed rule builder as the server renders it (no JavaScript): the operators each
field type offers, the value control each operator takes (a list picker of the client's own lists), plain
errors at the condition when an operator does not fit its field, and the control focused after Add or
Remove."""

from __future__ import annotations

import html
import re
from typing import Any

from passgate.bootstrap import Registry
from passgate.policy import lists as list_svc
from passgate.policy import services as policy_svc
from tests.factories import Tenant, make_tenant

PAGE = "/console/policies/LOGIN"


def form_of(doc: dict[str, Any], **extra: str) -> dict[str, Any]:
    """The editor's fields for a document, as the browser posts them."""
    out: dict[str, Any] = {
        "name": doc["name"],
        "segments": str(len(doc["segments"])),
        "policies": str(len(doc["policies"])),
    }

    def conds(prefix: str, items: list[dict[str, Any]]) -> None:
        out[f"{prefix}.conditions"] = str(len(items))
        for j, c in enumerate(items):
            value = c["value"]
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            out[f"{prefix}.c{j}.field"] = c["field"]
            out[f"{prefix}.c{j}.operator"] = c["operator"]
            out[f"{prefix}.c{j}.value"] = shown.lower() if isinstance(value, bool) else shown

    names = [p["name"] for p in doc["policies"]]
    for i, s in enumerate(doc["segments"]):
        out[f"s{i}.name"] = s["name"]
        out[f"s{i}.policies"] = [f"#{names.index(n)}" for n in s["policies"]]
        if s.get("mfaEnabled"):
            out[f"s{i}.mfaEnabled"] = "on"
        conds(f"s{i}", s.get("conditions", []))
    for i, p in enumerate(doc["policies"]):
        out[f"p{i}.name"] = p["name"]
        out[f"p{i}.outcome"] = p["outcome"]
        conds(f"p{i}", p.get("conditions", []))
        out[f"p{i}.tags"] = str(len(p.get("tags", [])))
        for k, t in enumerate(p.get("tags", [])):
            out[f"p{i}.t{k}.name"] = t["name"]
            out[f"p{i}.t{k}.weight"] = str(t["weight"])
    return {**out, **extra}


def draft(registry: Registry, client_id: str) -> dict[str, Any]:
    with registry.sessions() as session:
        return dict(policy_svc.get_draft(session, client_id, "LOGIN").draft)


def element(page: str, id_: str) -> str:
    found = re.search(rf'<(input|select|button)[^>]*\bid="{re.escape(id_)}"[^>]*>', page)
    assert found, f"no control {id_}"
    return found.group(0)


def options(page: str, id_: str) -> list[str]:
    found = re.search(rf'<select[^>]*\bid="{re.escape(id_)}"[^>]*>(.*?)</select>', page, re.S)
    assert found, f"no select {id_}"
    return [html.unescape(t) for t in re.findall(r"<option[^>]*>([^<]*)</option>", found.group(1))]


def selected(page: str, id_: str) -> str:
    found = re.search(rf'<select[^>]*\bid="{re.escape(id_)}"[^>]*>(.*?)</select>', page, re.S)
    assert found
    chosen = re.search(r"<option[^>]*\bselected[^>]*>([^<]*)</option>", found.group(1))
    assert chosen, f"nothing selected in {id_}"
    return html.unescape(chosen.group(1))


def autofocused(page: str) -> list[str]:
    return re.findall(r'\bid="([^"]+)"[^>]*\bautofocus\b', page)


def make_list(registry: Registry, client_id: str, name: str, kind: str = "emailDomain") -> None:
    with registry.sessions() as session, session.begin():
        list_svc.create_list(session, client_id, name, kind, None, registry.clock.now())


def test_operators_and_value_controls_follow_the_field_type(people: Any, registry: Registry) -> None:
    analyst = people("analyst")
    page = analyst.get(PAGE).text
    # The field picker: every catalogue field labelled by kind and type; custom fields stay possible.
    assert (
        '<option value="ip.version" label="IP address: version (4 or 6) (number)" data-type="number">' in page
    )
    assert 'label="Velocity: logins from this IP address in the last hour (number)"' in page
    assert '<option value="customFields."' in page
    # The saved condition, device.seenForAccount equals false: a yes/no field offers two operators and a
    # true/false choice.
    assert options(page, "p0.c0-op") == ["equals", "does not equal"]
    assert options(page, "p0.c0-value") == ["true", "false"]
    assert selected(page, "p0.c0-value") == "false"
    assert "does not fit" not in page

    make_list(registry, analyst.client_id, "bad-domains")
    make_list(registry, analyst.client_id, "vip-ips", "ip")
    doc = draft(registry, analyst.client_id)
    doc["policies"][0]["conditions"] = [
        {"field": "ip.version", "operator": "gt", "value": 4},
        {"field": "email.domain", "operator": "inList", "value": "bad-domains"},
        {"field": "phone.country", "operator": "in", "value": ["GB", "FR"]},
        {"field": "customFields.riskTier", "operator": "equals", "value": "red"},
    ]
    # Add a tag: the page comes back unsaved with the controls the typed fields take.
    page = analyst.post(f"{PAGE}/draft", form_of(doc, action="add-tag:0")).text
    assert options(page, "p0.c0-op") == [
        "equals",
        "does not equal",
        "is one of",
        "is not one of",
        ">",
        "≥",
        "<",
        "≤",
    ]
    assert 'type="number"' in element(page, "p0.c0-value") and 'value="4"' in element(page, "p0.c0-value")
    # A list check picks one of the client's own lists, and only theirs.
    assert options(page, "p0.c1-value") == ["Choose a list", "bad-domains", "vip-ips"]
    assert selected(page, "p0.c1-value") == "bad-domains"
    # "is one of" takes comma-separated values, and says so.
    value = element(page, "p0.c2-value")
    assert 'value="GB, FR"' in value and 'aria-describedby="p0.c2-value-hint"' in value
    assert 'id="p0.c2-value-hint">Separate values with commas.' in page
    # A custom field may hold anything: every operator.
    assert len(options(page, "p0.c3-op")) == 13
    # The page says Publish publishes the saved draft, and switches it off.
    assert re.search(r'<button[^>]*id="publish"[^>]*disabled', page)
    assert "Save the draft first — Publish publishes the saved draft." in page

    # Another client's lists are never offered.
    other = make_tenant(analyst.http, registry)
    make_list(registry, other.client_id, "their-list")
    assert "their-list" not in analyst.post(f"{PAGE}/draft", form_of(doc, action="add-tag:0")).text


def test_an_operator_that_does_not_fit_is_refused_in_plain_words(
    people: Any, registry: Registry, tenant: Tenant
) -> None:
    analyst = people("analyst")
    before = draft(registry, analyst.client_id)
    doc = draft(registry, analyst.client_id)
    doc["policies"][0]["conditions"] = [
        {"field": "device.trusted", "operator": "gt", "value": "1"},
        {"field": "ip.version", "operator": "contains", "value": "4"},
        {"field": "email.domain", "operator": "inList", "value": "no-such-list"},
    ]
    r = analyst.post(f"{PAGE}/draft", form_of(doc, action="save"))
    assert r.status_code == 422
    page = r.text
    assert "3 conditions need a change: see the fields marked below." in page
    assert (
        '<p class="field-error" id="e-p0-c0-operator">“&gt;” does not fit device.trusted, a yes/no field. '
        "Choose “equals” or “does not equal”.</p>"
    ) in page
    assert "“contains” does not fit ip.version, a number field. Choose “equals”, “does not equal”" in page
    assert (
        "There is no list named no-such-list. You have no lists yet, or create it on the Lists page." in page
    )
    # Each refused control is marked and described by its message; the choice made is kept, flagged.
    op = element(page, "p0.c0-op")
    assert 'aria-invalid="true"' in op and 'aria-describedby="e-p0-c0-operator"' in op
    assert selected(page, "p0.c0-op") == "> (does not fit this field)"
    assert selected(page, "p0.c1-op") == "contains (does not fit this field)"
    assert selected(page, "p0.c2-value") == "no-such-list (no such list)"
    assert 'aria-describedby="e-p0-c2-value"' in element(page, "p0.c2-value")
    # Nothing was saved.
    assert draft(registry, analyst.client_id) == before

    # Fixed, it saves.
    make_list(registry, analyst.client_id, "no-such-list")
    doc["policies"][0]["conditions"] = [
        {"field": "device.trusted", "operator": "equals", "value": True},
        {"field": "ip.version", "operator": "gte", "value": 6},
        {"field": "email.domain", "operator": "inList", "value": "no-such-list"},
    ]
    r = analyst.post(f"{PAGE}/draft", form_of(doc, action="save"))
    assert r.status_code == 303, r.text
    assert draft(registry, analyst.client_id)["policies"][0]["conditions"] == doc["policies"][0]["conditions"]


def test_focus_goes_to_the_part_added_or_the_neighbour_of_the_part_removed(
    people: Any, registry: Registry
) -> None:
    analyst = people("analyst")
    doc = draft(registry, analyst.client_id)
    doc["policies"][0]["conditions"].append({"field": "ip.private", "operator": "equals", "value": True})
    doc["policies"].append(
        {"name": "second", "outcome": "BLOCK", "conditions": [], "tags": [{"name": "A", "weight": 1}]}
    )
    doc["segments"].insert(0, {"name": "first", "conditions": [], "mfaEnabled": True, "policies": []})

    def focus(act: str) -> list[str]:
        r = analyst.post(f"{PAGE}/draft", form_of(doc, action=act))
        assert r.status_code == 200, r.text
        return autofocused(r.text)

    assert focus("add-condition:0") == ["p0.c2-field"]
    assert focus("remove-condition:0:0") == ["p0.c0-field"]  # the next one moved up into its place
    assert focus("remove-condition:0:1") == ["p0.c0-field"]  # the last one: the one before it
    assert focus("add-condition:1") == ["p1.c0-field"]
    assert focus("add-tag:1") == ["p1.t1-name"]
    assert focus("remove-tag:1:0") == ["p1-add-tag"]  # none left: the button that adds one
    assert focus("remove-tag:0:0") == ["p0-add-tag"]
    assert focus("add-policy") == ["p2-name"]
    assert focus("remove-policy:1") == ["p0-name"]
    assert focus("remove-policy:0") == ["p0-name"]
    assert focus("add-segment") == ["s1-name"]  # before the default, which stays last
    assert focus("remove-segment:0") == ["s0-name"]
    assert focus("add-segment-condition:0") == ["s0.c0-field"]
    # A removed condition that was the only one: the segment's "Add condition" button.
    doc["segments"][0]["conditions"] = [{"field": "ip.private", "operator": "equals", "value": False}]
    assert focus("remove-segment-condition:0:0") == ["s0-add-condition"]
    # An action that names no part focuses nothing.
    assert focus("remove-policy:99") == []
