"""Reading console forms safely, and turning the policy editor's fields into a policy-set document and back.

Form bodies are not JSON, so the NUL check of the JSON middleware does not see them: a NUL reaching
PostgreSQL would be a 500. Every value is checked here before any route sees it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from passgate.policy.conditions import OPERATORS
from passgate.policy.fields import FIELDS

MAX_FORM_BYTES = 2_000_000  # the middleware's cap too; CSV imports of 10,000 entries fit
MAX_FILE_BYTES = 1_500_000
MAX_FIELDS = 5000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class BadForm(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Form:
    values: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        got = self.values.get(name)
        return got[0] if got else default

    def getlist(self, name: str) -> list[str]:
        return list(self.values.get(name, []))

    def has(self, name: str) -> bool:
        return name in self.values


async def read_form(request: Request) -> Form:
    length = request.headers.get("content-length", "")
    if length and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise BadForm(413, f"The form is larger than {MAX_FORM_BYTES // 1_000_000} MB.")
    try:
        raw = await request.form(max_files=2, max_fields=MAX_FIELDS, max_part_size=MAX_FILE_BYTES)
    except (MultiPartException, ValueError, UnicodeDecodeError) as exc:
        raise BadForm(400, f"The form could not be read ({exc}).") from None
    form = Form()
    for key, value in raw.multi_items():
        if "\x00" in key:
            raise BadForm(400, "The form contains a NUL character, which no field may hold.")
        if isinstance(value, UploadFile):
            data = await value.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise BadForm(413, "The file is too large.")
            if data:
                form.files[key] = (value.filename or "upload", data)
            continue
        if "\x00" in value:
            raise BadForm(400, f"The field {key[:40]!r} contains a NUL character, which no field may hold.")
        form.values.setdefault(key, []).append(value)
    return form


def clean_param(value: str | None, max_len: int = 200) -> str | None:
    """A query-string value fit for a database comparison, or None (empty, too long or with controls)."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > max_len or _CONTROL.search(value):
        return None
    return value


# -- the policy editor ---------------------------------------------------------------------------------

OPERATOR_LABELS = {
    "equals": "equals",
    "notEquals": "does not equal",
    "contains": "contains",
    "startsWith": "starts with",
    "endsWith": "ends with",
    "in": "is one of",
    "notIn": "is not one of",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "inList": "is in list",
    "notInList": "is not in list",
}
assert set(OPERATOR_LABELS) == set(OPERATORS)

MAX_SEGMENTS = 50
MAX_POLICIES = 500
MAX_CONDITIONS = 50
MAX_TAGS = 20


def _count(form: Form, name: str, cap: int) -> int:
    raw = form.get(name, "0")
    return min(int(raw), cap) if raw.isdigit() else 0


def _scalar(text: str, ftype: str) -> Any:
    text = text.strip()
    if ftype == "boolean":
        return {"true": True, "false": False}.get(text.lower(), text)
    if ftype == "number":
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text  # the compiler says "is a number", at the field
    if ftype == "any":
        # customFields hold strings, numbers or booleans: a number or true/false is read as such; quote
        # it ("5") to mean the text.
        if text.startswith('"') and text.endswith('"') and len(text) >= 2:
            try:
                return str(json.loads(text))
            except ValueError:
                return text
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text
    return text


def field_type(path: str) -> str:
    return str(FIELDS.get(path, "any"))


def parse_value(path: str, operator: str, text: str) -> Any:
    ftype = field_type(path)
    if operator in ("in", "notIn"):
        return [_scalar(part, ftype) for part in text.split(",") if part.strip()]
    if operator in ("inList", "notInList", "contains", "startsWith", "endsWith"):
        return text.strip()
    return _scalar(text, ftype)


def show_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(show_value(v) for v in value)
    if value is None:
        return ""
    return str(value)


def _conditions(form: Form, prefix: str) -> list[dict[str, Any]]:
    out = []
    for j in range(_count(form, f"{prefix}.conditions", MAX_CONDITIONS)):
        path = form.get(f"{prefix}.c{j}.field").strip()
        operator = form.get(f"{prefix}.c{j}.operator", "equals")
        out.append(
            {
                "field": path,
                "operator": operator,
                "value": parse_value(path, operator, form.get(f"{prefix}.c{j}.value")),
            }
        )
    return out


POLICY_REF = re.compile(r"^#([0-9]{1,4})$")


