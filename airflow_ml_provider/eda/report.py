"""The HTML report: one self-contained file (inline CSS and SVG, no script, no external resource).

:func:`render_html` draws the JSON summary (the operator's ``summary.json``) and nothing else, so
the two files always agree. Every value that comes from the data or the DAG goes through
:func:`~.svg.esc`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_ml_provider.eda.svg import Bar, bar_chart, clip, esc, histogram
from airflow_ml_provider.eda.values import percent, short

#: Rows of the partition chart; more partitions are listed in the JSON summary only.
MAX_PARTITION_BARS = 60

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:0 0 6px;word-break:break-all}
.meta{color:#555;margin-top:0}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f6f6f6}
.gate{padding:10px 14px;border-radius:6px;margin:12px 0}
.passed{background:#e8f5e9;border:1px solid #81c784}.failed{background:#ffebee;border:1px solid #e57373}
.none{background:#f5f5f5;border:1px solid #ccc}
.columns{display:flex;flex-wrap:wrap;gap:16px}
.column{border:1px solid #ddd;border-radius:6px;padding:10px;width:560px}
.column dl{display:grid;grid-template-columns:auto 1fr auto 1fr;gap:2px 10px;font-size:13px;margin:4px 0 8px}
.column dt{color:#666}.column dd{margin:0}
details{margin-top:6px;font-size:13px}.approx{color:#a15c00}
"""


def _seconds(seconds: float) -> str:
    return f"{seconds:.2f}\u00a0s" if seconds < 10 else f"{seconds:,.0f}\u00a0s"


def _approx(text: str, exact: bool) -> str:
    return text if exact else f'<span class="approx" title="estimate">≈ {text}</span>'


def _value(column: Mapping[str, Any], key: str) -> str:
    value = column.get(key)
    return esc(short(value))


def _quantile(column: Mapping[str, Any], name: str) -> str:
    qs = column.get("quantiles") or {}
    return _approx(esc(short(qs.get(name))), bool(column.get("quantiles_exact", True)))


def _distinct(column: Mapping[str, Any]) -> str:
    if "distinct" not in column:
        return "—"
    return _approx(esc(short(column["distinct"])), bool(column["distinct_exact"]))


def _gate(gate: Mapping[str, Any]) -> str:
    if not gate.get("checks"):
        return (
            '<section id="gate" class="gate none"><b>Gate: no thresholds set</b> '
            "(the report is informational).</section>"
        )
    status = str(gate["status"])
    reasons = "".join(f"<li>{esc(r)}</li>" for r in gate.get("reasons", []))
    rows = "".join(
        f"<tr><td>{esc(c['check'])}</td><td>{esc(c['subject'])}</td><td>{esc(short(c['value']))}</td>"
        f"<td>{esc(short(c['threshold']))}</td><td>{'ok' if c['passed'] else '<b>failed</b>'}</td></tr>"
        for c in gate["checks"]
    )
    return (
        f'<section id="gate" class="gate {esc(status)}"><b>Gate: {esc(status.upper())}</b>'
        + (f"<ul>{reasons}</ul>" if reasons else "")
        + "<details><summary>Checks</summary><table><tr><th>check</th><th>subject</th><th>value</th>"
        f"<th>threshold</th><th>result</th></tr>{rows}</table></details></section>"
    )


def _overview(columns: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("column", "type", "null rate", "distinct", "min", "mean", "median", "max"))
    rows = "".join(
        f'<tr><td><a href="#col-{i}">{esc(clip(c["name"], 60))}</a></td><td>{esc(c["type"])}</td>'
        f"<td>{esc(percent(c['null_rate']))}</td><td>{_distinct(c)}</td><td>{_value(c, 'min')}</td>"
        f"<td>{_value(c, 'mean')}</td><td>{_quantile(c, 'p50') if c.get('quantiles') else '—'}</td>"
        f"<td>{_value(c, 'max')}</td></tr>"
        for i, c in enumerate(columns)
    )
    return f'<section id="overview"><h2>Columns</h2><table><tr>{head}</tr>{rows}</table></section>'


def _null_chart(columns: Sequence[Mapping[str, Any]], limits: Mapping[str, float]) -> str:
    bars = [
        Bar(
            c["name"],
            c["null_rate"],
            percent(c["null_rate"]),
            bad=c["name"] in limits and c["null_rate"] > limits[c["name"]],
            marker=limits.get(c["name"]),
        )
        for c in columns
    ]
    scale = max([b.value for b in bars] + [b.marker or 0 for b in bars] + [0.05])
    chart = bar_chart(bars, title="Null rate per column (nulls and NaN over rows)", scale=scale)
    return f'<section id="nulls"><h2>Null rate per column</h2>{chart}</section>'


def _partition_chart(summary: Mapping[str, Any]) -> str:
    rows: dict[str, int] = summary.get("partition_rows") or {}
    if not rows:
        return ""
    bars = [Bar(label, count, f"{count:,}") for label, count in list(rows.items())[:MAX_PARTITION_BARS]]
    more = len(rows) - len(bars)
    note = f"<p>{more:,} more partitions are listed in the JSON summary.</p>" if more > 0 else ""
    chart = bar_chart(bars, title="Rows per partition")
    return f'<section id="partitions"><h2>Rows per partition ({len(rows):,})</h2>{chart}{note}</section>'


