"""/manage/v1/templates: the client's messaging templates (and the built-ins), preview and test send."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.api.errors import ApiProblem
from passgate.db import transaction
from passgate.messaging.catalog import TemplateCatalog, full_view, summary
from passgate.messaging.exceptions import Unprocessable
from passgate.messaging.templates import LocaleContent, MessageTemplate

MAX_BODY_BYTES = 2_000_000


async def _bounded_body(request: Request) -> None:
    # Refuse an oversized upload before it is read and parsed; the catalogue caps the content again.
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiProblem(413, "Payload too large", f"the body is larger than {MAX_BODY_BYTES} bytes")


router = APIRouter(prefix="/manage/v1/templates", tags=["templates"], dependencies=[Depends(_bounded_body)])


def get_catalog(registry: RegistryDep) -> TemplateCatalog:
    return TemplateCatalog(
        source=registry.templates, limiter=registry.limiter, public_url=registry.settings.public_url
    )


CatalogDep = Annotated[TemplateCatalog, Depends(get_catalog)]

_EXAMPLE: dict[str, Any] = {
    "name": "fjord-login",
    "channel": "EMAIL",
    "kind": "OTH",
    "defaultLocale": "en",
    "locales": {
        "en": {
            "subject": "Confirm your sign-in to {{ brand.companyName }}",
            "html": '<p>Hi {{ person.name.first }},</p><p><a href="{{ link }}">Yes, it\'s me</a></p>'
            "<p>The link expires in {{ expiresInMinutes }} minutes.</p>",
            "text": "Hi {{ person.name.first }},\n\nConfirm it's you: {{ link }}\n"
            "The link expires in {{ expiresInMinutes }} minutes.",
        }
    },
}

Parts = dict[Annotated[str, Field(max_length=32)], StrictStr]
Locales = dict[Annotated[str, Field(max_length=64)], Parts]


class TemplateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    name: StrictStr = Field(max_length=200, description="1-64 characters of a-z, 0-9 and -")
    channel: Literal["EMAIL", "SMS"]
    kind: Literal["OTH", "OTP"] = Field(description="OTH: one-time link ({{ link }}); OTP: code ({{ code }})")
    locales: Locales = Field(
        max_length=100, description="per locale: subject, html and text for EMAIL; sms for SMS"
    )
    defaultLocale: StrictStr = Field(max_length=64)

    def to_template(self, name: str | None = None) -> MessageTemplate:
        return MessageTemplate(
            name=name or self.name,
            channel=self.channel,
            kind=self.kind,
            locales={tag: LocaleContent.model_validate(parts) for tag, parts in self.locales.items()},
            default_locale=self.defaultLocale,
        )


class ReplaceBody(TemplateBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{k: v for k, v in _EXAMPLE.items() if k != "name"}]}
    )

    name: StrictStr | None = Field(default=None, max_length=200, description="when given, the path's name")  # type: ignore[assignment]


class PreviewBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"locale": "fr", "values": {"orderId": "A-1001"}}]}
    )

    locale: StrictStr | None = Field(default=None, max_length=64, description="default: the template's")
    values: dict[Annotated[str, Field(max_length=64)], Annotated[StrictStr, Field(max_length=256)]] | None = (
        Field(default=None, max_length=20, description="as mfaTemplateValues; others get sample text")
    )


class SendTestBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"to": "jo@example.com"}, {"to": "+15551234567"}]}
    )

    to: StrictStr = Field(min_length=1, max_length=254, description="email address or E.164 number")
    locale: StrictStr | None = Field(default=None, max_length=64, description="default: as a challenge picks")


@router.get("", summary="Every template requests can name: the client's and the built-ins (marked builtIn)")
async def list_templates(registry: RegistryDep, catalog: CatalogDep, auth: AdminAuth) -> JSONResponse:
    def run() -> list[dict[str, Any]]:
        with transaction(registry.sessions) as session:
            return [summary(t) for t in catalog.list(session, auth.client_id)]

    return JSONResponse({"items": await run_in_threadpool(run)})


@router.post(
    "",
    status_code=201,
    summary="Create a template; a built-in's name overrides that built-in for this client",
    responses={
        409: {"description": "the client already has a template of this name"},
        422: {"description": "the template cannot be saved; `errors[]` give field, locale, part and line"},
    },
)
async def create_template(
    body: TemplateBody, registry: RegistryDep, catalog: CatalogDep, auth: AdminAuth
) -> JSONResponse:
    template = body.to_template()

    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return full_view(catalog.create(session, auth.client_id, template, registry.clock.now()))

    out = await run_in_threadpool(run)
    return JSONResponse(out, status_code=201, headers={"Location": f"/manage/v1/templates/{template.name}"})


@router.get("/{name}", summary="A template as requests naming it get it (the client's, else the built-in)")
async def get_template(
    name: str, registry: RegistryDep, catalog: CatalogDep, auth: AdminAuth
) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return full_view(catalog.get(session, auth.client_id, name))

    return JSONResponse(await run_in_threadpool(run))


@router.put(
    "/{name}",
    summary="Create or replace the client's template of this name (201 when created)",
    responses={
        201: {"description": "created (no template of this name existed)"},
        422: {"description": "the template cannot be saved; `errors[]` give field, locale, part and line"},
    },
)
async def replace_template(
    name: str, body: ReplaceBody, registry: RegistryDep, catalog: CatalogDep, auth: AdminAuth
) -> JSONResponse:
    if body.name is not None and body.name != name:
        raise Unprocessable(
            "the body names another template",
            [{"field": "name", "message": f"must be the path's name {name!r} (or left out)"}],
        )
    template = body.to_template(name)

    def run() -> tuple[dict[str, Any], bool]:
        with transaction(registry.sessions) as session:
            stored, created = catalog.replace(session, auth.client_id, template, registry.clock.now())
            return full_view(stored), created

    out, created = await run_in_threadpool(run)
    return JSONResponse(out, status_code=201 if created else 200)


@router.delete(
    "/{name}",
    status_code=204,
    summary="Delete the client's template; a built-in of the same name applies again",
    responses={409: {"description": "built-in templates cannot be deleted"}},
)
async def delete_template(name: str, registry: RegistryDep, catalog: CatalogDep, auth: AdminAuth) -> Response:
    def run() -> bool:
        with transaction(registry.sessions) as session:
            return catalog.delete(session, auth.client_id, name)

    builtin_again = await run_in_threadpool(run)
    return Response(status_code=204, headers={"X-Builtin-Restored": "true" if builtin_again else "false"})


@router.post(
    "/{name}/preview",
    summary="Render with the client's branding and sample values: subject, HTML, text or SMS with its "
    "encoding and segment count",
)
async def preview_template(
    name: str,
    registry: RegistryDep,
    catalog: CatalogDep,
    auth: AdminAuth,
    body: Annotated[
        PreviewBody | None,
        Body(
            openapi_examples={
                "defaults": {"summary": "the default locale and sample values", "value": {}},
                "french": {"value": {"locale": "fr", "values": {"orderId": "A-1001"}}},
            }
        ),
    ] = None,
) -> JSONResponse:
    given = body or PreviewBody()

    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return catalog.preview(session, auth.client_id, name, given.locale, given.values)

    return JSONResponse(await run_in_threadpool(run))


@router.post(
    "/{name}/test-send",
    status_code=202,
    summary="Queue a test message (sample values, marked as a test) through the configured providers",
    responses={
        422: {"description": "the message cannot be sent to this destination; `errors[].field` names it"},
        429: {"description": "too many test sends for this client; see Retry-After"},
    },
)
async def send_test_message(
    name: str, body: SendTestBody, registry: RegistryDep, catalog: CatalogDep, auth: AdminAuth
) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return catalog.test_send(
                session, auth.client_id, name, body.to, body.locale, registry.clock.now()
            )

    return JSONResponse(await run_in_threadpool(run), status_code=202)
