"""MariaDB/MySQL catalog types -> the checks' families; names, lock names and bound values (no server)."""

from __future__ import annotations

import datetime as dt
import decimal
import math

import pyarrow as pa
import pytest

from airflow_ml_provider.erp.checks import DB_FAMILY, compatible
from airflow_ml_provider.erp.identifiers import TableName
from airflow_ml_provider.erp.mysql import DATA_ERRORS, _error, lock_name, mysql_data_type, quote, rows
from airflow_ml_provider.exceptions import InvalidSpecError


@pytest.mark.parametrize(
    ("data_type", "column_type", "expected", "family"),
    [  # information_schema.columns as MariaDB 10.11 and MySQL 8 fill them
        ("int", "int(11)", "int", "integer"),
        ("int", "int unsigned", "int", "integer"),
        ("bigint", "bigint(20)", "bigint", "integer"),
        ("smallint", "smallint(6)", "smallint", "integer"),
        ("mediumint", "mediumint(9)", "mediumint", "integer"),
        ("tinyint", "tinyint(4)", "tinyint", "integer"),
        ("tinyint", "tinyint(1)", "tinyint(1)", "flag"),
        ("tinyint", "tinyint(1) unsigned", "tinyint(1)", "flag"),
        ("TINYINT", "TINYINT(1)", "tinyint(1)", "flag"),
        ("year", "year(4)", "year", "integer"),
        ("double", "double", "double", "number"),
        ("float", "float", "float", "number"),
        ("decimal", "decimal(10,2)", "decimal", "number"),
        ("varchar", "varchar(10)", "varchar", "text"),
        ("char", "char(2)", "char", "text"),
        ("text", "text", "text", "text"),
        ("tinytext", "tinytext", "tinytext", "text"),
        ("mediumtext", "mediumtext", "mediumtext", "text"),
        ("longtext", "longtext", "longtext", "text"),
        ("enum", "enum('a','b')", "enum", "text"),
        ("date", "date", "date", "date"),
        ("datetime", "datetime(6)", "datetime", "timestamp"),
        ("timestamp", "timestamp", "timestamp", "timestamp"),
    ],
)
def test_catalog_types_map_to_the_checks_families(data_type: str, column_type: str, expected: str, family: str) -> None:
    assert mysql_data_type(data_type, column_type) == expected
    assert DB_FAMILY[expected] == family


def test_type_checks_work_on_mariadb_names() -> None:
    assert compatible(pa.bool_(), "tinyint(1)")
    assert compatible(pa.int8(), "tinyint(1)")  # BOOL columns are often written with 0/1
    assert not compatible(pa.string(), "tinyint(1)")
    assert not compatible(pa.bool_(), "tinyint")
    assert compatible(pa.int64(), "int")
    assert not compatible(pa.float64(), "bigint")
    assert compatible(pa.decimal128(10, 2), "decimal")
    assert compatible(pa.float64(), "double")
    assert not compatible(pa.float64(), "varchar")
    assert compatible(pa.string(), "enum")
    assert compatible(pa.timestamp("us", tz="UTC"), "datetime")
    assert compatible(pa.date32(), "date")
    assert compatible(pa.string(), "json")  # unknown types take any value; the server checks


def test_quote_uses_backticks_and_doubles_them() -> None:
    assert quote("prices") == "`prices`"
    assert quote("a`b") == "`a``b`"


def test_lock_names_fit_mysql_and_differ_per_table_and_key() -> None:
    names = {
        lock_name(TableName("erp", "prices"), "DE"),
        lock_name(TableName("erp", "prices"), "FR"),
        lock_name(TableName("erp2", "prices"), "DE"),
        lock_name(TableName("erp", "prices"), "DE|" + "x" * 500),
    }
    assert len(names) == 4
    assert all(len(n) <= 64 and n.startswith("ml_erp:") for n in names)
    assert lock_name(TableName("erp", "prices"), "DE") == lock_name(TableName("erp", "prices"), "DE")


def test_rows_are_bindable_chunked_utc_and_nan_is_null() -> None:
    instant = dt.datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=dt.timezone.utc)
    batch = pa.record_batch(
        {
            "k": ["DE", "DE", "FR"],
            "at": pa.array([instant] * 3, pa.timestamp("ns", tz="Europe/Berlin")),
            "score": [1.5, math.nan, None],
            "qty": pa.array([decimal.Decimal("1.25")] * 3, pa.decimal128(10, 2)),
            "flag": [True, False, None],
        }
    )
    chunks = list(rows(batch, ["k", "at", "score", "qty", "flag"], chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 1]
    naive = instant.replace(tzinfo=None)
    assert chunks[0][0] == ("DE", naive, 1.5, decimal.Decimal("1.25"), True)
    assert chunks[0][1][2] is None  # NaN -> NULL (MariaDB/MySQL have no NaN)
    assert chunks[1][0] == ("FR", naive, None, decimal.Decimal("1.25"), None)


def test_an_infinite_value_is_refused_naming_the_column() -> None:
    batch = pa.record_batch({"score": [1.0, math.inf]})
    with pytest.raises(InvalidSpecError, match=r"Column 'score' has inf .*cannot store infinite values"):
        list(rows(batch, ["score"]))


class _MySQLdbError(Exception):
    """Like mysqlclient's errors: ``args == (code, message)``."""


class _ConnectorError(Exception):
    """Like mysql-connector-python's errors: ``errno`` and ``msg`` attributes."""

    def __init__(self, errno: int, msg: str) -> None:
        super().__init__(f"{errno} (23000): {msg}")
        self.errno, self.msg = errno, msg


def test_server_errors_are_read_from_either_client() -> None:
    check = "CONSTRAINT `price_check` failed for `erp`.`prices`"
    assert _error(_MySQLdbError(4025, check)) == (4025, check)
    assert _error(_ConnectorError(4025, check)) == (4025, check)
    assert _error(_MySQLdbError(1406, "Data too long for column 'source' at row 12.")) == (
        1406,
        "Data too long for column 'source' at row 12",
    )
    assert _error(ValueError("no code")) == (None, "no code")
    assert {1048, 1062, 1406, 1366, 3819, 4025} <= DATA_ERRORS
    assert 1213 not in DATA_ERRORS  # a deadlock is not the data's fault
