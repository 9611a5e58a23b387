"""Sign-in (password, then the email link on a new device), the waiting page, sign-out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from passgate.console.exceptions import BadCredentials, ChallengeNotStarted, SignInLocked
from passgate.console.forms import BadForm, read_form
from passgate.console.permissions import Permission
from passgate.console.routes.common import (
    DEVICE_COOKIE,
    NONCE_COOKIE,
    PENDING_COOKIE,
    SESSION_COOKIE,
    Action,
    action,
    auth_service,
    client_ip,
    current_user,
    nonce_of,
    page_problem,
    redirect,
    registry_of,
    render,
    run,
    set_cookie,
)
from passgate.console.services import DEVICE_TTL, SESSION_MAX, ConsoleAuth, PendingView
from passgate.contacts import mask

router = APIRouter()
HOME = "/console/overview"
WAIT_REFRESH_SECONDS = 3


def _safe_next(value: str) -> str:
    # Only paths of the console itself: never another host ("//evil") or scheme.
    if (
        value.startswith("/console/")
        and not value.startswith("//")
        and "\\" not in value
        and len(value) < 300
    ):
        return value
    return HOME


def _sign_in_page(
    request: Request, *, error: str | None = None, email: str = "", status: int = 200, next_path: str = ""
) -> Response:
    registry = registry_of(request)
    auth = auth_service(registry)
    nonce, fresh = nonce_of(request)
    response = render(
        request,
        "console/sign_in.html",
        {
            "csrf": auth.csrf_for_nonce(nonce),
            "error": error,
            "email": email,
            "next": next_path,
            "title": "Sign in",
        },
        None,
        status=status,
    )
    if fresh:
        set_cookie(response, registry, NONCE_COOKIE, nonce, None)
    return response


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    if await current_user(request) is not None:
        return RedirectResponse(HOME, status_code=303)
    return RedirectResponse("/console/sign-in", status_code=303)


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "") -> Response:
    if await current_user(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _sign_in_page(request, next_path=_safe_next(next) if next else "")


def _nonce_ok(request: Request, auth: ConsoleAuth, given: str) -> bool:
    nonce = request.cookies.get(NONCE_COOKIE, "")
    return bool(nonce) and auth.same_token(given, auth.csrf_for_nonce(nonce))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    registry = registry_of(request)
    auth = auth_service(registry)
    try:
        form = await read_form(request)
    except BadForm as exc:
        return _sign_in_page(request, error=exc.message, status=exc.status)
    email = form.get("email")[:254]
    next_path = _safe_next(form.get("next")) if form.get("next") else HOME
    if not _nonce_ok(request, auth, form.get("csrf")):
        return _sign_in_page(
            request, error="The sign-in form expired. Please try again.", email=email, status=403
        )
    ip = client_ip(request)
    user_agent = request.headers.get("user-agent", "")
    device_cookie = request.cookies.get(DEVICE_COOKIE)

    def work(session: Any) -> tuple[str, str]:
        now = registry.clock.now()
        user = auth.check_password(session, email, form.get("password"), ip)
        if auth.device_trusted(session, user, device_cookie, now):
            return "session", auth.open_session(session, user, ip, user_agent, now)
        return "pending", auth.start_email_step(session, user, now)

    try:
        kind, token = await run(registry, work)
    except SignInLocked as exc:
        minutes = max(1, (exc.retry_after + 59) // 60)
        where = "this account" if exc.scope == "email" else "your network"
        return _sign_in_page(
            request,
            error=f"Too many sign-in attempts for {where}. Sign-in is locked: try again in {minutes} "
            f"minute{'s' if minutes != 1 else ''}.",
            email=email,
            status=429,
        )
    except BadCredentials:
        return _sign_in_page(request, error="Wrong email or password.", email=email, status=401)
    except ChallengeNotStarted as exc:
        reason = {
            "RATE_LIMITED": "Too many sign-in emails were sent to this address recently; wait a few minutes.",
            "INVALID_DESTINATION": "Your email address cannot receive the sign-in email.",
        }.get(exc.code, "The sign-in email could not be sent. Try again later.")
        return _sign_in_page(request, error=reason, email=email, status=503 if exc.code == "UNKNOWN" else 429)
    if kind == "session":
        response = redirect(request, next_path, "Signed in.")
        set_cookie(response, registry, SESSION_COOKIE, token, int(SESSION_MAX.total_seconds()))
        return response
    response = redirect(request, "/console/sign-in/check-email")
    set_cookie(response, registry, PENDING_COOKIE, token, 3600)
    return response


@router.get("/sign-in/check-email")
async def check_email(request: Request) -> Response:
    registry = registry_of(request)
    auth = auth_service(registry)
    cookie = request.cookies.get(PENDING_COOKIE)
    ip = client_ip(request)
    user_agent = request.headers.get("user-agent", "")

    def work(session: Any) -> tuple[PendingView | None, str | None, str | None, str]:
        now = registry.clock.now()
        pending = auth.pending(session, cookie, now)
        if pending is None:
            return None, None, None, ""
        from passgate.mfa.models import MfaSession

        mfa = session.get(MfaSession, pending.sign_in.mfa_session_id)
        shown = mask("EMAIL", mfa.destination) if mfa is not None else ""
        user = auth.complete(session, pending, now)
        if user is None:
            return pending, None, None, shown
        session_token = auth.open_session(session, user, ip, user_agent, now)
        device_token = auth.remember_device(session, user.id, user_agent, now)
        return pending, session_token, device_token, shown

    pending, session_token, device_token, shown = await run(registry, work)
    if session_token and device_token:
        response: Response = redirect(request, HOME, "Signed in. This browser is now remembered for 30 days.")
        set_cookie(response, registry, SESSION_COOKIE, session_token, int(SESSION_MAX.total_seconds()))
        set_cookie(response, registry, DEVICE_COOKIE, device_token, int(DEVICE_TTL.total_seconds()))
        response.delete_cookie(PENDING_COOKIE, path="/console")
        return response
    if pending is None:
        if await current_user(request) is not None:
            return RedirectResponse(HOME, status_code=303)
        return render(
            request,
            "console/message.html",
            {
                "title": "Check the other window",
                "heading": "Nothing is waiting here",
                "body": "If you just confirmed a sign-in link, go back to the browser where you typed your "
                "password: it continues by itself. Otherwise, sign in again.",
                "link": ("/console/sign-in", "Sign in"),
            },
            None,
        )
    if pending.status in ("TERMINATED", "INVALID", "FAILED_AUTHORIZATION") or pending.expired:
        why = {
            "NOT_ME": "The sign-in was refused from the email (“This wasn't me”).",
            "EXPIRED": "The link expired before it was confirmed.",
        }.get(pending.reason or "", "The sign-in email can no longer be used.")
        response = render(
            request,
            "console/message.html",
            {
                "title": "Sign-in stopped",
                "heading": "This sign-in was stopped",
                "body": why + " Sign in again to get a new email.",
                "link": ("/console/sign-in", "Sign in again"),
            },
            None,
            status=401,
        )
        response.delete_cookie(PENDING_COOKIE, path="/console")
        return response
    nonce, fresh = nonce_of(request)
    response = render(
        request,
        "console/check_email.html",
        {
            "title": "Check your email",
            "destination": shown,
            "refresh": WAIT_REFRESH_SECONDS,
            "csrf": auth.csrf_for_nonce(nonce),
            "sends": None,
        },
        None,
    )
    if fresh:
        set_cookie(response, registry, NONCE_COOKIE, nonce, None)
    return response


@router.post("/sign-in/resend")
async def resend(request: Request) -> Response:
    registry = registry_of(request)
    auth = auth_service(registry)
    try:
        form = await read_form(request)
    except BadForm:
        return redirect(request, "/console/sign-in/check-email")
    if not _nonce_ok(request, auth, form.get("csrf")):
        return redirect(request, "/console/sign-in/check-email", "The form expired; try again.")
    cookie = request.cookies.get(PENDING_COOKIE)

    def work(session: Any) -> str:
        pending = auth.pending(session, cookie, registry.clock.now())
        if pending is None:
            return "Nothing is waiting for an email here; sign in again."
        try:
            auth.resend(session, pending)
        except Exception as exc:
            found = page_problem(exc)
            if found is None:
                raise
            return f"No new email was sent: {found.message}"
        return "A new email is on its way. The earlier link still works."

    message = await run(registry, work)
    return redirect(request, "/console/sign-in/check-email", message)


@router.post("/sign-out")
async def sign_out(
    request: Request, act: Annotated[Action, Depends(action(Permission.OWN_ACCOUNT))]
) -> Response:
    registry = registry_of(request)
    auth = auth_service(registry)
    await run(registry, lambda s: auth.sign_out(s, act.user.session_id, registry.clock.now()))
    response = redirect(request, "/console/sign-in", "Signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response
