"""SqlIngestOperator against real sources (MariaDB 127.0.0.1:3306, PostgreSQL 127.0.0.1:5432, a SQLite
file) into real targets (the local disk, and HDFS from the test bed).

Every module-level database is created with a unique name and dropped at the end. Each test seeds
its own ``orders`` table with :meth:`Db.seed` (the same rows in every family, built by the database
itself) and reads the result back with pyarrow (and once with a local Spark session, the consumer
the datasets are for). Under CI=true a database that cannot be reached fails the tests; elsewhere
they are skipped.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import MySQLdb
import psycopg2
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError
from airflow_ml_provider.operators.ingest import SqlIngestOperator
from tests.integration import databases
from tests.integration.conftest import admin_client, set_hdfs_conn

pytestmark = pytest.mark.integration

BASE = dt.datetime(2026, 1, 1)
COUNTRIES = ("DE", "FR", "IT", "ES", "PL")
ROWS = 12_000
#: The connection's password: it must never show in XCom or errors.
SECRET = "Pw-ingest-s3cr3t"


@dataclass
class Db:
    """One source family: its connection id, and admin SQL (autocommit) on its database."""

    family: str
    conn_id: str
    run: Callable[[str], list[tuple[Any, ...]]]

    def seed(self, rows: int = ROWS, table: str = "orders") -> None:
        """``table`` with ``rows`` orders: id, country, sku, price, qty (NULL every 10th), updated_at, note."""
        self.run(f"DROP TABLE IF EXISTS {table}")
        decimal_type = "DECIMAL(10,2)" if self.family != "postgres" else "numeric(10,2)"
        ts_type = {"mariadb": "DATETIME(6)", "postgres": "timestamp", "sqlite": "DATETIME"}[self.family]
        self.run(
            f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, country CHAR(2) NOT NULL, sku INT NOT NULL, "
            f"price {decimal_type}, qty INT, updated_at {ts_type} NOT NULL, note VARCHAR(32))"
        )
        self.insert(1, rows, table)

    def insert(self, first: int, last: int, table: str = "orders") -> None:
        """Rows ``first``..``last`` (inclusive), computed by the database (test data: S608 does not apply)."""
        country = "CASE x % 5 " + " ".join(f"WHEN {i} THEN '{c}'" for i, c in enumerate(COUNTRIES)) + " END"
        values = (
            f"x, {country}, x % 500, (x % 1000) / 100.0, CASE WHEN x % 10 = 0 THEN NULL ELSE x % 7 END, "
            f"{self.timestamp('x')}, CASE WHEN x % 3 = 0 THEN NULL ELSE 'note ' || x END"
        )
        if self.family == "mariadb":
            values = values.replace("'note ' || x", "CONCAT('note ', x)")
            self.run(f"INSERT INTO {table} SELECT {values} FROM (SELECT seq AS x FROM seq_{first}_to_{last}) s")  # noqa: S608
        elif self.family == "postgres":
            self.run(f"INSERT INTO {table} SELECT {values} FROM generate_series({first}, {last}) AS s(x)")  # noqa: S608
        else:
            recursive = f"WITH RECURSIVE s(x) AS (SELECT {first} UNION ALL SELECT x + 1 FROM s WHERE x < {last})"  # noqa: S608
            self.run(f"INSERT INTO {table} {recursive} SELECT {values} FROM s")  # noqa: S608

    def timestamp(self, seconds: str) -> str:
        """SQL for BASE + ``seconds`` seconds."""
        if self.family == "mariadb":
            return f"TIMESTAMP'2026-01-01 00:00:00' + INTERVAL {seconds} SECOND"
        if self.family == "postgres":
            return f"TIMESTAMP '2026-01-01 00:00:00' + {seconds} * INTERVAL '1 second'"
        return f"datetime('2026-01-01 00:00:00', '+' || {seconds} || ' seconds')"


def expected(first: int, last: int) -> list[dict[str, Any]]:
    """The rows :meth:`Db.insert` makes, as pyarrow reads them back (SQLite prices are floats there)."""
    out = []
    for x in range(first, last + 1):
        out.append(
            {
                "id": x,
                "country": COUNTRIES[x % 5],
                "sku": x % 500,
                "price": decimal.Decimal(x % 1000) / 100,
                "qty": None if x % 10 == 0 else x % 7,
                "updated_at": BASE + dt.timedelta(seconds=x),
                "note": None if x % 3 == 0 else f"note {x}",
            }
        )
    return out


def read(path: Path | str, **kw: Any) -> list[dict[str, Any]]:
    """A local dataset's rows sorted by id (Hive partitions as string columns)."""
    table = pads.dataset(str(path), format="parquet", partitioning="hive", **kw).to_table()
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def normalized(rows: list[dict[str, Any]], family: str) -> list[dict[str, Any]]:
    """Prices as Decimal with two places (SQLite's are floats), partition and batch columns dropped."""
    out = []
    for r in rows:
        r = {k: v for k, v in r.items() if k != "ingest_batch"}
        if family == "sqlite" and r.get("price") is not None:
            r["price"] = decimal.Decimal(str(r["price"])).quantize(decimal.Decimal("0.01"))
        out.append(r)
    return out


