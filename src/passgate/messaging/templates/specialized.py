"""`render_reusing`: `rendering.render` with each part's output kept and reused for the next message that
differs from it only in what the part prints as it is.

Most of a challenge message's render is the same from one message to the next: the brand, the host, the
locale and the lifetime repeat; what changes is the link or code, and perhaps the person's name. A part
is *specialisable* when the template uses each of those changing values (`SUBSTITUTED`: `link`, `code`,
`person.name.first`/`last`/`preferred`, `values.<key>`) only

- printed as it is, `{{ link }}`, or as the first true one of several, `{{ person.name.preferred or
  person.name.first }}` (no filter, no `~`, no test, no comparison), or
- tested for truth in an `{% if %}` (alone, or under `not`, `and`, `or`),

outside anything that captures or transforms output (`{% set %}` blocks, macros, `{% filter %}`, ...)
and never assigned (no `{% set link = ... %}` or `{% for person in ... %}`). For such a part, what the
render does depends on those values only through whether each is a non-empty string (the tests, and
which operand of an `or` is printed) and through the text each prints. So the part is rendered once per
distinct rest of the context with a sentinel in place of each non-empty changing value, split at the
sentinels, and each later message is the pieces joined with its own values (HTML-escaped in the HTML
part, as autoescaping would). Anything else, or a part that refers to those values any other way, is
rendered by `rendering.render`'s own path, which is also the judge: tests/unit/messaging/templates/
test_specialized.py compares the two on generated templates and contexts.

The budgets (`messaging.sandbox`) are per part; a reused part spends nothing of them. A value of
`_UNCOUNTED_OUTPUT` characters or more (whose printing a budget counts), or a result longer than the
part's output limit, goes the plain way, so that whatever the plain render refuses is refused the same.
"""

from __future__ import annotations

import functools
import re
import secrets
import threading
from collections.abc import Mapping
from typing import Any

from jinja2 import nodes
from markupsafe import escape

from passgate.messaging.sandbox import _UNCOUNTED_OUTPUT, OUTPUT_LIMITS, budget_scope
from passgate.messaging.templates.models import (
    PARTS_BY_CHANNEL,
    LocaleContent,
    MessageTemplate,
    RenderContext,
    RenderedMessage,
)
from passgate.messaging.templates.rendering import (
    _context_data,
    _environment,
    _one_line,
    _render_one,
)

__all__ = ["SUBSTITUTED", "render_reusing", "specialisable"]

Path = tuple[str, ...]
# The roots of the values a reused part may print: each message's own.
_ROOTS = frozenset({"link", "code", "person", "values"})
_NAME_KEYS = frozenset({"first", "last", "preferred"})
SUBSTITUTED = "link, code, person.name.first, person.name.last, person.name.preferred, values.<key>"
# Letters and digits only: HTML escaping leaves a sentinel as it is. Random per process, so no value a
# request sends can contain one.
_SENTINEL = "pgs" + secrets.token_hex(16)
_SENTINEL_SPLIT = re.compile(_SENTINEL + r"(\d{3})x")
_MAX_PATHS = 64  # sentinel numbers are three digits; a part printing more changing values goes the plain way
_CACHE_SIZE = 512  # distinct (part, context) kept
_ABSENT = object()
_CHANGING = object()  # in a key: a non-empty string, printed where the pieces leave a gap


class _NotSpecialisable(Exception):
    pass


def _path(node: nodes.Node) -> Path | None:
    """The changing value an expression reads as it is (`link`, `person.name.first`, `values["k"]`), or
    None if it is not one."""
    keys: list[str] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            keys.append(node.arg.value)
        else:
            return None
        node = node.node
    if not isinstance(node, nodes.Name) or node.ctx != "load":
        return None
    path = (node.name, *reversed(keys))
    if path in (("link",), ("code",)):
        return path
    if len(path) == 3 and path[:2] == ("person", "name") and path[2] in _NAME_KEYS:
        return path
    if len(path) == 2 and path[0] == "values":
        return path
    return None


