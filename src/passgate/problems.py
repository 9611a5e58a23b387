"""Which domain error means what to a caller: one table, read by the API (problem documents) and by the
console (pages), so both answer the same error with the same status.

Nothing here knows HTTP frameworks: `api/errors.py` turns a `Problem` into a response, the console into a
page. An exception class missing from the table is a bug the API answers with a 500 (and logs);
`tests/unit/test_problems.py` checks that every class of every `exceptions.py` is either here or in
`NOT_ANSWERED`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from passgate.auth.exceptions import (
    AuthError,
    InsufficientScope,
    InvalidClient,
    InvalidScope,
    InvalidToken,
    NotFound,
    TooManyFailedAttempts,
    TooManyKeys,
)
from passgate.console.exceptions import (
    BadCredentials,
    ChallengeNotStarted,
    ConsoleError,
    InvalidUser,
    SignInLocked,
    UserExists,
)
from passgate.idempotency.exceptions import (
    IdempotencyError,
    InquiryReused,
    InvalidKey,
    KeyReused,
    RequestInProgress,
)
from passgate.messaging.exceptions import (
    BuiltinTemplateReadOnly,
    InvalidBranding,
    InvalidTemplate,
    TemplateExists,
    TemplateNotFound,
    TestSendRateLimited,
    TooManyTemplates,
    Unprocessable,
)
from passgate.messaging.render_pool import RenderTimeout
from passgate.mfa.exceptions import (
    InvalidDestination,
    InvalidVerification,
    MfaError,
    NoPendingVerification,
    SendLimitReached,
    SendRateLimited,
    SessionClosed,
    SessionNotFound,
    Throttled,
    WrongMethod,
)
from passgate.policy.exceptions import InvalidPolicySet, NoActiveVersion, PolicyError, VersionNotFound
from passgate.policy.lists import ImportTooLarge, ListExists, ListNotFound
from passgate.webhooks.exceptions import (
    DeliveryError,
    EndpointDisabled,
    EndpointNotFound,
    EventNotFound,
    InvalidWebhookUrl,
    TooManyEndpoints,
    WebhookError,
    WrongSignatureScheme,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemSpec:
    """How a domain exception is answered: status, title, problem slug (the `type` is
    urn:passgate:problem:<slug>), optionally the field it always names, and whether it carries a
    Retry-After (its `retry_after` attribute)."""

    status: int
    title: str
    slug: str
    field: str | None = None
    retry_after: bool = False


_NOT_FOUND = ProblemSpec(404, "Not found", "not-found")
_CONFLICT = ProblemSpec(409, "Conflict", "conflict", field="name")
_RATE_LIMITED = ProblemSpec(429, "Rate limited", "rate-limited", retry_after=True)

PROBLEMS: dict[type[Exception], ProblemSpec] = {
    # auth
    InvalidClient: ProblemSpec(401, "Invalid client", "invalid-client"),
    InvalidToken: ProblemSpec(401, "Unauthorized", "unauthorized"),
    InsufficientScope: ProblemSpec(403, "Forbidden", "insufficient-scope"),
    InvalidScope: ProblemSpec(400, "Invalid scope", "invalid-scope", field="scope"),
    TooManyFailedAttempts: ProblemSpec(429, "Too many failed attempts", "throttled", retry_after=True),
    TooManyKeys: ProblemSpec(409, "Too many keys", "too-many-keys"),
    NotFound: _NOT_FOUND,
    # policy
    VersionNotFound: _NOT_FOUND,
    ListNotFound: _NOT_FOUND,
    NoActiveVersion: ProblemSpec(409, "No active policy set", "no-active-version"),
    ListExists: _CONFLICT,
    ImportTooLarge: ProblemSpec(413, "Payload too large", "too-large", field="entries"),
    InvalidPolicySet: ProblemSpec(422, "Invalid policy set", "invalid-policy-set"),
    # messaging
    TemplateNotFound: _NOT_FOUND,
    TemplateExists: _CONFLICT,
    BuiltinTemplateReadOnly: ProblemSpec(409, "Built-in template", "builtin-template"),
    TooManyTemplates: ProblemSpec(409, "Too many templates", "too-many-templates"),
    Unprocessable: ProblemSpec(422, "Unprocessable request", "unprocessable"),
    InvalidTemplate: ProblemSpec(422, "Invalid template", "invalid-template"),
    InvalidBranding: ProblemSpec(422, "Invalid branding", "invalid-branding"),
    TestSendRateLimited: _RATE_LIMITED,
    RenderTimeout: ProblemSpec(503, "Busy", "rendering-busy", retry_after=True),
    # mfa
    SessionNotFound: _NOT_FOUND,
    SessionClosed: ProblemSpec(409, "Session closed", "session-closed"),
    WrongMethod: ProblemSpec(409, "Wrong verification method", "wrong-method"),
    SendLimitReached: ProblemSpec(429, "Send limit reached", "send-limit"),
    SendRateLimited: _RATE_LIMITED,
    Throttled: ProblemSpec(429, "Too many failed attempts", "throttled", retry_after=True),
    InvalidDestination: ProblemSpec(400, "Invalid request", "validation"),
    InvalidVerification: ProblemSpec(400, "Invalid request", "validation"),
    NoPendingVerification: _NOT_FOUND,
    # webhooks
    EndpointNotFound: _NOT_FOUND,
    EventNotFound: ProblemSpec(404, "Not found", "not-found", field="eventId"),
    EndpointDisabled: ProblemSpec(409, "Endpoint disabled", "endpoint-disabled"),
    WrongSignatureScheme: ProblemSpec(409, "Wrong signature scheme", "wrong-signature-scheme"),
    TooManyEndpoints: ProblemSpec(409, "Too many webhook endpoints", "too-many-endpoints"),
    InvalidWebhookUrl: ProblemSpec(422, "Invalid webhook URL", "invalid-webhook-url"),
    # console (raised by console services; the sign-in page words most of them itself)
    InvalidUser: ProblemSpec(400, "Invalid request", "validation"),
    UserExists: ProblemSpec(409, "Conflict", "conflict", field="email"),
    BadCredentials: ProblemSpec(401, "Invalid credentials", "invalid-credentials"),
    SignInLocked: ProblemSpec(429, "Too many failed attempts", "throttled", retry_after=True),
    ChallengeNotStarted: ProblemSpec(503, "Email not sent", "sign-in-email-not-sent"),
    InquiryReused: ProblemSpec(409, "Conflict", "inquiry-reused"),
    RequestInProgress: ProblemSpec(409, "Request in progress", "request-in-progress", retry_after=True),
    KeyReused: ProblemSpec(422, "Idempotency key reused", "idempotency-key-reused"),
    InvalidKey: ProblemSpec(400, "Invalid request", "validation"),
}

# Classes of `exceptions.py` modules that never reach a caller: the bases (a base in the table would
# answer every future subclass without a decision) and errors handled where they are raised.
NOT_ANSWERED: frozenset[type[Exception]] = frozenset(
    {
        AuthError,
        ConsoleError,
        MfaError,
        PolicyError,
        WebhookError,
        IdempotencyError,
        DeliveryError,  # a webhook try that failed: recorded on the delivery and retried, never answered
    }
)


@dataclass(frozen=True)
class Problem:
    """One error as a caller is told it: the table's spec, this error's words and the fields it names."""

    spec: ProblemSpec
    detail: str
    errors: list[dict[str, Any]]
    retry_after: int | None = None

    @property
    def status(self) -> int:
        return self.spec.status


def spec_for(exc_type: type[BaseException]) -> ProblemSpec | None:
    """The entry for this class or its nearest listed base (as exception handlers are chosen)."""
    for klass in exc_type.__mro__:
        found = PROBLEMS.get(klass)
        if found is not None:
            return found
    return None


def field_errors(exc: BaseException, spec: ProblemSpec) -> list[dict[str, Any]]:
    """The fields an error names, one entry each ({"field", "message"}, templates add locale/part/line)."""
    if isinstance(exc, InvalidPolicySet):
        return [{"field": exc.location, "message": exc.message}]
    if isinstance(exc, Unprocessable | InvalidBranding):
        return list(exc.errors)
    if isinstance(exc, InvalidUser):
        return [{"field": exc.field, "message": exc.message}]
    field = spec.field or getattr(exc, "field", None)
    return [{"field": field, "message": str(exc)}] if field else []


def problem_for(exc: BaseException) -> Problem | None:
    """The answer to a domain error; None for anything else (a bug, answered as an internal error)."""
    spec = spec_for(type(exc))
    if spec is None:
        return None
    retry_after = int(getattr(exc, "retry_after", 1)) if spec.retry_after else None
    return Problem(spec, str(exc), field_errors(exc, spec), retry_after)


def document(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An RFC 9457 problem document (served as application/problem+json)."""
    body: dict[str, Any] = {"type": f"urn:passgate:problem:{slug}", "title": title, "status": status}
    body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return body


