"""ErpWriteOperator's arguments: checked in the constructor without I/O; light imports; dialect choice."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError
from airflow_ml_provider.operators.erp_writer import ErpWriteOperator


def op(**kwargs: Any) -> ErpWriteOperator:
    args: dict[str, Any] = {
        "task_id": "w",
        "conn_id": "erp",
        "table": "erp.prices",
        "input_path": "/data/preds",
        "key_column": "country",
    }
    return ErpWriteOperator(**(args | kwargs))


def test_importing_the_operator_imports_no_driver_pandas_or_pyarrow() -> None:
    code = (
        "import sys, json; import airflow_ml_provider.operators.erp_writer; "
        "print(json.dumps([m for m in ('psycopg2', 'psycopg', 'pyarrow', 'pandas') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_template_fields_and_keyword_only() -> None:
    assert isinstance(ErpWriteOperator.template_fields, tuple)
    assert {"table", "input_path", "keys", "constants", "column_map"} <= set(ErpWriteOperator.template_fields)
    with pytest.raises(TypeError):
        ErpWriteOperator("w", "erp", "t", "/x", "country")  # type: ignore[call-arg, arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"table": "a.b.c"}, "more than one"),
        ({"input_path": "relative/path"}, "input_path"),
        ({"input_path": {"DE": "ftp://x/y"}}, r"input_path\['DE'\]"),
        ({"key_column": []}, "key_column"),
        ({"keys": []}, "keys"),
        ({"keys": "DE"}, "keys"),
        ({"keys": [["DE", "W48"]]}, "one value per key column"),
        ({"column_map": ["a"]}, "column_map"),
        ({"constants": {"model_version": [1]}}, "constants"),
        ({"primary_key": "sku"}, "primary_key"),
        ({"max_drop": 2}, "max_drop"),
        ({"on_drop": "ignore"}, "on_drop"),
        ({"batch_rows": 0}, "batch_rows"),
        ({"conn_id": ""}, "conn_id"),
    ],
)
def test_static_arguments_are_checked_at_parse_time(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidSpecError, match=match):
        op(**kwargs)


def test_templated_values_wait_for_rendering() -> None:
    o = op(table="{{ params.table }}", input_path="{{ ti.xcom_pull('collect') }}", keys="{{ params.keys }}")
    o.table, o.input_path, o.keys = "t; DROP TABLE t", "/x", ["DE"]
    with pytest.raises(InvalidSpecError, match="not a valid SQL name"):
        o._validate()


def test_keys_default_to_the_input_dict_and_are_normalized() -> None:
    assert op(input_path={"FR": "/a", "DE": "/b"})._validate()[2] == [("DE",), ("FR",)]
    assert op(keys=[2026, "2026"])._validate()[2] == [("2026",)]
    o = op(key_column=["country", "week"], keys=[["DE", 48]])
    assert o._validate()[1:] == (["country", "week"], [("DE", "48")])


@pytest.mark.parametrize("conn_type", ["mariadb", "mssql", "ml_hdfs"])
def test_other_connection_types_are_refused_naming_the_supported_ones(
    conn_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ERP", json.dumps({"conn_type": conn_type, "host": "h", "password": "pw-x1"}))
    supported = r"type '.*'; ErpWriteOperator supports \['postgres', 'mysql', 'sqlite'\]"
    with pytest.raises(ConnectionConfigError, match=supported) as info:
        op()._writer()
    assert "pw-x1" not in str(info.value)