def _refers(node: nodes.Node) -> bool:
    """Whether anything under `node` names a root of the changing values (read, assigned or a parameter)."""
    return any(name.name in _ROOTS for name in node.find_all(nodes.Name)) or (
        isinstance(node, nodes.Name) and node.name in _ROOTS
    )


def _printed(expr: nodes.Node, paths: set[Path]) -> None:
    """An expression an `{{ }}` prints: a changing value, `a or b or ...` of them, or one naming none."""
    if isinstance(expr, nodes.Or):
        operands = []
        todo: list[nodes.Node] = [expr]
        while todo:
            e = todo.pop()
            if isinstance(e, nodes.Or):
                todo += [e.right, e.left]
            else:
                operands.append(e)
        found = [_path(e) for e in operands]
        if all(p is not None for p in found):
            paths.update(p for p in found if p is not None)
            return
    else:
        path = _path(expr)
        if path is not None:
            paths.add(path)
            return
    if _refers(expr):
        raise _NotSpecialisable


def _tested(expr: nodes.Node, paths: set[Path]) -> None:
    """An `{% if %}`'s test: changing values tested for truth (under not/and/or), or naming none."""
    if isinstance(expr, nodes.Not):
        _tested(expr.node, paths)
    elif isinstance(expr, nodes.And | nodes.Or):
        _tested(expr.left, paths)
        _tested(expr.right, paths)
    else:
        path = _path(expr)
        if path is not None:
            paths.add(path)
        elif _refers(expr):
            raise _NotSpecialisable


def _statements(body: list[nodes.Node], paths: set[Path]) -> None:
    for node in body:
        if isinstance(node, nodes.Output):
            for expr in node.nodes:
                if not isinstance(expr, nodes.TemplateData):
                    _printed(expr, paths)
        elif isinstance(node, nodes.If):
            _tested(node.test, paths)
            _statements(node.body, paths)
            _statements(list(node.elif_), paths)
            _statements(node.else_, paths)
        elif isinstance(node, nodes.For):
            if any(_refers(n) for n in (node.target, node.iter) if n is not None) or (
                node.test is not None and _refers(node.test)
            ):
                raise _NotSpecialisable
            _statements(node.body, paths)
            _statements(node.else_, paths)
        elif _refers(node):
            # Anything else (assignments, macros, call and filter blocks, ...) may capture, transform or
            # rebind what it names: it must name none of the changing values.
            raise _NotSpecialisable


@functools.lru_cache(maxsize=1024)
def specialisable(source: str, html: bool) -> tuple[Path, ...] | None:
    """The changing values a part's template prints or tests, if it uses them only as the module says,
    in a fixed order; None if it is not specialisable (or does not parse: the plain render reports it)."""
    try:
        tree = _environment("html" if html else "text").parse(source)
        paths: set[Path] = set()
        _statements(tree.body, paths)
    except _NotSpecialisable:
        return None
    except Exception:  # a syntax error: the plain render raises it, with its own words
        return None
    if len(paths) > _MAX_PATHS:
        return None
    return tuple(sorted(paths))


def _value(data: Mapping[str, Any], path: Path) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return _ABSENT
        value = value[key]
    return value


def _replaced(data: Mapping[str, Any], replacements: Mapping[Path, Any]) -> dict[str, Any]:
    """A copy of `data` with the values at `replacements`' paths replaced (the dicts on the way copied)."""
    out = dict(data)
    for path, new in replacements.items():
        node = out
        for key in path[:-1]:
            node[key] = node = dict(node[key])
        node[path[-1]] = new
    return out


def _rest(data: Mapping[str, Any]) -> tuple[Any, ...]:
    """The context less the roots of its changing values, as a key (dicts in their order: the same
    context built twice is built in the same order, and a different order only misses)."""
    return tuple((k, _frozen_ordered(v)) for k, v in data.items() if k not in _ROOTS)


def _frozen_ordered(value: Any) -> Any:
    if type(value) is str:
        return value
    if type(value) is dict:
        return tuple((k, _frozen_ordered(v)) for k, v in value.items())
    return (type(value), value)