# -- the three sources --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mariadb_database() -> Iterator[str]:
    with databases.mariadb_database("ingest_test", password=SECRET, grant="SELECT") as name:  # only read
        yield name


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    with databases.postgres_database("ingest_test") as name:
        yield name


def _mariadb(database: str, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> Iterator[Db]:
    conn = {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": database, "password": SECRET}
    conn |= {"schema": database} | ({"extra": extra} if extra else {})
    monkeypatch.setenv("AIRFLOW_CONN_INGEST_SRC", json.dumps(conn))
    admin = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", passwd="", db=database)
    admin.autocommit(True)

    def run(sql: str) -> list[tuple[Any, ...]]:
        cur = admin.cursor()
        cur.execute(sql)
        return list(cur.fetchall())

    yield Db("mariadb", "ingest_src", run)
    admin.close()


def _postgres(database: str, monkeypatch: pytest.MonkeyPatch, query: str = "") -> Iterator[Db]:
    monkeypatch.setenv("AIRFLOW_CONN_INGEST_SRC", f"postgresql://postgres:{SECRET}@127.0.0.1:5432/{database}{query}")
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=database)
    admin.autocommit = True

    def run(sql: str) -> list[tuple[Any, ...]]:
        with admin.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall()) if cur.description else []

    yield Db("postgres", "ingest_src", run)
    admin.close()


def _sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Db]:
    path = tmp_path / "source.db"
    monkeypatch.setenv("AIRFLOW_CONN_INGEST_SRC", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    admin = sqlite3.connect(path, isolation_level=None)

    def run(sql: str) -> list[tuple[Any, ...]]:
        return list(admin.execute(sql).fetchall())

    yield Db("sqlite", "ingest_src", run)
    admin.close()


@pytest.fixture(params=["mariadb", "postgres", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Db]:
    """Each family in turn, with a connection ``ingest_src`` (type mysql, postgres, sqlite)."""
    if request.param == "mariadb":
        yield from _mariadb(request.getfixturevalue("mariadb_database"), monkeypatch)
    elif request.param == "postgres":
        yield from _postgres(request.getfixturevalue("postgres_database"), monkeypatch)
    else:
        yield from _sqlite(tmp_path, monkeypatch)


def ingest(db: Db, output: Path | str, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"task_id": "ingest", "conn_id": db.conn_id, "output_path": str(output)}
    if "query" not in kwargs:
        args["table"] = "orders"
    result: dict[str, Any] = SqlIngestOperator(**(args | kwargs)).execute({})
    return result


def leftovers(directory: Path) -> list[str]:
    """Staging or aside directories a run left behind."""
    return sorted(
        str(p) for p in directory.rglob("*") if ".tmp-" in p.name or ".old-" in p.name or "_ingest_tmp" in p.name
    )


# -- the scenarios every family passes ------------------------------------------------------------------------


def test_copies_a_table_partitioned_by_country_and_a_rerun_replaces_it(db: Db, tmp_path: Path) -> None:
    db.seed()
    out = tmp_path / "lake" / "orders"
    result = ingest(db, out, partition_by="country", chunk_rows=2_500, rows_per_file=1_000)
    assert result["rows"] == ROWS
    assert result["partitions"] == [f"country={c}" for c in sorted(COUNTRIES)]
    assert result["watermark"] is None
    assert SECRET not in json.dumps(result)
    assert (out / "_SUCCESS").exists()
    marker = (out / "_SUCCESS").stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= marker for p in out.rglob("*.parquet"))  # the marker came last
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in (out / "country=DE").glob("part-*.parquet")]
    assert sum(sizes) == ROWS // 5
    assert len(sizes) >= 2  # a part file is closed once it holds rows_per_file rows
    schema = pads.dataset(str(out / "country=DE")).schema
    assert "country" not in schema.names  # a Hive partition column lives in the directory name
    price = pa.float64() if db.family == "sqlite" else pa.decimal128(10, 2)
    assert schema.field("price").type == price
    assert schema.field("updated_at").type == pa.timestamp("us")
    assert normalized(read(out), db.family) == expected(1, ROWS)

    db.run("DELETE FROM orders WHERE id > 100")
    again = ingest(db, out, partition_by="country")
    assert again["rows"] == 100
    assert normalized(read(out), db.family) == expected(1, 100)
    assert leftovers(tmp_path) == []


