"""Policy sets (the draft editor, publish, simulate, versions with diff and restore) and lists."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from passgate.console.forms import OPERATOR_LABELS, apply_edit, document_from_form, form_key, show_value
from passgate.console.permissions import Permission
from passgate.console.routes.common import (
    Action,
    Problem,
    Reader,
    action,
    attempt,
    not_found,
    page_problem,
    redirect,
    registry_of,
    render,
    run,
)
from passgate.console.rules import (
    canonical_operator,
    check_conditions,
    field_options,
    focus_after,
    operators_for,
    value_control,
)
from passgate.console.rules import catalogue as rule_catalogue
from passgate.console.services import CurrentUser
from passgate.policy import lists as list_svc
from passgate.policy import services as policy_svc
from passgate.policy.conditions import OPERATORS
from passgate.policy.exceptions import InvalidPolicySet, VersionNotFound
from passgate.policy.fields import FIELDS
from passgate.policy.requests import AccountOpeningRequest, LoginRequest
from passgate.policy.schemas import PolicySetDocument
from passgate.policy.simulation import simulate as simulate_request
from passgate.problems import validation_errors

router = APIRouter()
EVENT_TYPES = {"LOGIN": "Login", "NEW_ACCOUNT_OPENING": "New account opening"}
VERSION = re.compile(r"^v[0-9]{1,9}$")
LIST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
SAMPLE_REQUEST = {
    "inquiryId": "sim1",
    "deviceSessionId": "dev1",
    "userIp": "203.0.113.7",
    "person": {"emailAddress": "jo@mailinator.com"},
    "account": {"id": "acct-1", "username": "jo"},
    "customFields": {"riskTier": "red"},
}


def _event(user: CurrentUser, event_type: str) -> str:
    if event_type not in EVENT_TYPES:
        raise not_found(user, "such event type")
    return event_type


@router.get("/policies")
async def policies_root() -> Response:
    return RedirectResponse("/console/policies/LOGIN", status_code=303)


def _errors_for_editor(found: Problem) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in found.errors:
        key = form_key(str(e.get("field", "")))
        out[key] = str(e.get("message", ""))
    return out


async def _versions(
    request: Request, user: CurrentUser, event_type: str
) -> tuple[str | None, list[dict[str, Any]]]:
    registry = registry_of(request)

    def work(session: Any) -> tuple[str | None, list[dict[str, Any]]]:
        ps, rows = policy_svc.list_versions(session, user.client_id, event_type)
        active = next((v.version_name for v in rows if v.id == ps.active_version_id), None)
        return active, [
            {
                "name": v.version_name,
                "createdAt": v.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                "by": v.created_by,
                "restoredFrom": v.restored_from,
            }
            for v in rows
        ]

    return await run(registry, work)


async def _policy_page(
    request: Request,
    user: CurrentUser,
    event_type: str,
    *,
    doc: dict[str, Any] | None = None,
    found: Problem | None = None,
    simulation: dict[str, Any] | None = None,
    sim_request: str | None = None,
    sim_version: str = "draft",
    sim_problem: Problem | None = None,
    status: int = 200,
    raw: str | None = None,
    dirty: bool = False,
    focus: str | None = None,
) -> Response:
    registry = registry_of(request)
    if doc is None:
        doc = await run(registry, lambda s: dict(policy_svc.get_draft(s, user.client_id, event_type).draft))
    list_names = await run(registry, lambda s: sorted(list_svc.list_names(s, user.client_id)))
    active, versions = await _versions(request, user, event_type)
    return render(
        request,
        "console/policies.html",
        {
            "title": f"Policies · {EVENT_TYPES[event_type]}",
            "event_type": event_type,
            "event_types": EVENT_TYPES,
            "doc": doc,
            "raw": raw if raw is not None else json.dumps(doc, indent=2),
            "fields": sorted(FIELDS),
            "operators": [(o, OPERATOR_LABELS[o]) for o in OPERATORS],
            # The typed rule builder: fields by kind, the operators and value control each condition takes.
            "field_options": field_options(),
            "operators_for": operators_for,
            "canonical_operator": canonical_operator,
            "value_control": value_control,
            "rules": json.dumps({**rule_catalogue(), "lists": list_names}, separators=(",", ":")),
            "focus": focus,
            "show_value": show_value,
            "problem": found,
            "errors": _errors_for_editor(found) if found else {},
            # Every error of the editor's form is shown beside its input: the summary lists none again.
            "placed": {str(e.get("field", "")): True for e in found.errors} if found else {},
            "simulation": simulation,
            "sim_request": sim_request or json.dumps(SAMPLE_REQUEST, indent=2),
            "sim_version": sim_version,
            "sim_problem": sim_problem,
            "active": active,
            "versions": versions,
            "lists": list_names,
            "dirty": dirty,
            "unapplied": {w["field"]: w["message"] for w in policy_svc.unapplied_policies(doc)},
        },
        user,
        status=status,
        nav="policies",
    )


@router.get("/policies/{event_type}")
async def policy_page(request: Request, event_type: str, user: Reader) -> Response:
    return await _policy_page(request, user, _event(user, event_type))


async def _save(request: Request, act: Action, event_type: str, doc_in: Any) -> Problem | None:
    registry = registry_of(request)

    def work(session: Any) -> None:
        doc = PolicySetDocument.model_validate(doc_in)
        policy_svc.put_draft(
            session, act.user.client_id, event_type, doc, registry.clock.now(), author=act.user.actor
        )

    found = await attempt(registry, work)
    return found if isinstance(found, Problem) else None


async def _unfit_conditions(request: Request, act: Action, doc: dict[str, Any]) -> Problem | None:
    """The editor's own checks before saving, in plain words at the condition: an operator that does not
    fit its field's type, a list check naming none of the client's lists."""
    names = await run(registry_of(request), lambda s: set(list_svc.list_names(s, act.user.client_id)))
    errors = check_conditions(doc, names)
    if not errors:
        return None
    count = len(errors)
    message = (
        "One condition needs a change: see the field marked below."
        if count == 1
        else f"{count} conditions need a change: see the fields marked below."
    )
    return Problem(message, errors, 422)


@router.post("/policies/{event_type}/draft")
async def save_draft(
    request: Request, event_type: str, act: Annotated[Action, Depends(action(Permission.POLICIES_EDIT))]
) -> Response:
    event_type = _event(act.user, event_type)
    doc = document_from_form(act.form)
    todo = act.form.get("action", "save")[:60]
    if todo != "save":
        # Add or remove a part: the editor comes back with the change, nothing is stored yet, the focus on
        # the part added or on the neighbour of the part removed.
        edited = apply_edit(doc, todo)
        return await _policy_page(
            request, act.user, event_type, doc=edited, dirty=True, focus=focus_after(edited, todo)
        )
    found = await _unfit_conditions(request, act, doc) or await _save(request, act, event_type, doc)
    if found is not None:
        return await _policy_page(
            request, act.user, event_type, doc=doc, found=found, status=found.status, dirty=True
        )
    return redirect(request, f"/console/policies/{event_type}", "Draft saved. Publish it to make it live.")


@router.post("/policies/{event_type}/draft-json")
async def save_draft_json(
    request: Request, event_type: str, act: Annotated[Action, Depends(action(Permission.POLICIES_EDIT))]
) -> Response:
    event_type = _event(act.user, event_type)
    raw = act.form.get("document")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        bad = Problem(
            f"The document is not valid JSON: {exc}", [{"field": "document", "message": str(exc)}], 400
        )
        return await _policy_page(request, act.user, event_type, found=bad, raw=raw, status=400)
    found = await _save(request, act, event_type, doc)
    if found is not None:
        return await _policy_page(request, act.user, event_type, found=found, raw=raw, status=found.status)
    return redirect(request, f"/console/policies/{event_type}", "Draft saved. Publish it to make it live.")


@router.post("/policies/{event_type}/publish")
async def publish(
    request: Request, event_type: str, act: Annotated[Action, Depends(action(Permission.POLICIES_PUBLISH))]
) -> Response:
    event_type = _event(act.user, event_type)
    registry = registry_of(request)

    def work(session: Any) -> policy_svc.Publication:
        return policy_svc.publish(
            session, act.user.client_id, event_type, act.user.actor, registry.clock.now()
        )

    published = await attempt(registry, work)
    if isinstance(published, Problem):
        return await _policy_page(request, act.user, event_type, found=published, status=published.status)
    registry.policy_cache.forget_active(act.user.client_id, event_type)
    name = published.version.version_name
    if not published.new:
        return redirect(
            request,
            f"/console/policies/{event_type}",
            f"Nothing to publish: the draft is the live version {name} already.",
        )
    return redirect(request, f"/console/policies/{event_type}", f"Published {name}: it decides from now on.")


@router.post("/policies/{event_type}/simulate")
async def simulate(
    request: Request, event_type: str, act: Annotated[Action, Depends(action(Permission.POLICIES_SIMULATE))]
) -> Response:
    event_type = _event(act.user, event_type)
    registry = registry_of(request)
    raw = act.form.get("request")
    version = act.form.get("version", "draft")
    version = version if version == "draft" or VERSION.match(version) else "draft"
    model = LoginRequest if event_type == "LOGIN" else AccountOpeningRequest
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("the request must be a JSON object")
        request_body = model.model_validate(body).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        errors = validation_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])
        bad = Problem(
            "The request is not a valid " + EVENT_TYPES[event_type].lower() + " request.", errors, 400
        )
        return await _policy_page(
            request, act.user, event_type, sim_request=raw, sim_version=version, sim_problem=bad, status=400
        )
    except ValueError as exc:
        bad = Problem(f"The request is not valid JSON: {exc}", [], 400)
        return await _policy_page(
            request, act.user, event_type, sim_request=raw, sim_version=version, sim_problem=bad, status=400
        )

    def work() -> dict[str, Any]:
        found = simulate_request(
            registry.sessions,
            registry.policy_cache,
            registry.signals,
            act.user.client_id,
            event_type,
            request_body,
            version,
            registry.clock.now(),
        )
        # The page lists the device, email, phone and ip groups (the API adds velocity).
        signals = {k: v for k, v in found.signals.items() if k != "velocity"}
        return {"version": found.version, **found.explanation, "signals": signals}

    try:
        result = await run_in_threadpool(work)
    except Exception as exc:
        found: Problem | None = page_problem(exc)
        if found is None:
            raise
        return await _policy_page(
            request,
            act.user,
            event_type,
            sim_request=raw,
            sim_version=version,
            sim_problem=found,
            status=found.status,
        )
    return await _policy_page(
        request, act.user, event_type, simulation=result, sim_request=raw, sim_version=version
    )


@router.get("/policies/{event_type}/versions/{version}")
async def version_page(request: Request, event_type: str, version: str, user: Reader) -> Response:
    event_type = _event(user, event_type)
    if not VERSION.match(version):
        raise not_found(user, "such version")
    registry = registry_of(request)

    def work(session: Any) -> dict[str, Any] | None:
        try:
            v = policy_svc.get_version(session, user.client_id, event_type, version)
        except VersionNotFound:
            return None
        return {
            "name": v.version_name,
            "document": v.document,
            "createdAt": v.created_at.strftime("%Y-%m-%d %H:%M UTC"),
            "by": v.created_by,
            "restoredFrom": v.restored_from,
        }

    v = await run(registry, work)
    if v is None:
        raise not_found(user, "such version")
    active, versions = await _versions(request, user, event_type)
    return render(
        request,
        "console/version.html",
        {
            "title": f"{EVENT_TYPES[event_type]} {version}",
            "event_type": event_type,
            "v": v,
            "active": active,
            "pretty": json.dumps(v["document"], indent=2),
        },
        user,
        nav="policies",
    )


@router.get("/policies/{event_type}/diff")
async def diff_page(
    request: Request, event_type: str, user: Reader, a: str = "", b: str = "draft"
) -> Response:
    event_type = _event(user, event_type)
    registry = registry_of(request)
    active, versions = await _versions(request, user, event_type)
    a = a if VERSION.match(a) or a == "draft" else (active or "draft")
    b = b if VERSION.match(b) or b == "draft" else "draft"

    def work(session: Any) -> dict[str, Any] | None:
        def doc(name: str) -> dict[str, Any]:
            if name == "draft":
                return dict(policy_svc.get_draft(session, user.client_id, event_type).draft)
            return dict(policy_svc.get_version(session, user.client_id, event_type, name).document)

        try:
            return policy_svc.diff_documents(doc(a), doc(b))
        except VersionNotFound:
            return None

    changes = await run(registry, work)
    if changes is None:
        raise not_found(user, "such version")
    return render(
        request,
        "console/diff.html",
        {
            "title": f"Compare {a} and {b}",
            "event_type": event_type,
            "a": a,
            "b": b,
            "changes": changes,
            "versions": versions,
            "active": active,
            "json": json,
        },
        user,
        nav="policies",
    )


@router.post("/policies/{event_type}/versions/{version}/restore")
async def restore(
    request: Request,
    event_type: str,
    version: str,
    act: Annotated[Action, Depends(action(Permission.POLICIES_PUBLISH))],
) -> Response:
    event_type = _event(act.user, event_type)
    if not VERSION.match(version):
        raise not_found(act.user, "such version")
    registry = registry_of(request)

    def work(session: Any) -> policy_svc.Publication:
        return policy_svc.restore(
            session, act.user.client_id, event_type, version, act.user.actor, registry.clock.now()
        )

    published = await attempt(registry, work)
    if isinstance(published, Problem):
        return redirect(
            request,
            f"/console/policies/{event_type}/versions/{version}",
            f"Not restored: {published.message}",
        )
    registry.policy_cache.forget_active(act.user.client_id, event_type)
    name = published.version.version_name
    if not published.new:
        return redirect(
            request,
            f"/console/policies/{event_type}",
            f"Nothing restored: {version} is what {name} holds, live.",
        )
    return redirect(
        request,
        f"/console/policies/{event_type}",
        f"{version} restored as {name}; it decides now. The draft is unchanged.",
    )


# -- lists -------------------------------------------------------------------------------------------------

LIST_KINDS = {
    "email": "Email addresses",
    "emailDomain": "Email domains",
    "phone": "Phone numbers",
    "ip": "IP addresses or CIDR ranges",
    "country": "Country codes (for phone.country, ip.country)",
    "deviceId": "Device ids",
    "accountId": "Account ids",
}


@router.get("/lists")
async def lists_page(request: Request, user: Reader) -> Response:
    registry = registry_of(request)
    items = await run(
        registry, lambda s: [list_svc.list_view(s, r) for r in list_svc.all_lists(s, user.client_id)]
    )
    return render(
        request,
        "console/lists.html",
        {"title": "Lists", "items": items, "kinds": LIST_KINDS, "errors": {}},
        user,
        nav="lists",
    )


@router.post("/lists")
async def create_list(
    request: Request, act: Annotated[Action, Depends(action(Permission.LISTS_EDIT))]
) -> Response:
    registry = registry_of(request)
    name = act.form.get("name").strip()
    kind = act.form.get("kind")
    description = act.form.get("description").strip()[:1000] or None
    errors: dict[str, str] = {}
    if not LIST_NAME.match(name):
        errors["name"] = "1-80 characters of letters, digits, _ . and -, starting with a letter or digit"
    if kind not in LIST_KINDS:
        errors["kind"] = "choose what the list holds"
    if not errors:

        def work(session: Any) -> None:
            now = registry.clock.now()
            list_svc.create_list(session, act.user.client_id, name, kind, description, now)
            act.audit(session, "list.created", name, {"kind": kind}, at=now)

        found = await attempt(registry, work)
        if isinstance(found, Problem):
            errors["name"] = found.message
    if errors:
        items = await run(
            registry, lambda s: [list_svc.list_view(s, r) for r in list_svc.all_lists(s, act.user.client_id)]
        )
        return render(
            request,
            "console/lists.html",
            {
                "title": "Lists",
                "items": items,
                "kinds": LIST_KINDS,
                "errors": errors,
                "posted": {"name": name, "kind": kind, "description": description or ""},
            },
            act.user,
            status=422,
            nav="lists",
        )
    return redirect(request, f"/console/lists/{name}", f"List {name} created.")


@router.get("/lists/{name}")
async def list_page(request: Request, name: str, user: Reader, after: str = "") -> Response:
    if not LIST_NAME.match(name):
        raise not_found(user, "such list")
    registry = registry_of(request)
    after_v = after[:320] if after and "\x00" not in after else None

    def work(session: Any) -> tuple[dict[str, Any], list[str]] | None:
        try:
            row = list_svc.get_list(session, user.client_id, name)
        except list_svc.ListNotFound:
            return None
        return list_svc.list_view(session, row), list_svc.entries_page(session, row, 101, after_v)

    found = await run(registry, work)
    if found is None:
        raise not_found(user, "such list")
    view, entries = found
    return render(
        request,
        "console/list.html",
        {
            "title": f"List {name}",
            "l": view,
            "entries": entries[:100],
            "more": len(entries) > 100,
            "kinds": LIST_KINDS,
            "report": None,
        },
        user,
        nav="lists",
    )


@router.post("/lists/{name}/entries")
async def add_entries(
    request: Request, name: str, act: Annotated[Action, Depends(action(Permission.LISTS_EDIT))]
) -> Response:
    if not LIST_NAME.match(name):
        raise not_found(act.user, "such list")
    registry = registry_of(request)
    upload = act.form.files.get("csv")
    try:
        if upload is not None:
            values = list_svc.parse_csv(upload[1].decode("utf-8-sig"))
        else:
            values = list_svc.parse_csv(act.form.get("entries"))
    except (UnicodeDecodeError, ValueError, Exception) as exc:  # csv.Error is an Exception
        return redirect(
            request,
            f"/console/lists/{name}",
            f"Nothing imported: the file is not UTF-8 CSV ({type(exc).__name__}).",
        )

    def work(session: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        row = list_svc.get_list(session, act.user.client_id, name, lock=True)
        report = list_svc.add_entries(session, row, values, registry.clock.now())
        registry.signals.lists.forget(act.user.client_id)
        act.audit(
            session, "list.entries_added", name, {"added": report.added, "rejected": len(report.rejected)}
        )
        return report.as_dict(), list_svc.list_view(session, row)

    outcome = await attempt(registry, work)
    if isinstance(outcome, Problem):
        if outcome.status == 404:
            raise not_found(act.user, "such list")
        return redirect(request, f"/console/lists/{name}", f"Nothing imported: {outcome.message}")
    report, view = outcome
    registry.signals.lists.forget(act.user.client_id)
    entries = await run(
        registry,
        lambda s: list_svc.entries_page(s, list_svc.get_list(s, act.user.client_id, name), 101, None),
    )
    return render(
        request,
        "console/list.html",
        {
            "title": f"List {name}",
            "l": view,
            "entries": entries[:100],
            "more": len(entries) > 100,
            "kinds": LIST_KINDS,
            "report": report,
        },
        act.user,
        nav="lists",
    )


@router.post("/lists/{name}/remove")
async def remove_entries(
    request: Request, name: str, act: Annotated[Action, Depends(action(Permission.LISTS_EDIT))]
) -> Response:
    if not LIST_NAME.match(name):
        raise not_found(act.user, "such list")
    registry = registry_of(request)
    values = [v for v in act.form.getlist("value") if v][:10_000]
    values += [line.strip() for line in act.form.get("entries").splitlines() if line.strip()][:10_000]

    def work(session: Any) -> int:
        row = list_svc.get_list(session, act.user.client_id, name, lock=True)
        n = list_svc.remove_entries(session, row, values, registry.clock.now())
        registry.signals.lists.forget(act.user.client_id)
        act.audit(session, "list.entries_removed", name, {"removed": n})
        return n

    try:
        n = await run(registry, work)
    except list_svc.ListNotFound:
        raise not_found(act.user, "such list") from None
    registry.signals.lists.forget(act.user.client_id)
    return redirect(request, f"/console/lists/{name}", f"{n} entr{'y' if n == 1 else 'ies'} removed.")


@router.post("/lists/{name}/delete")
async def delete_list(
    request: Request, name: str, act: Annotated[Action, Depends(action(Permission.LISTS_EDIT))]
) -> Response:
    if not LIST_NAME.match(name):
        raise not_found(act.user, "such list")
    registry = registry_of(request)

    def work(session: Any) -> None:
        list_svc.delete_list(session, act.user.client_id, name)
        act.audit(session, "list.deleted", name)

    try:
        await run(registry, work)
    except list_svc.ListNotFound:
        raise not_found(act.user, "such list") from None
    registry.signals.lists.forget(act.user.client_id)
    return redirect(request, "/console/lists", f"List {name} deleted.")


__all__ = ["router", "InvalidPolicySet"]
