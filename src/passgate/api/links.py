"""The hosted confirm page for one-time links: GET/HEAD only look; a POST from the page decides.

Unknown, expired and used tokens all get the same neutral page with the same status, so the page is no
oracle for which tokens exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import RegistryDep
from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.locales import is_rtl, negotiate_accept_language
from passgate.messaging.templates import Brand
from passgate.mfa.exceptions import SessionClosed
from passgate.mfa.models import MfaSession
from passgate.mfa.secrets import match_choices
from passgate.web.i18n import STRINGS, strings

router = APIRouter(tags=["hosted pages"], include_in_schema=False)
pages = Jinja2Templates(directory=str(Path(__file__).parent.parent / "web" / "templates"))
CSRF_COOKIE = "pg_csrf"
_BOT_UA = re.compile(
    r"bot|crawl|spider|preview|scan|proofpoint|mimecast|barracuda|safelinks|urldefense|curl|wget|python|"
    r"httpx|go-http|java/|okhttp|headless",
    re.I,
)


def _browser_like(request: Request) -> bool:
    ua = request.headers.get("user-agent", "")
    accept = request.headers.get("accept", "")
    return ua.startswith("Mozilla/") and not _BOT_UA.search(ua) and "text/html" in accept


def _locale(request: Request, available: list[str], default: str) -> str:
    return negotiate_accept_language(request.headers.get("accept-language"), available, default)


# The page's one script (base.html): a logo that fails to load (unreachable, or blocked by the policy
# below) gives way to the business's name. The policy allows this script by its hash, and no other.
LOGO_FALLBACK = (
    '(function(){var l=document.getElementById("brand-logo");if(!l)return;'
    'function f(){l.remove();document.getElementById("brand-name").hidden=false}'
    'if(l.complete&&!l.naturalWidth)f();else l.addEventListener("error",f)})();'
)
_LOGO_FALLBACK_HASH = base64.b64encode(hashlib.sha256(LOGO_FALLBACK.encode()).digest()).decode()


def _headers(form_target: str | None = None) -> dict[str, str]:
    form_action = "'self'"
    if form_target:
        parts = urlsplit(form_target)
        form_action += f" {parts.scheme}://{parts.netloc}"
    return {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action {form_action}; "
            f"script-src 'sha256-{_LOGO_FALLBACK_HASH}'; frame-ancestors 'none'; base-uri 'none'"
        ),
    }


def _csrf_value(registry: Registry, nonce: str, token: str) -> str:
    # Bound to both the cookie's nonce and the link, so a token from another page or person is useless.
    token_ref = hashlib.sha256(token.encode()).hexdigest()[:16]
    return registry.keyring.keyed_hash("csrf", f"{nonce}:{token_ref}")[:32]


def _render(
    request: Request, name: str, ctx: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> HTMLResponse:
    response = pages.TemplateResponse(request, name, ctx, status_code=status, headers=headers or _headers())
    return response


def _page_context(
    registry: Registry, session: Any, mfa: MfaSession | None, request: Request
) -> dict[str, Any]:
    if mfa is not None:
        brand = registry.templates.brand(session, mfa.client_id)
        template = registry.templates.get(session, mfa.client_id, mfa.template_name)
        available = list(template.locales) if template else ["en"]
        default = template.default_locale if template else "en"
    else:
        brand = Brand(company_name="Passgate")
        available, default = list(STRINGS), "en"
    locale = _locale(request, [a for a in available if a.split("-")[0] in STRINGS] or ["en"], default)
    return {
        "brand": brand,
        "lang": locale,
        "dir": "rtl" if is_rtl(locale) else "ltr",
        "t": strings(locale),
        "logo_fallback": LOGO_FALLBACK,
    }


def _message(
    request: Request, ctx: dict[str, Any], title_key: str, body_key: str, status: int = 200
) -> HTMLResponse:
    t = ctx["t"]
    company = ctx["brand"].company_name
    return _render(
        request,
        "message.html",
        {**ctx, "heading": t[title_key], "body": t[body_key].format(company=company)},
        status=status,
    )


@router.api_route("/v/{token}", methods=["GET", "HEAD"])
async def open_link(token: str, request: Request, registry: RegistryDep) -> Response:
    def run() -> tuple[dict[str, Any], MfaSession | None, list[str] | None]:
        with transaction(registry.sessions) as session:
            mfa = registry.mfa.find_by_token(session, token)
            ctx = _page_context(registry, session, mfa, request)
            choices = None
            if mfa is not None:
                client_ip = request.client.host if request.client else None
                registry.mfa.record_link_open(
                    session,
                    mfa,
                    request.method,
                    request.headers.get("user-agent", ""),
                    client_ip,
                    _browser_like(request),
                )
                if mfa.bind_to_device and mfa.match_number:
                    seed = registry.keyring.keyed_hash("match-choices", mfa.id)
                    choices = match_choices(mfa.match_number, seed)
            return ctx, mfa, choices

    ctx, mfa, choices = await run_in_threadpool(run)
    if mfa is None:
        return _message(request, ctx, "neutral_title", "neutral_body")
    nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(16)
    response = _render(
        request,
        "link.html",
        {
            **ctx,
            "csrf": _csrf_value(registry, nonce, token),
            "choices": choices,
            "confirm_action": f"/v/{token}/confirm",
            "deny_action": f"/v/{token}/deny",
        },
        headers=_headers(mfa.target_url),
    )
    response.set_cookie(
        CSRF_COOKIE,
        nonce,
        max_age=86400,
        path="/v/",
        httponly=True,
        samesite="strict",
        secure=registry.settings.public_url.startswith("https://"),
    )
    return response


async def _checked_form(request: Request, registry: Registry, token: str) -> dict[str, str] | None:
    form = await request.form()
    nonce = request.cookies.get(CSRF_COOKIE, "")
    given = form.get("csrf")
    if not nonce or not isinstance(given, str):
        return None
    if not hmac.compare_digest(given.encode(), _csrf_value(registry, nonce, token).encode()):
        return None
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.post("/v/{token}/confirm")
async def confirm(token: str, request: Request, registry: RegistryDep) -> Response:
    form = await _checked_form(request, registry, token)

    def run() -> tuple[dict[str, Any], str, str | None]:
        with transaction(registry.sessions) as session:
            mfa = registry.mfa.find_by_token(session, token, lock=True)
            ctx = _page_context(registry, session, mfa, request)
            if mfa is None:
                return ctx, "neutral", None
            if form is None:
                return ctx, "csrf", None
            try:
                result = registry.mfa.confirm_link(session, mfa, form.get("number"))
            except SessionClosed:
                return ctx, "neutral", None
            return ctx, ("verified" if result.status == "VERIFIED" else "wrong"), mfa.target_url

    ctx, outcome, target = await run_in_threadpool(run)
    if outcome == "verified":
        if target:
            return RedirectResponse(target, status_code=303, headers={"Referrer-Policy": "no-referrer"})
        return _message(request, ctx, "done_title", "done_body")
    if outcome == "wrong":
        return _message(request, ctx, "wrong_title", "wrong_body", status=400)
    if outcome == "csrf":
        return _message(request, ctx, "neutral_title", "neutral_body", status=403)
    return _message(request, ctx, "neutral_title", "neutral_body")


@router.post("/v/{token}/deny")
async def deny(token: str, request: Request, registry: RegistryDep) -> Response:
    form = await _checked_form(request, registry, token)

    def run() -> tuple[dict[str, Any], str]:
        with transaction(registry.sessions) as session:
            mfa = registry.mfa.find_by_token(session, token, lock=True)
            ctx = _page_context(registry, session, mfa, request)
            if mfa is None:
                return ctx, "neutral"
            if form is None:
                return ctx, "csrf"
            try:
                registry.mfa.deny_link(session, mfa)
            except SessionClosed:
                return ctx, "neutral"
            return ctx, "denied"

    ctx, outcome = await run_in_threadpool(run)
    if outcome == "denied":
        return _message(request, ctx, "denied_title", "denied_body")
    if outcome == "csrf":
        return _message(request, ctx, "neutral_title", "neutral_body", status=403)
    return _message(request, ctx, "neutral_title", "neutral_body")
