"""Templates (list, editor per locale with live preview, test send) and branding."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from passgate.console.branding_preview import brand_from_form, check_colour, previews
from passgate.console.permissions import Permission
from passgate.console.previews import PARTS, draft_template, preview_draft
from passgate.console.routes.common import (
    Action,
    Problem,
    Reader,
    action,
    attempt,
    errors_by_field,
    not_found,
    redirect,
    registry_of,
    render,
    run,
)
from passgate.console.services import CurrentUser
from passgate.console.wording import plain_errors, template_message
from passgate.messaging.branding import BrandingInput, BrandingService
from passgate.messaging.catalog import TemplateCatalog, full_view, summary
from passgate.messaging.exceptions import TemplateNotFound
from passgate.messaging.sources import TEMPLATE_NAME
from passgate.messaging.templates import builtin_templates
from passgate.problems import PROBLEM_MEDIA_TYPE, document

router = APIRouter()
LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,2}$")
SAMPLE_STARTER = {
    ("EMAIL", "OTH"): "email-link",
    ("EMAIL", "OTP"): "email-code",
    ("SMS", "OTH"): "sms-link",
    ("SMS", "OTP"): "sms-code",
}


def _catalog(request: Request) -> TemplateCatalog:
    registry = registry_of(request)
    return TemplateCatalog(
        source=registry.templates, limiter=registry.limiter, public_url=registry.settings.public_url
    )


@router.get("/templates")
async def templates_page(request: Request, user: Reader) -> Response:
    registry = registry_of(request)
    catalog = _catalog(request)
    items = await run(registry, lambda s: [summary(t) for t in catalog.list(s, user.client_id)])
    return render(
        request, "console/templates.html", {"title": "Templates", "items": items}, user, nav="templates"
    )


def _editor(
    request: Request,
    user: CurrentUser,
    *,
    view: dict[str, Any],
    locale: str,
    parts: dict[str, str],
    new: bool,
    preview: dict[str, Any] | None = None,
    problem_: Problem | None = None,
    status: int = 200,
    test_to: str = "",
    stale: bool = False,
) -> Response:
    problem_ = _in_words(problem_) if problem_ else None
    return render(
        request,
        "console/template_edit.html",
        {
            "title": f"Template {view['name']}" if view.get("name") else "New template",
            "t": view,
            "locale": locale,
            "parts": parts,
            "part_names": PARTS[view["channel"]],
            "new": new,
            "preview": preview,
            "problem": problem_,
            "errors": errors_by_field(problem_.errors) if problem_ else {},
            "part_errors": _part_errors(problem_.errors, view["channel"]) if problem_ else [],
            "test_to": test_to,
            # The preview on screen is not of the text in the form (which has errors): shown dimmed.
            "stale": stale,
        },
        user,
        status=status,
        nav="templates",
    )


def _in_words(found: Problem) -> Problem:
    """The problem with each template message in plain words (`wording.template_message`): the template
    engine's own wording is not for people."""
    errors = [{**e, "message": template_message(str(e.get("message") or ""))} for e in found.errors]
    return Problem(found.message, errors, found.status)


PART_LABELS = {"subject": "Subject", "html": "HTML body", "text": "Plain-text body", "sms": "SMS text"}


def _part_errors(errors: list[dict[str, Any]], channel: str) -> list[str]:
    """The errors about the editor's parts, each led by the part's label (the list under the preview)."""
    out = []
    for e in errors:
        part = str(e.get("field") or "").rsplit(".", 1)[-1]
        if part in PARTS[channel] and str(e.get("field") or "").startswith("locales."):
            line = f", line {e['line']}" if e.get("line") else ""
            out.append(f"{PART_LABELS[part]}{line}: {e.get('message')}")
    return out


async def _fallback_preview(
    request: Request, user: CurrentUser, view: dict[str, Any], locale: str, parts: dict[str, str]
) -> tuple[dict[str, Any] | None, bool]:
    """What a refused save or preview shows: the preview of the text as sent when it renders (the refusal
    was about something else), or else the last good one, the stored text of the locale (or of the
    default locale for a new one), marked out of date; (preview, stale)."""
    sent = await _initial_preview(request, user, view, locale, parts)
    if sent is not None:
        return sent, False
    stored = view.get("locales") or {}
    shown = locale if locale in stored else view.get("defaultLocale")
    if shown not in stored:
        return None, True
    return await _initial_preview(request, user, view, locale, _locale_parts(view, str(shown))), True


