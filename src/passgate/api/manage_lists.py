"""/manage/v1/lists: named allow/block lists, with JSON or CSV import of up to 10,000 entries."""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.api.errors import ApiProblem, validation_errors
from passgate.audit.services import record as audit
from passgate.db import transaction
from passgate.policy import lists as svc

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
router = APIRouter(prefix="/manage/v1/lists", tags=["lists"])
MAX_BODY = 2_000_000


class CreateList(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "blocked-domains",
                    "kind": "emailDomain",
                    "description": "throwaway providers we refuse",
                }
            ]
        },
    )

    name: StrictStr = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
    kind: Literal["email", "emailDomain", "phone", "ip", "country", "deviceId", "accountId"]
    description: StrictStr | None = Field(default=None, max_length=1000)


class Entries(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"entries": ["mailinator.com", "tempmail.dev"]}]}
    )

    entries: list[Any] = Field(max_length=svc.MAX_IMPORT)


@router.get("", summary="All lists with their entry counts")
async def all_lists(registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> list[dict[str, Any]]:
        with transaction(registry.sessions) as session:
            return [svc.list_view(session, row) for row in svc.all_lists(session, auth.client_id)]

    return JSONResponse({"items": await run_in_threadpool(run)})


@router.post("", status_code=201, summary="Create a list")
async def create(body: CreateList, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            now = registry.clock.now()
            row = svc.create_list(session, auth.client_id, body.name, body.kind, body.description, now)
            audit(
                session,
                auth.client_id,
                f"apikey:{auth.key_id}",
                "list.created",
                body.name,
                now,
                {"kind": body.kind},
            )
            return svc.list_view(session, row)

    return JSONResponse(await run_in_threadpool(run), status_code=201)


@router.get("/{name}", summary="A list and a page of its entries")
async def get_list(
    name: str,
    registry: RegistryDep,
    auth: AdminAuth,
    limit: int = Query(default=100, ge=1, le=1000),
    after: str | None = Query(
        default=None, max_length=320, description="the last value of the previous page"
    ),
) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            row = svc.get_list(session, auth.client_id, name)
            return {**svc.list_view(session, row), "items": svc.entries_page(session, row, limit, after)}

    return JSONResponse(await run_in_threadpool(run))


@router.delete(
    "/{name}",
    status_code=204,
    summary="Delete a list (a published set that uses it keeps working: its condition no longer matches)",
)
async def delete(name: str, registry: RegistryDep, auth: AdminAuth) -> Response:
    def run() -> None:
        with transaction(registry.sessions) as session:
            svc.delete_list(session, auth.client_id, name)
            registry.signals.lists.forget(auth.client_id)
            audit(
                session, auth.client_id, f"apikey:{auth.key_id}", "list.deleted", name, registry.clock.now()
            )

    await run_in_threadpool(run)
    registry.signals.lists.forget(auth.client_id)  # again after the commit, for a decision in between
    return Response(status_code=204)


@router.post(
    "/{name}/entries",
    summary='Add entries: JSON {"entries": [...]} or text/csv (first column; optional `value` header)',
    description="Up to 10,000 entries at once. Bad lines are reported, good ones kept.",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Entries"},
                    "example": {"entries": ["mailinator.com", "tempmail.dev"]},
                },
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "value\nmailinator.com\ntempmail.dev\n",
                },
            }
        }
    },
)
async def add(name: str, request: Request, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    raw = await _read(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "text/csv":
        try:
            values = svc.parse_csv(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            line = len(_LINE_BREAK.split(raw[: exc.start]))
            raise ApiProblem(
                400,
                "Invalid CSV",
                f"the CSV cannot be read: line {line} is not UTF-8",
                slug="validation",
                extra={"errors": [{"field": "body", "line": line, "message": "not UTF-8 text"}]},
            ) from None
        except svc.InvalidCsv as exc:
            raise ApiProblem(
                400,
                "Invalid CSV",
                f"the CSV cannot be read: {exc}",
                slug="validation",
                extra={"errors": [{"field": "body", "line": exc.line, "message": exc.reason}]},
            ) from None
    else:
        try:
            body = Entries.model_validate_json(raw)
        except ValidationError as exc:
            raise ApiProblem(
                400,
                "Invalid request",
                "invalid entries",
                slug="validation",
                errors=validation_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]),
            ) from None
        values = list(enumerate(body.entries, start=1))

    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            row = svc.get_list(session, auth.client_id, name, lock=True)
            report = svc.add_entries(session, row, values, registry.clock.now())
            registry.signals.lists.forget(auth.client_id)
            audit(
                session,
                auth.client_id,
                f"apikey:{auth.key_id}",
                "list.entries_added",
                name,
                registry.clock.now(),
                {"added": report.added, "rejected": len(report.rejected)},
            )
            return {**report.as_dict(), "list": svc.list_view(session, row)}

    return JSONResponse(await run_in_threadpool(run))


@router.post("/{name}/entries/remove", summary='Remove entries: {"entries": [...]}')
async def remove(name: str, body: Entries, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            row = svc.get_list(session, auth.client_id, name, lock=True)
            removed = svc.remove_entries(session, row, body.entries, registry.clock.now())
            registry.signals.lists.forget(auth.client_id)
            audit(
                session,
                auth.client_id,
                f"apikey:{auth.key_id}",
                "list.entries_removed",
                name,
                registry.clock.now(),
                {"removed": removed},
            )
            return {"removed": removed, "list": svc.list_view(session, row)}

    return JSONResponse(await run_in_threadpool(run))


async def _read(request: Request) -> bytes:
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiProblem(
                413, "Payload too large", f"at most {MAX_BODY} bytes per import", slug="too-large"
            )
        chunks.append(chunk)
    return b"".join(chunks)
