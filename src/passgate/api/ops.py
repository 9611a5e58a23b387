"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from passgate import db
from passgate.api.deps import RegistryDep
from passgate.api.errors import DATABASE_RETRY_AFTER_S, ApiProblem, problem

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: the database answers")
async def readyz(registry: RegistryDep) -> JSONResponse:
    try:
        await run_in_threadpool(db.ping, registry.engine)
    except Exception:
        return problem(
            503,
            "Service unavailable",
            "the database cannot be reached",
            slug="unavailable",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
            extra={"status": "unavailable", "database": "unreachable"},
        )
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, registry: RegistryDep) -> Response:
    expected = registry.settings.metrics_token
    if expected:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiProblem(401, "Unauthorized", "metrics need PASSGATE_METRICS_TOKEN", slug="unauthorized")
    return Response(generate_latest(registry.metrics.registry), media_type=CONTENT_TYPE_LATEST)
