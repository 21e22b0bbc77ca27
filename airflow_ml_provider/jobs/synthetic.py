"""A synthetic weekly markdown-pricing dataset, in the layout the training job reads.

Layout (Hive-style partitions, one file per country)::

    {root}/{week}/sales/country=DE/part-0.parquet
    {root}/{week}/sales/country=FR/part-0.parquet
    {root}/{week}/sales/_SUCCESS            <- written last

The country is carried by the partition directory, not by a column inside the files (Spark and
pyarrow refuse or duplicate a column that is both). Reading ``{root}/{week}/sales`` with Hive
partitioning gives it back as the ``country`` column.

One row is one SKU in one of the weeks before ``week``. Columns:

``sku`` (string), ``week_of_year`` (ISO week of that row's week, int), ``base_price`` (float,
full price), ``discount`` (the markdown applied that week as a fraction of ``base_price``, 0.0 to
0.5 in steps of 0.05: 0.3 means 30 % off), ``stock`` (units on hand at the start of the week,
int), ``days_to_season_end`` (int), ``units_sold`` (the target, int, at most ``stock``).

Demand responds to the markdown non-linearly: a saturating lift, plus a jump once the markdown
reaches about 20 % (shoppers notice it), scaled per SKU, with more response close to the end of
the season; sales are Poisson with multiplicative noise and capped by stock. So the markdown that
maximizes revenue differs between SKUs and is usually neither 0 nor the maximum.

The dataset appears at once: it is written into a hidden temporary directory next to ``sales``
(``_SUCCESS`` last) and renamed into place, so a reader never sees a partial dataset.

CLI: ``python -m airflow_ml_provider.jobs.synthetic --root R --week 2026-11-23 --countries DE,FR``.
Runs inside the job container: stdlib, numpy, pandas and pyarrow only (see the package docstring).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import uuid
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_ml_provider.jobs.common import job_logger, parse_countries, parse_week

#: Columns of every sales file, in order.
SALES_COLUMNS = ("sku", "week_of_year", "base_price", "discount", "stock", "days_to_season_end", "units_sold")
#: Markdowns applied in the history: 0 % to 50 % in steps of 5 %.
MARKDOWN_STEPS = tuple(round(0.05 * i, 2) for i in range(11))
#: Weeks of history per SKU.
HISTORY_WEEKS = 8
#: ``synthetic: <message>`` lines on stdout.
LOG = job_logger("synthetic")


def _country_seed(seed: int, country: str) -> int:
    # crc32, not hash(): str hashes change between processes.
    return (seed * 1_000_003 + zlib.crc32(country.encode())) % (2**32)


def make_country_frame(country: str, week: str, rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` rows of sales history for one country (see the module docstring for the columns)."""
    if rows < 1:
        raise ValueError(f"rows_per_country must be at least 1, got {rows}")
    day = parse_week(week)
    rng = np.random.default_rng(_country_seed(seed, country))
    n_skus = max(1, -(-rows // HISTORY_WEEKS))
    n_weeks = -(-rows // n_skus)

    # Per-SKU traits.
    base_price = np.round(np.exp(rng.normal(np.log(40.0), 0.6, n_skus)), 2).clip(4.99, 400.0)
    base_demand = np.exp(rng.normal(np.log(12.0), 0.5, n_skus))
    # Cheap items respond more to markdowns: amplitude falls with price.
    lift_amp = rng.uniform(1.0, 3.5, n_skus) * (40.0 / base_price) ** 0.25
    lift_rate = rng.uniform(3.0, 9.0, n_skus)
    season_end = np.array([day + dt.timedelta(days=int(d)) for d in rng.integers(7, 120, n_skus)])
    stock = rng.integers(30, 400, n_skus).astype(np.int64)
    markdowns = np.array(MARKDOWN_STEPS)

    frames = []
    for k in range(n_weeks):  # oldest week first, so stock runs down over time
        when = day - dt.timedelta(weeks=n_weeks - k)
        woy = when.isocalendar()[1]
        dtse = np.array([(end - when).days for end in season_end], dtype=np.int64)
        # Deeper markdowns are more likely close to the end of the season.
        urgency = np.clip(1.0 - dtse / 150.0, 0.0, 1.0)
        weights = np.exp(-np.outer(1.0 - urgency, np.arange(len(markdowns))) * 0.6)
        weights /= weights.sum(axis=1, keepdims=True)
        idx = (weights.cumsum(axis=1) > rng.random(n_skus)[:, None]).argmax(axis=1)
        discount = markdowns[idx]
        season = 1.0 + 0.25 * np.sin(2 * np.pi * (woy - 10) / 52.0)
        lift = 1.0 + lift_amp * (1.0 - np.exp(-lift_rate * discount)) + 0.6 * (discount >= 0.195)
        lift *= 1.0 + 0.5 * urgency * discount
        lam = base_demand * season * lift * np.exp(rng.normal(0.0, 0.15, n_skus))
        units = np.minimum(rng.poisson(lam), stock)
        frames.append(
            pd.DataFrame(
                {
                    "sku": [f"{country}-SKU-{i:05d}" for i in range(n_skus)],
                    "week_of_year": np.full(n_skus, woy, dtype=np.int64),
                    "base_price": base_price,
                    "discount": discount,
                    "stock": stock.copy(),
                    "days_to_season_end": dtse,
                    "units_sold": units.astype(np.int64),
                }
            )
        )
        # Sell, and sometimes restock.
        stock = stock - units + np.where(rng.random(n_skus) < 0.15, rng.integers(20, 150, n_skus), 0)
    frame = pd.concat(frames, ignore_index=True).iloc[:rows]
    return frame.reset_index(drop=True)[list(SALES_COLUMNS)]


def write_week(root: str, week: str, countries: str | Sequence[str], rows_per_country: int = 400, seed: int = 0) -> str:
    """Write the synthetic dataset of ``week`` for ``countries`` under ``root``; return the dataset dir.

    The result is ``{root}/{week}/sales`` with ``country=XX/part-0.parquet`` per country and a
    ``_SUCCESS`` marker written last. It is built in a hidden temporary directory and renamed into
    place; an existing dataset for that week is replaced.

    :param root: the dataset root (created if missing).
    :param week: the week's date, ``YYYY-MM-DD``.
    :param countries: country codes, ``"DE,FR"`` or a sequence.
    :param rows_per_country: rows of history per country (at least 1).
    :param seed: the random seed (the same seed gives the same data).
    :raises ValueError: a bad week, country code or row count (a ``BadInputError`` for the first two).
    """
    parse_week(week)
    codes = parse_countries(countries)
    week_dir = os.path.join(os.path.abspath(root), week)
    target = os.path.join(week_dir, "sales")
    os.makedirs(week_dir, exist_ok=True)
    tmp = os.path.join(week_dir, f".sales.tmp-{uuid.uuid4().hex}")
    os.mkdir(tmp)
    try:
        for code in codes:
            part_dir = os.path.join(tmp, f"country={code}")
            os.mkdir(part_dir)
            frame = make_country_frame(code, week, rows_per_country, seed)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            pq.write_table(table, os.path.join(part_dir, "part-0.parquet"))
        with open(os.path.join(tmp, "_SUCCESS"), "wb"):
            pass
        if os.path.lexists(target):
            # A non-empty directory cannot be renamed over: move the old one aside first. A reader
            # meanwhile sees no dataset, never a partial one.
            old = os.path.join(week_dir, f".sales.old-{uuid.uuid4().hex}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_ml_provider.jobs.synthetic",
        description="Write a synthetic weekly markdown-pricing sales dataset as Parquet.",
    )
    parser.add_argument("--root", required=True, help="dataset root; the data goes to ROOT/WEEK/sales")
    parser.add_argument("--week", required=True, help="the week's date, YYYY-MM-DD")
    parser.add_argument("--countries", required=True, help="comma-separated country codes, e.g. DE,FR")
    parser.add_argument("--rows-per-country", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        countries = parse_countries(args.countries)
        path = write_week(args.root, args.week, countries, args.rows_per_country, args.seed)
    except ValueError as e:
        LOG.error("error: %s", e)
        return 2
    LOG.info("wrote %s countries=%s rows_per_country=%d", path, ",".join(countries), args.rows_per_country)
    return 0


if __name__ == "__main__":
    sys.exit(main())
