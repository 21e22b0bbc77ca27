"""Shared pieces of the benchmarks: one result row and the table printer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    """One benchmark result: ours against a baseline measured in the same run.

    :param name: what was measured.
    :param ours: our figure.
    :param baseline: the baseline's figure.
    :param unit: unit of both figures.
    :param baseline_name: what the baseline is.
    :param note: how it was measured.
    """

    name: str
    ours: float
    baseline: float
    unit: str
    baseline_name: str
    note: str = ""

    @property
    def ratio(self) -> float:
        """ours / baseline (lower is better for every row here)."""
        return self.ours / self.baseline if self.baseline else float("inf")


def table(rows: list[Row]) -> str:
    """Render rows as a Markdown table."""
    lines = [
        "| benchmark | ours | baseline | baseline is | ratio ours/baseline | how |",
        "|---|---:|---:|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.ours:.3g} {r.unit} | {r.baseline:.3g} {r.unit} | {r.baseline_name} | "
            f"{r.ratio:.3f} | {r.note} |"
        )
    return "\n".join(lines)
