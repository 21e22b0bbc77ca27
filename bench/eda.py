"""EdaReportOperator: report time and peak memory at 1x and 10x rows, against pandas reading everything.

Sales-like data (partitions ``country=XX``, 4 of them, 2 files each, row groups of ``CHUNK`` rows):
``order_id`` (unique int: its distinct count is estimated), ``sku`` (string, 20,000 values),
``week`` (date), ``price`` (float), ``discount`` (float, 10 % null), ``units_sold`` (int, 3 % null),
``promo`` (bool). 1x is ``SMALL`` rows (each file one chunk), 10x is ``10 * SMALL`` (ten chunks
per file); ``chunk_rows=CHUNK``, so both read batches of the same size.

* Time: the operator's whole ``execute`` (footers, streamed batches, JSON + HTML written next to
  the data) against the script it replaces on the same data: ``pandas.read_parquet`` of everything,
  then ``describe()``, ``nunique()``, null counts, quantiles and ``value_counts()`` of every column,
  per country too (exact answers, with the whole dataset in memory).
* Memory: peak RSS growth of each in a fresh interpreter (Linux VmHWM, reset after the imports):
  the operator at 10x against itself at 1x (bounded by the chunk and the sketches, they should be
  about equal) and against the pandas script at 10x.
* Accuracy at 10x (in the notes): the estimated distinct count of ``order_id`` and the sampled median
  of ``price`` against the exact ones.

``python -m bench.eda`` runs it alone.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Row, run_alone

SMALL = 200_000
CHUNK = 25_000
COUNTRIES = ("DE", "FR", "IT", "ES")
FILES_PER_COUNTRY = 2


def write_sales(root: Path, rows: int, seed: int = 0) -> None:
    """``rows`` sales rows under ``root/country=XX/part-N.parquet`` (see the module docstring)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    skus = pa.array([f"SKU-{i:05d}" for i in range(20_000)])
    per_file = rows // (len(COUNTRIES) * FILES_PER_COUNTRY)
    start = 0
    for country in COUNTRIES:
        folder = root / f"country={country}"
        folder.mkdir(parents=True)
        for part in range(FILES_PER_COUNTRY):
            n = per_file
            table = pa.table(
                {
                    "order_id": pa.array(np.arange(start, start + n, dtype=np.int64)),
                    "sku": skus.take(pa.array(rng.zipf(1.3, n) % 20_000)),
                    "week": pa.array(
                        np.datetime64("2026-01-05") + (rng.integers(0, 26, n) * 7).astype("timedelta64[D]"),
                        pa.date32(),
                    ),
                    "price": pa.array(rng.gamma(3.0, 10.0, n)),
                    "discount": pa.array(np.round(rng.integers(0, 11, n) * 0.05, 2), mask=rng.random(n) < 0.1),
                    "units_sold": pa.array(rng.poisson(6, n), pa.int64(), mask=rng.random(n) < 0.03),
                    "promo": pa.array(rng.random(n) < 0.25),
                }
            )
            pq.write_table(table, folder / f"part-{part}.parquet", row_group_size=CHUNK)
            start += n
    (root / "_SUCCESS").touch()


_PEAK_SETUP = """
import os
mode, src, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
import numpy, pandas, pyarrow.parquet
from airflow_ml_provider.operators.eda import EdaReportOperator
import airflow_ml_provider.eda.profile, airflow_ml_provider.eda.report
"""
_PEAK_MEASURED = """
if mode == "operator":
    EdaReportOperator(task_id="eda", input_path=src, chunk_rows=chunk).execute({})
    summary = json.load(open(os.path.join(src, "_eda", "summary.json")))
    cols = {c["name"]: c for c in summary["columns"]}
    extra = {"distinct": cols["order_id"]["distinct"], "median": cols["price"]["quantiles"]["p50"]}
else:  # the script the operator replaces: everything in one frame, exact answers
    frame = pandas.read_parquet(src)
    frame.describe(include="all")
    frame.isna().sum()
    nunique = frame.nunique()
    frame.select_dtypes("number").quantile([0.05, 0.25, 0.5, 0.75, 0.95])
    for column in frame.columns:
        frame[column].value_counts()
    frame.groupby("country", observed=True).agg(["count", "nunique"])
    extra = {"distinct": int(nunique["order_id"]), "median": float(frame["price"].median())}
"""


