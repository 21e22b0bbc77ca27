"""profile_dataset on local Parquet data, checked against pandas on the same data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ml_provider.eda.profile import DatasetProfile, profile_dataset
from airflow_ml_provider.eda.stats import Caps
from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.storage.local import LocalStorage
from tests.unit.eda.sales import read_all, write_sales


def profile(root: Path, tmp_path: Path, **kw: Any) -> dict[str, Any]:
    storage = LocalStorage()
    files = storage.list_dataset(str(root))
    assert files
    kw.setdefault("chunk_rows", 700)
    kw.setdefault("columns", None)
    result = profile_dataset(storage, files, scratch=str(tmp_path), **kw)
    return result.to_dict(top_k=5)


def by_name(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in summary["columns"]}


def test_overall_statistics_match_pandas(tmp_path: Path) -> None:
    root = write_sales(tmp_path / "sales", {"DE": 3_000, "FR": 1_200, "IT": 40}, files_per_country=2)
    frame = read_all(root)
    summary = profile(root, tmp_path)
    cols = by_name(summary)
    assert summary["rows"] == len(frame) == 4_240
    assert summary["files"] == 6
    assert list(cols) == ["sku", "week", "price", "discount", "units_sold", "promo", "country"]
    for name in ("price", "discount", "units_sold"):
        series = frame[name]
        c = cols[name]
        assert c["nulls"] == series.isna().sum(), name
        assert c["null_rate"] == pytest.approx(series.isna().mean())
        assert c["min"] == pytest.approx(series.min())
        assert c["max"] == pytest.approx(series.max())
        assert c["mean"] == pytest.approx(series.mean(), rel=1e-12)
        assert c["std"] == pytest.approx(series.std(), rel=1e-9)
        assert c["distinct"] == series.nunique()
        assert c["distinct_exact"]
        assert c["quantiles_exact"]  # 4,240 values fit the default sample: quantiles are exact
        expected = np.quantile(series.dropna().astype(float), [0.05, 0.25, 0.5, 0.75, 0.95])
        assert list(c["quantiles"].values()) == pytest.approx(list(expected))
    assert isinstance(cols["units_sold"]["min"], int)
    assert cols["sku"]["distinct"] == frame["sku"].nunique()
    assert cols["sku"]["top"][0]["count"] == frame["sku"].value_counts().max()
    assert cols["promo"]["top"] == [{"value": v, "count": int(n)} for v, n in frame["promo"].value_counts().items()]
    assert cols["promo"]["mean"] == pytest.approx(frame["promo"].mean())
    assert cols["week"]["min"] == "2026-01-05"
    assert cols["week"]["kind"] == "temporal"
    assert cols["week"]["histogram"]["kind"] == "values"
    assert len(cols["week"]["histogram"]["values"]) == 8
    assert sum(cols["price"]["histogram"]["counts"]) == len(frame)
    assert cols["country"]["top"] == [
        {"value": "DE", "count": 3_000},
        {"value": "FR", "count": 1_200},
        {"value": "IT", "count": 40},
    ]


def test_per_partition_statistics_match_pandas(tmp_path: Path) -> None:
    root = write_sales(tmp_path / "sales", {"DE": 2_000, "FR": 900}, files_per_country=3)
    frame = read_all(root)
    summary = profile(root, tmp_path)
    assert summary["partition_keys"] == ["country"]
    assert summary["partition_rows"] == {"country=DE": 2_000, "country=FR": 900}
    for part in summary["partitions"]:
        country = part["values"]["country"]
        sub = frame[frame["country"] == country]
        assert part["rows"] == len(sub)
        assert part["files"] == 3
        cols = by_name(part)
        assert "country" not in cols
        units = cols["units_sold"]
        assert units["nulls"] == sub["units_sold"].isna().sum()
        assert units["mean"] == pytest.approx(sub["units_sold"].mean())
        assert units["distinct"] == sub["units_sold"].nunique()
        assert "histogram" not in units


def test_results_do_not_depend_on_the_batch_size(tmp_path: Path) -> None:
    root = write_sales(tmp_path / "sales", {"DE": 1_500, "FR": 700})
    small, large = profile(root, tmp_path, chunk_rows=97), profile(root, tmp_path, chunk_rows=100_000)
    for a, b in zip(small["columns"], large["columns"], strict=True):
        for key in ("rows", "nulls", "distinct", "min", "max", "quantiles", "top"):
            assert a.get(key) == b.get(key), (a["name"], key)
        if a.get("mean") is not None and not isinstance(a["mean"], str):
            assert a["mean"] == pytest.approx(b["mean"], rel=1e-12)


def test_batches_are_streamed_never_larger_than_chunk_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_sales(tmp_path / "sales", {"DE": 5_000})
    seen: list[int] = []
    original = LocalStorage.iter_batches

    def spy(self: LocalStorage, *args: Any, **kw: Any) -> Any:
        for batch in original(self, *args, **kw):
            seen.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(LocalStorage, "iter_batches", spy)
    summary = profile(root, tmp_path, chunk_rows=400)
    assert summary["rows"] == 5_000 == sum(seen)
    assert max(seen) <= 400
    assert len(seen) >= 13


def test_sketch_sizes_bound_what_is_kept_and_mark_estimates(tmp_path: Path) -> None:
    table = pa.table({"id": pa.array(np.arange(20_000)), "x": pa.array(np.random.default_rng(0).random(20_000))})
    pq.write_table(table, tmp_path / "data.parquet")
    summary = profile(tmp_path / "data.parquet", tmp_path, caps=Caps(sample=1_000, distinct=500, top=10))
    ids = by_name(summary)["id"]
    assert not ids["distinct_exact"]
    assert abs(ids["distinct"] / 20_000 - 1) < 4 / np.sqrt(498)
    assert not ids["quantiles_exact"]
    assert ids["sample_size"] == 1_000
    assert ids["quantiles"]["p50"] == pytest.approx(10_000, rel=0.1)
    assert ids["min"] == 0
    assert ids["max"] == 19_999
    assert ids["mean"] == pytest.approx(9_999.5)


def test_nan_inf_dictionary_all_null_and_other_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "f": pa.array([1.0, float("nan"), float("inf"), None, 3.0]),
            "d": pa.array(["a", "b", "a", None, "a"]).dictionary_encode(),
            "n": pa.array([None] * 5, pa.int32()),
            "l": pa.array([[1], [2], None, [3], []]),
            "ts": pa.array([0, 1_000_000, None, 2_000_000, 3_000_000], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, tmp_path / "x.parquet")
    cols = by_name(profile(tmp_path / "x.parquet", tmp_path))
    f = cols["f"]
    assert (f["nulls"], f["nan"], f["infinite"]) == (1, 1, 1)
    assert f["null_rate"] == pytest.approx(2 / 5)
    assert (f["min"], f["max"], f["mean"], f["distinct"]) == (1.0, 3.0, 2.0, 2)
    assert cols["d"]["kind"] == "categorical"
    assert cols["d"]["top"][0] == {"value": "a", "count": 3}
    assert cols["n"]["null_rate"] == 1.0
    assert cols["n"]["distinct"] == 0
    assert cols["n"]["min"] is None
    assert cols["l"]["kind"] == "other"
    assert cols["l"]["nulls"] == 1
    assert "distinct" not in cols["l"]
    assert cols["ts"]["min"] == "1970-01-01T00:00:00+00:00"
    assert cols["ts"]["max"] == "1970-01-01T00:00:03+00:00"


def test_columns_missing_in_some_files_count_as_nulls(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]}), tmp_path / "d" / "p0.parquet")
    pq.write_table(pa.table({"a": [4, 5]}), tmp_path / "d" / "p1.parquet")
    cols = by_name(profile(tmp_path / "d", tmp_path))
    assert cols["b"]["rows"] == 5
    assert cols["b"]["nulls"] == 2
    assert cols["b"]["missing_in_files"] == 1


def test_selected_columns_only_and_unknown_ones_refused(tmp_path: Path) -> None:
    root = write_sales(tmp_path / "sales", {"DE": 100})
    summary = profile(root, tmp_path, columns=["units_sold", "country"])
    assert [c["name"] for c in summary["columns"]] == ["units_sold", "country"]
    only_key = profile(root, tmp_path, columns=["country"])
    assert only_key["rows"] == 100
    assert only_key["columns"][0]["top"] == [{"value": "DE", "count": 100}]
    with pytest.raises(InvalidSpecError, match=r"names \['label'\], which no input file has"):
        profile(root, tmp_path, columns=["label"])


def test_a_type_conflict_between_files_fails_before_reading(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "d" / "p0.parquet")
    pq.write_table(pa.table({"a": ["x"]}), tmp_path / "d" / "p1.parquet")
    with pytest.raises(InvalidSpecError, match=r"Column 'a' is int64 in an earlier file but string in .*p1.parquet"):
        profile(tmp_path / "d", tmp_path)


def test_a_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("hello")
    with pytest.raises(InvalidSpecError, match=r"notes.txt is not a readable Parquet file.*leading '_'"):
        profile(tmp_path / "d", tmp_path)


def test_partitions_beyond_the_limit_get_row_counts_only(tmp_path: Path) -> None:
    root = write_sales(tmp_path / "sales", {"AT": 10, "BE": 20, "CH": 30})
    storage = LocalStorage()
    files = storage.list_dataset(str(root)) or []
    result = DatasetProfile(max_partitions=2)
    for plan in result.plan(storage, files, None):
        result.add_file(storage, plan, chunk_rows=100, scratch=str(tmp_path))
    summary = result.to_dict(top_k=3)
    assert [p["label"] for p in summary["partitions"]] == ["country=AT", "country=BE"]
    assert summary["partition_rows"] == {"country=AT": 10, "country=BE": 20, "country=CH": 30}
    assert summary["partitions_without_column_stats"] == 1
    assert summary["rows"] == 60
