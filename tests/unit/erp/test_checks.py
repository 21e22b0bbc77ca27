"""Checks on Arrow schemas and batches before writing."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from airflow_ml_provider.erp.checks import ColumnPlan, check_batch, compatible, plan_columns
from airflow_ml_provider.erp.dialect import TargetColumn, TargetTable
from airflow_ml_provider.erp.identifiers import TableName
from airflow_ml_provider.exceptions import InvalidSpecError

TABLE = TargetTable(
    TableName("public", "prices"),
    {
        "country": TargetColumn("country", "text", False, False),
        "sku": TargetColumn("sku", "bigint", False, False),
        "price": TargetColumn("price", "double precision", False, False),
        "note": TargetColumn("note", "text", True, False),
        "model_version": TargetColumn("model_version", "text", True, False),
        "written_at": TargetColumn("written_at", "timestamp with time zone", False, True),
    },
    ("country", "sku"),
)
SCHEMA = pa.schema([("country", pa.string()), ("sku", pa.int64()), ("prediction", pa.float64()), ("extra", pa.int8())])


def _plan(schema: pa.Schema = SCHEMA, **kwargs: object) -> ColumnPlan:
    args = {"column_map": None, "constants": None, "key_columns": ["country"], **kwargs}
    return plan_columns(schema, "input file f.parquet", TABLE, **args)  # type: ignore[arg-type]


def test_plan_with_map_and_constants() -> None:
    plan = _plan(
        column_map={"country": "country", "sku": "sku", "prediction": "price"}, constants={"model_version": "7"}
    )
    assert plan.sources == ["country", "sku", "prediction"]
    assert plan.columns == ["country", "sku", "price", "model_version"]


def test_required_column_missing_names_it() -> None:
    with pytest.raises(InvalidSpecError, match=r"\['price'\].*column_map"):
        _plan()  # 'prediction' is not mapped to 'price'


def test_mapped_source_missing_and_unknown_target() -> None:
    with pytest.raises(InvalidSpecError, match=r"no column.*'score'"):
        _plan(column_map={"score": "price"})
    with pytest.raises(InvalidSpecError, match=r"no column.*'cost'"):
        _plan(column_map={"country": "country", "sku": "sku", "prediction": "cost"})


def test_incompatible_types_name_column_and_types() -> None:
    schema = pa.schema([("country", pa.string()), ("sku", pa.string()), ("price", pa.float64())])
    with pytest.raises(InvalidSpecError, match=r"'sku'.*string.*prices\.sku \(bigint\)"):
        _plan(schema)
    with pytest.raises(InvalidSpecError, match="constants"):
        _plan(column_map={"country": "country", "sku": "sku", "prediction": "price"}, constants={"model_version": 7})


@pytest.mark.parametrize(
    ("arrow_type", "db_type", "ok"),
    [
        (pa.int32(), "bigint", True),
        (pa.float32(), "bigint", False),
        (pa.int64(), "numeric", True),
        (pa.string(), "character varying", True),
        (pa.int64(), "text", False),
        (pa.timestamp("us", "UTC"), "timestamp with time zone", True),
        (pa.bool_(), "boolean", True),
        (pa.dictionary(pa.int8(), pa.string()), "text", True),
        (pa.string(), "jsonb", True),
    ],
)
def test_compatible(arrow_type: pa.DataType, db_type: str, ok: bool) -> None:
    assert compatible(arrow_type, db_type) is ok


def _batch(price: list[float | None], countries: list[str] | None = None) -> pa.RecordBatch:
    n = len(price)
    return pa.RecordBatch.from_pydict(
        {"country": countries or ["DE"] * n, "sku": list(range(n)), "price": price, "note": [None] * n}
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
def test_not_null_column_refuses_nan_inf_null_naming_the_row(bad: float | None) -> None:
    with pytest.raises(InvalidSpecError, match=r"Row 12 of input file f.*'price'.*NOT NULL"):
        check_batch(
            _batch([1.0, 2.0, bad]), TABLE, where="input file f", first_row=10, key_columns=["country"], keys=None
        )


def test_nullable_column_accepts_nulls_and_keys_are_checked() -> None:
    check_batch(_batch([1.0, 2.0]), TABLE, where="f", first_row=0, key_columns=["country"], keys={("DE",)})
    with pytest.raises(InvalidSpecError, match=r"Row 1 of f has the key 'XX'.*\['DE', 'FR'\]"):
        check_batch(
            _batch([1.0, 2.0], ["DE", "XX"]),
            TABLE,
            where="f",
            first_row=0,
            key_columns=["country"],
            keys={("DE",), ("FR",)},
        )
