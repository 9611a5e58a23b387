"""The OpenAPI document's error responses, made to say what the API answers.

FastAPI documents a `422 HTTPValidationError` on every operation with inputs; Passgate answers bad input
with a 400 problem document (passgate.api.errors), and every route can also answer what the layers in
front of it answer: 400 for a NUL in the path, a query value or a header (passgate.api.inputs), 413 for a
body over the limit, 401/403 for a missing or weak token, 503 when the database cannot be reached. Here
each operation gets those, every error response gets the problem document's schema and media type, and
FastAPI's validation schemas, no longer referred to, are dropped. tests/functional/test_fuzz.py holds the
document to what the API does.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

PROBLEM = "application/problem+json"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document; `errors[].field` names each bad field.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "examples": ["urn:passgate:problem:validation"]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "line": {"type": "integer"},
                    "column": {"type": "integer"},
                },
            },
        },
    },
}

DESCRIPTIONS = {
    400: "invalid input; `errors[].field` names each bad field",
    401: "missing, expired or revoked bearer token",
    403: "the token lacks the scope this operation needs",
    404: "no such resource for this client",
    409: "the resource's state does not allow it",
    413: "the body is over 2 MB",
    422: "the input is well-formed but breaks a rule; `errors[].field` names it",
    429: "rate limited; see Retry-After",
    503: "the database cannot be reached; nothing was changed; see Retry-After",
}

# Operations open without a bearer token (the others answer 401 without one, 403 with too narrow a scope).
_PUBLIC = {"/oauth2/token", "/.well-known/jwks.json", "/dev/inbox", "/healthz", "/readyz", "/metrics"}
_PUBLIC_PREFIXES = ("/providers/",)
# Routes that answer without the database.
_NO_DATABASE = {"/healthz", "/.well-known/jwks.json", "/metrics"}
# Statuses a route answers that neither its declaration nor the rules above tell (method, path): statuses.
_ALSO: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/oauth2/token"): (401, 429),
    ("get", "/metrics"): (401,),
    ("post", "/providers/twilio/status"): (403, 404),
    ("post", "/providers/http/status"): (404,),
    ("get", "/dev/inbox"): (404,),
    ("post", "/resend"): (404, 409, 429),
    ("post", "/events/challenge-outcome"): (404,),
    ("get", "/trusted-device"): (404,),
    ("delete", "/trusted-device"): (404,),
    ("post", "/manage/v1/lists"): (409,),
    ("post", "/manage/v1/webhooks"): (409,),
    ("patch", "/manage/v1/webhooks/{endpoint_id}"): (422,),
    ("post", "/manage/v1/webhooks/{endpoint_id}/replay"): (409,),
    ("post", "/manage/v1/webhooks/{endpoint_id}/rotate-secret"): (409,),
    ("put", "/manage/v1/templates/{name}"): (409,),
    ("post", "/manage/v1/templates/{name}/preview"): (422,),
    ("post", "/mfa/v2/{session_id}/resend"): (409,),
    ("post", "/mfa/v2/{session_id}/cancel"): (409,),
    # A client without a policy set of this event type (409), a stored draft or version that no longer
    # compiles (422).
    ("get", "/manage/v1/policy-sets/{eventType}"): (409,),
    ("get", "/manage/v1/policy-sets/{eventType}/draft"): (409,),
    ("put", "/manage/v1/policy-sets/{eventType}/draft"): (409,),
    ("post", "/manage/v1/policy-sets/{eventType}/publish"): (409, 422),
    ("get", "/manage/v1/policy-sets/{eventType}/versions"): (409,),
    ("get", "/manage/v1/policy-sets/{eventType}/versions/{versionName}"): (409,),
    ("post", "/manage/v1/policy-sets/{eventType}/versions/{versionName}/restore"): (409, 422),
    ("get", "/manage/v1/policy-sets/{eventType}/diff"): (409, 422),
    ("post", "/manage/v1/policy-sets/{eventType}/simulate"): (409, 422),
}


def _needs_token(path: str) -> bool:
    return path not in _PUBLIC and not path.startswith(_PUBLIC_PREFIXES)


def _problem_response(status: int, given: dict[str, Any] | None) -> dict[str, Any]:
    description = (given or {}).get("description")
    if not description or description in ("Validation Error", "Successful Response"):
        description = DESCRIPTIONS.get(status, "error")
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before trying again",
                "schema": {"type": "integer"},
            }
        }
    return response


def truthful_errors(spec: dict[str, Any]) -> dict[str, Any]:
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            statuses = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
            auto_422 = "422" in responses and "HTTPValidationError" in str(responses["422"])
            if auto_422:
                statuses.discard(422)
                del responses["422"]
            statuses |= {400}
            if _needs_token(path):
                statuses |= {401, 403}
            if "{" in path:
                statuses.add(404)
            if "requestBody" in operation:
                statuses.add(413)
            if path not in _NO_DATABASE:
                statuses.add(503)
            statuses |= set(_ALSO.get((method, path), ()))
            for status in sorted(statuses):
                responses[str(status)] = _problem_response(status, responses.get(str(status)))
            operation["responses"] = dict(sorted(responses.items()))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    if "HTTPValidationError" not in str(spec.get("paths")):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return spec


def install(app: FastAPI) -> None:
    """After every route is added: the document is built once, on first request, with truthful errors."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = truthful_errors(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