def _distribution(column: Mapping[str, Any]) -> str:
    hist = column.get("histogram")
    if hist and hist["kind"] == "values":
        bars = [Bar(short(v), n, f"{n:,}") for v, n in zip(hist["values"], hist["counts"], strict=True)]
        title = f"Rows per value of {column['name']}" + ("" if hist["exact"] else " (estimated from a sample)")
        return bar_chart(bars, title=title, width=540)
    if hist and hist["counts"]:
        return histogram(
            hist["counts"],
            low=short(hist["edges"][0]),
            high=short(hist["edges"][-1]),
            title=f"Distribution of {column['name']}",
            exact=bool(hist["exact"]),
        )
    top = column.get("top")
    if top:
        bars = [Bar(short(t["value"]), t["count"], f"{t['count']:,}") for t in top]
        if column.get("other_count", 0) > 0:
            bars.append(Bar("(other values)", column["other_count"], f"{column['other_count']:,}"))
        title = f"Most frequent values of {column['name']}" + ("" if column["top_exact"] else " (lower bounds)")
        return bar_chart(bars, title=title, width=540)
    return ""


def _by_partition(name: str, partitions: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for p in partitions:
        c = next((c for c in p["columns"] if c["name"] == name), None)
        if c is None:
            continue
        if c.get("top") is not None and c["kind"] == "categorical":
            middle = esc(", ".join(f"{short(t['value'])} ({t['count']:,})" for t in c["top"][:3]))
        else:
            middle = f"{_value(c, 'min')} / {_value(c, 'mean')} / {_quantile(c, 'p50')} / {_value(c, 'max')}"
        rows.append(
            f"<tr><td>{esc(p['label'])}</td><td>{p['rows']:,}</td><td>{esc(percent(c['null_rate']))}</td>"
            f"<td>{_distinct(c)}</td><td>{middle}</td></tr>"
        )
    if not rows:
        return ""
    return (
        f"<details><summary>By partition ({len(rows)})</summary><table><tr><th>partition</th><th>rows</th>"
        "<th>null rate</th><th>distinct</th><th>min / mean / median / max, or top values</th></tr>"
        + "".join(rows)
        + "</table></details>"
    )


def _column(i: int, c: Mapping[str, Any], partitions: Sequence[Mapping[str, Any]]) -> str:
    extra = [("±inf", c.get("infinite")), ("missing in files", c.get("missing_in_files"))]
    pairs: list[list[tuple[str, str]]] = [
        [("type", esc(c["type"])), ("rows", esc(short(c["rows"])))],
        [("null rate", esc(percent(c["null_rate"]))), ("nulls / NaN", f"{c['nulls']:,} / {c['nan']:,}")],
        [("distinct", _distinct(c)), *((k, f"{v:,}") for k, v in extra if v)],
        [(key, _value(c, key)) for key in ("min", "max") if c.get(key) is not None],
        [(key, _value(c, key)) for key in ("mean", "std") if c.get(key) is not None],
    ]
    if c.get("quantiles"):
        pairs += [
            [(name, _quantile(c, name)) for name in names] for names in (("p05", "p25"), ("p50", "p75"), ("p95",))
        ]
    cells = []
    for pair in pairs:  # two facts per line of the grid; a line with one gets an empty second half
        for start in range(0, len(pair), 2):
            line = pair[start : start + 2]
            cells += [f"<dt>{k}</dt><dd>{v}</dd>" for k, v in line] + ["<dt></dt><dd></dd>"] * (2 - len(line))
    return (
        f'<article class="column" id="col-{i}"><h3>{esc(c["name"])}</h3><dl>{"".join(cells)}</dl>'
        f"{_distribution(c)}{_by_partition(c['name'], partitions)}</article>"
    )


def _accuracy(accuracy: Mapping[str, Any]) -> str:
    items = "".join(f"<li>{esc(text)}</li>" for text in accuracy.get("notes", []))
    return f'<section id="accuracy"><h2>How accurate</h2><ul>{items}</ul></section>'


def render_html(summary: Mapping[str, Any], *, max_null_rate: Mapping[str, float] | None = None) -> str:
    """The report for a JSON summary (see the operator's docs for its fields)."""
    columns = summary["columns"]
    partitions = summary.get("partitions", [])
    title = summary.get("title") or summary["dataset"]
    meta = (
        f"{esc(summary['dataset'])} · {summary['rows']:,} rows · {summary['files']:,} files · "
        f"{len(summary.get('partition_rows') or {}):,} partitions · {len(columns):,} columns · "
        f"generated {esc(summary['generated_at'])} in {_seconds(summary['seconds'])}"
    )
    body = [
        f"<h1>Data report: {esc(title)}</h1>",
        f'<p class="meta">{meta}</p>',
        _gate(summary.get("gate") or {}),
        _overview(columns),
        _null_chart(columns, max_null_rate or {}),
        _partition_chart(summary),
        '<section id="details"><h2>Columns in detail</h2><div class="columns">',
        "".join(_column(i, c, partitions) for i, c in enumerate(columns)),
        "</div></section>",
        _accuracy(summary.get("accuracy") or {}),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Data report: {esc(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )
