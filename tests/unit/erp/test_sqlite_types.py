"""SQLite declared column types -> the type names the checks know (affinity rules, common names)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from airflow_ml_provider.erp.checks import DB_FAMILY, compatible
from airflow_ml_provider.erp.sqlite import quote, sqlite_data_type


@pytest.mark.parametrize(
    ("declared", "expected", "family"),
    [
        ("INTEGER", "integer", "integer"),
        ("BIGINT", "bigint", "integer"),
        ("UNSIGNED BIG INT", "integer", "integer"),
        ("INT8", "int8", "integer"),
        ("REAL", "real", "number"),
        ("DOUBLE", "double", "number"),
        ("DOUBLE PRECISION", "double precision", "number"),
        ("FLOAT", "float", "number"),
        ("NUMERIC", "numeric", "number"),
        ("DECIMAL(10,5)", "decimal", "number"),
        ("MONEY", "numeric", "number"),
        ("TEXT", "text", "text"),
        ("VARCHAR(10)", "varchar", "text"),
        ("NVARCHAR(20)", "text", "text"),
        ("CHARACTER(20)", "character", "text"),
        ("CLOB", "text", "text"),
        ("BOOLEAN", "boolean", "bool"),
        ("DATE", "date", "date"),
        ("DATETIME", "datetime", "timestamp"),
        ("TIMESTAMP", "timestamp", "timestamp"),
        ("TIMESTAMPTZ", "timestamp", "timestamp"),
    ],
)
def test_declared_types_map_to_the_checks_families(declared: str, expected: str, family: str) -> None:
    assert sqlite_data_type(declared) == expected
    assert DB_FAMILY[expected] == family
    assert sqlite_data_type(declared.lower()) == expected


@pytest.mark.parametrize("declared", ["BLOB", "", "  "])
def test_blob_and_untyped_columns_accept_any_value(declared: str) -> None:
    assert sqlite_data_type(declared) == "blob"
    assert all(compatible(t, "blob") for t in (pa.int64(), pa.string(), pa.float64(), pa.timestamp("us")))


def test_type_checks_work_on_sqlite_names() -> None:
    assert compatible(pa.int64(), sqlite_data_type("INTEGER"))
    assert not compatible(pa.string(), sqlite_data_type("BIGINT"))
    assert compatible(pa.float64(), sqlite_data_type("DOUBLE"))
    assert not compatible(pa.float64(), sqlite_data_type("VARCHAR(10)"))
    assert compatible(pa.timestamp("us", tz="UTC"), sqlite_data_type("TIMESTAMP"))
    assert not compatible(pa.bool_(), sqlite_data_type("REAL"))


def test_quote_doubles_quotes() -> None:
    assert quote("prices") == '"prices"'
    assert quote('a"b') == '"a""b"'