def _frozen(value: Any) -> Any:
    if value is _ABSENT:
        return value
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in sorted(value.items()))
    if isinstance(value, str):
        return value
    return (type(value), value)  # 1, 1.0 and True are equal, and print differently


class _Pieces:
    """Kept renders: for a (part, context less its changing values), the text between the printed values
    and which value goes in each gap."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._kept: dict[Any, tuple[tuple[str, ...], tuple[int, ...]]] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Any) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
        return self._kept.get(key)

    def put(self, key: Any, value: tuple[tuple[str, ...], tuple[int, ...]]) -> None:
        with self._lock:
            while len(self._kept) >= self.size:
                self._kept.pop(next(iter(self._kept)))
            self._kept[key] = value

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


PIECES = _Pieces(_CACHE_SIZE)


def _reused(
    template: MessageTemplate,
    chosen: str,
    content: LocaleContent,
    source: str,
    part: str,
    data: dict[str, Any],
    paths: tuple[Path, ...],
    rest: Any,
    budget: Any,
) -> str | None:
    """The part from kept pieces (rendered with sentinels if not kept yet), or None: render it plainly."""
    values = [_value(data, path) for path in paths]
    changing: dict[Path, str] = {}
    for path, value in zip(paths, values, strict=True):
        if isinstance(value, str) and value:
            if len(value) >= _UNCOUNTED_OUTPUT:
                return None
            changing[path] = value
    # The part reads the changing values' roots only at `paths` (`specialisable`): the key is the rest
    # of the context, and at each path whether the value is a non-empty string, or else what it is.
    key = (
        source,
        part,
        rest,
        tuple(
            _CHANGING if path in changing else _frozen(value)
            for path, value in zip(paths, values, strict=True)
        ),
    )
    kept = PIECES.get(key)
    if kept is None:
        PIECES.misses += 1
        sentinels = {p: f"{_SENTINEL}{i:03d}x" for i, p in enumerate(paths) if p in changing}
        try:
            out = _render_one(template, chosen, content, part, _replaced(data, sentinels), budget)
        except Exception:  # over a budget with the sentinels, say: the plain render decides
            return None
        split = _SENTINEL_SPLIT.split(out)
        kept = (tuple(split[0::2]), tuple(int(i) for i in split[1::2]))
        PIECES.put(key, kept)
    else:
        PIECES.hits += 1
    pieces, gaps = kept
    if len(pieces) == 1:
        return pieces[0]
    # Only a non-empty changing value was a sentinel, so only those fill gaps.
    printed = {i: str(escape(values[i])) for i in set(gaps)} if part == "html" else values
    chunks = [pieces[0]]
    for gap, piece in zip(gaps, pieces[1:], strict=True):
        chunks.append(printed[gap])
        chunks.append(piece)
    out = "".join(chunks)
    if len(out) > OUTPUT_LIMITS.get(part, len(out)):
        return None
    return out


def render_reusing(template: MessageTemplate, locale: str, context: RenderContext) -> RenderedMessage:
    """`rendering.render`, the same message, with specialisable parts reused (see the module)."""
    chosen = locale if locale in template.locales else template.default_locale
    content = template.locales[chosen]
    data = _context_data(context, chosen)
    rest: Any = None  # the key's part for the context less its changing values, made when first needed
    rendered: dict[str, str] = {}
    with budget_scope() as budget:
        for part in PARTS_BY_CHANNEL[template.channel]:
            source = getattr(content, part)
            paths = specialisable(source, part == "html") if source is not None else None
            out = None
            if paths is not None:
                if rest is None:
                    rest = _rest(data)
                out = _reused(template, chosen, content, source, part, data, paths, rest, budget)
            if out is None:
                out = _render_one(template, chosen, content, part, data, budget)
            rendered[part] = out
    if "subject" in rendered:
        rendered["subject"] = _one_line(rendered["subject"])
    return RenderedMessage(channel=template.channel, locale=chosen, **rendered)
