"""Shared pieces of the benchmarks: one result row, the table printer, and running one benchmark alone."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


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


def run_alone(run: Callable[[Path], list[Row]], name: str) -> int:
    """``python -m bench.<name>``: run one benchmark in ``.testbed/bench/<name>``, print its table and time.

    :param run: the benchmark's ``run(workdir)``, returning its rows.
    :param name: the scratch directory's name under ``.testbed/bench/``.
    :return: the exit code (0).
    """
    from scripts.testbed import TESTBED

    started = time.monotonic()
    print(table(run(TESTBED / "bench" / name)))
    print(f"\n({time.monotonic() - started:.0f} s in all)")
    return 0
