"""The template name `"default"`: the client's default template for the request's channel and event.

Kount 360 integrations name a template in `strategy.mfaTemplateName` / `verificationTemplateName`; some send
`"default"` and let the service pick. A client's own template saved under the name `default` is used as
named. Otherwise the channel is the request's `strategy.type` when it names one (`EMAIL`, `SMS`), else
email when the request gives `person.emailAddress`, else SMS when it gives `person.phoneNumber`; the
template is then the built-in name below for that channel and event, which a client's own template of the
same name replaces (docs/templates.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_TEMPLATE = "default"

# (event type, channel) -> the template a "default" challenge uses. Logins get a code by SMS (typed
# into the business's own form, no second screen); account openings a link, which can carry the person on
# to verificationTargetUrl.
DEFAULT_TEMPLATES: Mapping[tuple[str, str], str] = {
    ("LOGIN", "EMAIL"): "email-link",
    ("LOGIN", "SMS"): "sms-code",
    ("NEW_ACCOUNT_OPENING", "EMAIL"): "email-link",
    ("NEW_ACCOUNT_OPENING", "SMS"): "sms-link",
}

_CHANNELS = {"EMAIL": "EMAIL", "SMS": "SMS", "PHONE": "SMS", "TEXT": "SMS"}


def default_channel(body: Mapping[str, Any]) -> str:
    """The channel a `"default"` template is chosen for."""
    strategy = body.get("strategy") or {}
    hint = strategy.get("type")
    if isinstance(hint, str) and hint.upper() in _CHANNELS:
        return _CHANNELS[hint.upper()]
    person = body.get("person") or {}
    if not person.get("emailAddress") and person.get("phoneNumber"):
        return "SMS"
    return "EMAIL"


def default_template_name(event_type: str, body: Mapping[str, Any]) -> str:
    """The template name `"default"` stands for in this request."""
    return DEFAULT_TEMPLATES[(event_type, default_channel(body))]
