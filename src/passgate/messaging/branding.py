"""Per-client branding: what every email, SMS and hosted page shows, and the address email comes from.

The From address. A client may name its own `fromAddress`, but only on one of its (at most three)
`sendingDomains`: those are the domains it has authorised the operator's mail relay for (SPF, DKIM), so a
client can never make Passgate send as a domain it did not declare. Without one, mail goes out from the
operator's PASSGATE_MAIL_FROM address. Either way the display name is the client's `senderName`, else its
`companyName`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import formataddr, parseaddr
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import ValidationError
from sqlalchemy.orm import Session

from passgate.messaging.exceptions import InvalidBranding
from passgate.messaging.models import ClientBranding
from passgate.messaging.sources import brand_from_row, default_brand
from passgate.messaging.templates import Brand

MAX_SENDING_DOMAINS = 3
DEFAULT_PRIMARY_COLOR = "#2563eb"


@dataclass(frozen=True)
class BrandingInput:
    """A PUT body, already of the right types; the values are checked here."""

    company_name: str | None = None
    logo_url: str | None = None
    primary_color: str | None = None
    support_url: str | None = None
    sender_name: str | None = None
    sending_domains: tuple[str, ...] = ()
    from_address: str | None = None


def from_header(brand: Brand, from_address: str | None, mail_from: str) -> str:
    """The From header of a client's email (see the module's docstring)."""
    return _from_header(brand.sender_name or brand.company_name, from_address, mail_from)


@lru_cache(maxsize=1024)
def _from_header(name: str, from_address: str | None, mail_from: str) -> str:
    # Once per distinct sender: parseaddr and formataddr cost as much as composing the rest of a message.
    address = from_address or parseaddr(mail_from)[1] or mail_from
    # formataddr quotes the display name and encodes non-ASCII, so a name like `Ça "Va"` cannot break
    # the header; Brand already refuses line breaks in it.
    return formataddr((name, address))


def _domain(raw: str) -> str:
    """A sending domain in the form mail uses (lowercase, IDNA), or ValueError."""
    candidate = raw.strip().rstrip(".")
    if not candidate or "@" in candidate or len(candidate) > 253:
        raise ValueError("must be a domain name such as mail.example.com")
    try:
        # The same checks (and special-use refusals: .test, .local, …) as the From address gets.
        domain = validate_email(f"postmaster@{candidate}", check_deliverability=False).ascii_domain
    except EmailNotValidError as exc:
        raise ValueError(f"must be a domain name such as mail.example.com ({exc})") from None
    if "." not in domain:
        raise ValueError("must be a fully qualified domain name such as mail.example.com")
    return domain


def check(data: BrandingInput, client_name_brand: Brand) -> tuple[Brand, list[str], str | None]:
    """Validate a branding document; every problem is reported at once, by field."""
    errors: list[dict[str, Any]] = []
    brand: Brand | None = None
    logo_url = data.logo_url
    if logo_url is not None and not logo_url.lower().startswith("https://"):
        # The hosted confirm page's Content-Security-Policy loads images over https only: an http:// logo
        # would show as a broken image on every page (and mixed content in mail clients).
        errors.append({"field": "logoUrl", "message": "logoUrl must be a URL starting with https://"})
        logo_url = None
    try:
        brand = Brand.model_validate(
            {
                "companyName": data.company_name
                if data.company_name is not None
                else client_name_brand.company_name,
                "logoUrl": logo_url,
                "primaryColor": data.primary_color or DEFAULT_PRIMARY_COLOR,
                "supportUrl": data.support_url,
                "senderName": data.sender_name,
            }
        )
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "body"
            errors.append({"field": field, "message": str(err["msg"]).removeprefix("Value error, ")})

    domains: list[str] = []
    if len(data.sending_domains) > MAX_SENDING_DOMAINS:
        errors.append(
            {
                "field": "sendingDomains",
                "message": f"at most {MAX_SENDING_DOMAINS} sending domains are allowed",
            }
        )
    for i, raw in enumerate(data.sending_domains[:MAX_SENDING_DOMAINS]):
        try:
            domain = _domain(raw)
        except ValueError as exc:
            errors.append({"field": f"sendingDomains[{i}]", "message": str(exc)})
            continue
        if domain in domains:
            errors.append({"field": f"sendingDomains[{i}]", "message": f"{domain} is listed twice"})
            continue
        domains.append(domain)

    from_address: str | None = None
    if data.from_address is not None:
        try:
            # No SMTPUTF8: a relay that lacks it would bounce every message, so ASCII local parts only.
            valid = validate_email(data.from_address, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as exc:
            errors.append({"field": "fromAddress", "message": f"not a valid email address: {exc}"})
        else:
            from_address = f"{valid.local_part}@{valid.ascii_domain}"
            if valid.ascii_domain not in domains:
                listed = ", ".join(domains) or "none are set"
                errors.append(
                    {
                        "field": "fromAddress",
                        "message": f"the From address must be on one of the sendingDomains ({listed})",
                    }
                )
    if errors or brand is None:
        raise InvalidBranding(errors)
    return brand, domains, from_address


@dataclass
class BrandingService:
    mail_from: str

    def view(self, session: Session, client_id: str) -> dict[str, Any]:
        row = session.get(ClientBranding, client_id)
        brand = brand_from_row(row) if row is not None else default_brand(session, client_id)
        from_address = row.from_address if row is not None else None
        return {
            "companyName": brand.company_name,
            "logoUrl": brand.logo_url,
            "primaryColor": brand.primary_color,
            "supportUrl": brand.support_url,
            "senderName": brand.sender_name,
            "sendingDomains": list(row.sending_domains) if row is not None else [],
            "fromAddress": from_address,
            # What the From header of the next email will be, so the console can show it as it is.
            "effectiveFrom": from_header(brand, from_address, self.mail_from),
            "custom": row is not None,
            "updatedAt": row.updated_at.isoformat() if row is not None else None,
        }

    def replace(self, session: Session, client_id: str, data: BrandingInput, now: datetime) -> dict[str, Any]:
        brand, domains, from_address = check(data, default_brand(session, client_id))
        row = session.get(ClientBranding, client_id)
        if row is None:
            row = ClientBranding(client_id=client_id)
            session.add(row)
        row.company_name = brand.company_name
        row.logo_url = brand.logo_url
        row.primary_color = brand.primary_color
        row.support_url = brand.support_url
        row.sender_name = brand.sender_name
        row.sending_domains = domains
        row.from_address = from_address
        row.updated_at = now
        session.flush()
        return self.view(session, client_id)
