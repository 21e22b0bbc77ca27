"""Schema drift between training runs (airflow_ml_provider.jobs.spark_drift): the comparison and the
selection that decides which earlier run is compared. The MLflow lookup runs against the real server
in tests/integration/test_spark_train_app.py."""

from __future__ import annotations

from airflow_ml_provider.jobs.spark_drift import describe_drift, input_schema, selection
from airflow_ml_provider.jobs.spark_spec import Columns, parse_spec

BASE = {"input": "/data/sales", "label": "units_sold", "algorithm": "linear", "mlflow": {"experiment": "e"}}


def test_every_change_is_named() -> None:
    previous = {"units_sold": "integer", "discount": "float", "stock": "integer", "segment": "string"}
    current = {"units_sold": "integer", "stock": "float", "segment": "string", "promo": "integer"}
    assert describe_drift(previous, current) == [
        "'discount' (float) is gone",
        "'promo' (integer) is new",
        "'stock' was integer, is float",
    ]
    assert describe_drift(current, dict(reversed(list(current.items())))) == []  # order is not drift


def test_the_schema_is_the_label_then_the_model_inputs_with_their_kinds() -> None:
    columns = Columns(label="y", features=("a", "b"), categorical=("c",), group="g")
    kinds = {"y": "float", "a": "integer", "b": "float", "c": "string", "g": "string", "unused": "date"}
    assert input_schema(columns, kinds) == {"y": "float", "a": "integer", "b": "float", "c": "string", "g": "string"}


def test_runs_compare_only_with_the_same_column_selection() -> None:
    """Changing the spec's columns is not drift; the same selection on changed data is."""
    a = selection(parse_spec(BASE))
    assert a == {"label": "units_sold", "features": None, "categorical": [], "exclude": [], "group_column": None}
    assert selection(parse_spec({**BASE, "on_schema_change": "allow", "seed": 3})) == a
    assert selection(parse_spec({**BASE, "exclude": ["sku"]})) != a
    assert selection(parse_spec({**BASE, "features": ["discount"]})) != a