def test_incremental_appends_only_new_rows_as_a_batch(db: Db, tmp_path: Path) -> None:
    db.seed()
    out = tmp_path / "orders"
    first = ingest(db, out, watermark_column="id", partition_by="country", chunk_rows=5_000)
    assert (first["rows"], first["watermark"]) == (ROWS, ROWS)
    db.insert(ROWS + 1, ROWS + 25)
    second = ingest(db, out, watermark_column="id", partition_by="country", chunk_rows=5_000)
    assert (second["rows"], second["watermark"]) == (25, ROWS + 25)
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "ingest_batch=00000", "ingest_batch=00001"]
    state = json.loads((out / "ingest_batch=00001" / "_watermark.json").read_text())
    assert (state["column"], state["watermark"], state["rows"]) == ("id", {"type": "int", "value": ROWS + 25}, 25)

    marker = (out / "_SUCCESS").stat().st_mtime_ns
    third = ingest(db, out, watermark_column="id", partition_by="country")
    assert (third["rows"], third["watermark"], third["partitions"]) == (0, ROWS + 25, [])
    assert not (out / "ingest_batch=00002").exists()
    assert (out / "_SUCCESS").stat().st_mtime_ns >= marker  # touched: the dataset is current
    rows = read(out)
    assert [r["id"] for r in rows] == list(range(1, ROWS + 26))  # every row once
    assert {r["ingest_batch"] for r in rows if r["id"] > ROWS} == {1}
    assert normalized(rows, db.family) == expected(1, ROWS + 25)
    assert leftovers(tmp_path) == []


def test_incremental_by_timestamp_through_a_query(db: Db, tmp_path: Path) -> None:
    """A query (with a literal %) wrapped for the watermark; the timestamp compared as the database does."""
    db.seed(rows=500)
    out = tmp_path / "orders"
    query = "SELECT id, updated_at, note FROM orders WHERE note LIKE 'note %' OR note IS NULL"
    kw: dict[str, Any] = {"query": query, "watermark_column": "updated_at"}
    if db.family == "sqlite":
        kw["column_types"] = {"updated_at": "timestamp[us]"}  # a SQLite query's columns have no declared types
    high = (BASE + dt.timedelta(seconds=500)).isoformat(sep=" " if db.family == "sqlite" else "T")
    assert ingest(db, out, **kw)["watermark"] == high  # SQLite: the text it stores and compares
    db.insert(501, 510)
    assert ingest(db, out, **kw)["rows"] == 10
    assert [r["id"] for r in read(out)] == list(range(1, 511))


def test_bad_inputs_fail_clearly_and_write_nothing(db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db.seed(rows=50)
    out = tmp_path / "out"
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"table": "no_such_table"}, InvalidSpecError, r"Reading table no_such_table failed .*Check the table's name"),
        ({"columns": ["id", "nope"]}, InvalidSpecError, r"Check the column names"),
        ({"query": "SELEC id FROM orders"}, InvalidSpecError, r"The query failed .*Fix the query's SQL"),
        ({"partition_by": "region"}, InvalidSpecError, r"partition_by names 'region', which the result does not have"),
        ({"query": "SELECT * FROM orders WHERE id < 0"}, InvalidSpecError, r"gave no rows.*allow_empty=True"),
        ({"watermark_column": "qty"}, InvalidSpecError, r"watermark_column='qty' is NULL in \d+ of rows"),
        ({"watermark_column": "note"}, InvalidSpecError, r"watermark_column='note' is of type string"),
        ({"query": "DELETE FROM orders"}, InvalidSpecError, r"failed on connection 'ingest_src'"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match) as info:
            ingest(db, out, chunk_rows=20, **kwargs)
        assert SECRET not in str(info.value)
        assert not out.exists(), kwargs
    assert db.run("SELECT COUNT(*) FROM orders") == [(50,)]  # the DELETE did not run: read-only session
    monkeypatch.setenv("AIRFLOW_CONN_INGEST_HTTP", json.dumps({"conn_type": "http", "host": "example.com"}))
    with pytest.raises(ConnectionConfigError, match=r"type 'http'.*\['postgres', 'mysql', 'sqlite'\]"):
        SqlIngestOperator(task_id="x", conn_id="ingest_http", table="orders", output_path=str(out)).execute({})
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_empty_result_with_allow_empty_writes_the_columns_and_success(db: Db, tmp_path: Path) -> None:
    db.seed(rows=10)
    out = tmp_path / "out"
    query = "SELECT id, country, price FROM orders WHERE id < 0"
    result = ingest(db, out, query=query, partition_by="country", allow_empty=True)
    assert (result["rows"], result["partitions"]) == (0, [])
    assert (out / "_SUCCESS").exists()
    files = list(out.rglob("*.parquet"))
    assert [f.parent.name for f in files] == ["country=__HIVE_DEFAULT_PARTITION__"]  # every file at one depth
    partitioning = pads.partitioning(pa.schema([("country", pa.string())]), flavor="hive")
    dataset = pads.dataset(str(out), format="parquet", partitioning=partitioning)
    assert dataset.schema.names == ["id", "price", "country"]
    assert dataset.count_rows() == 0


