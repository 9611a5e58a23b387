"""Charts as inline SVG, drawn on the server: no JavaScript library, readable without scripts, and each
one carries a title and a description for screen readers (the page adds the numbers as a table). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

# Colours chosen for contrast on white and to stay apart for the common colour-vision deficiencies.
PALETTE = {
    "ALLOW": "#15803d",
    "CHALLENGE": "#b45309",
    "BLOCK": "#b91c1c",
    "VERIFIED": "#15803d",
    "MESSAGE_SENT": "#1d4ed8",
    "UNKNOWN": "#6b7280",
    "VERIFICATION_ATTEMPT_FAILED": "#b45309",
    "TERMINATED": "#7c3aed",
    "FAILED_AUTHORIZATION": "#be185d",
    "INVALID": "#b91c1c",
    "delivery": "#b91c1c",
    "webhook": "#7c3aed",
}
WIDTH = 720
NARROW = 400  # the per-channel charts sit in half-width cards
HEIGHT = 200
LEFT = 44
BOTTOM = 28
TOP = 12


def _nice_max(value: int) -> int:
    if value <= 4:
        return 4
    for step in (5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= step * 4:
            return step * 4
    magnitude = int(10 ** (len(str(value)) - 1))
    return int(((value // magnitude) + 1) * magnitude)


def _frame(
    chart_id: str,
    title: str,
    desc: str,
    body: str,
    height: int = HEIGHT,
    width: int = WIDTH,
    role: str = "img",
) -> Markup:
    # Every value from outside (titles, labels, names) goes through escape(); the rest is numbers.
    # A chart whose bars are links is a named group, not an image (an image's content cannot hold links).
    return Markup(  # noqa: S704
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="{role}" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" preserveAspectRatio="xMidYMid meet">'
        f'<title id="{chart_id}-t">{escape(title)}</title><desc id="{chart_id}-d">{escape(desc)}</desc>'
        f"{body}</svg>"
    )


def stacked_bars(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[int]],
    desc: str,
    links: Mapping[str, Sequence[str]] | None = None,
) -> Markup:
    """Bars over time, one segment per series, with a y axis and a few x labels. With `links` (a URL per
    series and bar) each segment is a link for the pointer; the table behind the chart carries the same
    links for the keyboard and screen readers (the chart is one image to them)."""
    n = max(1, len(labels))
    totals = [sum(s[i] for s in series.values()) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    plot_w = WIDTH - LEFT - 8
    plot_h = HEIGHT - BOTTOM - TOP
    slot = plot_w / n
    bar = max(1.0, slot * 0.72)
    parts: list[str] = []
    for k in range(5):
        value = top * k // 4
        y = TOP + plot_h - plot_h * k / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb" />'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{value}</text>'
        )
    for i in range(len(labels)):
        x = LEFT + i * slot + (slot - bar) / 2
        base = float(TOP + plot_h)
        for name, values in series.items():
            v = values[i]
            if not v:
                continue
            h = plot_h * v / top
            base -= h
            rect = (
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE.get(name, "#374151")}"><title>{escape(labels[i])}: {v} {escape(name)}'
                "</title></rect>"
            )
            href = links.get(name) if links else None
            if href:
                rect = f'<a href="{escape(href[i])}" tabindex="-1" aria-hidden="true">{rect}</a>'
            parts.append(rect)
    every = max(1, n // 6)
    for i in range(0, len(labels), every):
        x = LEFT + i * slot + slot / 2
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="axis">{escape(labels[i])}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="#6b7280" />'
    )
    return _frame(chart_id, title, desc, "".join(parts), role="group" if links else "img")


def horizontal_stacks(
    chart_id: str, title: str, rows: Mapping[str, Mapping[str, int]], desc: str, percent: bool = False
) -> Markup:
    """One horizontal bar per row (a channel), split by category (a status); widths relative to the
    largest row, or to each row's own total when `percent`."""
    row_h = 34
    height = TOP + len(rows) * (row_h + 14) + 8
    label_w = 56
    plot_w = NARROW - label_w - 44
    biggest = max((sum(r.values()) for r in rows.values()), default=0) or 1
    parts: list[str] = []
    for j, (name, cats) in enumerate(rows.items()):
        y = TOP + j * (row_h + 14)
        total = sum(cats.values())
        scale = total if percent else biggest
        parts.append(
            f'<text x="0" y="{y + row_h / 2 + 5:.1f}" class="label">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{plot_w}" height="{row_h}" fill="#f3f4f6" />'
        )
        x = float(label_w)
        for cat, v in cats.items():
            if not v or not scale:
                continue
            w = plot_w * v / scale
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h}" '
                f'fill="{PALETTE.get(cat, "#374151")}"><title>{escape(name)}: {v} {escape(cat)}</title></rect>'
            )
            x += w
        parts.append(
            f'<text x="{label_w + plot_w + 8}" y="{y + row_h / 2 + 5:.1f}" class="label">{total}</text>'
        )
    return _frame(chart_id, title, desc, "".join(parts), height, NARROW)


def meters(chart_id: str, title: str, rows: Mapping[str, tuple[int, int]], desc: str) -> Markup:
    """A meter per row: the share of `done` in `total`, with the percentage written beside it."""
    row_h = 26
    height = TOP + len(rows) * (row_h + 14) + 8
    label_w = 56
    plot_w = NARROW - label_w - 110
    parts: list[str] = []
    for j, (name, (done, total)) in enumerate(rows.items()):
        y = TOP + j * (row_h + 14)
        share = done / total if total else 0.0
        text = f"{share:.0%} ({done}/{total})" if total else "none"
        parts.append(
            f'<text x="0" y="{y + row_h / 2 + 5:.1f}" class="label">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{plot_w}" height="{row_h}" fill="#f3f4f6" />'
            f'<rect x="{label_w}" y="{y}" width="{plot_w * share:.1f}" height="{row_h}" fill="#15803d" />'
            f'<text x="{label_w + plot_w + 8}" y="{y + row_h / 2 + 5:.1f}" class="label">{escape(text)}</text>'
        )
    return _frame(chart_id, title, desc, "".join(parts), height, NARROW)
