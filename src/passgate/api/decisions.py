"""POST /login/v2 and POST /newaccountopening/v2."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from passgate.api.deps import principal
from passgate.api.errors import ApiProblem
from passgate.api.schemas_decisions import AccountOpeningRequest, DecisionResponse, LoginRequest
from passgate.auth.services import INTEGRATION_SCOPE
from passgate.bootstrap import Registry

router = APIRouter(tags=["decisions"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": DecisionResponse},
    400: {"description": "invalid body; `errors[].field` names each bad field"},
    401: {"description": "missing or invalid bearer token"},
}


async def _handle(request: Request, event_type: str, body: Any) -> JSONResponse:
    # The hottest route: the registry and the bearer token are read here rather than through FastAPI
    # dependencies, whose resolution costs more per request than the token check itself.
    registry: Registry = request.app.state.registry
    client_id = principal(request, registry, INTEGRATION_SCOPE).client_id
    decision_id: str = request.scope["state"]["correlation_id"]
    payload = body.model_dump(mode="json", exclude_none=True)

    def decide(session: Session) -> dict[str, Any]:
        sandbox = registry.clients.sandbox(session, client_id)
        if sandbox is None:
            raise ApiProblem(401, "Unauthorized", "unknown client", slug="unauthorized")
        return registry.decisions.decide(
            session, client_id, sandbox, event_type, payload, decision_id, registry.clock.now()
        )

    # Decisions share transactions with their neighbours (group commit); each is durable before it answers.
    result = await registry.committer.run(decide)
    registry.metrics.decisions.labels(event_type, result["decision"]).inc()
    return JSONResponse(result)


@router.post(
    "/login/v2",
    summary="Decide on a login (after the password was accepted)",
    response_model=None,
    responses=_RESPONSES,
)
async def login(body: LoginRequest, request: Request) -> JSONResponse:
    return await _handle(request, "LOGIN", body)


@router.post(
    "/newaccountopening/v2",
    summary="Decide on a new account opening",
    response_model=None,
    responses=_RESPONSES,
)
async def new_account_opening(body: AccountOpeningRequest, request: Request) -> JSONResponse:
    return await _handle(request, "NEW_ACCOUNT_OPENING", body)
