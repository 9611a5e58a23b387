"""What the template catalogue and the branding service raise; passgate/problems.py gives each its status, for the API and the console."""

from __future__ import annotations

from typing import Any

from passgate.messaging.templates import TemplateProblem


class TemplateNotFound(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"template {name!r} not found")
        self.name = name


class TemplateExists(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"a template named {name!r} already exists; replace it with PUT /templates/{name}")
        self.name = name


class BuiltinTemplateReadOnly(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name!r} is a built-in template and cannot be deleted; "
            f"PUT /templates/{name} to override it for your client instead"
        )
        self.name = name


class TooManyTemplates(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"a client may have at most {limit} templates of its own; delete one first")
        self.limit = limit


class Unprocessable(Exception):
    """Well-formed, but a value breaks a rule (say, a test-send address); `errors` name the fields."""

    def __init__(self, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.errors = errors


class InvalidTemplate(Unprocessable):
    """The template cannot be saved (or rendered); `errors` point at locale, part and line."""

    @classmethod
    def from_problems(cls, problems: list[TemplateProblem]) -> InvalidTemplate:
        errors: list[dict[str, Any]] = []
        for p in problems:
            entry: dict[str, Any] = {"field": p.field, "message": p.message}
            if p.locale is not None:
                entry["locale"] = p.locale
            if p.part is not None:
                entry["part"] = p.part
            if p.line is not None:
                entry["line"] = p.line
            errors.append(entry)
        names = ", ".join(dict.fromkeys(e["field"] for e in errors[:5]))
        return cls(f"the template cannot be saved: {names}", errors)


class InvalidBranding(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        names = ", ".join(e["field"] for e in errors[:5])
        super().__init__(f"invalid branding: {names}")
        self.errors = errors


class TestSendRateLimited(Exception):
    # Not a test class, despite the name: keep pytest from trying to collect it.
    __test__ = False

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many test sends for this client; try again in {retry_after} s")
        self.retry_after = retry_after
