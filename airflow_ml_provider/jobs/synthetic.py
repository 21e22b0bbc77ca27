"""Synthetic weekly retail sales with calibrated price elasticity, in the layout the training job reads.

Layout of :func:`write_week` (Hive-style partitions, one file per country)::

    {root}/{week}/sales/country=DE/part-0.parquet
    {root}/{week}/sales/country=FR/part-0.parquet
    {root}/{week}/sales/_SUCCESS            <- written last

The country is carried by the partition directory, not by a column inside the files (Spark and
pyarrow refuse or duplicate a column that is both). Reading ``{root}/{week}/sales`` with Hive
partitioning gives it back as the ``country`` column. The dataset appears at once: it is written
into a hidden temporary directory next to ``sales`` (``_SUCCESS`` last) and renamed into place.

One row is one SKU in one week. Columns (:data:`SALES_COLUMNS`): ``sku`` (string),
``week_of_year`` (ISO week, int), ``base_price`` (float, full price), ``discount`` (the markdown
that week as a fraction of ``base_price``, 0.0 to 0.5 in steps of 0.05: 0.3 means 30 % off),
``stock`` (units on hand at the start of the week, int), ``days_to_season_end`` (int, at least 1),
``units_sold`` (the target, int, at most ``stock``).

Demand (:func:`expected_units`): each SKU has a constant price elasticity ``e`` drawn uniformly
from :data:`ELASTICITY_RANGE`, so its mean weekly units are ``base_demand * season(week) *
(1 - discount) ** e``; in the last :data:`URGENCY_DAYS` days of its season shoppers respond up to
:data:`URGENCY_ELASTICITY` (10 %) more, which keeps every effective elasticity between -1.5 and
-3.0. Sales are Poisson around that mean with mean-one log-normal noise, capped by stock. Each
season starts with a buy of about as many units as the season's full-price demand (a log-normal
ratio, :data:`BUY_RATIO_SIGMA`): some SKUs are short and need no markdown, some are overstocked
and need a clearance markdown to sell out. There is no restocking within a season; when a season
ends (in a long history) a new SKU with its own traits and buy takes the old one's place.

The elasticity range is that of published price-elasticity studies: Tellis's meta-analysis of
367 elasticities (J. Marketing Research, 1988) has a mean of about -1.8, Bijmolt, van Heerde and
Pieters's of 1,851 (J. Marketing Research, 2005) about -2.6; retail markdown studies of seasonal
goods report values of the same order. The earlier generator's saturating lift (up to 3.5x, plus
a jump at 20 % off) implied elasticities near -8, hence its +100 % to +220 % revenue "uplifts".

CLI::

    python -m airflow_ml_provider.jobs.synthetic --root R --week 2026-11-23 --countries DE,FR
    python -m airflow_ml_provider.jobs.synthetic seed --conn-id C --rows 1000000   # a database table

The first form runs inside the job container: this module is stdlib, numpy, pandas and pyarrow
only (see the package docstring). ``seed`` (:mod:`airflow_ml_provider.jobs.synthetic_seed`) runs
where Airflow and the provider are installed.
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
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_ml_provider.jobs.common import job_logger, parse_countries, parse_week

#: Columns of every sales file, in order.
SALES_COLUMNS = ("sku", "week_of_year", "base_price", "discount", "stock", "days_to_season_end", "units_sold")
#: Markdowns applied in the history: 0 % to 50 % in steps of 5 %.
MARKDOWN_STEPS = tuple(round(0.05 * i, 2) for i in range(11))
#: Weeks of history per SKU in :func:`make_country_frame`.
HISTORY_WEEKS = 8
#: Per-SKU price elasticity, drawn uniformly (before the end-of-season urgency).
ELASTICITY_RANGE = (-2.7, -1.5)
#: Shoppers' extra response at the very end of a season (0.1: 10 % more elastic), ramping in over
#: the last :data:`URGENCY_DAYS` days.
URGENCY_ELASTICITY = 0.1
URGENCY_DAYS = 56
#: Sigma of the log of a season's buy over its full-price demand (median 1).
BUY_RATIO_SIGMA = 0.4
#: Sigma of the mean-one log-normal noise on each week's demand.
NOISE_SIGMA = 0.15
#: Length of a new season in weeks (inclusive range), when a SKU's season ends in a long history.
SEASON_WEEKS = (8, 26)
#: ``synthetic: <message>`` lines on stdout.
LOG = job_logger("synthetic")


def _country_seed(seed: int, country: str) -> int:
    # crc32, not hash(): str hashes change between processes.
    return (seed * 1_000_003 + zlib.crc32(country.encode())) % (2**32)


def seasonality(week_of_year: Any) -> np.ndarray:
    """The demand multiplier of an ISO week: 1 +- 0.25 over the year, highest around week 23."""
    return 1.0 + 0.25 * np.sin(2 * np.pi * (np.asarray(week_of_year, dtype="float64") - 10.0) / 52.0)


def effective_elasticity(elasticity: Any, days_to_season_end: Any) -> np.ndarray:
    """A SKU's elasticity with the end-of-season urgency: up to 10 % more elastic in the last 8 weeks.

    :param elasticity: the SKU's elasticity (negative, from :data:`ELASTICITY_RANGE`).
    :param days_to_season_end: days left in its season.
    """
    days = np.asarray(days_to_season_end, dtype="float64")
    urgency = np.clip(1.0 - days / URGENCY_DAYS, 0.0, 1.0)
    return np.asarray(elasticity, dtype="float64") * (1.0 + URGENCY_ELASTICITY * urgency)


def expected_units(
    base_demand: Any, elasticity: Any, discount: Any, week_of_year: Any, days_to_season_end: Any
) -> np.ndarray:
    """Mean weekly units sold, before noise and the stock cap (arguments broadcast as numpy arrays).

    :param base_demand: the SKU's weekly units at full price in an average week.
    :param elasticity: the SKU's price elasticity (e.g. -2.0: 10 % off sells about 23 % more).
    :param discount: the markdown, a fraction of the base price (0.3 = 30 % off).
    :param week_of_year: the ISO week (seasonality).
    :param days_to_season_end: days left in the season (end-of-season urgency).
    """
    price_index = 1.0 - np.asarray(discount, dtype="float64")
    response = price_index ** effective_elasticity(elasticity, days_to_season_end)
    return np.asarray(base_demand, dtype="float64") * seasonality(week_of_year) * response


class Assortment:
    """One country's assortment, simulated a week at a time: ``n_skus`` SKUs on sale, each with its
    traits (price, demand, elasticity), season end and stock; attributes are arrays, one item per SKU.

    The random stream depends only on ``(seed, country)`` and the sequence of calls, so the same
    arguments give the same rows however the caller batches them.

    :param country: the country code (part of each SKU id, and of the random seed).
    :param n_skus: how many SKUs.
    :param seed: the random seed.
    """

    def __init__(self, country: str, n_skus: int, seed: int) -> None:
        if n_skus < 1:
            raise ValueError(f"a country needs at least 1 SKU, got {n_skus}")
        self.country = country
        self.rng = np.random.default_rng(_country_seed(seed, country))
        self.sku = np.array([f"{country}-SKU-{i:05d}" for i in range(n_skus)], dtype=object)
        self.base_price, self.base_demand, self.elasticity = self._traits(n_skus)
        self.season_end = np.zeros(n_skus, dtype="datetime64[D]")
        self.stock = np.zeros(n_skus, dtype=np.int64)
        self.next_sku = n_skus

    def _traits(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` new SKUs' base price, base weekly demand at full price and elasticity."""
        rng = self.rng
        price = np.round(np.exp(rng.normal(np.log(40.0), 0.6, n)), 2).clip(4.99, 400.0)
        demand = np.exp(rng.normal(np.log(10.0), 0.5, n)) * (40.0 / price) ** 0.3  # cheaper items sell more
        return price, demand, rng.uniform(*ELASTICITY_RANGE, n)

    def open_seasons(self, which: np.ndarray, when: dt.date, season_end: np.ndarray) -> None:
        """Start the seasons of the SKUs ``which`` at ``when``: their end, and a buy of stock.

        The buy is the season's expected demand at full price times a log-normal ratio (median 1).

        :param which: boolean mask of the SKUs.
        :param when: the first week of the season (its stock is counted from it).
        :param season_end: the new season end of each SKU in ``which`` (``datetime64[D]``).
        """
        days = (season_end - np.datetime64(when, "D")).astype(np.int64)
        demand = np.zeros(len(days))
        for k in range(int(-(-days.max() // 7)) if len(days) else 0):
            left = days - 7 * k
            woy = (when + dt.timedelta(weeks=k)).isocalendar()[1]
            units = expected_units(self.base_demand[which], self.elasticity[which], 0.0, woy, left)
            demand += np.where(left > 0, units, 0.0)
        ratio = np.exp(self.rng.normal(0.0, BUY_RATIO_SIGMA, len(days)))
        self.season_end[which] = season_end
        self.stock[which] = np.maximum(np.round(demand * ratio), 1).astype(np.int64)

    def week(self, when: dt.date) -> dict[str, np.ndarray]:
        """Sell one week (``when``): the rows of :data:`SALES_COLUMNS`, and the stock runs down.

        A SKU whose season has ended is replaced first by a new SKU (a new id and new traits, as a
        new collection replaces the old one) with a season of :data:`SEASON_WEEKS` weeks and its
        own buy. So every SKU has one season, and its latest row is its current state.
        """
        rng, n = self.rng, len(self.sku)
        today = np.datetime64(when, "D")
        ended = self.season_end <= today
        if ended.any():
            k = int(ended.sum())
            self.sku[ended] = [f"{self.country}-SKU-{i:05d}" for i in range(self.next_sku, self.next_sku + k)]
            self.next_sku += k
            self.base_price[ended], self.base_demand[ended], self.elasticity[ended] = self._traits(k)
            weeks = rng.integers(SEASON_WEEKS[0], SEASON_WEEKS[1] + 1, k)
            self.open_seasons(ended, when, today + (7 * weeks).astype("timedelta64[D]"))
        dtse = (self.season_end - today).astype(np.int64)
        woy = when.isocalendar()[1]
        # The history's pricing: deeper markdowns are more likely close to the end of the season.
        late = np.clip(1.0 - dtse / 150.0, 0.0, 1.0)
        weights = np.exp(-np.outer(1.0 - late, np.arange(len(MARKDOWN_STEPS))) * 0.6)
        weights /= weights.sum(axis=1, keepdims=True)
        idx = (weights.cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)
        discount = np.array(MARKDOWN_STEPS)[idx]
        mean = expected_units(self.base_demand, self.elasticity, discount, woy, dtse)
        noise = np.exp(rng.normal(-(NOISE_SIGMA**2) / 2, NOISE_SIGMA, n))  # mean one
        units = np.minimum(rng.poisson(mean * noise), self.stock)
        row = {
            "sku": self.sku.copy(),
            "week_of_year": np.full(n, woy, dtype=np.int64),
            "base_price": self.base_price.copy(),
            "discount": discount,
            "stock": self.stock.copy(),
            "days_to_season_end": dtse,
            "units_sold": units.astype(np.int64),
        }
        self.stock = self.stock - units
        return row


def make_country_frame(country: str, week: str, rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` rows of sales history before ``week`` for one country (columns: :data:`SALES_COLUMNS`).

    ``ceil(rows / 8)`` SKUs over up to :data:`HISTORY_WEEKS` weeks, oldest week first, cut at
    ``rows``. Every SKU's season ends 7 to 120 days after ``week``, so each is still on sale in the
    week being priced.

    :param country: the country code.
    :param week: the week being priced (``YYYY-MM-DD``); the history is the weeks before it.
    :param rows: how many rows (at least 1).
    :param seed: the random seed (the same seed gives the same rows).
    """
    if rows < 1:
        raise ValueError(f"rows_per_country must be at least 1, got {rows}")
    day = parse_week(week)
    n_skus = max(1, -(-rows // HISTORY_WEEKS))
    n_weeks = -(-rows // n_skus)
    skus = Assortment(country, n_skus, seed)
    first = day - dt.timedelta(weeks=n_weeks)
    ends = np.datetime64(day, "D") + skus.rng.integers(7, 121, n_skus).astype("timedelta64[D]")
    skus.open_seasons(np.ones(n_skus, dtype=bool), first, ends)
    weeks = [skus.week(first + dt.timedelta(weeks=k)) for k in range(n_weeks)]
    frame = pd.DataFrame({c: np.concatenate([w[c] for w in weeks]) for c in SALES_COLUMNS})
    frame["sku"] = frame["sku"].astype(str)
    return frame.iloc[:rows].reset_index(drop=True)


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
    """CLI entry point; returns the exit code (0 ok, 2 bad arguments; ``seed``: 1 a database error)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["seed"]:
        from airflow_ml_provider.jobs import synthetic_seed

        return synthetic_seed.main(args_list[1:])
    parser = argparse.ArgumentParser(
        prog="python -m airflow_ml_provider.jobs.synthetic",
        description="Write a synthetic weekly markdown-pricing sales dataset as Parquet "
        "('seed --help': fill a database table instead).",
    )
    parser.add_argument("--root", required=True, help="dataset root; the data goes to ROOT/WEEK/sales")
    parser.add_argument("--week", required=True, help="the week's date, YYYY-MM-DD")
    parser.add_argument("--countries", required=True, help="comma-separated country codes, e.g. DE,FR")
    parser.add_argument("--rows-per-country", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(args_list)
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