async def _refused(
    request: Request,
    user: CurrentUser,
    found: Problem,
    *,
    view: dict[str, Any],
    locale: str,
    parts: dict[str, str],
    new: bool,
    status: int | None = None,
) -> Response:
    """The editor after a refused save or preview: the refusal beside its fields, and the preview
    `_fallback_preview` finds (marked out of date when it is not of the text as sent)."""
    last, stale = await _fallback_preview(request, user, view, locale, parts)
    return _editor(
        request,
        user,
        view=view,
        locale=locale,
        parts=parts,
        new=new,
        problem_=found,
        status=status or found.status,
        preview=last,
        stale=stale,
    )


async def _initial_preview(
    request: Request, user: CurrentUser, view: dict[str, Any], locale: str, parts: dict[str, str]
) -> dict[str, Any] | None:
    """The preview an editor opens with, so the page shows the message before anything is typed."""
    registry = registry_of(request)
    name = view.get("name") or "preview"
    if not TEMPLATE_NAME.fullmatch(name):
        name = "preview"

    def work(session: Any) -> dict[str, Any]:
        template = draft_template(name, view["channel"], view["kind"], locale, parts)
        return preview_draft(
            session, user.client_id, registry.templates, registry.settings.public_url, template, locale
        )

    out = await attempt(registry, work)
    return None if isinstance(out, Problem) else out  # the editor shows it when the author previews or saves


def _locale_parts(view: dict[str, Any], locale: str) -> dict[str, str]:
    content = view.get("locales", {}).get(locale) or {}
    return {p: str(content.get(p, "")) for p in PARTS[view["channel"]]}


@router.get("/templates/new")
async def new_template(
    request: Request,
    user: Reader,
    name: str = "",
    channel: str = "EMAIL",
    kind: str = "OTH",
    locale: str = "en",
) -> Response:
    channel = channel if channel in ("EMAIL", "SMS") else "EMAIL"
    kind = kind if kind in ("OTH", "OTP") else "OTH"
    locale = locale if LOCALE.match(locale) else "en"
    starter = builtin_templates()[SAMPLE_STARTER[(channel, kind)]]
    content = starter.locales.get("en")
    parts = {p: str(getattr(content, p) or "") for p in PARTS[channel]} if content else {}
    view: dict[str, Any] = {
        "name": name[:64],
        "channel": channel,
        "kind": kind,
        "defaultLocale": locale,
        "locales": {},
        "builtIn": False,
        "overridesBuiltIn": False,
        "availableLocales": [],
    }
    preview = await _initial_preview(request, user, view, locale, parts)
    return _editor(request, user, view=view, locale=locale, parts=parts, new=True, preview=preview)


@router.get("/templates/{name}")
async def edit_template(request: Request, name: str, user: Reader, locale: str = "") -> Response:
    if not TEMPLATE_NAME.fullmatch(name):
        raise not_found(user, "such template")
    registry = registry_of(request)
    catalog = _catalog(request)

    def work(session: Any) -> dict[str, Any] | None:
        try:
            return full_view(catalog.get(session, user.client_id, name))
        except TemplateNotFound:
            return None

    view = await run(registry, work)
    if view is None:
        raise not_found(user, "such template")
    chosen = locale if locale and LOCALE.match(locale) else view["defaultLocale"]
    parts = _locale_parts(view, chosen)
    if chosen not in view["locales"]:
        # A new locale starts from the default one's words, to be translated.
        parts = _locale_parts(view, view["defaultLocale"])
    preview = await _initial_preview(request, user, view, chosen, parts)
    return _editor(request, user, view=view, locale=chosen, parts=parts, new=False, preview=preview)


def _form_parts(act: Action, channel: str) -> dict[str, str]:
    return {p: act.form.get(p).replace("\r\n", "\n") for p in PARTS[channel]}


async def _stored_view(request: Request, user: CurrentUser, name: str) -> dict[str, Any] | None:
    registry = registry_of(request)
    catalog = _catalog(request)

    def work(session: Any) -> dict[str, Any] | None:
        try:
            return full_view(catalog.get(session, user.client_id, name))
        except TemplateNotFound:
            return None

    return await run(registry, work)


