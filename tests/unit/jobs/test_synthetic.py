"""The synthetic sales dataset (airflow_ml_provider.jobs.synthetic), in-process and as a command."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from airflow_ml_provider.jobs import synthetic
from airflow_ml_provider.jobs.markdown_model import MARKDOWN_GRID
from tests.conftest import ROOT
from tests.unit.jobs.conftest import WEEK, run_subprocess


def test_synthetic_layout_and_columns(tmp_path: Path) -> None:
    path = synthetic.write_week(str(tmp_path), WEEK, ["DE", "FR"], rows_per_country=123, seed=3)
    sales = tmp_path / WEEK / "sales"
    assert path == str(sales)
    assert sorted(p.name for p in sales.iterdir()) == ["_SUCCESS", "country=DE", "country=FR"]
    assert [p.name for p in (tmp_path / WEEK).iterdir()] == ["sales"], "no temporary directory left behind"
    marker = (sales / "_SUCCESS").stat().st_mtime_ns
    for country in ("DE", "FR"):
        part = sales / f"country={country}" / "part-0.parquet"
        assert part.stat().st_mtime_ns <= marker
        frame = pq.read_table(part).to_pandas()
        assert list(frame.columns) == list(synthetic.SALES_COLUMNS)
        assert len(frame) == 123
        assert frame["sku"].str.startswith(f"{country}-SKU-").all()
        assert set(frame["discount"].round(2)) <= set(MARKDOWN_GRID)
        assert (frame["units_sold"] >= 0).all()
        assert (frame["units_sold"] <= frame["stock"]).all()
        assert frame.notna().all().all()
    # Hive partitioning of the whole dataset gives the country back as a column.
    table = pq.read_table(sales, partitioning="hive")
    assert set(table.column("country").to_pylist()) == {"DE", "FR"}


def test_synthetic_is_deterministic(tmp_path: Path) -> None:
    a = synthetic.make_country_frame("DE", WEEK, 2000, seed=7)
    b = synthetic.make_country_frame("DE", WEEK, 2000, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(synthetic.make_country_frame("FR", WEEK, 2000, seed=7))
    assert not a.equals(synthetic.make_country_frame("DE", WEEK, 2000, seed=8))


@pytest.mark.parametrize("days_to_season_end", [1, 14, 28, 56, 120])
def test_every_skus_arc_elasticity_is_that_of_published_retail_studies(days_to_season_end: int) -> None:
    """ln(q(20 % off) / q(full price)) / ln(0.8) of the expected demand lies in [-3, -1.5] for every SKU."""
    for country in ("DE", "FR", "IT"):
        skus = synthetic.Assortment(country, 500, seed=3)
        full, off = (
            synthetic.expected_units(skus.base_demand, skus.elasticity, d, 30, days_to_season_end) for d in (0.0, 0.2)
        )
        arc = np.log(off / full) / np.log(0.8)
        assert ((arc >= -3.0) & (arc <= -1.5)).all(), (arc.min(), arc.max())
        assert arc.min() < -2.4, "elasticities spread over the range, not one value"
        assert arc.max() > -1.7


def test_end_of_season_urgency_is_modest_and_seasonality_holds() -> None:
    skus = synthetic.Assortment("DE", 200, seed=1)
    early, late = (synthetic.expected_units(skus.base_demand, skus.elasticity, 0.3, 30, days) for days in (120, 1))
    ratio = late / early  # the same 30 % markdown sells more at the very end, but not wildly more
    assert (ratio > 1.0).all()
    assert ratio.max() < 1.15
    summer, winter = (synthetic.expected_units(10.0, -2.0, 0.0, week, 100) for week in (23, 49))
    assert 1.3 < summer / winter < 1.7


def test_sales_follow_the_expected_demand_and_stock_caps_them() -> None:
    """Uncapped, the week's units average the expected units (mean-one noise); capped, never above stock."""
    skus = synthetic.Assortment("DE", 4000, seed=5)
    when = dt.date(2026, 6, 1)
    end = np.datetime64("2026-10-01")
    skus.open_seasons(np.ones(4000, dtype=bool), when, np.full(4000, end))
    skus.stock[:] = 10**9
    row = skus.week(when)
    mean = synthetic.expected_units(
        skus.base_demand, skus.elasticity, row["discount"], row["week_of_year"], row["days_to_season_end"]
    )
    assert row["units_sold"].sum() / mean.sum() == pytest.approx(1.0, abs=0.03)
    assert (row["days_to_season_end"] == (end - np.datetime64(when)).astype(int)).all()
    assert (skus.stock == 10**9 - row["units_sold"]).all(), "the stock runs down by the units sold"
    skus.stock[:] = 2
    assert (skus.week(when + dt.timedelta(weeks=1))["units_sold"] <= 2).all()


def test_a_seasons_buy_is_about_its_full_price_demand() -> None:
    """Median stock / season demand near 1, with both short and overstocked SKUs (markdowns needed for some)."""
    n = 3000
    skus = synthetic.Assortment("FR", n, seed=2)
    when = dt.date(2026, 3, 2)
    skus.open_seasons(np.ones(n, dtype=bool), when, np.full(n, np.datetime64("2026-05-25")))  # 12 weeks
    demand = sum(
        synthetic.expected_units(skus.base_demand, skus.elasticity, 0.0, 10 + k, 84 - 7 * k) for k in range(12)
    )
    ratio = skus.stock / demand
    assert 0.85 < np.median(ratio) < 1.15
    assert 0.25 < (ratio < 0.8).mean() < 0.45
    assert 0.25 < (ratio > 1.25).mean() < 0.45


def test_synthetic_replaces_an_existing_week(tmp_path: Path) -> None:
    synthetic.write_week(str(tmp_path), WEEK, ["DE", "FR"], rows_per_country=50)
    synthetic.write_week(str(tmp_path), WEEK, ["IT"], rows_per_country=50)
    assert sorted(p.name for p in (tmp_path / WEEK).iterdir()) == ["sales"]
    assert sorted(p.name for p in (tmp_path / WEEK / "sales").iterdir()) == ["_SUCCESS", "country=IT"]


@pytest.mark.parametrize(
    ("week", "countries"), [("2026-13-01", ["DE"]), ("../x", ["DE"]), (WEEK, ["../DE"]), (WEEK, [])]
)
def test_synthetic_refuses_bad_arguments(tmp_path: Path, week: str, countries: list[str]) -> None:
    with pytest.raises(ValueError, match=r"week|country"):
        synthetic.write_week(str(tmp_path), week, countries)
    assert not (tmp_path / WEEK).exists() or not any((tmp_path / WEEK).iterdir())


def test_synthetic_cli(tmp_path: Path) -> None:
    proc = run_subprocess(
        [sys.executable, "-m", "airflow_ml_provider.jobs.synthetic", "--root", str(tmp_path), "--week", WEEK,
         "--countries", "DE,FR", "--rows-per-country", "40"],
        ROOT,
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / WEEK / "sales" / "_SUCCESS").exists()
    assert (tmp_path / WEEK / "sales" / "country=FR" / "part-0.parquet").exists()
    assert proc.stdout.strip().splitlines() == [
        f"synthetic: wrote {tmp_path / WEEK / 'sales'} countries=DE,FR rows_per_country=40"
    ]
