"""The dev inbox: messages sent while no provider is configured. Absent in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import RegistryDep
from passgate.api.errors import ApiProblem
from passgate.messaging.queries import dev_inbox

router = APIRouter(tags=["dev inbox"])
pages = Jinja2Templates(directory=str(Path(__file__).parent.parent / "web" / "templates"))


def _rows(registry: Any, limit: int) -> list[dict[str, Any]]:
    with registry.sessions() as session:
        return [
            {
                "messageId": r.message_id,
                "message_id": r.message_id,
                "clientId": r.client_id,
                "channel": r.channel,
                "destination": r.destination,
                "subject": r.subject,
                "text": r.text,
                "html": r.html,
                "link": r.link,
                "code": r.code,
                "createdAt": r.created_at.isoformat(),
                "created_at": r.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            }
            for r in dev_inbox(session, limit)
        ]


@router.get(
    "/dev/inbox",
    response_model=None,
    summary="Dev inbox (development only, no provider configured)",
    description="An HTML page, or with `Accept: application/json` the messages as JSON.",
    responses={
        200: {
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            }
        }
    },
)
async def inbox(request: Request, registry: RegistryDep, limit: int = 50) -> Response:
    if not registry.settings.dev_inbox_enabled:
        raise ApiProblem(
            404, "Not found", "the dev inbox exists only in development with no provider", slug="not-found"
        )
    limit = max(1, min(limit, 500))
    messages = await run_in_threadpool(_rows, registry, limit)
    if "application/json" in request.headers.get("accept", ""):
        for m in messages:
            m.pop("message_id")
            m.pop("created_at")
        return JSONResponse({"items": messages}, headers={"Cache-Control": "no-store"})
    response: HTMLResponse = pages.TemplateResponse(
        request, "inbox.html", {"messages": messages}, headers={"Cache-Control": "no-store"}
    )
    return response
