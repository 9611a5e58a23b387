"""The decision engine (pure): a compiled policy set plus request facts give a decision.

A set compiles once per published version. Each policy and segment compiles to one CEL program (its
conditions' guarded CEL AND-ed with its raw `cel`): that program is the reference semantics and serves
simulation. The compiled set knows every field path it reads (each condition's field, list checks
included, and the member chains of every program) and from them the signals a decision computes
(`fields.SignalPlan`). Deciding (`evaluate`) runs the structured conditions as native predicates
(`conditions.native_condition`) and only the raw `cel` through CEL; `evaluate_cel` is the all-CEL
evaluation it must agree with, and `reference` the plain path the whole decision is tested against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import cel

from passgate.policy.conditions import (
    LIST_OPERATORS,
    ConditionError,
    Predicate,
    compile_condition,
    conjunction,
    native_condition,
    normalise_operator,
)
from passgate.policy.fields import SignalPlan, lookup
from passgate.policy.schemas import Condition, PolicySetDocument

_LIST_REF = re.compile(r'inList\["([^"|]+)\|([^"]+)"\]')


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
    # What `evaluate` runs: every native condition holds, and the raw CEL program (if any) runs true.
    conditions: tuple[Predicate, ...] = ()
    raw: Any | None = None


@dataclass(frozen=True)
class CompiledSegment:
    name: str
    mfa_enabled: bool
    source: str
    program: Any | None  # None: always matches (the default segment)
    policies: tuple[CompiledPolicy, ...]
    conditions: tuple[Predicate, ...] = ()
    raw: Any | None = None


@dataclass(frozen=True)
class CompiledSet:
    name: str
    version_name: str
    segments: tuple[CompiledSegment, ...]
    variables: frozenset[str]
    # Every field path a condition, a list check or raw CEL reads (a root alone: read whole), and the
    # signals a decision computes for them: exactly those.
    reads: frozenset[str] = frozenset({"*"})
    signals: SignalPlan = field(default_factory=SignalPlan.everything)
    document: PolicySetDocument | None = None
    # Per fact root, the members the set reads (see `read_shapes`); a root absent here is read whole.
    shapes: dict[str, Shape] = field(default_factory=dict)
    # The same for the raw CEL programs alone: the only CEL that `evaluate` runs.
    raw_variables: frozenset[str] = frozenset()
    raw_shapes: dict[str, Shape] = field(default_factory=dict)

    @property
    def list_refs(self) -> tuple[tuple[str, str], ...]:
        """(field, list name) of every list check."""
        return self.signals.lists


# A tree of the members read below a fact: {member: subtree}; None means "the whole value".
Shape = dict[str, "Shape | None"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CHAIN = re.compile(rf"(?<![\w.])\s*({_IDENT})((?:\s*\.\s*{_IDENT})*)(\s*\()?")


def read_shapes(sources: list[str], roots: frozenset[str]) -> dict[str, Shape]:
    """Which members of each fact root the CEL sources read, so only those are converted to CEL values
    (the conversion is most of an evaluation's cost; a value of ten fields costs ten times one).

    Conservative: a root used in any way other than a plain member chain (`x[...]`, `size(x)`,
    `x.exists(...)`, `x == y`) is read whole, and a chain ending in a call (`x.a.startsWith(...)`) reads
    `x.a` whole. Text inside string literals can only add members, never drop one.
    """
    shapes: dict[str, Shape | None] = {}
    for src in sources:
        for m in _CHAIN.finditer(src):
            root = m.group(1)
            if root not in roots or shapes.get(root, {}) is None:
                continue
            chain = [part.strip() for part in m.group(2).split(".")[1:]]
            if m.group(3):  # a call: the last name is the method, the value before it is read whole
                chain = chain[:-1]
            if not chain:
                shapes[root] = None
                continue
            node = shapes.setdefault(root, {})
            for depth, part in enumerate(chain):
                assert node is not None
                if depth == len(chain) - 1:
                    node[part] = None
                    break
                child = node.get(part, {})
                if child is None:
                    break
                node[part] = child
                node = child
    return {root: shape for root, shape in shapes.items() if shape is not None}


def shape_paths(roots: frozenset[str], shapes: dict[str, Shape]) -> set[str]:
    """The field paths that CEL reading `roots` with these shapes reads: one per leaf, or the root alone
    where it is read whole."""
    out: set[str] = set()

    def walk(prefix: str, shape: Shape | None) -> None:
        if not shape:
            out.add(prefix)
            return
        for member, sub in shape.items():
            walk(f"{prefix}.{member}", sub)

    for root in roots:
        walk(root, shapes.get(root))
    return out


def project(value: Any, shape: Shape | None) -> Any:
    if shape is None or not isinstance(value, dict):
        return value
    return {k: project(value[k], sub) for k, sub in shape.items() if k in value}


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


@dataclass(frozen=True)
class _Native:
    conditions: tuple[Predicate, ...]
    raw: Any | None
    raw_source: str | None


def _native(conds: list[Condition], raw: str | None, source: str, program: Any) -> _Native:
    """How `evaluate` runs a policy or segment whose whole CEL `source` compiled to `program`: its
    conditions as native predicates, its raw CEL (if any) as a program of its own. The conjunction holds
    exactly when every part evaluates to true, so the parts may run separately."""
    predicates = tuple(native_condition(c.field, c.operator, c.value) for c in conds)
    if raw is None or not raw.strip():
        return _Native(predicates, None, None)
    if not conds:
        return _Native((), program, source)  # the whole program is the raw CEL
    try:
        raw_program = cel.compile(raw)
    except Exception:
        # Raw CEL that is no expression alone (`false) || (true`) compiled inside the conjunction, with the
        # meaning it has there: keep that meaning by running the whole program through CEL.
        return _Native((), program, source)
    return _Native(predicates, raw_program, raw)


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
    raw_sources: list[str] = []
    raw_variables: set[str] = set()

    def native(conds: list[Condition], raw: str | None, source: str, program: Any) -> _Native:
        out = _native(conds, raw, source, program)
        if out.raw_source is not None:
            raw_sources.append(out.raw_source)
            raw_variables.update(_variables(out.raw))
        return out

    for i, p in enumerate(doc.policies):
        where = f"policies[{i}]"
        if p.name in policies:
            raise PolicyCompileError(f"{where}.name", f"duplicate policy name {p.name!r}")
        src = _compile_conditions(p.conditions, p.cel, where)
        prog = _cel(src, f"{where}.cel" if p.cel else f"{where}.conditions")
        pvars = _variables(prog)
        variables |= pvars
        run_as = native(p.conditions, p.cel, src, prog)
        policies[p.name] = CompiledPolicy(
            name=p.name,
            outcome=p.outcome,
            tags=tuple((t.name, t.weight) for t in p.tags),
            source=src,
            program=prog,
            variables=pvars,
            conditions=run_as.conditions,
            raw=run_as.raw,
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
        run_as = _Native((), None, None)
        if i != last:
            src = _compile_conditions(s.conditions, s.cel, where)
            program = _cel(src, f"{where}.cel" if s.cel else f"{where}.conditions")
            variables |= _variables(program)
            run_as = native(s.conditions, s.cel, src, program)
        segments.append(
            CompiledSegment(s.name, s.mfaEnabled, src, program, tuple(linked), run_as.conditions, run_as.raw)
        )
    sources = [p.source for p in policies.values()] + [s.source for s in segments]
    shapes = read_shapes(sources, frozenset(variables))
    # What the set reads: each condition's field (a list check reads its field, though its CEL reads
    # only `inList`), and what every program reads, from its variables and their member chains.
    reads = {c.field for p in doc.policies for c in p.conditions}
    reads |= {c.field for s in doc.segments for c in s.conditions}
    reads |= shape_paths(frozenset(variables), shapes)
    refs = {(m[0], m[1]) for src in sources for m in _LIST_REF.findall(src)}
    return CompiledSet(
        doc.name,
        version_name,
        tuple(segments),
        frozenset(variables),
        reads=frozenset(reads),
        signals=SignalPlan.reading(reads, refs),
        document=doc,
        shapes=shapes,
        raw_variables=frozenset(raw_variables),
        raw_shapes=read_shapes(raw_sources, frozenset(raw_variables)),
    )


def check_raw_cel(doc: PolicySetDocument) -> None:
    """Save-time rule: a raw `cel` must be an expression on its own. Inside the conjunction with the
    conditions, text such as `false) || (true` would compile too and quietly override them."""
    groups = [(f"policies[{i}]", p.cel, bool(p.conditions)) for i, p in enumerate(doc.policies)]
    groups += [(f"segments[{i}]", s.cel, bool(s.conditions)) for i, s in enumerate(doc.segments)]
    for where, raw, with_conditions in groups:
        if raw is None or not raw.strip() or not with_conditions:
            continue  # alone, the raw CEL was compiled as it is by compile_set
        try:
            cel.compile(raw)
        except (ValueError, RuntimeError) as exc:
            raise PolicyCompileError(f"{where}.cel", f"not an expression on its own: {exc}") from exc


def referenced_lists(doc: PolicySetDocument) -> set[tuple[str, str]]:
    """(location, list name) of every list check, to check the lists exist before publishing."""
    out: set[tuple[str, str]] = set()
    groups = [(f"policies[{i}]", p.conditions) for i, p in enumerate(doc.policies)]
    groups += [(f"segments[{i}]", s.conditions) for i, s in enumerate(doc.segments)]
    for where, conds in groups:
        for j, c in enumerate(conds):
            try:
                op = normalise_operator(c.operator)
            except ConditionError:
                continue
            if op in LIST_OPERATORS and isinstance(c.value, str):
                out.add((f"{where}.conditions[{j}].value", c.value))
    return out


def run(program: Any, facts: Any) -> bool:
    """A condition that cannot be evaluated on these facts (type mismatch, absent key) does not hold."""
    try:
        return program.execute(facts) is True
    except Exception:
        return False


def context_for(compiled: CompiledSet, facts: dict[str, Any]) -> Any:
    """A CEL context holding only the facts the set reads. Converting Python values to CEL values is the
    costly part of an evaluation, so it is done once per request, not once per program."""
    return _context(compiled.variables, compiled.shapes, facts)


def raw_context_for(compiled: CompiledSet, facts: dict[str, Any]) -> Any:
    """A CEL context holding only the facts the set's raw CEL reads (all `evaluate` hands to CEL)."""
    return _context(compiled.raw_variables, compiled.raw_shapes, facts)


def _context(variables: frozenset[str], shapes: dict[str, Shape], facts: dict[str, Any]) -> Any:
    ctx = cel.Context()
    if "*" in variables:
        for name, value in facts.items():
            ctx.add_variable(name, value)
        return ctx
    for name in variables:
        if name in facts:
            ctx.add_variable(name, project(facts[name], shapes.get(name)))
    return ctx


_RANK = {"NO_CHANGE": 0, "CHALLENGE": 1, "BLOCK": 2}
_DECISION = {0: "ALLOW", 1: "CHALLENGE", 2: "BLOCK"}


def evaluate(compiled: CompiledSet, facts: dict[str, Any]) -> Outcome:
    """The decision: structured conditions run natively, raw CEL through CEL on a context that is built
    only once a raw program is reached. Agrees with `evaluate_cel` on every input.

    The segment loop and the policy loop test a condition list the same way, written out twice on
    purpose: a shared `holds()` closure measured about 10 us slower per 25-policy decision."""
    ctx: Any = None
    segment = compiled.segments[-1]
    for s in compiled.segments:
        if s.program is None:
            segment = s
            break
        for condition in s.conditions:
            if not condition(facts):
                break
        else:
            if s.raw is None:
                segment = s
                break
            if ctx is None:
                ctx = raw_context_for(compiled, facts)
            if run(s.raw, ctx):
                segment = s
                break
    matched: list[CompiledPolicy] = []
    for p in segment.policies:
        for condition in p.conditions:
            if not condition(facts):
                break
        else:
            if p.raw is None:
                matched.append(p)
                continue
            if ctx is None:
                ctx = raw_context_for(compiled, facts)
            if run(p.raw, ctx):
                matched.append(p)
    return _outcome(segment, matched)


def evaluate_cel(compiled: CompiledSet, facts: dict[str, Any]) -> Outcome:
    """The reference evaluation: every policy and segment as its one CEL program, on one context."""
    ctx = context_for(compiled, facts)
    segment = compiled.segments[-1]
    for s in compiled.segments:
        if s.program is None or run(s.program, ctx):
            segment = s
            break
    return _outcome(segment, [p for p in segment.policies if run(p.program, ctx)])


def _outcome(segment: CompiledSegment, matched: list[CompiledPolicy]) -> Outcome:
    rank = 0
    tags: dict[str, int] = {}
    for p in matched:
        rank = max(rank, _RANK[p.outcome])
        for name, weight in p.tags:
            tags[name] = tags.get(name, 0) + weight
    return Outcome(
        decision=_DECISION[rank],
        segment=segment.name,
        mfa_enabled=segment.mfa_enabled,
        tags=list(tags),
        tag_weights=[{"name": k, "weight": v} for k, v in tags.items()],
        matched=[p.name for p in matched],
    )


def explain(compiled: CompiledSet, facts: dict[str, Any]) -> dict[str, Any]:
    """The decision with its reasons: each segment's match, and every policy of the chosen segment with
    each condition's actual value and result. Compiles the single conditions on the fly (simulation only)."""
    doc = compiled.document
    assert doc is not None, "explain needs the compiled set's document"
    outcome = evaluate(compiled, facts)
    policies_by_name = {p.name: p for p in doc.policies}

    def conditions(conds: list[Condition]) -> list[dict[str, Any]]:
        out = []
        for c in conds:
            program = cel.compile(compile_condition(c.field, c.operator, c.value))
            out.append(
                {
                    "field": c.field,
                    "operator": c.operator,
                    "value": c.value,
                    "actual": lookup(facts, c.field),
                    "result": run(program, facts),
                }
            )
        return out

    def raw(src: str | None) -> dict[str, Any] | None:
        if not src or not src.strip():
            return None
        return {"expression": src, "result": run(cel.compile(src), facts)}

    segments = []
    for i, seg in enumerate(doc.segments):
        last = i == len(doc.segments) - 1
        matched = last or run(compiled.segments[i].program, facts)
        segments.append(
            {
                "name": seg.name,
                "default": last,
                "matched": matched,
                "chosen": seg.name == outcome.segment,
                "conditions": conditions(seg.conditions),
                "cel": raw(seg.cel),
            }
        )
        if seg.name == outcome.segment:
            break
    chosen = next(s for s in doc.segments if s.name == outcome.segment)
    policies = []
    for name in chosen.policies:
        p = policies_by_name[name]
        policies.append(
            {
                "name": p.name,
                "outcome": p.outcome,
                "matched": name in outcome.matched,
                "tags": [t.model_dump() for t in p.tags],
                "conditions": conditions(p.conditions),
                "cel": raw(p.cel),
            }
        )
    return {
        "decision": outcome.decision,
        "userSegment": outcome.segment,
        "mfaEnabled": outcome.mfa_enabled,
        "tags": outcome.tags,
        "tagWeights": outcome.tag_weights,
        "segments": segments,
        "policies": policies,
    }


def not_evaluated(compiled: CompiledSet, segment: str) -> dict[str, Any]:
    """What `explain` leaves out once `segment` is chosen, as the set defines it (no actual values, since
    nothing of it ran): the segments after the chosen one, and the policies the chosen segment does not
    list, each with the segments that do list it."""
    doc = compiled.document
    assert doc is not None, "not_evaluated needs the compiled set's document"
    names = [s.name for s in doc.segments]
    after = names.index(segment) + 1 if segment in names else len(names)
    chosen = set(doc.segments[after - 1].policies) if segment in names else set()

    def conditions(conds: list[Condition]) -> list[dict[str, Any]]:
        return [{"field": c.field, "operator": c.operator, "value": c.value} for c in conds]

    segments = [
        {
            "name": s.name,
            "default": i == len(doc.segments) - 1,
            "conditions": conditions(s.conditions),
            "cel": s.cel if s.cel and s.cel.strip() else None,
            "policies": list(s.policies),
        }
        for i, s in enumerate(doc.segments)
        if i >= after
    ]
    policies = [
        {
            "name": p.name,
            "outcome": p.outcome,
            "segments": [s.name for s in doc.segments if p.name in s.policies],
            "tags": [t.model_dump() for t in p.tags],
            "conditions": conditions(p.conditions),
            "cel": p.cel if p.cel and p.cel.strip() else None,
        }
        for p in doc.policies
        if p.name not in chosen
    ]
    return {"segments": segments, "policies": policies}