def _posted_view(act: Action, name: str, stored: dict[str, Any] | None) -> tuple[dict[str, Any], str, bool]:
    new = stored is None or act.form.get("new") == "1"
    channel = act.form.get("channel") if new else stored["channel"]  # type: ignore[index]
    channel = channel if channel in ("EMAIL", "SMS") else "EMAIL"
    kind = act.form.get("kind") if new else stored["kind"]  # type: ignore[index]
    kind = kind if kind in ("OTH", "OTP") else "OTH"
    locale = act.form.get("locale", "en")[:64]
    view = (
        dict(stored)
        if stored and not new
        else {
            "name": name,
            "locales": {},
            "builtIn": False,
            "overridesBuiltIn": False,
            "availableLocales": [],
        }
    )
    view.update(channel=channel, kind=kind)
    view.setdefault("defaultLocale", locale)
    if act.form.get("defaultLocale"):
        view["defaultLocale"] = act.form.get("defaultLocale")[:64]
    return view, locale, new


@router.post("/templates/{name}/preview")
async def preview_template(
    request: Request, name: str, act: Annotated[Action, Depends(action(Permission.PREVIEW))]
) -> Response:
    """The Preview button without JavaScript: render what the form holds, unsaved."""
    if not TEMPLATE_NAME.fullmatch(name):
        raise not_found(act.user, "such template")
    stored = await _stored_view(request, act.user, name)
    view, locale, new = _posted_view(act, name, stored)
    parts = _form_parts(act, view["channel"])
    registry = registry_of(request)

    def work(session: Any) -> dict[str, Any]:
        template = draft_template(name, view["channel"], view["kind"], locale, parts)
        return preview_draft(
            session, act.user.client_id, registry.templates, registry.settings.public_url, template, locale
        )

    out = await attempt(registry, work)
    if isinstance(out, Problem):
        return await _refused(request, act.user, out, view=view, locale=locale, parts=parts, new=new)
    return _editor(request, act.user, view=view, locale=locale, parts=parts, new=new, preview=out)


@router.post("/api/templates/preview")
async def preview_api(
    request: Request, act: Annotated[Action, Depends(action(Permission.PREVIEW))]
) -> Response:
    """The live preview's JSON: the editor's script posts the form as it is typed (X-CSRF-Token)."""
    registry = registry_of(request)
    name = act.form.get("name") or "preview"
    channel = act.form.get("channel") if act.form.get("channel") in ("EMAIL", "SMS") else "EMAIL"
    kind = act.form.get("kind") if act.form.get("kind") in ("OTH", "OTP") else "OTH"
    locale = act.form.get("locale", "en")[:64]
    parts = _form_parts(act, channel)
    if not TEMPLATE_NAME.fullmatch(name):
        name = "preview"

    def work(session: Any) -> dict[str, Any]:
        template = draft_template(name, channel, kind, locale, parts)
        return preview_draft(
            session, act.user.client_id, registry.templates, registry.settings.public_url, template, locale
        )

    out = await attempt(registry, work)
    if isinstance(out, Problem):
        out = _in_words(out)
        body = document(
            out.status, "Invalid template", out.message, slug="invalid-template", errors=out.errors
        )
        return JSONResponse(
            body, out.status, media_type=PROBLEM_MEDIA_TYPE, headers={"Cache-Control": "no-store"}
        )
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


