"""The OpenAPI document's error responses, made to say what the API answers.

FastAPI documents a `422 HTTPValidationError` on every operation with inputs; Passgate answers bad input
with a 400 problem document (passgate.api.errors), and every route can also answer what the layers in
front of it answer: 400 for a NUL in the path, a query value or a header (passgate.api.inputs), 413 for a
body over the limit, 401/403 for a missing or weak token, 503 when the database cannot be reached. Here
each operation gets those, every error response gets the problem document's schema and media type, and
FastAPI's validation schemas, no longer referred to, are dropped. tests/functional/test_fuzz.py holds the
document to what the API does.

The document also declares how to authenticate, so that the reference at /docs can call the API: an OAuth2
client-credentials flow on POST /oauth2/token, and a bearer token pasted as it is. Each operation that
needs a token requires either, with its scope: `admin` for the management API (/manage/v1/...), the
integration scope for the rest. The routes check the token in different ways (a dependency, or in the
route itself for the decision endpoints), so the scopes are stated here by path; tests/functional/test_fuzz.py
calls every operation without a token and with the other scope's token to hold them to what the API does.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from passgate.auth.services import ADMIN_SCOPE, INTEGRATION_SCOPE

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


OAUTH2_GRANT_PATH = "/oauth2/token"
_ADMIN_PREFIX = "/manage/"
# The names of the schemes in components.securitySchemes.
CLIENT_CREDENTIALS_SCHEME = "clientCredentials"
BEARER_SCHEME = "bearerToken"
METRICS_SCHEME = "metricsToken"
SECURITY_SCHEMES: dict[str, Any] = {
    CLIENT_CREDENTIALS_SCHEME: {
        "type": "oauth2",
        "description": (
            "Your client id and API key, sent as HTTP Basic to the token URL "
            "(`grant_type=client_credentials`). Tick `admin` for the management API."
        ),
        "flows": {
            "clientCredentials": {
                # Relative: resolved against the server that serves this document.
                "tokenUrl": OAUTH2_GRANT_PATH,
                "scopes": {
                    INTEGRATION_SCOPE: "decisions, MFA sessions, events and trusted devices",
                    ADMIN_SCOPE: "the management API (/manage/v1/...)",
                },
            }
        },
    },
    BEARER_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An `access_token` from POST /oauth2/token, pasted as it is.",
    },
    METRICS_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "PASSGATE_METRICS_TOKEN, when it is set; without it /metrics is open.",
    },
}


def _needs_token(path: str) -> bool:
    return path not in _PUBLIC and not path.startswith(_PUBLIC_PREFIXES)


def required_scope(path: str) -> str | None:
    """The scope an operation's bearer token must hold, or None for an operation open without one."""
    if not _needs_token(path):
        return None
    return ADMIN_SCOPE if path.startswith(_ADMIN_PREFIX) else INTEGRATION_SCOPE


def _security(path: str) -> list[dict[str, list[str]]] | None:
    if path == "/metrics":
        # Open unless the operator sets a token: either no scheme or the metrics token.
        return [{}, {METRICS_SCHEME: []}]
    scope = required_scope(path)
    if scope is None:
        return None
    return [{CLIENT_CREDENTIALS_SCHEME: [scope]}, {BEARER_SCHEME: []}]


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


problem_response = _problem_response


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


def declared_security(spec: dict[str, Any]) -> dict[str, Any]:
    """The security schemes, and on each operation the ones it accepts (none for the public ones)."""
    for path, item in spec.get("paths", {}).items():
        security = _security(path)
        for operation in item.values():
            if security is None:
                operation.pop("security", None)
            else:
                operation["security"] = security
    spec.setdefault("components", {})["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
    return spec


def install(app: FastAPI) -> None:
    """After every route is added: the document is built once, on first request, with truthful errors and
    the security schemes."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declared_security(truthful_errors(build()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
