"""The save-time bounds (template_bounds) against the sandbox's own counts, on generated templates.

The bounds are a shortcut: they decide, without rendering, that no request can take a template over a
budget. The judge is the plain path, rendering, with the sandbox counting every iteration, call, unit of
work and character. For many generated templates and requests (random ones, and the largest allowed),
what a render uses must never exceed what the bounds said, and a template the bounds accept must never
go over a budget."""

import random

import pytest

from passgate.messaging import sandbox, template_bounds
from passgate.messaging.templates import (
    Brand,
    PersonName,
    RenderContext,
    _compile,
    _context_data,
    _environment,
    clean_template_values,
)

ATOMS = [
    "values.a", "values.b", "values.n", "values['c']", "person.name.first", "person.name.last",
    "brand.companyName", "brand.supportUrl", "link", "code", "host", "locale", "dir", "'ab'", "'x-y'",
    "''", "3", "12", "expiresInMinutes", "values.missing",
]  # fmt: skip
NUMBERS = ["3", "12", "expiresInMinutes", "(values.n|int)", "(values.a|length)", "2"]
UNARY = ["|upper", "|lower", "|title", "|trim", "|length", "|list", "|reverse", "|e", "|urlencode",
         "|string", "|first", "|last", "|sort", "|unique", "|wordcount", "|striptags", "|capitalize",
         "|default('d')", "|truncate(9)", "|int", "|abs", "|float", "|round", "|count"]  # fmt: skip


class Generator:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names: list[str] = []
        self.macros: list[str] = []
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def expr(self, depth: int = 0) -> str:
        r = self.rng
        if depth > 2 or r.random() < 0.3:
            return r.choice(ATOMS + self.names)
        kind = r.randrange(13)
        a = self.expr(depth + 1)
        if kind == 0:
            return f"({a}){r.choice(UNARY)}"
        if kind == 1:
            return f"({a} ~ {self.expr(depth + 1)})"
        if kind == 2:
            return f"({a} * {r.choice(NUMBERS)})"
        if kind == 3:
            return f"({r.choice(NUMBERS)} + {r.choice(NUMBERS)})"
        if kind == 4:
            return f"({a})|join({self.expr(depth + 1)})"
        if kind == 5:
            return f"({a})|replace({r.choice(['a', '', 'x', '-'])!r}, {self.expr(depth + 1)})"
        if kind == 6:
            return f"[{a}, {self.expr(depth + 1)}]"
        if kind == 7:
            return f"({a})[1:]"
        if kind == 8:
            return f"({a} if {self.expr(depth + 1)} == {self.expr(depth + 1)} else {self.expr(depth + 1)})"
        if kind == 9:
            return f"({r.choice(NUMBERS)} ** {r.choice(['2', '3', '8'])})"
        if kind == 10 and self.macros:
            return f"{r.choice(self.macros)}({a})"
        if kind == 11:
            return f"({a} + {self.expr(depth + 1)})"
        return f"({a} is {r.choice(['lower', 'string', 'defined', 'in(values.b)'])})"

    def body(self, depth: int = 0, size: int = 4) -> str:
        r = self.rng
        out = []
        for _ in range(r.randint(1, size)):
            kind = r.randrange(9) if depth < 3 else 0
            if kind in (0, 1):
                out.append(r.choice(["text ", "<p>", "\n", "{{ " + self.expr() + " }}"]))
            elif kind == 2:
                var = self.fresh("v")
                source = r.choice(["values.a", "values", "values|dictsort", "'abc'", "[1, 2, 3]", "person.name",
                                   self.expr()])  # fmt: skip
                self.names.append(var)
                inner = self.body(depth + 1, 3)
                self.names.remove(var)
                extra = r.choice(["", "{{ loop.index }}", "{{ loop.length }}"])
                cond = r.choice(["", f" if {var}"])
                out.append(f"{{% for {var} in {source}{cond} %}}{inner}{extra}{{% else %}}none{{% endfor %}}")
            elif kind == 3:
                out.append(f"{{% if {self.expr()} %}}{self.body(depth + 1, 3)}{{% else %}}"
                           f"{self.body(depth + 1, 3)}{{% endif %}}")  # fmt: skip
            elif kind == 4:
                var = self.fresh("s")
                out.append(f"{{% set {var} = {self.expr()} %}}")
                self.names.append(var)
            elif kind == 5:
                var = self.fresh("b")
                out.append(f"{{% set {var} %}}{self.body(depth + 1, 3)}{{% endset %}}")
                self.names.append(var)
            elif kind == 6 and depth == 0:
                name = self.fresh("m")
                saved, self.names = self.names, ["p"]
                inner = self.body(depth + 1, 3)
                self.names = saved
                out.append(f"{{% macro {name}(p, q='d') %}}{inner}{{{{ q }}}}{{% endmacro %}}")
                self.macros.append(name)
            elif kind == 7:
                out.append(f"{{% filter {r.choice(['upper', 'trim', 'e'])} %}}{self.body(depth + 1, 2)}"
                           "{% endfilter %}")  # fmt: skip
            else:
                out.append("{{ " + self.expr() + " }}")
        return "".join(out)