def test_a_failure_mid_stream_leaves_the_previous_version(db: Db, tmp_path: Path) -> None:
    """A NULL watermark deep in the result: the batches loaded so far stay as they were, no new one appears."""
    db.seed(rows=3_000)
    out = tmp_path / "orders"
    query = "SELECT id, country, CASE WHEN note = 'bad' THEN NULL ELSE updated_at END AS updated_at FROM orders"
    kw: dict[str, Any] = {"query": query, "watermark_column": "updated_at", "chunk_rows": 500}
    if db.family == "sqlite":
        kw["column_types"] = {"updated_at": "timestamp[us]"}
    ingest(db, out, **kw)
    db.insert(3_001, 4_000)
    db.run("UPDATE orders SET note = 'bad' WHERE id = 3990")
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(InvalidSpecError, match=r"is NULL in 1 of rows"):
        ingest(db, out, **kw)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert leftovers(tmp_path) == []


# -- drivers and targets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["mysqlclient", "mysql-connector-python"])
def test_mariadb_with_either_client(
    client: str, mariadb_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for db in _mariadb(mariadb_database, monkeypatch, client=client):
        db.seed(rows=2_000)
        result = ingest(db, tmp_path / "o", chunk_rows=300)
        assert result["rows"] == 2_000
        rows = read(tmp_path / "o")
        assert normalized(rows, "mariadb") == expected(1, 2_000)
        types = pads.dataset(str(tmp_path / "o")).schema
        price = pa.decimal128(10, 2) if client == "mysqlclient" else pa.decimal128(38, 18)  # precision not reported
        assert types.field("price").type == price


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_postgres_with_either_driver_and_rich_types(
    driver: str, postgres_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow.providers.postgres.hooks import postgres as pg_hook

    monkeypatch.setattr(pg_hook, "USE_PSYCOPG3", driver == "psycopg")
    # a connection whose extra asks the hook for dict rows: the source still reads tuples
    for db in _postgres(postgres_database, monkeypatch, "?cursor=dictcursor"):
        db.run("DROP TABLE IF EXISTS rich")
        db.run(
            "CREATE TABLE rich AS SELECT g AS id, g * 1.5::numeric AS free, now() AS at, (g % 2 = 0) AS even, "
            "jsonb_build_object('g', g) AS doc, md5(g::text)::uuid AS key, ARRAY[g, g + 1] AS pair, "
            "decode('00ff', 'hex') AS raw FROM generate_series(1, 300) g"
        )
        result = ingest(db, tmp_path / "r", table="rich", chunk_rows=64)
        assert result["rows"] == 300
        table = pads.dataset(str(tmp_path / "r")).to_table()
        assert table.schema.field("free").type == pa.decimal128(38, 18)  # numeric without precision, as Spark
        assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
        assert table.schema.field("pair").type.value_type == pa.int64()  # an array: typed by its values
        row = sorted(table.to_pylist(), key=lambda r: r["id"])[1]
        assert (row["free"], row["even"], json.loads(row["doc"])) == (decimal.Decimal("3.0"), True, {"g": 2})
        assert (len(row["key"]), row["pair"], row["raw"]) == (36, [2, 3], b"\x00\xff")


def test_mariadb_zero_dates_are_null(mariadb_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A legacy '0000-00-00' DATETIME (allowed outside strict mode) reads as NULL, as mysqlclient reads it."""
    for db in _mariadb(mariadb_database, monkeypatch):
        db.run("DROP TABLE IF EXISTS legacy")
        db.run("CREATE TABLE legacy (id INT PRIMARY KEY, at DATETIME, day DATE)")
        db.run("SET SESSION sql_mode = ''")
        db.run(
            "INSERT INTO legacy VALUES (1, '0000-00-00 00:00:00', '0000-00-00'), (2, '2026-05-01 10:00', '2026-05-01')"
        )
        ingest(db, tmp_path / "l", table="legacy")
        rows = read(tmp_path / "l")
        assert rows == [
            {"id": 1, "at": None, "day": None},
            {"id": 2, "at": dt.datetime(2026, 5, 1, 10), "day": dt.date(2026, 5, 1)},
        ]


def test_mariadb_to_hdfs_partitioned_and_incremental(
    hdfs: Any, hdfs_dir: str, mariadb_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_ml_provider.storage.webhdfs import WebHdfsStorage

    set_hdfs_conn(monkeypatch, "ingest_hdfs", hdfs.namenode_urls)
    admin = admin_client(hdfs)
    admin.set_owner(hdfs_dir, owner="etl")  # the connection's user writes the dataset
    for db in _mariadb(mariadb_database, monkeypatch):
        db.seed(rows=3_000)
        out = f"{hdfs_dir}/orders"
        kw = {"hdfs_conn_id": "ingest_hdfs", "partition_by": "country", "watermark_column": "id", "chunk_rows": 1_000}
        assert ingest(db, f"hdfs://nn{out}", **kw)["rows"] == 3_000
        db.insert(3_001, 3_010)
        second = ingest(db, out, **kw)
        assert (second["rows"], second["watermark"]) == (10, 3_010)
        assert sorted(admin.list(out)) == ["_SUCCESS", "ingest_batch=00000", "ingest_batch=00001"]
        assert sorted(admin.list(hdfs_dir)) == ["orders"]  # no staging left
        storage = WebHdfsStorage(admin, hdfs.namenode_urls)
        files = storage.list_dataset(out)
        assert files is not None
        assert {dict(f.partitions)["country"] for f in files} == set(COUNTRIES)
        ids = []
        for f in files:
            for batch in storage.iter_batches(f, columns=["id"], batch_size=10_000, scratch=str(tmp_path)):
                ids += batch.column("id").to_pylist()
        assert sorted(ids) == list(range(1, 3_011))

        full = f"{hdfs_dir}/full"
        assert ingest(db, full, hdfs_conn_id="ingest_hdfs", partition_by="country")["rows"] == 3_010
        assert sorted(admin.list(full)) == ["_SUCCESS", *(f"country={c}" for c in sorted(COUNTRIES))]


def test_sqlite_file_that_does_not_exist_is_a_connection_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    monkeypatch.setenv("AIRFLOW_CONN_INGEST_SRC", json.dumps({"conn_type": "sqlite", "host": str(missing)}))
    with pytest.raises(ConnectionConfigError, match="does not exist on this worker"):
        SqlIngestOperator(task_id="x", conn_id="ingest_src", table="t", output_path=str(tmp_path / "o")).execute({})
    assert not missing.exists()  # no stray empty database file either
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_reads_an_incremental_partitioned_dataset_as_one(
    mariadb_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The consumer's view: every batch and partition, the types kept, each row once."""
    import logging

    from pyspark import SparkContext

    from airflow_ml_provider.scoring.spark_engine import spark_session

    for db in _mariadb(mariadb_database, monkeypatch):
        db.seed(rows=5_000)
        out = tmp_path / "orders"
        ingest(db, out, partition_by="country", watermark_column="updated_at", chunk_rows=1_500)
        db.insert(5_001, 5_100)
        ingest(db, out, partition_by="country", watermark_column="updated_at", chunk_rows=1_500)
    session, created = spark_session("local[1]", None, "ingest-tests", logging.getLogger(__name__))
    try:
        frame = session.read.parquet(str(out))
        types = dict(frame.dtypes)
        assert (types["price"], types["id"], types["updated_at"]) == ("decimal(10,2)", "bigint", "timestamp_ntz")
        assert frame.count() == 5_100
        assert frame.select("id").distinct().count() == 5_100
        # partition values as the session reads them: text here (our sessions turn type inference off)
        batches = {int(r["ingest_batch"]): r["count"] for r in frame.groupBy("ingest_batch").count().collect()}
        assert batches == {0: 5_000, 1: 100}
        assert {r["country"] for r in frame.select("country").distinct().collect()} == set(COUNTRIES)
    finally:
        if created:
            session.stop()
        if SparkContext._gateway is not None:  # the JVM too, while logging still works
            SparkContext._gateway.shutdown()
            SparkContext._gateway = None
            SparkContext._jvm = None
