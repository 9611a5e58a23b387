"""POST /login/v2 and POST /newaccountopening/v2."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from passgate.api.deps import bearer_claims
from passgate.api.direct import DirectRoute
from passgate.api.errors import ApiProblem
from passgate.api.idempotency import InFlight
from passgate.api.responses import compact_json
from passgate.api.schemas_decisions import DecisionResponse
from passgate.api.views import decision_view
from passgate.auth.services import INTEGRATION_SCOPE
from passgate.bootstrap import Registry
from passgate.db import Session
from passgate.idempotency.services import StoredAnswer, claim_decision, claiming, request_hash
from passgate.policy.decisions import Decision
from passgate.policy.requests import AccountOpeningRequest, DirectReader, LoginRequest, RequestReader

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": DecisionResponse},
    400: {"description": "invalid body; `errors[].field` names each bad field"},
    401: {"description": "missing or invalid bearer token"},
    409: {
        "description": "this `inquiryId` was used within 24 hours for a different body (`errors[].field` "
        "is `inquiryId`), or a duplicate of it is still being decided (see Retry-After)"
    },
}
# The endpoint an inquiryId is kept for: the same id on the other endpoint is another inquiry.
_SCOPES = {"LOGIN": "/login/v2", "NEW_ACCOUNT_OPENING": "/newaccountopening/v2"}

# The request bodies are parsed in the route (after the token check; see `_parse`), so the OpenAPI
# document names them here and `install_schemas` adds their schemas to the components.
# How the decision routes are called (api.direct); FastAPI's `APIRoute` is the plain path.
ROUTE_CLASS: type[APIRoute] = DirectRoute

REQUEST_MODELS: tuple[type[BaseModel], ...] = (LoginRequest, AccountOpeningRequest)
# How a body becomes the payload: validated straight into dicts (policy.requests.DirectReader), with the
# model validated and dumped (`PlainReader`) as its judge and its fallback.
READERS: dict[type[BaseModel], RequestReader] = {model: DirectReader(model) for model in REQUEST_MODELS}


def _body_spec(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


def install_schemas(app: FastAPI) -> None:
    """Add the decision request models to the OpenAPI components (FastAPI only collects the models of
    parameters it parses itself)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in REQUEST_MODELS:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, definition in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, definition)
                schemas[model.__name__] = schema
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def read_body(request: Request) -> bytes:
    """The body's bytes, as `await request.body()` gives them (and keeps them for a later call), read from
    the ASGI messages directly. Starlette reads through an async generator (`Request.stream`) in an
    `aclosing` block, which costs several times what reading a body in one message does, and the
    middleware hands every body on in one message (api.middleware). tests/unit/api/test_decisions.py
    holds the two to the same bytes and the same refusals."""
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                request._body = body = b"".join(chunks)
                return body
        elif kind == "http.disconnect":
            raise ClientDisconnect()


async def _parse(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    """The body validated as `model`, straight from the JSON bytes, as the payload of the decision (its
    `model_dump(mode="json", exclude_none=True)`: `READERS`); errors as FastAPI's own."""
    content_type = request.headers.get("content-type", "")
    if content_type and "json" not in content_type.lower():
        raise RequestValidationError(
            [{"type": "json_type", "loc": ("body",), "msg": "the body must be JSON (application/json)"}]
        )
    try:
        return READERS[model].read(await read_body(request))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
        ) from None


async def _handle(request: Request, event_type: str, model: type[BaseModel]) -> Response:
    # The hottest routes: the registry and the bearer token are read here rather than through FastAPI
    # dependencies, whose resolution costs more per request than the token check itself, and the token is
    # checked before the body is looked at (an unauthenticated caller gets 401, never a validation answer).
    registry: Registry = request.app.state.registry
    client_id = bearer_claims(request, registry, INTEGRATION_SCOPE).client_id
    payload = await _parse(request, model)
    decision_id: str = request.scope["state"]["correlation_id"]
    # Retries are safe: the answer is stored with the decision, under (client, endpoint, inquiryId), and
    # given again to the same request within 24 hours (passgate.idempotency.services).
    hashed = request_hash(payload)

    def decide(session: Session) -> tuple[StoredAnswer, Decision | None]:
        sandbox = registry.clients.sandbox(session, client_id)
        if sandbox is None:
            raise ApiProblem(401, "Unauthorized", "unknown client", slug="unauthorized")
        now = registry.clock.now()
        claim = claim_decision(session, client_id, _SCOPES[event_type], payload["inquiryId"], hashed, now)
        if claim.answer is not None:
            return claim.answer, None
        decision = registry.decisions.decide(
            session, client_id, sandbox, event_type, payload, decision_id, now
        )
        answer = compact_json(decision_view(decision))
        claim.remember(session, answer, decision_id, now)
        return StoredAnswer(200, [], answer, decision_id), decision

    # Decisions share transactions with their neighbours (group commit); each is durable before it answers.
    # Decisions only read and defer their writes to the commit: on SQLite they run on a read snapshot and
    # hold the write lock only to write (db.group_commit).
    inflight: InFlight = request.app.state.decisions_in_flight
    key = (client_id, _SCOPES[event_type], payload["inquiryId"])
    unit = claiming(decide, *key)  # the batch reads its decisions' stored answers in one statement
    answer, decision = await inflight.decide(key, hashed, lambda: registry.committer.run_deferred(unit))
    if decision is None:  # a retry: the first answer, under the first answer's correlation id
        request.scope["state"]["correlation_id"] = answer.correlation_id
    else:
        registry.metrics.decision_counter(event_type, decision.decision).inc()
    return Response(answer.body, answer.status, media_type="application/json")


async def login(request: Request) -> Response:
    return await _handle(request, "LOGIN", LoginRequest)


async def new_account_opening(request: Request) -> Response:
    return await _handle(request, "NEW_ACCOUNT_OPENING", AccountOpeningRequest)


def install(app: FastAPI) -> None:
    """The decision routes, first among the app's own routes. They are added to the app directly rather
    than through an included router: an included router is matched through a layer of its own on
    every request, which on these, the busiest routes, costs more than the token check. Their endpoints
    are called directly (`ROUTE_CLASS`; `APIRoute` there gives FastAPI's own request handling, the
    reference of the differential test)."""
    for path, endpoint, model, summary in (
        ("/login/v2", login, LoginRequest, "Decide on a login (after the password was accepted)"),
        (
            "/newaccountopening/v2",
            new_account_opening,
            AccountOpeningRequest,
            "Decide on a new account opening",
        ),
    ):
        app.router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            tags=["decisions"],
            summary=summary,
            response_model=None,
            responses=_RESPONSES,
            openapi_extra=_body_spec(model),
            route_class_override=ROUTE_CLASS,
        )
    install_schemas(app)
    app.state.decisions_in_flight = InFlight()
