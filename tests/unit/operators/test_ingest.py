"""SqlIngestOperator's own logic: arguments, SQL text, types, partitioned writing, incremental state.

The operator against real MariaDB, PostgreSQL, SQLite and HDFS is in tests/integration/test_ingest_real.py.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from airflow_ml_provider.erp.identifiers import TableName
from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError
from airflow_ml_provider.ingest import dbtypes, state
from airflow_ml_provider.ingest.columns import Column, Converter, apply_overrides, check_type_name, infer
from airflow_ml_provider.ingest.parts import HIVE_NULL, PartWriter, escape
from airflow_ml_provider.ingest.sources import MySqlSource, PostgresSource, SqliteSource, open_source, select_sql
from airflow_ml_provider.operators.ingest import SqlIngestOperator
from airflow_ml_provider.storage.local import LocalStorage


def op(**kwargs: Any) -> SqlIngestOperator:
    args: dict[str, Any] = {"task_id": "ingest", "conn_id": "src", "table": "orders", "output_path": "/data/orders"}
    return SqlIngestOperator(**(args | kwargs))


# -- arguments ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"table": None}, "either table or query, not neither"),
        ({"query": "SELECT 1"}, "either table or query, not both"),
        ({"table": "orders; DROP TABLE x"}, "not a valid SQL name"),
        ({"table": "a.b.c"}, "more than one '.'"),
        ({"table": None, "query": " ; "}, "must be one SELECT statement"),
        ({"table": None, "query": "SELECT 1", "columns": ["a"]}, "columns applies to table only"),
        ({"columns": "id"}, "non-empty list of column names"),
        ({"columns": ["id", "x y"]}, "not a valid SQL name"),
        ({"partition_by": "_day"}, "hidden from every reader"),
        ({"partition_by": ["country", "country"]}, "names a column twice"),
        ({"partition_by": "ingest_batch", "watermark_column": "id"}, "may not name 'ingest_batch'"),
        ({"watermark_column": "id; --"}, "not a valid SQL name"),
        ({"column_types": {"price": "money"}}, "not an Arrow type name"),
        ({"column_types": {"price": "decimal128(40, 2)"}}, "precision of 1 to 38"),
        ({"chunk_rows": 0}, "chunk_rows=0 must be a whole number >= 1"),
        ({"rows_per_file": True}, "rows_per_file=True"),
        ({"max_partitions": -1}, "max_partitions=-1"),
        ({"allow_empty": "yes"}, "allow_empty='yes' must be True or False"),
        ({"output_path": "data/orders"}, "not absolute"),
        ({"output_path": "/"}, "root directory"),
        ({"conn_id": ""}, "must name a connection"),
    ],
)
def test_bad_arguments_fail_at_parse_time(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidSpecError, match=match):
        op(**kwargs)


def test_templated_arguments_are_checked_after_rendering_only() -> None:
    task = op(table="{{ params.table }}", output_path="{{ params.out }}", partition_by="{{ params.p }}")
    task.table, task.output_path, task.partition_by = "x; y", "/ok", "country"
    with pytest.raises(InvalidSpecError, match="not a valid SQL name"):
        task._validate()
    task.table = "sales.orders"
    spec = task._validate()
    assert (spec.table, spec.partition_by, spec.dst.path) == (TableName("sales", "orders"), ["country"], "/ok")


def test_incremental_mode_runs_one_task_instance_at_a_time_unless_told_otherwise() -> None:
    assert op(watermark_column="id").max_active_tis_per_dag == 1
    assert op(watermark_column="id", max_active_tis_per_dag=3).max_active_tis_per_dag == 3
    assert op().max_active_tis_per_dag is None
    assert set(op().template_fields) >= {"table", "query", "output_path", "partition_by", "watermark_column"}
    assert ".sql" in op().template_ext


def test_importing_the_operator_pulls_in_no_heavy_library_or_driver() -> None:
    code = (
        "import sys, json\n"
        "import airflow_ml_provider.operators.ingest, airflow_ml_provider.ingest.sources\n"
        "import airflow_ml_provider.ingest.parts, airflow_ml_provider.ingest.state\n"
        "import airflow_ml_provider.ingest.dbtypes, airflow_ml_provider.ingest.load\n"
        "heavy = ('pyarrow', 'pandas', 'MySQLdb', 'mysql.connector', 'psycopg2', 'psycopg', 'hdfs')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_a_connection_of_another_type_is_refused_naming_the_supported_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SRC", json.dumps({"conn_type": "ml_hdfs", "host": "nn1"}))
    with pytest.raises(ConnectionConfigError, match=r"'src' has the type 'ml_hdfs'.*\['postgres', 'mysql', 'sqlite'\]"):
        open_source("src")


# -- the SQL ------------------------------------------------------------------------------------------------


def test_select_text_quotes_names_and_binds_the_watermark() -> None:
    pg, my, lite = PostgresSource("c"), MySqlSource("c"), SqliteSource("c")
    table = TableName("sales", "orders")
    assert select_sql(pg, table=table, columns=None, query=None, watermark_column=None, previous=False) == (
        'SELECT * FROM "sales"."orders"'
    )
    assert select_sql(my, table=table, columns=["id", "at"], query=None, watermark_column="at", previous=True) == (
        "SELECT `id`, `at` FROM `sales`.`orders` WHERE `at` > %s OR `at` IS NULL"
    )
    # a double-quoted unknown name would be a string in SQLite: backquotes never are
    assert select_sql(
        lite, table=TableName(None, "o"), columns=None, query=None, watermark_column="id", previous=True
    ) == ("SELECT * FROM `o` WHERE `id` > ? OR `id` IS NULL")
    query = "SELECT * FROM t WHERE name LIKE 'a%';"
    assert select_sql(pg, table=None, columns=None, query=query, watermark_column="id", previous=False) == (
        "SELECT * FROM t WHERE name LIKE 'a%'"  # the first run reads everything: no parameter, % as written
    )
    assert select_sql(pg, table=None, columns=None, query=query, watermark_column="id", previous=True) == (
        'SELECT * FROM (SELECT * FROM t WHERE name LIKE \'a%%\') ml_ingest_src WHERE "id" > %s OR "id" IS NULL'
    )
    assert "LIKE 'a%')" in select_sql(lite, table=None, columns=None, query=query, watermark_column="id", previous=True)


@pytest.mark.parametrize(
    ("source", "error", "kind"),
    [
        (PostgresSource("c"), type("E", (Exception,), {"pgcode": "42P01"})(), "table"),
        (PostgresSource("c"), type("E", (Exception,), {"sqlstate": "42703"})(), "column"),
        (PostgresSource("c"), type("E", (Exception,), {"pgcode": "42601"})(), "syntax"),
        (PostgresSource("c"), type("E", (Exception,), {"pgcode": "25006"})(), "readonly"),
        (PostgresSource("c"), type("E", (Exception,), {"pgcode": "08006"})(), None),  # connection lost: retry
        (MySqlSource("c"), Exception(1146, "Table 'x.y' doesn't exist"), "table"),
        (MySqlSource("c"), Exception(1142, "SELECT command denied"), "denied"),
        (MySqlSource("c"), Exception(2013, "Lost connection"), None),
        (SqliteSource("c"), Exception("no such column: nope"), "column"),
        (SqliteSource("c"), Exception("database is locked"), None),
    ],
)
def test_driver_errors_no_retry_can_fix_are_told_apart(source: Any, error: Exception, kind: str | None) -> None:
    assert source.error_kind(error) == kind
    failure = source.failure(error, "Reading table t")
    assert (failure is None) == (kind is None)
    if failure is not None:
        assert "Reading table t failed on connection 'c'" in str(failure)
        assert str(failure).endswith("Nothing was written.")


# -- types and conversion -----------------------------------------------------------------------------------


def test_database_types_map_to_arrow() -> None:
    assert dbtypes.pg_column("p", 1700, 10, 2).type == pa.decimal128(10, 2)
    assert dbtypes.pg_column("p", 1700, 65535, 65535).type == pa.decimal128(38, 18)  # psycopg2: no precision
    assert dbtypes.pg_column("p", 1700, None, None).type == pa.decimal128(38, 18)  # psycopg 3
    assert dbtypes.pg_column("p", 1700, 50, 4).type == pa.decimal256(50, 4)
    assert dbtypes.pg_column("t", 1184, None, None).type == pa.timestamp("us", tz="UTC")
    assert dbtypes.pg_column("a", 1007, None, None).wire is None  # an array: typed by its values
    # mysqlclient reports DECIMAL(10,2) with a display length of 12 (sign and point), 11 when unsigned
    assert dbtypes.mysql_column("d", 246, 0, length=12, scale=2, text=True).type == pa.decimal128(10, 2)
    assert dbtypes.mysql_column("d", 246, 32, length=11, scale=2).type == pa.decimal128(10, 2)
    assert dbtypes.mysql_column("d", 246, 0, charset=63).type == pa.decimal128(38, 18)  # connector: no precision
    assert dbtypes.mysql_column("i", 3, 32).type == pa.int64()  # INT UNSIGNED
    assert dbtypes.mysql_column("i", 8, 32).type == pa.uint64()
    assert dbtypes.mysql_column("s", 253, 0, charset=63).type == pa.binary()
    assert dbtypes.mysql_column("s", 253, 0).wire is None  # mysqlclient: str or bytes, the values say
    lite = {d: dbtypes.sqlite_column("c", d).type for d in ("BIGINT", "VARCHAR(5)", "DOUBLE", "BOOLEAN", "DATE")}
    assert lite == {
        "BIGINT": pa.int64(),
        "VARCHAR(5)": pa.string(),
        "DOUBLE": pa.float64(),
        "BOOLEAN": pa.bool_(),
        "DATE": pa.date32(),
    }
    assert dbtypes.sqlite_column("c", "").wire is None


def test_conversion_fast_path_text_parsing_and_fallbacks() -> None:
    columns = [
        Column("id", pa.int64()),
        Column("price", pa.binary(), pa.decimal128(10, 2), driver_text=True),
        dbtypes.mysql_column("at", 12, 0, text=True),
        dbtypes.mysql_column("ts", 7, 0, text=True),
        Column("note", None),
    ]
    rows = [
        (1, b"1.50", b"2026-01-01 10:00:00.000001", b"2026-01-01 10:00:00", None),
        (2, None, b"0000-00-00 00:00:00", None, None),  # MySQL's zero date: NULL
    ]
    assert infer(columns, rows) == ["note"]
    converter = Converter(columns)
    batch = converter.batch(rows, 0)
    assert batch.schema.types == [
        pa.int64(),
        pa.decimal128(10, 2),
        pa.timestamp("us"),
        pa.timestamp("us", tz="UTC"),
        pa.string(),
    ]
    assert batch.to_pylist()[0] == {
        "id": 1,
        "price": decimal.Decimal("1.50"),
        "at": dt.datetime(2026, 1, 1, 10, 0, 0, 1),
        "ts": dt.datetime(2026, 1, 1, 10, tzinfo=dt.timezone.utc),
        "note": None,
    }
    assert batch.column("at").to_pylist()[1] is None


def test_a_value_that_does_not_fit_names_the_column_rows_and_fix() -> None:
    columns = [Column("id", pa.int64()), Column("note", None)]
    first = [(1, None), (2, None)]
    infer(columns, first)  # NULL throughout: string
    converter = Converter(columns)
    converter.batch(first, 0)
    with pytest.raises(InvalidSpecError, match=r"Column 'note' has int 7 in rows 3-4 .*column_types"):
        converter.batch([(3, "x"), (4, 7)], 2)
    with pytest.raises(InvalidSpecError, match=r"Column 'id' has str 'x' in rows 1-1"):
        converter.batch([("x", None)], 0)
    text = [Column("price", pa.string(), pa.decimal128(5, 2), driver_text=True, declared="numeric(5,2)")]
    with pytest.raises(InvalidSpecError, match=r"'price' \(declared numeric\(5,2\)\) has str 'NaN'"):
        Converter(text).batch([("1.5",), ("NaN",)], 0)


def test_column_types_override_and_earlier_batches_fix_unknown_types() -> None:
    assert check_type_name(" timestamp[us, tz=Europe/Berlin] ", column="x") == "timestamp[us, tz=Europe/Berlin]"
    cols = apply_overrides(
        [Column("id", pa.int32()), dbtypes.sqlite_column("at", None)], {"id": "int64", "at": "timestamp[us]"}
    )
    infer(cols, [(1, "2026-01-01T00:00:00+02:00")])
    batch = Converter(cols).batch([(1, "2026-01-01T00:00:00+02:00"), (2, "2026-01-02 00:00:00")], 0)
    assert batch.to_pylist() == [
        {"id": 1, "at": dt.datetime(2025, 12, 31, 22)},  # an offset: converted to UTC
        {"id": 2, "at": dt.datetime(2026, 1, 2)},
    ]
    with pytest.raises(InvalidSpecError, match=r"column_types names \['nope'\]"):
        apply_overrides([Column("id", pa.int32())], {"nope": "int64"})
    later = [Column("tags", None, strict=True)]
    assert infer(later, [(None,)], {"tags": pa.list_(pa.int64())}) == []  # the earlier batches' type, not string
    assert later[0].type == pa.list_(pa.int64())


# -- writing ------------------------------------------------------------------------------------------------


def test_partition_values_are_escaped_as_spark_does() -> None:
    assert escape("a/b:c=d e%") == "a%2Fb%3Ac%3Dd e%25"
    assert escape("DE") == "DE"


def _batches(n: int, size: int) -> list[pa.RecordBatch]:
    out = []
    for start in range(0, n, size):
        ids = list(range(start, min(n, start + size)))
        out.append(
            pa.record_batch(
                {"id": ids, "country": [["DE", "FR", None, "", "a/b"][i % 5] for i in ids], "x": [1.0] * len(ids)}
            )
        )
    return out


def test_part_writer_splits_by_partition_bounds_its_buffers_and_rolls_files(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path))
    peak = 0
    with storage.staged("/out") as staging:
        writer = PartWriter(
            staging, _batches(1, 1)[0].schema, ["country"], chunk_rows=1_000, rows_per_file=2_500, max_partitions=10
        )
        for batch in _batches(10_000, 1_000):
            writer.write(batch)
            peak = max(peak, writer._total)
        writer.close()
        staging.publish()
    assert peak <= 1_000  # never more than a chunk waits in the buffers between batches
    assert writer.stats()["partitions"] == ["country=DE", "country=FR", f"country={HIVE_NULL}", "country=a%2Fb"]
    out = tmp_path / "out"
    assert (out / "_SUCCESS").exists()
    null_files = sorted((out / f"country={HIVE_NULL}").glob("*.parquet"))  # NULL and '' share Hive's NULL directory
    assert len(null_files) == 2  # 4000 rows, a new file after 2500
    table = pads.dataset(str(out), partitioning="hive").to_table()
    assert table.num_rows == 10_000
    assert sorted(table.column("id").to_pylist()) == list(range(10_000))
    assert {r["country"] for r in table.select(["country"]).to_pylist()} == {"DE", "FR", None, "a/b"}


def test_too_many_partitions_fail_and_an_empty_result_keeps_every_file_at_one_depth(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path))
    schema = _batches(1, 1)[0].schema

    def too_many() -> None:
        with storage.staged("/x") as staging:
            writer = PartWriter(staging, schema, ["country"], chunk_rows=10, rows_per_file=10, max_partitions=2)
            writer.write(_batches(5, 5)[0])

    with pytest.raises(InvalidSpecError, match=r"more than max_partitions=2 partitions"):
        too_many()
    assert not (tmp_path / "x").exists()
    assert list(tmp_path.iterdir()) == []  # the staging directory went too

    with storage.staged("/empty") as staging:
        writer = PartWriter(staging, schema, ["country"], chunk_rows=10, rows_per_file=10, max_partitions=2)
        writer.close()
        staging.publish()
    (part,) = (tmp_path / "empty").rglob("*.parquet")
    assert part.parent.name == f"country={HIVE_NULL}"
    assert pads.dataset(str(part)).schema.names == ["id", "x"]


# -- incremental state ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        7,
        2.5,
        decimal.Decimal("10.25"),
        dt.date(2026, 1, 2),
        dt.datetime(2026, 1, 2, 3, tzinfo=dt.timezone.utc),
        "2026-01-02 03:04:05",
    ],
)
def test_watermarks_keep_their_type_through_json(value: Any) -> None:
    assert state.decode(json.loads(json.dumps(state.encode(value)))) == value


def test_read_state_refuses_a_dataset_not_written_incrementally(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path))
    assert state.read_state(storage, "/d", str(tmp_path), "output_path='/d'") is None
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "part-00000.parquet").write_bytes(b"x")
    with pytest.raises(InvalidSpecError, match=r"not a dataset written with watermark_column"):
        state.read_state(storage, "/d", str(tmp_path), "output_path='/d'")
    (tmp_path / "d" / "part-00000.parquet").unlink()
    (tmp_path / "d" / "ingest_batch=00003").mkdir()
    with pytest.raises(InvalidSpecError, match=r"no readable watermark.*Delete that batch"):
        state.read_state(storage, "/d", str(tmp_path), "output_path='/d'")
    body = state.state_json(
        column="id", value=41, batch=3, rows=1, schema=pa.schema([("id", pa.int64())]), source="Reading table t"
    )
    (tmp_path / "d" / "ingest_batch=00003" / "_watermark.json").write_bytes(body)
    found = state.read_state(storage, "/d", str(tmp_path), "output_path='/d'")
    assert found is not None
    assert (found.batch, found.column, found.value, found.schema) == (3, "id", 41, [["id", "int64"]])
    assert found.types() == {"id": pa.int64()}