def requests(rng: random.Random) -> list[RenderContext]:
    """Random requests, and the largest each field allows."""

    def value() -> str:
        return rng.choice(["", "a", "9" * rng.randint(1, 40), "x" * rng.randint(0, 256), "é<&>'\"" * 20,
                           "\U0001f600" * rng.randint(0, 60)])  # fmt: skip

    out = []
    for largest in (False, False, True):
        if largest:
            values = {k: "9" * 256 for k in ("a", "b", "n", "c")}
            values.update({f"k{i:062d}": "z" * 256 for i in range(16)})
            person = PersonName(first="F" * 256, last="L" * 256, preferred="P" * 256)
            brand = Brand(company_name="C" * 100, support_url="https://" + "s" * 2040)
            link = "https://" + "h" * 189 + "/v/" + "T" * 43
        else:
            values = {k: value() for k in ("a", "b", "n", "c") if rng.random() < 0.8}
            person = PersonName(first=value() or None, last=value() or None)
            brand = Brand(company_name="Acme" * rng.randint(1, 25))
            link = "https://passgate.example.com/v/" + "T" * 43
        out.append(RenderContext(brand=brand, host="h" * 253 if largest else "passgate.example.com",
                                 expires_in_minutes=10080 if largest else 10, link=link,
                                 code="1234567890", person=person,
                                 values=clean_template_values(values)))  # fmt: skip
    return out


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # Python's, on generated code such as 3[1:]
@pytest.mark.parametrize("seed", range(8))
def test_renders_never_use_more_than_the_save_time_bounds(seed):
    rng = random.Random(seed)
    accepted = checked = 0
    for _ in range(60):
        part = rng.choice(["html", "text", "subject", "sms"])
        source = Generator(rng).body()
        try:
            tree = _environment(part).parse(source)
            template = _compile(source, part == "html")
        except Exception:
            continue  # a generated template that does not even compile
        analysis = template_bounds.analyse(tree, part)
        if analysis.problems:
            continue
        accepted += 1
        bound = analysis.total
        for context in requests(rng):
            budget = sandbox.Budget(seconds=60, part=part)  # the counts are judged here, not the clock
            try:
                output = sandbox.render_budgeted(template, part, _context_data(context, "en"), budget)
            except sandbox.BudgetExceeded as exc:
                raise AssertionError(f"accepted, yet over budget ({exc}):\n{source}") from exc
            except Exception:
                continue  # the template's own error (say, "a" + 1): the sample render refuses it at save
            used = budget.used
            checked += 1
            assert used["iterations"] <= bound.iterations, source
            assert used["calls"] <= bound.calls, source
            assert used["work"] <= bound.work, (used, bound, source)
            assert used["long_prints"] <= bound.long_prints, (used, bound, source)
            assert len(output) <= bound.output, (len(output), bound, source)
    assert accepted >= 15 and checked >= 30, (accepted, checked)  # the test exercised something
