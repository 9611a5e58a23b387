"""/manage/v1/branding: the client's company name, logo, colour, support URL, sender and sending domains."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.messaging.branding import BrandingInput, BrandingService

router = APIRouter(prefix="/manage/v1/branding", tags=["branding"])


def get_branding_service(registry: RegistryDep) -> BrandingService:
    return BrandingService(mail_from=registry.settings.mail_from)


BrandingDep = Annotated[BrandingService, Depends(get_branding_service)]


class BrandingBody(BaseModel):
    """The whole branding document; omitted fields return to their defaults."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "companyName": "Fjord Bank",
                    "logoUrl": "https://cdn.fjordbank.example/logo.png",
                    "primaryColor": "#0f766e",
                    "supportUrl": "https://fjordbank.example/help",
                    "senderName": "Fjord Bank Security",
                    "sendingDomains": ["fjordbank.example"],
                    "fromAddress": "security@fjordbank.example",
                }
            ]
        },
    )

    # Lengths here only bound the work; the rules (colour format, URL schemes, domains) give 422s that
    # name the field, from the branding service.
    companyName: StrictStr | None = Field(
        default=None, max_length=1000, description="defaults to the client's name"
    )
    logoUrl: StrictStr | None = Field(default=None, max_length=4096, description="https:// only")
    primaryColor: StrictStr | None = Field(default=None, max_length=100, description="hex, e.g. #0f766e")
    supportUrl: StrictStr | None = Field(
        default=None, max_length=4096, description="https://, http:// or mailto:"
    )
    senderName: StrictStr | None = Field(default=None, max_length=1000, description="From display name")
    sendingDomains: list[Annotated[StrictStr, Field(max_length=300)]] = Field(
        default_factory=list, max_length=10, description="at most 3"
    )
    fromAddress: StrictStr | None = Field(
        default=None,
        max_length=1000,
        description="must be on one of sendingDomains; default PASSGATE_MAIL_FROM",
    )


@router.get("", summary="The client's branding (defaults filled in) and the From header its email gets")
async def get_branding(registry: RegistryDep, service: BrandingDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return service.view(session, auth.client_id)

    return JSONResponse(await run_in_threadpool(run))


@router.put(
    "",
    summary="Replace the branding; used by every email, SMS and hosted page from now on",
    responses={422: {"description": "a value breaks a rule; `errors[].field` names it"}},
)
async def put_branding(
    body: BrandingBody, registry: RegistryDep, service: BrandingDep, auth: AdminAuth
) -> JSONResponse:
    data = BrandingInput(
        company_name=body.companyName,
        logo_url=body.logoUrl,
        primary_color=body.primaryColor,
        support_url=body.supportUrl,
        sender_name=body.senderName,
        sending_domains=tuple(body.sendingDomains),
        from_address=body.fromAddress,
    )

    def run(reg: Registry) -> dict[str, Any]:
        with transaction(reg.sessions) as session:
            return service.replace(session, auth.client_id, data, reg.clock.now())

    out = await run_in_threadpool(run, registry)
    forget = getattr(registry.templates, "forget", None)
    if forget is not None:
        forget(auth.client_id)  # after the commit: the next message uses the new branding
    return JSONResponse(out)
