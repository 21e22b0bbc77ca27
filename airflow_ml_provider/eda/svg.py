"""Charts as inline SVG text: horizontal bars (null rates, top values, partition rows) and histograms.

Hand-written rather than drawn with matplotlib or a JavaScript chart library: a few rectangles and
labels need no dependency on the workers (matplotlib is not in the ``mlflow`` extra and would add
tens of MB and a font cache), the report stays one self-contained file that opens offline and in
MLflow's artifact viewer, and it needs no JavaScript. Every text that comes from the data (column
names, category values, partition labels) goes through :func:`esc` (``html.escape``, quotes too).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import NamedTuple

BAR = "#4c78a8"
BAD = "#d62728"
AXIS = "#555"
FONT = "font-family:system-ui,sans-serif;font-size:12px"


def esc(value: object) -> str:
    """``value`` as text safe inside HTML and SVG elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (cut before escaping, never mid-entity)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Bar(NamedTuple):
    """One bar of :func:`bar_chart`.

    :param label: the category (left of the bar; clipped, full text in the tooltip).
    :param value: the bar's length in units of the chart's ``scale``.
    :param text: the figure printed right of the bar.
    :param bad: draw it in the warning colour (e.g. over a threshold).
    :param marker: where to draw a threshold tick on this row (same units as ``value``), if any.
    """

    label: str
    value: float
    text: str
    bad: bool = False
    marker: float | None = None


def bar_chart(bars: Sequence[Bar], *, title: str, scale: float | None = None, width: int = 640) -> str:
    """Horizontal bars, one row per :class:`Bar`, lengths relative to ``scale`` (default: the largest)."""
    row, top, label_w, text_w = 20, 8, 190, 110
    plot_w = width - label_w - text_w
    biggest = scale if scale else max((max(b.value, b.marker or 0) for b in bars), default=0) or 1.0
    height = top * 2 + row * max(len(bars), 1)
    parts = [
        f'<svg class="chart" role="img" aria-label="{esc(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" style="{FONT}">',
        f"<title>{esc(title)}</title>",
        f'<line x1="{label_w}" y1="{top}" x2="{label_w}" y2="{height - top}" stroke="{AXIS}" stroke-width="1"/>',
    ]
    for i, bar in enumerate(bars):
        y = top + i * row
        length = max(0.0, min(bar.value / biggest, 1.0)) * plot_w
        if 0 < length < 1:
            length = 1.0  # a tiny non-zero value stays visible
        parts.append(
            f"<g><title>{esc(bar.label)}: {esc(bar.text)}</title>"
            f'<text x="{label_w - 6}" y="{y + row * 0.7:.1f}" text-anchor="end">{esc(clip(bar.label, 28))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{length:.2f}" height="{row - 6}" '
            f'fill="{BAD if bar.bad else BAR}"/>'
            f'<text x="{label_w + length + 4:.2f}" y="{y + row * 0.7:.1f}">{esc(bar.text)}</text></g>'
        )
        if bar.marker is not None:
            x = label_w + max(0.0, min(bar.marker / biggest, 1.0)) * plot_w
            parts.append(
                f'<line class="threshold" x1="{x:.2f}" y1="{y + 1}" x2="{x:.2f}" y2="{y + row - 1}" '
                f'stroke="#000" stroke-width="2"><title>threshold</title></line>'
            )
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    counts: Sequence[int], *, low: str, high: str, title: str, exact: bool, width: int = 420, height: int = 150
) -> str:
    """Vertical bars of ``counts`` (equal-width bins from ``low`` to ``high``), the axis labelled at both ends."""
    left, bottom, top = 8, 22, 14
    plot_w, plot_h = width - 2 * left, height - bottom - top
    biggest = max(counts, default=0) or 1
    step = plot_w / max(len(counts), 1)
    note = "" if exact else " (estimated from a sample)"
    parts = [
        f'<svg class="chart" role="img" aria-label="{esc(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" style="{FONT}">',
        f"<title>{esc(title)}{note}</title>",
        f'<text x="{left}" y="{top - 3}" fill="{AXIS}">max {biggest:,} rows per bin{note}</text>',
    ]
    for i, count in enumerate(counts):
        h = count / biggest * plot_h
        if 0 < h < 1:
            h = 1.0
        parts.append(
            f'<rect x="{left + i * step + 0.5:.2f}" y="{top + plot_h - h:.2f}" width="{max(step - 1, 0.5):.2f}" '
            f'height="{h:.2f}" fill="{BAR}"><title>bin {i + 1}: {count:,} rows</title></rect>'
        )
    base = top + plot_h
    parts += [
        f'<line x1="{left}" y1="{base}" x2="{width - left}" y2="{base}" stroke="{AXIS}" stroke-width="1"/>',
        f'<text x="{left}" y="{height - 6}">{esc(clip(low, 30))}</text>',
        f'<text x="{width - left}" y="{height - 6}" text-anchor="end">{esc(clip(high, 30))}</text>',
        "</svg>",
    ]
    return "".join(parts)
