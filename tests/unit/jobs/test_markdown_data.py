"""The training job's files (airflow_ml_provider.jobs.markdown_data): atomic writes, strict JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from airflow_ml_provider.jobs import markdown_data


def test_write_result_is_strict_json_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "xcom" / "result.json"
    markdown_data.write_result({"week": "2026-11-23", "countries": {}}, str(path))
    assert json.loads(path.read_text()) == {"week": "2026-11-23", "countries": {}}
    with pytest.raises(ValueError, match="JSON"):
        markdown_data.write_result({"rmse": float("nan")}, str(path))
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"], "no temporary file left behind"
    assert json.loads(path.read_text())["week"] == "2026-11-23", "the old result stays"


def test_write_predictions_replaces_file_then_marker(tmp_path: Path) -> None:
    directory = tmp_path / "predictions" / "country=DE"
    first = markdown_data.write_predictions(pd.DataFrame({"sku": ["a"], "x": [1.0]}), str(directory))
    second = markdown_data.write_predictions(pd.DataFrame({"sku": ["b", "c"], "x": [2.0, 3.0]}), str(directory))
    assert first == second == str(directory / "part-0.parquet")
    assert sorted(p.name for p in directory.iterdir()) == ["_SUCCESS", "part-0.parquet"]
    assert (directory / "_SUCCESS").stat().st_mtime_ns >= (directory / "part-0.parquet").stat().st_mtime_ns
    assert pq.read_table(second).to_pandas()["sku"].tolist() == ["b", "c"]