# --- request validation (pydantic) ------------------------------------------------------------------

_UNION_TAGS = {"str", "bool", "int", "float", "constrained-str", "list", "dict", "none", "literal"}


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in _UNION_TAGS or part.startswith("function-") or "[" in part)


def field_path(loc: Sequence[Any], strip_tag: bool = False) -> str:
    """A pydantic location as callers write the field: `policies[1].conditions[0].field`."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    if strip_tag and len(parts) > 1 and _is_tag(parts[-1]):
        parts.pop()
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


_PATTERN_MESSAGES = {
    "^[^-]+$": "must not contain '-'",
    "^[A-Za-z0-9_-]{1,32}$": "must be 1 to 32 characters of A-Z, a-z, 0-9, '_' and '-'",
    "^[A-Za-z0-9_-]{1,64}$": "must be an id: 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
    "^[^\\x00]*$": "must not contain a NUL character",
}


def _message(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "string_pattern_mismatch":
        pattern = str((err.get("ctx") or {}).get("pattern", ""))
        return _PATTERN_MESSAGES.get(pattern, msg)
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err.get("type") == "json_invalid":
        return "the body is not valid JSON"
    if err.get("type") == "model_attributes_type" or err.get("type") == "dict_type":
        return "must be a JSON object"
    return msg


def validation_errors(raw: Sequence[Any]) -> list[dict[str, str]]:
    """One entry per field; for union-typed fields the most specific complaint wins over 'wrong type'."""
    # Pydantic reports a union-typed value once per member, each loc ending in the member's tag
    # ("str", "int", ...); such a group is one field. A lone error ending in a tag-like name is a field.
    prefixes: dict[tuple[Any, ...], int] = {}
    for err in raw:
        loc = tuple(err.get("loc", ()))
        if loc and _is_tag(loc[-1]):
            prefixes[loc[:-1]] = prefixes.get(loc[:-1], 0) + 1
    by_field: dict[str, dict[str, Any]] = {}
    for err in raw:
        loc = tuple(err.get("loc", ()))
        path = field_path(loc, strip_tag=prefixes.get(loc[:-1], 0) > 1)
        kind = str(err.get("type", ""))
        current = by_field.get(path)
        generic = kind.endswith("_type") or kind.endswith("_parsing")
        if current is None or (current["generic"] and not generic):
            by_field[path] = {"generic": generic, "message": _message(err)}
    return [{"field": f, "message": v["message"]} for f, v in by_field.items()]
