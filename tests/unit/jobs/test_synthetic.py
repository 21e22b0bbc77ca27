"""The synthetic sales dataset (airflow_ml_provider.jobs.synthetic), in-process and as a command."""

from __future__ import annotations

import sys
from pathlib import Path

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


def test_synthetic_is_deterministic_and_demand_responds_to_markdowns(tmp_path: Path) -> None:
    a = synthetic.make_country_frame("DE", WEEK, 2000, seed=7)
    b = synthetic.make_country_frame("DE", WEEK, 2000, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(synthetic.make_country_frame("FR", WEEK, 2000, seed=7))
    by_discount = a.groupby(a["discount"].round(2))["units_sold"].mean()
    assert by_discount.loc[0.3:].mean() > 1.5 * by_discount.loc[0.0]


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