def measure(mode: str, src: Path) -> dict[str, Any]:
    """Run ``mode`` (``operator`` or ``pandas``) on ``src`` in a fresh interpreter; its time, peak growth, answers."""
    from scripts.testbed.peak_rss import peak_rss_growth

    result = peak_rss_growth(_PEAK_SETUP, _PEAK_MEASURED, [mode, str(src.resolve()), str(CHUNK)], timeout=900)
    result["growth_mb"] = result["growth"] / 2**20
    return result


def run(base: Path, repeats: int = 3) -> list[Row]:
    """Write 1x and 10x data under ``base``, measure each way ``repeats`` times (median); five rows."""
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    small, large = base / "x1", base / "x10"
    try:
        write_sales(small, SMALL, seed=1)
        write_sales(large, 10 * SMALL, seed=2)
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(repeats):  # interleaved, so a busy moment of the machine hits both alike
            for mode, src in (("operator", small), ("operator", large), ("pandas", large), ("pandas", small)):
                runs.setdefault((mode, src.name), []).append(measure(mode, src))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def median(mode: str, size: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[(mode, size)])

    ours = runs[("operator", "x10")][0]
    exact = runs[("pandas", "x10")][0]
    distinct_error = abs(ours["distinct"] / exact["distinct"] - 1)
    n_large = 10 * SMALL
    accuracy = (
        f"at 10x: order_id distinct {ours['distinct']:,} vs exact {exact['distinct']:,} "
        f"({100 * distinct_error:.2f} % off); price median {ours['median']:.3f} vs {exact['median']:.3f}"
    )
    note = f"median of {repeats} fresh interpreters; chunk_rows={CHUNK:,}; 7 columns + 4 partitions"
    t_ours_1, t_ours_10 = median("operator", "x1", "seconds"), median("operator", "x10", "seconds")
    t_pandas_1, t_pandas_10 = median("pandas", "x1", "seconds"), median("pandas", "x10", "seconds")
    m_ours_1, m_ours_10 = median("operator", "x1", "growth_mb"), median("operator", "x10", "growth_mb")
    m_pandas_10 = median("pandas", "x10", "growth_mb")
    return [
        Row(
            f"EDA report wall time, {SMALL:,} rows (1x)",
            t_ours_1,
            t_pandas_1,
            "s",
            "pandas: read_parquet all, describe, nunique, quantiles, value_counts",
            f"{note}; ours {SMALL / t_ours_1 / 1e6:.2f}M rows/s incl. JSON + HTML written",
        ),
        Row(
            f"EDA report wall time, {n_large:,} rows (10x)",
            t_ours_10,
            t_pandas_10,
            "s",
            "pandas: read_parquet all, describe, nunique, quantiles, value_counts",
            f"{note}; ours {n_large / t_ours_10 / 1e6:.2f}M rows/s; {accuracy}",
        ),
        Row(
            f"EDA report wall time 10x ({n_large:,} rows)",
            t_ours_10,
            t_ours_1,
            "s",
            f"same operator on 1x ({SMALL:,} rows)",
            f"{note}; linear scaling would be a ratio of 10",
        ),
        Row(
            f"EDA peak RSS growth, 10x ({n_large:,} rows)",
            m_ours_10,
            m_ours_1,
            "MB",
            f"same operator on 1x ({SMALL:,} rows)",
            "fresh interpreter, VmHWM reset after imports; bounded by chunk_rows and the sketches",
        ),
        Row(
            f"EDA peak RSS growth, 10x ({n_large:,} rows)",
            m_ours_10,
            m_pandas_10,
            "MB",
            "pandas: everything in one frame",
            f"fresh interpreter, VmHWM reset after imports; pandas at 1x: {median('pandas', 'x1', 'growth_mb'):.0f} MB",
        ),
    ]


if __name__ == "__main__":  # python -m bench.eda
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    started = time.monotonic()
    sys.exit(run_alone(run, "eda"))