def document_from_form(form: Form) -> dict[str, Any]:
    """The policy-set document the editor's fields describe (checked later by the policy service).

    A segment's policy checkboxes name a policy by its place in the form (`#2`), not by its name, so a
    policy renamed in the same form stays applied under its new name. A plain name is read as it is."""
    names = [form.get(f"p{i}.name").strip() for i in range(_count(form, "policies", MAX_POLICIES))]

    def linked(ref: str) -> str:
        found = POLICY_REF.match(ref)
        if found and int(found.group(1)) < len(names):
            return names[int(found.group(1))]
        return ref

    segments = []
    for i in range(_count(form, "segments", MAX_SEGMENTS)):
        p = f"s{i}"
        seg: dict[str, Any] = {
            "name": form.get(f"{p}.name").strip(),
            "conditions": _conditions(form, p),
            "mfaEnabled": form.get(f"{p}.mfaEnabled") == "on",
            "policies": [linked(n) for n in form.getlist(f"{p}.policies") if n],
        }
        if form.get(f"{p}.cel").strip():
            seg["cel"] = form.get(f"{p}.cel").strip()
        segments.append(seg)
    policies = []
    for i in range(_count(form, "policies", MAX_POLICIES)):
        p = f"p{i}"
        pol: dict[str, Any] = {
            "name": form.get(f"{p}.name").strip(),
            "conditions": _conditions(form, p),
            "outcome": form.get(f"{p}.outcome", "NO_CHANGE"),
            "tags": [],
        }
        if form.get(f"{p}.description").strip():
            pol["description"] = form.get(f"{p}.description").strip()
        if form.get(f"{p}.cel").strip():
            pol["cel"] = form.get(f"{p}.cel").strip()
        for k in range(_count(form, f"{p}.tags", MAX_TAGS)):
            name = form.get(f"{p}.t{k}.name").strip()
            weight = form.get(f"{p}.t{k}.weight", "0").strip() or "0"
            try:
                w: Any = int(weight)
            except ValueError:
                w = weight
            if name:
                pol["tags"].append({"name": name, "weight": w})
        policies.append(pol)
    return {"name": form.get("name").strip(), "segments": segments, "policies": policies}


def apply_edit(doc: dict[str, Any], action: str) -> dict[str, Any]:
    """Structural edits of the editor's buttons (add or remove a part); the document is not saved."""
    parts = action.split(":")
    segs: list[dict[str, Any]] = doc.setdefault("segments", [])
    pols: list[dict[str, Any]] = doc.setdefault("policies", [])

    def idx(k: int, items: list[Any]) -> int | None:
        if len(parts) > k and parts[k].isdigit() and int(parts[k]) < len(items):
            return int(parts[k])
        return None

    blank = {"field": "device.seenForAccount", "operator": "equals", "value": False}
    kind = parts[0]
    if kind == "add-segment" and len(segs) < MAX_SEGMENTS:
        # New segments go before the last one, which stays the always-on default.
        segs.insert(
            max(0, len(segs) - 1),
            {
                "name": f"segment-{len(segs) + 1}",
                "conditions": [dict(blank)],
                "mfaEnabled": True,
                "policies": [],
            },
        )
    elif kind == "remove-segment" and (i := idx(1, segs)) is not None and len(segs) > 1:
        segs.pop(i)
    elif kind == "add-segment-condition" and (i := idx(1, segs)) is not None:
        segs[i].setdefault("conditions", []).append(dict(blank))
    elif kind == "remove-segment-condition" and (i := idx(1, segs)) is not None:
        conds = segs[i].setdefault("conditions", [])
        if (j := idx(2, conds)) is not None:
            conds.pop(j)
    elif kind == "add-policy" and len(pols) < MAX_POLICIES:
        pols.append(
            {
                "name": f"policy-{len(pols) + 1}",
                "conditions": [dict(blank)],
                "outcome": "CHALLENGE",
                "tags": [],
            }
        )
    elif kind == "remove-policy" and (i := idx(1, pols)) is not None:
        name = pols.pop(i).get("name")
        for s in segs:
            s["policies"] = [n for n in s.get("policies", []) if n != name]
    elif kind == "add-condition" and (i := idx(1, pols)) is not None:
        pols[i].setdefault("conditions", []).append(dict(blank))
    elif kind == "remove-condition" and (i := idx(1, pols)) is not None:
        conds = pols[i].setdefault("conditions", [])
        if (j := idx(2, conds)) is not None:
            conds.pop(j)
    elif kind == "add-tag" and (i := idx(1, pols)) is not None:
        pols[i].setdefault("tags", []).append({"name": "", "weight": 0})
    elif kind == "remove-tag" and (i := idx(1, pols)) is not None:
        tags = pols[i].setdefault("tags", [])
        if (j := idx(2, tags)) is not None:
            tags.pop(j)
    return doc


_LOCATION = re.compile(r"(segments|policies|conditions|tags)\[(\d+)\]")
_SEGMENT_LINK = re.compile(r"^segments\[(\d+)\]\.policies\[\d+\]$")


def form_key(location: str) -> str:
    """Where in the editor a compile error belongs: policies[1].conditions[0].field -> p1.c0.field."""
    letters = {"segments": "s", "policies": "p", "conditions": "c", "tags": "t"}
    # A segment's link to a policy belongs with the segment's checkboxes.
    location = _SEGMENT_LINK.sub(r"segments[\1].policies", location)
    key = _LOCATION.sub(lambda m: f"{letters[m.group(1)]}{m.group(2)}", location)
    return key
