"""The templates shipped with Passgate (messaging/builtin/<template>/<locale>/<part>).

The built-in email bodies share one HTML frame, builtin/_base.html: each body file extends it and fills
its blocks (title, preheader, content, help, sent_by). The frame is resolved when the built-ins load, in
a sandbox of its own whose delimiters are `[% %]` and `[[ ]]`, so that the `{% %}` and `{{ }}` of the
template pass through untouched. Why at load and not at render: a built-in is data a client reads and
copies (GET /templates/<name>, the console's editor) into templates of its own, and those render in the
message sandbox, which refuses `extends`; composed here, the built-in a client sees is self-contained
and exactly as it was before the frame was shared, and rendering stays one path for all templates.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from passgate.locales import is_rtl
from passgate.messaging.templates.models import MessageTemplate, Part

# File name in builtin/<template>/<locale>/ -> the part it holds.
_BUILTIN_FILES: Mapping[str, Part] = {
    "subject.txt": "subject",
    "body.html": "html",
    "body.txt": "text",
    "sms.txt": "sms",
}
# A part file that starts so extends a frame (a file named _<something> in builtin/).
_EXTENDS = "[% extends "


def _root() -> Traversable:
    return resources.files("passgate.messaging").joinpath("builtin")


def _frame_source(name: str) -> str:
    """The frames a built-in part may extend: builtin/_<name>, nothing else."""
    if not name.startswith("_") or "/" in name or "\\" in name:
        raise jinja2.TemplateNotFound(name)
    return _root().joinpath(name).read_text(encoding="utf-8")


_FRAMES = ImmutableSandboxedEnvironment(
    loader=jinja2.FunctionLoader(_frame_source),
    block_start_string="[%",
    block_end_string="%]",
    variable_start_string="[[",
    variable_end_string="]]",
    comment_start_string="[#",
    comment_end_string="#]",
    keep_trailing_newline=True,
    autoescape=False,
    undefined=jinja2.StrictUndefined,
)


def compose(source: str, locale: str) -> str:
    """A built-in part's template text: a part that extends a frame, with the frame filled in for the
    locale (its language, its direction and the side text aligns to); any other part as it is."""
    if not source.startswith(_EXTENDS):
        return source
    rtl = is_rtl(locale)
    return _FRAMES.from_string(source).render(
        lang=locale, dir="rtl" if rtl else "ltr", align="right" if rtl else "left"
    )


@functools.cache
def _load_builtin_templates() -> tuple[MessageTemplate, ...]:
    loaded: list[MessageTemplate] = []
    for folder in sorted(_root().iterdir(), key=lambda entry: entry.name):
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
                    text = compose(file.read_text(encoding="utf-8"), locale_dir.name)
                    # Editors end files with a newline; an SMS or a subject should not.
                    parts[part] = text.removesuffix("\n")
        loaded.append(MessageTemplate.model_validate({**meta_data, "name": folder.name, "locales": locales}))
    return tuple(loaded)


def builtin_templates() -> dict[str, MessageTemplate]:
    """The templates shipped with Passgate, by name. Treat them as read-only: they are shared."""
    return {template.name: template for template in _load_builtin_templates()}
