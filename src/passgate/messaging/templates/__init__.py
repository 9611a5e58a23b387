"""Message templates: data types (`models`), sandboxed rendering (`rendering`, over `messaging.sandbox`),
save-time validation (`validate`), SMS encoding (`sms`) and the built-ins (`builtin`).

Everything here is pure: no database, no network, no clock. The names importers use are re-exported
here, so `from passgate.messaging.templates import render` keeps working.
"""

from __future__ import annotations

from passgate.messaging.templates.builtin import (
    builtin_templates,
)
from passgate.messaging.templates.models import (
    _NAME_RE,
    MAX_LOCALES,
    MAX_PART_CHARS,
    MAX_SMS_SEGMENTS,
    MAX_TEMPLATE_DEPTH,
    MAX_TEMPLATE_NODES,
    MAX_VALUE_CHARS,
    MAX_VALUE_KEY_CHARS,
    MAX_VALUES,
    PARTS_BY_CHANNEL,
    VARIABLES,
    Brand,
    Channel,
    Kind,
    LocaleContent,
    MessageTemplate,
    Part,
    PersonName,
    RenderContext,
    RenderedMessage,
    SmsInfo,
    TemplateProblem,
    TemplateRenderError,
    TemplateValuesError,
    clean_template_values,
)
from passgate.messaging.templates.rendering import (
    _compile,
    _context_data,
    _environment,
    _one_line,
    render,
)
from passgate.messaging.templates.sms import (
    sms_info,
)
from passgate.messaging.templates.validate import (
    sample_context,
    validate_template,
)

__all__ = [
    "Brand",
    "Channel",
    "Kind",
    "LocaleContent",
    "MAX_LOCALES",
    "MAX_PART_CHARS",
    "MAX_SMS_SEGMENTS",
    "MAX_TEMPLATE_DEPTH",
    "MAX_TEMPLATE_NODES",
    "MAX_VALUES",
    "MAX_VALUE_CHARS",
    "MAX_VALUE_KEY_CHARS",
    "MessageTemplate",
    "PARTS_BY_CHANNEL",
    "Part",
    "PersonName",
    "RenderContext",
    "RenderedMessage",
    "SmsInfo",
    "TemplateProblem",
    "TemplateRenderError",
    "TemplateValuesError",
    "VARIABLES",
    "_NAME_RE",
    "_compile",
    "_context_data",
    "_environment",
    "_one_line",
    "builtin_templates",
    "clean_template_values",
    "render",
    "sample_context",
    "sms_info",
    "validate_template",
]