@router.post("/templates/{name}")
async def save_template(
    request: Request, name: str, act: Annotated[Action, Depends(action(Permission.TEMPLATES_EDIT))]
) -> Response:
    if not TEMPLATE_NAME.fullmatch(name):
        # Names come from the path; a bad one was typed into the "new template" form.
        view: dict[str, Any] = {
            "name": name[:64],
            "channel": "EMAIL",
            "kind": "OTH",
            "defaultLocale": "en",
            "locales": {},
        }
        bad = Problem(
            "The name must be 1-64 characters of a-z, 0-9 and -.",
            [{"field": "name", "message": "use a-z, 0-9 and -, not starting or ending with -"}],
        )
        channel = act.form.get("channel") if act.form.get("channel") in ("EMAIL", "SMS") else "EMAIL"
        view["channel"] = channel
        view["kind"] = act.form.get("kind") if act.form.get("kind") in ("OTH", "OTP") else "OTH"
        sent = _form_parts(act, channel)
        return await _refused(
            request, act.user, bad, view=view, locale="en", parts=sent, new=True, status=422
        )
    registry = registry_of(request)
    catalog = _catalog(request)
    stored = await _stored_view(request, act.user, name)
    view, locale, new = _posted_view(act, name, stored)
    parts = _form_parts(act, view["channel"])
    remove = act.form.get("remove_locale")

    def work(session: Any) -> str:
        now = registry.clock.now()
        others = {k: v for k, v in (view.get("locales") or {}).items()} if not new else {}
        if remove and not new:
            others.pop(remove, None)
            if not others:
                raise_invalid("a template needs at least one locale")
            default = view["defaultLocale"] if view["defaultLocale"] in others else sorted(others)[0]
            first = sorted(others)[0]
            template = draft_template(
                name,
                view["channel"],
                view["kind"],
                first,
                {p: str(others[first].get(p, "")) for p in PARTS[view["channel"]]},
                {k: v for k, v in others.items() if k != first},
                default,
            )
        else:
            others.pop(locale, None)
            template = draft_template(
                name,
                view["channel"],
                view["kind"],
                locale,
                parts,
                others,
                view.get("defaultLocale") or locale,
            )
        if new:
            catalog.create(session, act.user.client_id, template, now)
        else:
            catalog.replace(session, act.user.client_id, template, now)
        details = {"locale": locale if not remove else None, "removedLocale": remove or None}
        act.audit(session, "template.saved", name, details, at=now)
        return remove or locale

    saved = await attempt(registry, work)
    if isinstance(saved, Problem):
        return await _refused(request, act.user, saved, view=view, locale=locale, parts=parts, new=new)
    if remove:
        return redirect(request, f"/console/templates/{name}", f"Locale {saved} removed from {name}.")
    return redirect(request, f"/console/templates/{name}?locale={saved}", f"Template {name} saved ({saved}).")


def raise_invalid(message: str) -> None:
    from passgate.messaging.exceptions import InvalidTemplate

    raise InvalidTemplate(message, [{"field": "locales", "message": message}])


@router.post("/templates/{name}/delete")
async def delete_template(
    request: Request, name: str, act: Annotated[Action, Depends(action(Permission.TEMPLATES_EDIT))]
) -> Response:
    if not TEMPLATE_NAME.fullmatch(name):
        raise not_found(act.user, "such template")
    registry = registry_of(request)
    catalog = _catalog(request)

    def work(session: Any) -> bool:
        back = catalog.delete(session, act.user.client_id, name)
        act.audit(session, "template.deleted", name)
        return back

    builtin_back = await attempt(registry, work)
    if isinstance(builtin_back, Problem):
        return redirect(request, f"/console/templates/{name}", f"Not deleted: {builtin_back.message}")
    note = " The built-in template of that name applies again." if builtin_back else ""
    return redirect(request, "/console/templates", f"Template {name} deleted.{note}")


@router.post("/templates/{name}/test-send")
async def test_send(
    request: Request, name: str, act: Annotated[Action, Depends(action(Permission.TEMPLATES_TEST_SEND))]
) -> Response:
    if not TEMPLATE_NAME.fullmatch(name):
        raise not_found(act.user, "such template")
    registry = registry_of(request)
    catalog = _catalog(request)
    to = act.form.get("to").strip()[:254]
    locale = act.form.get("locale")[:64] or None

    def work(session: Any) -> dict[str, Any]:
        out = catalog.test_send(session, act.user.client_id, name, to, locale, registry.clock.now())
        act.audit(session, "template.test_sent", name, {"channel": out["channel"]})
        return out

    out = await attempt(registry, work)
    if isinstance(out, Problem):
        msg = "; ".join(e.get("message", "") for e in out.errors) or out.message
        return redirect(request, f"/console/templates/{name}?locale={locale or ''}", f"Test not sent: {msg}")
    return redirect(
        request,
        f"/console/templates/{name}?locale={out['locale']}",
        f"Test message queued to {out['to']} ({out['locale']}).",
    )


# -- branding ----------------------------------------------------------------------------------------------

