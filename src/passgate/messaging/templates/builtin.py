"""The templates shipped with Passgate (messaging/builtin/<template>/<locale>/<part>)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources

from passgate.messaging.templates.models import (
    MessageTemplate,
    Part,
)

# File name in builtin/<template>/<locale>/ -> the part it holds.
_BUILTIN_FILES: Mapping[str, Part] = {
    "subject.txt": "subject",
    "body.html": "html",
    "body.txt": "text",
    "sms.txt": "sms",
}


@functools.cache
def _load_builtin_templates() -> tuple[MessageTemplate, ...]:
    root = resources.files("passgate.messaging").joinpath("builtin")
    loaded: list[MessageTemplate] = []
    for folder in sorted(root.iterdir(), key=lambda entry: entry.name):
        if not folder.is_dir():
            continue
        meta_data = json.loads(folder.joinpath("template.json").read_text(encoding="utf-8"))
        locales: dict[str, dict[str, str]] = {}
        for locale_dir in sorted(folder.iterdir(), key=lambda entry: entry.name):
            if not locale_dir.is_dir():
                continue
            parts = locales.setdefault(locale_dir.name, {})
            for file in locale_dir.iterdir():
                part = _BUILTIN_FILES.get(file.name)
                if part is not None:
                    # Editors end files with a newline; an SMS or a subject should not.
                    parts[part] = file.read_text(encoding="utf-8").removesuffix("\n")
        loaded.append(MessageTemplate.model_validate({**meta_data, "name": folder.name, "locales": locales}))
    return tuple(loaded)


def builtin_templates() -> dict[str, MessageTemplate]:
    """The templates shipped with Passgate, by name. Treat them as read-only: they are shared."""
    return {template.name: template for template in _load_builtin_templates()}
