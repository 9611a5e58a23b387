"""What every console page shares: who is signed in, what their role allows, CSRF on every form, safe
form reading, rendering with the layout, flash messages, and turning domain errors into words."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from passgate.audit.services import record
from passgate.console.forms import BadForm, Form, read_form
from passgate.console.permissions import MATRIX, Permission, allows
from passgate.console.services import ConsoleAuth, CurrentUser
from passgate.console.wording import plain_errors
from passgate.db import Session, transaction
from passgate.messaging.exceptions import InvalidBranding
from passgate.policy.exceptions import InvalidPolicySet
from passgate.problems import field_path, problem_for

if TYPE_CHECKING:  # the registry is built by bootstrap, the top of the tree; the console only reads it
    from passgate.bootstrap import Registry

SESSION_COOKIE = "pg_console"
DEVICE_COOKIE = "pg_console_device"
PENDING_COOKIE = "pg_console_pending"
NONCE_COOKIE = "pg_console_nonce"
FLASH_COOKIE = "pg_console_flash"
COOKIE_PATH = "/console"

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "web" / "templates"
pages = Jinja2Templates(directory=str(TEMPLATES_DIR))


def _when(value: object) -> str:
    """An RFC 3339 time from the services as people read it: 2026-11-29 02:12:02 UTC."""
    text = value.isoformat() if isinstance(value, datetime) else str(value or "")
    if len(text) >= 19 and text[10] == "T":
        return f"{text[:10]} {text[11:19]} UTC"
    return text


pages.env.filters["when"] = _when
T = TypeVar("T")

# Pages that list data of one client must never be cached by a browser or proxy.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Inline styles and remote images are allowed for the email previews: a srcdoc iframe inherits this
    # policy, and emails are inline-styled with the client's logo. Scripts come from this origin only.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: https: http:; connect-src 'self'; frame-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
}


class ConsoleSignInNeeded(Exception):
    def __init__(self, next_path: str | None = None) -> None:
        super().__init__("sign-in needed")
        self.next_path = next_path


class ConsoleRefused(Exception):
    """The user's role does not allow this (403), or the form's CSRF token is wrong (403)."""

    def __init__(self, title: str, message: str, user: CurrentUser | None = None) -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.user = user


class ConsolePageError(Exception):
    def __init__(self, status: int, title: str, message: str, user: CurrentUser | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.user = user


def auth_service(registry: Registry) -> ConsoleAuth:
    return registry.console_auth


def registry_of(request: Request) -> Registry:
    return cast("Registry", request.app.state.registry)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def run(registry: Registry, fn: Callable[[Session], T]) -> T:
    """One unit of work in the thread pool: committed when fn returns, rolled back when it raises."""

    def work() -> T:
        with transaction(registry.sessions) as session:
            return fn(session)

    return await run_in_threadpool(work)


async def attempt(registry: Registry, fn: Callable[[Session], T]) -> T | Problem:
    """`run`, with a domain error the form can cause (`page_problem`) given back as the Problem to show
    instead of raised: the page re-renders or redirects with it. Anything else is a bug and propagates."""
    try:
        return await run(registry, fn)
    except Exception as exc:
        found = page_problem(exc)
        if found is None:
            raise
        return found


async def current_user(request: Request) -> CurrentUser | None:
    registry = registry_of(request)
    auth = auth_service(registry)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    return await run(registry, lambda s: auth.resolve(s, cookie, registry.clock.now()))


def _next_path(request: Request) -> str | None:
    return request.url.path if request.method == "GET" else None


def reader(permission: Permission = Permission.READ) -> Callable[..., Any]:
    """A dependency for pages (GET): the signed-in user, allowed `permission`."""

    async def dependency(request: Request) -> CurrentUser:
        user = await current_user(request)
        if user is None:
            raise ConsoleSignInNeeded(_next_path(request))
        if not allows(user.role, permission):
            raise ConsoleRefused("Not allowed", refusal(user.role, permission), user)
        return user

    dependency.permission = permission  # type: ignore[attr-defined]  # read by the role-matrix tests
    return dependency


# A page's signed-in user with the READ permission (most pages).
Reader = Annotated[CurrentUser, Depends(reader())]


@dataclass(frozen=True)
class Action:
    """A state-changing form, checked (`action`): who sent it, what it holds, and the registry."""

    user: CurrentUser
    form: Form
    registry: Registry

    def audit(
        self,
        session: Session,
        what: str,
        target: str,
        details: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> None:
        """Record what the signed-in person did, in the unit of work that did it (so both or neither);
        `at` when the work read the clock already (default: now)."""
        when = at if at is not None else self.registry.clock.now()
        record(session, self.user.client_id, self.user.actor, what, target, when, details)


def action(permission: Permission) -> Callable[..., Any]:
    """A dependency for state-changing forms (POST): the signed-in user, a valid CSRF token, and a
    role that allows `permission`. The form is read (and checked for NUL) once, here."""

    async def dependency(request: Request) -> Action:
        user = await current_user(request)
        if user is None:
            raise ConsoleSignInNeeded(None)
        try:
            form = await read_form(request)
        except BadForm as exc:
            raise ConsolePageError(exc.status, "The form could not be used", exc.message, user) from None
        given = form.get("csrf") or request.headers.get("x-csrf-token")
        if not ConsoleAuth.same_token(given, user.csrf):
            raise ConsoleRefused(
                "The form expired",
                "This form was not sent from a current console page (its security token is missing or "
                "old). Go back, reload the page and try again.",
                user,
            )
        if not allows(user.role, permission):
            raise ConsoleRefused("Not allowed", refusal(user.role, permission), user)
        return Action(user, form, registry_of(request))

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


def refusal(role: str, permission: Permission) -> str:
    needed = MATRIX[permission].value
    return f"Your role ({role}) cannot do this: it needs the {needed} role. Ask an owner of this client."


def render(
    request: Request,
    name: str,
    ctx: dict[str, Any],
    user: CurrentUser | None,
    status: int = 200,
    nav: str = "",
) -> HTMLResponse:
    flash = _read_flash(request)
    context = {
        "user": user,
        "csrf": user.csrf if user else ctx.get("csrf", ""),
        "nav": nav,
        "flash": flash,
        "can": (lambda p: bool(user) and allows(user.role, Permission(p))) if user else (lambda p: False),
        **ctx,
    }
    response = pages.TemplateResponse(request, name, context, status_code=status, headers=SECURITY_HEADERS)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
    return response


def redirect(request: Request, to: str, flash: str | None = None) -> RedirectResponse:
    response = RedirectResponse(to, status_code=303, headers={"Cache-Control": "no-store"})
    if flash:
        registry = registry_of(request)
        raw = base64.urlsafe_b64encode(json.dumps(flash[:300]).encode()).decode()
        sig = registry.keyring.keyed_hash("console-flash", raw)[:24]
        response.set_cookie(
            FLASH_COOKIE,
            f"{raw}.{sig}",
            max_age=60,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=auth_service(registry).secure_cookies,
        )
    return response


def _read_flash(request: Request) -> str | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value or "." not in value or len(value) > 1000:
        return None
    raw, _, sig = value.rpartition(".")
    registry = registry_of(request)
    if not ConsoleAuth.same_token(sig, registry.keyring.keyed_hash("console-flash", raw)[:24]):
        return None
    try:
        text = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except ValueError:
        return None
    return text if isinstance(text, str) else None


def set_cookie(response: Response, registry: Registry, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=auth_service(registry).secure_cookies,
    )


def nonce_of(request: Request) -> tuple[str, bool]:
    """The pre-sign-in CSRF nonce of this browser, and whether it is new (to be set as a cookie)."""
    nonce = request.cookies.get(NONCE_COOKIE, "")
    if 16 <= len(nonce) <= 64 and nonce.replace("-", "").replace("_", "").isalnum():
        return nonce, False
    return secrets.token_urlsafe(24), True


@dataclass(frozen=True)
class Problem:
    message: str
    errors: list[dict[str, Any]]
    status: int = 422


def page_problem(exc: Exception) -> Problem | None:
    """The words for a domain error a form can cause, with the status the API gives the same error
    (`passgate.problems`); None for anything else (a bug: let it be a 500)."""
    if isinstance(exc, ValidationError):  # a form's values checked by an API body model
        # In plain words (console.wording): the API's pydantic messages are not for people.
        errors = plain_errors(exc.errors(), lambda loc: field_path(loc, strip_tag=True))
        return Problem(_fix_marked(len(errors)), errors, 400)
    found = problem_for(exc)
    if found is None:
        return None
    message = found.detail
    if isinstance(exc, InvalidPolicySet):
        message = exc.message  # the field it names is shown beside it
    elif isinstance(exc, InvalidBranding):
        message = "The branding was not saved: fix the fields marked below."
    elif found.errors and any(str(e.get("field") or "\0") in message for e in found.errors):
        # The API's detail names its field path ("… cannot be saved: locales.en.html"); a person reads the
        # message beside the field instead.
        message = _fix_marked(len(found.errors))
    return Problem(message, found.errors, found.status)


def _fix_marked(count: int) -> str:
    return (
        "One value needs a change: see the field marked below."
        if count == 1
        else (f"{count} values need a change: see the fields marked below.")
    )


def errors_by_field(errors: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in errors:
        key = str(e.get("field") or "")
        msg = str(e.get("message") or "")
        if e.get("line"):
            msg = f"line {e['line']}: {msg}"
        out[key] = f"{out[key]}; {msg}" if key in out else msg
    return out


def not_found(user: CurrentUser | None, what: str) -> ConsolePageError:
    return ConsolePageError(404, "Not found", f"There is no {what} here.", user)
