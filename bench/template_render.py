#!/usr/bin/env python3
"""What the template budgets cost, and what handing a render to a pool costs, in one process.

1. render: the built-in email-link, email-code and sms-code templates (English, sample values) rendered
   by `passgate.messaging.templates.render` — the sandbox with its budgets — against the same templates
   compiled by the same sandbox without its budgets (Jinja's own code generator, operators, calls,
   filters and joins) and rendered as `render` did before budgets existed. The two alternate in
   rounds for --duration seconds; each figure is the best round's CPU time per render (time.process_time:
   time spent waiting for a core does not count), and the ratio budgeted ÷ plain is the number to track;
2. hand-off: one email-link render run inline, in the render pool (passgate.messaging.render_pool, a
   thread) and in a one-process ProcessPoolExecutor, one after the other, as wall time per render;
3. save: validate_template of email-link (five locales, three parts each: parse, checks, the bound for
   every request, compile, a sample render), and the bound alone;
4. refusal: the security review's payloads saved (validate_template) and rendered, each timed once.

No servers, no database. Target: budgeted ÷ plain below 2 (a budget check that doubles the render cost
would want rethinking).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from _common import HelpFormatter, interrupt_guard, progress, table, write_result

NAME = "template_render"
TEMPLATES = ("email-link", "email-code", "sms-code")
HOSTILE = {
    "power tower": "{{ (((9**64)**64)**64)**64 }}",
    "10^8 loop": "{% for a in 'x' * 10000 %}{% for b in 'x' * 10000 %}{% endfor %}{% endfor %}",
    "100 MB output": "{% for a in 'x' * 10000 %}{{ 'y' * 10000 }}{% endfor %}",
}


def plain_environment(html: bool) -> Any:
    """The message sandbox without its budgets: the same attribute and item rules, globals, filters,
    finalize and undefined, but Jinja's own code generator, operators, calls, filters and joins."""
    import jinja2
    from jinja2.compiler import CodeGenerator
    from jinja2.filters import FILTERS
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.tests import TESTS

    from passgate.messaging.sandbox import ALLOWED_FILTERS, MessageSandbox

    class Plain(MessageSandbox):
        code_generator_class = CodeGenerator  # type: ignore[assignment]
        intercepted_binops = frozenset({"*", "**", "%"})
        call_binop = ImmutableSandboxedEnvironment.call_binop
        call = ImmutableSandboxedEnvironment.call
        concat = "".join  # type: ignore[assignment]

    env = Plain(
        autoescape=html,
        undefined=jinja2.ChainableUndefined,
        finalize=lambda v: "" if v is None else v,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals.clear()
    env.filters = {k: v for k, v in FILTERS.items() if k in ALLOWED_FILTERS}
    env.tests = dict(TESTS)
    return env


def per_call(fn: Callable[[], Any], number: int) -> float:
    """CPU seconds per call of `fn`, over `number` calls."""
    started = time.process_time()
    for _ in range(number):
        fn()
    return (time.process_time() - started) / number


def measure_render(duration: float) -> dict[str, dict[str, float]]:
    import functools

    from passgate.messaging.templates import (
        PARTS_BY_CHANNEL,
        MessageTemplate,
        RenderContext,
        RenderedMessage,
        TemplateRenderError,
        _context_data,
        _one_line,
        builtin_templates,
        render,
        sample_context,
    )

    envs = {True: plain_environment(True), False: plain_environment(False)}

    @functools.lru_cache(maxsize=1024)
    def compiled(source: str, html: bool) -> Any:
        return envs[html].from_string(source)

    def plain_render(template: MessageTemplate, locale: str, context: RenderContext) -> RenderedMessage:
        # templates.render as it was before budgets: each part compiled (cached) and rendered by Jinja.
        chosen = locale if locale in template.locales else template.default_locale
        content = template.locales[chosen]
        data = _context_data(context, chosen)
        rendered: dict[str, str] = {}
        for part in PARTS_BY_CHANNEL[template.channel]:
            source = getattr(content, part)
            try:
                rendered[part] = compiled(source, part == "html").render(data)
            except Exception as exc:
                raise TemplateRenderError(str(exc), template=template.name, locale=chosen, part=part) from exc
        if "subject" in rendered:
            rendered["subject"] = _one_line(rendered["subject"])
        return RenderedMessage(channel=template.channel, locale=chosen, **rendered)

    context = sample_context()
    cases = {}
    for name in TEMPLATES:
        template = builtin_templates()[name]
        fns = {
            "plain": lambda template=template: plain_render(template, "en", context),
            "budgeted": lambda template=template: render(template, "en", context),
        }
        assert fns["plain"]() == fns["budgeted"](), name  # the same message either way
        cases[name] = fns
    best: dict[str, dict[str, float]] = {n: {"plain": 1.0, "budgeted": 1.0} for n in TEMPLATES}
    rounds = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        rounds += 1
        for name, fns in cases.items():
            for kind in ("plain", "budgeted") if rounds % 2 else ("budgeted", "plain"):
                best[name][kind] = min(best[name][kind], per_call(fns[kind], 500))
    return {n: {k: v * 1e6 for k, v in b.items()} | {"rounds": rounds} for n, b in best.items()}


def _render_email_link() -> int:
    from passgate.messaging.templates import builtin_templates, render, sample_context

    return len(render(builtin_templates()["email-link"], "en", sample_context()).html or "")


def measure_handoff(number: int) -> dict[str, float]:
    from passgate.messaging.render_pool import RenderPool

    out: dict[str, float] = {}
    pool = RenderPool("bench-render", threads=2, timeout=10)
    with ProcessPoolExecutor(1) as processes:
        processes.submit(_render_email_link).result()  # started and warm
        pool.run(_render_email_link)
        for kind, call in (
            ("inline", _render_email_link),
            ("thread pool", lambda: pool.run(_render_email_link)),
            ("process pool", lambda: processes.submit(_render_email_link).result()),
        ):
            samples = []
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(number):
                    call()
                samples.append((time.perf_counter() - started) / number)
            out[kind] = min(samples) * 1e6
    pool.shutdown()
    return out


def measure_save() -> dict[str, float]:
    from passgate.messaging import template_bounds
    from passgate.messaging.templates import _environment, builtin_templates, validate_template

    template = builtin_templates()["email-link"]
    validate_template(template)
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        validate_template(template)
        samples.append(time.perf_counter() - started)
    trees = [
        (_environment(part).parse(str(source)), part)
        for content in template.locales.values()
        for part, source in content.present_parts().items()
    ]
    bound_samples = []
    for _ in range(20):
        started = time.perf_counter()
        for tree, part in trees:
            template_bounds.analyse(tree, part)
        bound_samples.append(time.perf_counter() - started)
    return {
        "validate_ms": statistics.median(samples) * 1e3,
        "bounds_ms": statistics.median(bound_samples) * 1e3,
    }


def measure_refusals() -> dict[str, dict[str, Any]]:
    from passgate.messaging.templates import (
        MessageTemplate,
        TemplateRenderError,
        render,
        sample_context,
        validate_template,
    )

    out = {}
    for name, payload in HOSTILE.items():
        content = {"subject": "Hi", "html": "{{ link }}", "text": "{{ link }}\n" + payload}
        template = MessageTemplate(name="hostile", channel="EMAIL", kind="OTH", locales={"en": content},
                                   default_locale="en")  # fmt: skip
        started = time.perf_counter()
        problems = validate_template(template)
        saved = time.perf_counter() - started
        started = time.perf_counter()
        try:
            render(template, "en", sample_context())
            why = "rendered"
        except TemplateRenderError as exc:
            why = str(exc).split(": ", 1)[-1]
        rendered = time.perf_counter() - started
        out[name] = {
            "refused": bool(problems),
            "save_ms": saved * 1e3,
            "render_ms": rendered * 1e3,
            "why": why,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bench/template_render.py", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("-d", "--duration", type=float, default=6.0, help="seconds of alternating render rounds")
    p.add_argument("-n", "--handoffs", type=int, default=300, help="renders per hand-off sample")
    p.add_argument("-c", "--concurrency", type=int, default=None, help="accepted for run_all; not used")
    args = p.parse_args(argv)
    if not 0 < args.duration <= 600 or not 10 <= args.handoffs <= 10_000:
        p.error("--duration must be above 0 and at most 600 s, --handoffs 10 to 10,000")
    with interrupt_guard():
        progress(f"render: budgeted and plain in alternating rounds for {args.duration:g} s")
        renders = measure_render(args.duration)
        progress(f"hand-off: {args.handoffs} renders each, inline, thread pool, process pool")
        handoff = measure_handoff(args.handoffs)
        progress("save-time checks and refusals")
        save = measure_save()
        refusals = measure_refusals()

    ratios = {n: r["budgeted"] / r["plain"] for n, r in renders.items()}
    print("\nRendering a built-in template (CPU µs per render, best round; English, sample values)")
    print(table(["template", "plain sandbox", "with budgets", "ratio"],
                [[n, f"{r['plain']:.1f}", f"{r['budgeted']:.1f}", f"{ratios[n]:.2f}"] for n, r in renders.items()]))  # fmt: skip
    print("\nOne email-link render handed over (wall µs per render)")
    print(table(["where", "µs", "÷ inline"], [[k, f"{v:.0f}", f"{v / handoff['inline']:.1f}"] for k, v in handoff.items()]))  # fmt: skip
    print(f"\nSaving email-link (5 locales × 3 parts): {save['validate_ms']:.1f} ms, of which the bound for every "
          f"request {save['bounds_ms']:.1f} ms")  # fmt: skip
    print("\nThe review's payloads")
    print(table(["payload", "refused at save", "save ms", "render ms", "render stops with"],
                [[k, "yes" if v["refused"] else "NO", f"{v['save_ms']:.1f}", f"{v['render_ms']:.1f}", v["why"]]
                 for k, v in refusals.items()]))  # fmt: skip
    worst = max(ratios.values())
    verdict = "PASS" if worst < 2 and all(v["refused"] for v in refusals.values()) else "BELOW"
    print(f"\nbudgeted ÷ plain: at most {worst:.2f} (target below 2): {verdict}")
    write_result(
        NAME,
        {
            "verdict": verdict,
            "summary": f"budgets cost {worst:.2f}x a plain sandbox render at most; a thread-pool hand-off "
            f"{handoff['thread pool']:.0f} µs, a process-pool one {handoff['process pool']:.0f} µs",
            "render_us": renders,
            "ratios": ratios,
            "handoff_us": handoff,
            "save_ms": save,
            "refusals": refusals,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
