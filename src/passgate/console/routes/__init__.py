"""The console's pages under /console, its static files, and its error pages."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from passgate.console.routes import activity, admin, auth, messaging, monitor, policies
from passgate.console.routes.common import ConsolePageError, ConsoleRefused, ConsoleSignInNeeded, render

STATIC_DIR = Path(__file__).resolve().parents[2] / "web" / "static" / "console"

router = APIRouter(prefix="/console", include_in_schema=False)
router.add_api_route("", auth.home, methods=["GET"])
for module in (auth, monitor, messaging, policies, admin, activity):
    router.include_router(module.router)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=str(STATIC_DIR)), name="console-static")

    @app.exception_handler(ConsoleSignInNeeded)
    async def _sign_in(_: Request, exc: ConsoleSignInNeeded) -> Response:
        target = "/console/sign-in" + (f"?next={quote(exc.next_path)}" if exc.next_path else "")
        return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})

    @app.exception_handler(ConsoleRefused)
    async def _refused(request: Request, exc: ConsoleRefused) -> Response:
        return render(
            request,
            "console/message.html",
            {
                "title": exc.title,
                "heading": exc.title,
                "body": exc.message,
                "link": ("/console/overview", "Overview"),
            },
            exc.user,
            status=403,
        )

    @app.exception_handler(ConsolePageError)
    async def _page_error(request: Request, exc: ConsolePageError) -> Response:
        return render(
            request,
            "console/message.html",
            {
                "title": exc.title,
                "heading": exc.title,
                "body": exc.message,
                "link": ("/console/overview", "Overview"),
            },
            exc.user,
            status=exc.status,
        )
