"""The decision engine (pure): a compiled policy set plus request facts give a decision.

A set compiles once per published version; evaluation only runs already-compiled CEL programs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cel

from passgate.policy.conditions import ConditionError, compile_condition, conjunction
from passgate.policy.schemas import Condition, PolicySetDocument


class PolicyCompileError(ValueError):
    """A set that cannot be compiled; `location` is a JSON-pointer-like path such as policies[2].cel."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


@dataclass(frozen=True)
class CompiledPolicy:
    name: str
    outcome: str
    tags: tuple[tuple[str, int], ...]
    source: str
    program: Any
    variables: frozenset[str]


@dataclass(frozen=True)
class CompiledSegment:
    name: str
    mfa_enabled: bool
    source: str
    program: Any | None  # None: always matches (the default segment)
    policies: tuple[CompiledPolicy, ...]


@dataclass(frozen=True)
class CompiledSet:
    name: str
    version_name: str
    segments: tuple[CompiledSegment, ...]
    variables: frozenset[str]

    def needs(self, root: str) -> bool:
        """Whether any condition reads the fact `root` (signals are computed only when needed)."""
        return root in self.variables


@dataclass
class Outcome:
    decision: str
    segment: str
    mfa_enabled: bool
    tags: list[str] = field(default_factory=list)
    tag_weights: list[dict[str, Any]] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)


def _compile_conditions(conds: list[Condition], raw: str | None, where: str) -> str:
    parts: list[str] = []
    for i, c in enumerate(conds):
        try:
            parts.append(compile_condition(c.field, c.operator, c.value))
        except ConditionError as exc:
            raise PolicyCompileError(f"{where}.conditions[{i}].{exc.where}", exc.message) from exc
    if raw is not None and raw.strip():
        parts.append(raw)
    return conjunction(parts)


def _cel(source: str, where: str) -> Any:
    try:
        return cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        raise PolicyCompileError(where, str(exc)) from exc


def _variables(program: Any) -> frozenset[str]:
    try:
        return frozenset(str(v).split(".")[0] for v in program.variables())
    except Exception:  # an older binding without introspection: assume everything is needed
        return frozenset({"*"})


def compile_set(doc: PolicySetDocument, version_name: str) -> CompiledSet:
    policies: dict[str, CompiledPolicy] = {}
    variables: set[str] = set()
    for i, p in enumerate(doc.policies):
        where = f"policies[{i}]"
        if p.name in policies:
            raise PolicyCompileError(f"{where}.name", f"duplicate policy name {p.name!r}")
        src = _compile_conditions(p.conditions, p.cel, where)
        prog = _cel(src, f"{where}.cel" if p.cel else f"{where}.conditions")
        pvars = _variables(prog)
        variables |= pvars
        policies[p.name] = CompiledPolicy(
            name=p.name,
            outcome=p.outcome,
            tags=tuple((t.name, t.weight) for t in p.tags),
            source=src,
            program=prog,
            variables=pvars,
        )
    segments: list[CompiledSegment] = []
    seen: set[str] = set()
    last = len(doc.segments) - 1
    for i, s in enumerate(doc.segments):
        where = f"segments[{i}]"
        if s.name in seen:
            raise PolicyCompileError(f"{where}.name", f"duplicate segment name {s.name!r}")
        seen.add(s.name)
        if i == last and (s.conditions or (s.cel and s.cel.strip())):
            raise PolicyCompileError(
                f"{where}.conditions", "the last segment is the default and must have no conditions"
            )
        linked: list[CompiledPolicy] = []
        for j, pname in enumerate(s.policies):
            if pname not in policies:
                raise PolicyCompileError(f"{where}.policies[{j}]", f"no policy named {pname!r}")
            linked.append(policies[pname])
        program = None
        src = "true"
        if i != last:
            src = _compile_conditions(s.conditions, s.cel, where)
            program = _cel(src, f"{where}.cel" if s.cel else f"{where}.conditions")
            variables |= _variables(program)
        segments.append(CompiledSegment(s.name, s.mfaEnabled, src, program, tuple(linked)))
    return CompiledSet(doc.name, version_name, tuple(segments), frozenset(variables))


def run(program: Any, facts: dict[str, Any]) -> bool:
    """A condition that cannot be evaluated on these facts (type mismatch, absent key) does not hold."""
    try:
        return program.execute(facts) is True
    except Exception:
        return False


_RANK = {"NO_CHANGE": 0, "CHALLENGE": 1, "BLOCK": 2}
_DECISION = {0: "ALLOW", 1: "CHALLENGE", 2: "BLOCK"}


def evaluate(compiled: CompiledSet, facts: dict[str, Any]) -> Outcome:
    segment = compiled.segments[-1]
    for s in compiled.segments:
        if s.program is None or run(s.program, facts):
            segment = s
            break
    rank = 0
    tags: dict[str, int] = {}
    matched: list[str] = []
    for p in segment.policies:
        if run(p.program, facts):
            matched.append(p.name)
            rank = max(rank, _RANK[p.outcome])
            for name, weight in p.tags:
                tags[name] = tags.get(name, 0) + weight
    return Outcome(
        decision=_DECISION[rank],
        segment=segment.name,
        mfa_enabled=segment.mfa_enabled,
        tags=list(tags),
        tag_weights=[{"name": k, "weight": v} for k, v in tags.items()],
        matched=matched,
    )
