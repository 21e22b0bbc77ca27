"""Sales-like Parquet test data (country partitions; sku, week, price, discount, units_sold, promo) with nulls."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any


def sales_table(rows: int, seed: int = 0, *, label_nulls: float = 0.02, discount_nulls: float = 0.1) -> Any:
    """``rows`` rows of one country's sales: ``units_sold`` (the label, int) and ``discount`` partly null."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    weeks = np.datetime64("2026-01-05") + (rng.integers(0, 8, rows) * 7).astype("timedelta64[D]")
    return pa.table(
        {
            "sku": pa.array([f"SKU-{i:04d}" for i in rng.integers(0, 300, rows)]),
            "week": pa.array(weeks, pa.date32()),
            "price": pa.array(rng.gamma(3.0, 10.0, rows)),
            "discount": pa.array(np.round(rng.integers(0, 11, rows) * 0.05, 2), mask=rng.random(rows) < discount_nulls),
            "units_sold": pa.array(rng.poisson(6, rows), pa.int64(), mask=rng.random(rows) < label_nulls),
            "promo": pa.array(rng.random(rows) < 0.25),
        }
    )


def write_sales(root: Path, rows: dict[str, int], *, files_per_country: int = 1, **kwargs: Any) -> Path:
    """``root/country=XX/part-N.parquet`` for each ``{country: rows}``; returns ``root``."""
    import pyarrow.parquet as pq

    for i, (country, count) in enumerate(rows.items()):
        folder = root / f"country={country}"
        folder.mkdir(parents=True, exist_ok=True)
        table = sales_table(count, seed=i, **kwargs)
        step = -(-count // files_per_country)
        for part in range(files_per_country):
            pq.write_table(table.slice(part * step, step), folder / f"part-{part}.parquet", row_group_size=500)
    (root / "_SUCCESS").touch()
    return root


def read_all(root: Path) -> Any:
    """The whole dataset as one pandas frame (the exact answers the tests compare with)."""
    import pyarrow.dataset as ds

    return ds.dataset(str(root), format="parquet", partitioning="hive").to_table().to_pandas()


WEEK0 = dt.date(2026, 1, 5)
