"""A line-by-line diff of two policy-set documents (pure): each document as canonical JSON (keys sorted,
two-space indent), compared with difflib, grouped in hunks with three lines of context around each change.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["context", "added", "removed"]
CONTEXT_LINES = 3


@dataclass(frozen=True)
class Line:
    kind: Kind
    old: int | None  # the line's number in the first document (None for an added line)
    new: int | None  # and in the second (None for a removed line)
    text: str

    @property
    def marker(self) -> str:
        return {"context": " ", "added": "+", "removed": "−"}[self.kind]


@dataclass(frozen=True)
class Hunk:
    old_start: int
    old_end: int
    new_start: int
    new_end: int
    lines: tuple[Line, ...]


def canonical_lines(document: Any) -> list[str]:
    """The document as the diff reads it: JSON with sorted keys, two-space indent, one value per line."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def line_diff(a: Any, b: Any, context: int = CONTEXT_LINES) -> list[Hunk]:
    """The hunks that turn `a` into `b`; none when their canonical JSON is the same."""
    old, new = canonical_lines(a), canonical_lines(b)
    hunks: list[Hunk] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        lines: list[Line] = []
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [Line("context", i + 1, j1 + k + 1, old[i]) for k, i in enumerate(range(i1, i2))]
                continue
            if tag in ("replace", "delete"):
                lines += [Line("removed", i + 1, None, old[i]) for i in range(i1, i2)]
            if tag in ("replace", "insert"):
                lines += [Line("added", None, j + 1, new[j]) for j in range(j1, j2)]
        hunks.append(Hunk(group[0][1] + 1, group[-1][2], group[0][3] + 1, group[-1][4], tuple(lines)))
    return hunks


def unified(a: Any, b: Any, a_name: str = "a", b_name: str = "b") -> str:
    """The same comparison as unified diff text (what `diff -u` prints), for a download or a log."""
    return "\n".join(
        difflib.unified_diff(
            canonical_lines(a), canonical_lines(b), a_name, b_name, n=CONTEXT_LINES, lineterm=""
        )
    )
