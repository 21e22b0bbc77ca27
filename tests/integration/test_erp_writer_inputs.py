"""ErpWriteOperator's inputs as the markdown_pricing DAG gives them, on a real SQLite file.

``{country: predictions file}`` where the files have no ``country`` column (the training job
writes one file per ``country=XX`` folder): the dict's key fills the key column. ``max_drop`` and
``on_drop`` come from templates (the Trigger form's params).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ml_provider.exceptions import DropGuardError, InvalidSpecError
from airflow_ml_provider.operators.erp_writer import ErpWriteOperator

pytestmark = pytest.mark.integration

CONN_ID = "erp_inputs_test"
CTX: Any = {}


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "erp.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE recs (country TEXT NOT NULL, sku TEXT NOT NULL, markdown DOUBLE NOT NULL, "
                     "PRIMARY KEY (country, sku))")  # fmt: skip
    conn.close()
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def predictions(folder: Path, country: str, n: int, with_country: str | None = None) -> str:
    """``folder/country=XX/part-0.parquet`` with ``n`` rows and no country column (unless ``with_country``)."""
    path = folder / f"country={country}" / "part-0.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: dict[str, Any] = {"sku": [f"{country}-{i}" for i in range(n)], "markdown": [0.1] * n}
    if with_country is not None:
        columns["country"] = [with_country] * n
    pq.write_table(pa.table(columns), path)
    return str(path)


def rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT country, count(*) FROM recs GROUP BY 1").fetchall())


def op(input_path: Any, **kwargs: Any) -> ErpWriteOperator:
    return ErpWriteOperator(
        task_id="w", conn_id=CONN_ID, table="recs", input_path=input_path, key_column="country", **kwargs
    )


def test_the_dict_key_fills_a_missing_key_column(db: Path, tmp_path: Path) -> None:
    paths = {c: predictions(tmp_path / "p", c, n) for c, n in (("DE", 4), ("FR", 3))}
    result = op(paths).execute(CTX)
    assert rows(db) == {"DE": 4, "FR": 3}
    assert result["keys"] == {"DE": {"old": 0, "new": 4, "change": None}, "FR": {"old": 0, "new": 3, "change": None}}


def test_a_file_with_its_own_key_column_keeps_it_and_must_match_the_keys(db: Path, tmp_path: Path) -> None:
    """The file's column wins over the dict's key; a value outside the keys is refused, nothing written."""
    good = predictions(tmp_path / "a", "DE", 2, with_country="DE")
    op({"DE": good}).execute(CTX)
    assert rows(db) == {"DE": 2}
    wrong = predictions(tmp_path / "b", "FR", 2, with_country="IT")
    with pytest.raises(InvalidSpecError, match="IT"):
        op({"DE": good, "FR": wrong}).execute(CTX)
    assert rows(db) == {"DE": 2}


def test_max_drop_and_on_drop_from_rendered_templates(db: Path, tmp_path: Path) -> None:
    op({"DE": predictions(tmp_path / "a", "DE", 10)}).execute(CTX)
    half = {"DE": predictions(tmp_path / "b", "DE", 5)}
    task: Any = op(half, max_drop="{{ params.max_drop }}", on_drop="{{ params.on_drop }}")
    # as the template renders without native types: strings
    task.max_drop, task.on_drop = "0.4", "fail"
    with pytest.raises(DropGuardError):
        task.execute(CTX)
    assert rows(db) == {"DE": 10}
    task.max_drop = "0.5"
    task.execute(CTX)
    assert rows(db) == {"DE": 5}
    task.max_drop = "ten percent"
    with pytest.raises(InvalidSpecError, match=r"max_drop='ten percent' must be a fraction between 0 and 1"):
        task.execute(CTX)
    assert rows(db) == {"DE": 5}