BRAND_FIELDS = (
    ("companyName", "company_name", "Company name"),
    ("logoUrl", "logo_url", "Logo URL"),
    ("primaryColor", "primary_color", "Primary colour"),
    ("supportUrl", "support_url", "Support URL"),
    ("senderName", "sender_name", "Sender name"),
    ("fromAddress", "from_address", "From address"),
)


@router.get("/branding")
async def branding_page(request: Request, user: Reader) -> Response:
    registry = registry_of(request)
    service = BrandingService(mail_from=registry.settings.mail_from)
    view = await run(registry, lambda s: service.view(s, user.client_id))
    return render(
        request,
        "console/branding.html",
        {
            "title": "Branding",
            "b": view,
            "fields": BRAND_FIELDS,
            "errors": {},
            **_branding_previews(registry, view, view),
        },
        user,
        nav="branding",
    )


def _branding_previews(registry: Any, shown: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """Previews of the branding on screen; when it is not valid, those of the saved one, marked stale."""
    public_url = registry.settings.public_url
    try:
        brand = brand_from_form(shown)
        stale = None
    except ValidationError as exc:
        brand = brand_from_form(saved)
        stale = plain_errors(exc.errors(), lambda loc: str(loc[0]) if loc else "branding")
    return {"preview": previews(brand, public_url), "colour": check_colour(brand), "stale": stale}


@router.post("/branding/preview")
async def preview_branding(
    request: Request, act: Annotated[Action, Depends(action(Permission.BRANDING_EDIT))]
) -> Response:
    """The previews of the values on screen, not saved (the page's Preview button, which works without
    JavaScript; the page's script also asks for it as fields change)."""
    registry = registry_of(request)
    service = BrandingService(mail_from=registry.settings.mail_from)
    saved = await run(registry, lambda s: service.view(s, act.user.client_id))
    shown: dict[str, Any] = {k: act.form.get(k)[:4096] for k, _, _ in BRAND_FIELDS}
    shown["sendingDomains"] = [d for d in re.split(r"[\s,]+", act.form.get("sendingDomains")) if d][:10]
    shown["effectiveFrom"] = saved.get("effectiveFrom")
    return render(
        request,
        "console/branding.html",
        {
            "title": "Branding",
            "b": shown,
            "fields": BRAND_FIELDS,
            "errors": {},
            "previewing": True,
            **_branding_previews(registry, shown, saved),
        },
        act.user,
        nav="branding",
    )


@router.post("/branding")
async def save_branding(
    request: Request, act: Annotated[Action, Depends(action(Permission.BRANDING_EDIT))]
) -> Response:
    registry = registry_of(request)
    service = BrandingService(mail_from=registry.settings.mail_from)
    f = act.form

    def opt(key: str, limit: int) -> str | None:
        v = f.get(key).strip()
        return v[:limit] if v else None

    domains = tuple(d.strip()[:300] for d in re.split(r"[\s,]+", f.get("sendingDomains")) if d.strip())[:10]
    data = BrandingInput(
        company_name=opt("companyName", 1000),
        logo_url=opt("logoUrl", 4096),
        primary_color=opt("primaryColor", 100),
        support_url=opt("supportUrl", 4096),
        sender_name=opt("senderName", 1000),
        sending_domains=domains,
        from_address=opt("fromAddress", 1000),
    )

    def work(session: Any) -> dict[str, Any]:
        out = service.replace(session, act.user.client_id, data, registry.clock.now())
        act.audit(session, "branding.updated", act.user.client_id)
        return out

    found = await attempt(registry, work)
    if isinstance(found, Problem):
        posted: dict[str, Any] = {k: f.get(k) for k, _, _ in BRAND_FIELDS}
        posted["sendingDomains"] = list(domains)
        posted["effectiveFrom"] = ""
        return render(
            request,
            "console/branding.html",
            {
                "title": "Branding",
                "b": posted,
                "fields": BRAND_FIELDS,
                "problem": found,
                "errors": errors_by_field(found.errors),
                **_branding_previews(
                    registry, posted, await run(registry, lambda s: service.view(s, act.user.client_id))
                ),
            },
            act.user,
            status=found.status,
            nav="branding",
        )
    return redirect(request, "/console/branding", "Branding saved.")
