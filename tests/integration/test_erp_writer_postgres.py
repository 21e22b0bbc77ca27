"""ErpWriteOperator against a real PostgreSQL (127.0.0.1:5432): one transaction per write.

The module creates its own database (unique name) and drops it at the end. Under CI=true a
PostgreSQL that cannot be reached fails the tests; elsewhere they are skipped. The scenarios shared
with the other families are in :mod:`tests.integration.erp_cases`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import structlog

from airflow_ml_provider.exceptions import DropGuardError, InvalidSpecError
from airflow_ml_provider.operators.erp_writer import ErpWriteOperator
from tests.integration import databases, erp_cases
from tests.integration.conftest import admin_client, set_hdfs_conn
from tests.integration.erp_cases import CTX, ErpDb, messages, parquet

pytestmark = pytest.mark.integration

HOST, PORT, USER = "127.0.0.1", 5432, "postgres"
CONN_ID = "erp_pg_test"
#: The connection's password (trust auth ignores it): it must never show in logs, XCom or errors.
SECRET = "Pw-s3cr3t-ERP-4711"
TABLE_SQL = """
CREATE TABLE prices (
    country text NOT NULL,
    sku bigint NOT NULL,
    price double precision NOT NULL CHECK (price >= 0),
    source text,
    model_version text,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (country, sku)
)"""


def _connect(dbname: str) -> Any:
    return psycopg2.connect(host=HOST, port=PORT, user=USER, dbname=dbname, connect_timeout=5)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A database of this module's own, dropped at the end."""
    with databases.postgres_database("erp_test") as name:
        yield name


@pytest.fixture
def db(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh ``prices`` table; the connection ``erp_pg_test`` (with a password) points at it."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", f"postgresql://{USER}:{quote(SECRET)}@{HOST}:{PORT}/{database}"
    )
    conn = _connect(database)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS prices")
        cur.execute(TABLE_SQL)
    yield conn
    conn.close()


def query(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def snapshot(conn: Any) -> list[tuple[Any, ...]]:
    return query(conn, "SELECT country, sku, price, source, model_version FROM prices ORDER BY 1, 2")


def counts(conn: Any) -> dict[str, int]:
    return dict(query(conn, "SELECT country, count(*) FROM prices GROUP BY 1"))


def writer(input_path: Any, **kwargs: Any) -> ErpWriteOperator:
    return erp_cases.writer(input_path, **({"conn_id": CONN_ID} | kwargs))


@pytest.fixture
def erp(db: Any, database: str) -> ErpDb:
    """The ``prices`` table as the shared scenarios use it."""

    @contextlib.contextmanager
    def reader() -> Iterator[Callable[[str], erp_cases.Rows]]:
        conn = _connect(database)
        conn.autocommit = True
        try:
            yield lambda sql: query(conn, sql)
        finally:
            conn.close()

    return ErpDb(CONN_ID, lambda sql: query(db, sql), reader)


# -- 1. replace only the given keys, in one transaction; idempotent --------------------------------


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_replaces_only_the_given_keys_and_a_rerun_is_idempotent(
    erp: ErpDb, tmp_path: Path, driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With either driver the postgres provider's hook may hand out (psycopg 3 with SQLAlchemy 2, else psycopg2)."""
    import airflow.providers.postgres.hooks.postgres as pg_hook

    monkeypatch.setattr(pg_hook, "USE_PSYCOPG3", driver == "psycopg")
    written_at = dt.datetime(2026, 11, 23, 10, 30, 15, 123456, tzinfo=dt.timezone.utc)
    result = erp_cases.replaces_only_the_given_keys(
        erp, tmp_path, constants={"model_version": "1", "written_at": written_at}
    )
    assert result["table"] == "public.prices"
    assert erp.query("SELECT DISTINCT written_at FROM prices WHERE country = 'IT'") == [(written_at,)]


def test_hive_partitioned_directory_and_keys_from_the_data(db: Any, tmp_path: Path) -> None:
    root = tmp_path / "preds"
    for c, n in (("DE", 7), ("FR", 3)):
        (root / f"country={c}").mkdir(parents=True)
        pq.write_table(pa.table({"sku": list(range(n)), "prediction": [1.5] * n}), root / f"country={c}" / "p.parquet")
    (root / "_SUCCESS").write_text("")
    result = writer(f"file://{root}", column_map={"country": "country", "sku": "sku", "prediction": "price"}).execute(
        CTX
    )
    assert sorted(result["keys"]) == ["DE", "FR"]
    assert counts(db) == {"DE": 7, "FR": 3}


def test_reads_a_hive_partitioned_dataset_from_hdfs(
    db: Any, hdfs: Any, hdfs_dir: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    set_hdfs_conn(monkeypatch, "hdfs_erp", hdfs.namenode_urls)
    admin = admin_client(hdfs)
    for c, n in (("DE", 1200), ("FR", 5)):
        local = tmp_path / f"{c}.parquet"
        pq.write_table(pa.table({"sku": list(range(n)), "prediction": [2.5] * n}), local, row_group_size=500)
        admin.write(f"{hdfs_dir}/p/country={c}/part-00000.parquet", data=local.read_bytes())
    admin.write(f"{hdfs_dir}/p/_SUCCESS", data=b"")
    op = writer(
        f"hdfs://nn{hdfs_dir}/p",
        hdfs_conn_id="hdfs_erp",
        keys=["DE", "FR"],
        batch_rows=100,
        column_map={"country": "country", "sku": "sku", "prediction": "price"},
        constants={"model_version": "hdfs"},
    )
    result = op.execute(CTX)
    assert result["rows"] == 1205
    assert counts(db) == {"DE": 1200, "FR": 5}
    assert query(db, "SELECT DISTINCT price, model_version FROM prices") == [(2.5, "hdfs")]


# -- 2. a reader never sees a partial or empty key ---------------------------------------------------


def test_a_reader_polling_1000_times_sees_only_whole_sets(erp: ErpDb, tmp_path: Path) -> None:
    erp_cases.reader_sees_only_whole_sets(erp, tmp_path)


# -- 3. killed mid-COPY, constraint violation mid-load: nothing changes ------------------------------


def test_writer_sigkilled_mid_copy_leaves_the_previous_rows(db: Any, erp: ErpDb, tmp_path: Path, database: str) -> None:
    def copying() -> bool:  # the writer's COPY into its staging table is under way
        rows = query(
            db,
            "SELECT tuples_processed FROM pg_stat_progress_copy WHERE datname = %s AND command = 'COPY FROM'",
            (database,),
        )
        return bool(rows) and rows[0][0] > 20_000

    erp_cases.sigkill_mid_load(erp, tmp_path, copying)


def test_a_constraint_violation_deep_in_the_load_rolls_back_everything(erp: ErpDb, tmp_path: Path) -> None:
    erp_cases.constraint_violation_rolls_back(erp, tmp_path, match="price_check")


# -- 4. two concurrent writers: exactly one input, whole ------------------------------------------------


def test_two_concurrent_writers_end_with_exactly_one_input(erp: ErpDb, tmp_path: Path) -> None:
    erp_cases.concurrent_writers_end_with_one_input(erp, tmp_path)


# -- 5. bad inputs: a clear error naming the thing, nothing written ----------------------------------------


def test_each_bad_input_gives_a_clear_error_and_writes_nothing(erp: ErpDb, tmp_path: Path) -> None:
    erp_cases.bad_inputs_write_nothing(erp, tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"table": "prices; DROP TABLE prices"},
        {"table": 'prices" --'},
        {"key_column": "country) OR (1=1"},
        {"column_map": {"prediction": "price; DELETE FROM prices"}},
        {"constants": {"x = 1; --": "v"}},
        {"primary_key": ["sku --"]},
    ],
)
def test_bad_identifiers_are_refused_before_and_after_rendering(
    db: Any, tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    path = {"DE": parquet(tmp_path / "x.parquet", "DE", 5)}
    writer(path).execute(CTX)
    before = snapshot(db)
    with pytest.raises(InvalidSpecError, match="not a valid SQL name"):
        writer(path, **kwargs)
    op = writer(path)
    for name, value in kwargs.items():  # as if a template had rendered to it
        setattr(op, name, value)
    with pytest.raises(InvalidSpecError, match="not a valid SQL name"):
        op.execute(CTX)
    assert snapshot(db) == before
    assert query(db, "SELECT to_regclass('public.prices') IS NOT NULL") == [(True,)]


# -- 6. the drop guard --------------------------------------------------------------------------


def test_drop_guard_fails_on_a_20_percent_drop_warns_when_asked_and_passes_a_first_run(db: Any, tmp_path: Path) -> None:
    seed = {c: parquet(tmp_path / f"s{c}.parquet", c, 100, "seed") for c in ("DE", "FR")}
    with structlog.testing.capture_logs() as logs:
        first = writer(seed).execute(CTX)
    assert any("first run" in m for m in messages(logs)), messages(logs)
    assert first["keys"]["DE"] == {"old": 0, "new": 100, "change": None}
    table_log = [m for m in messages(logs) if "Row counts per key" in m]
    assert len(table_log) == 1
    assert "DE" in table_log[0]
    assert "first run" in table_log[0]
    before = snapshot(db)

    smaller = {
        "DE": parquet(tmp_path / "de80.parquet", "DE", 80, "new"),
        "FR": parquet(tmp_path / "fr.parquet", "FR", 100, "new"),
    }
    with pytest.raises(DropGuardError) as info:
        writer(smaller).execute(CTX)
    assert info.value.keys == ["DE"]
    assert "DE: 100 -> 80 (-20.00%)" in str(info.value)
    assert "max_drop" in str(info.value)
    assert snapshot(db) == before

    with structlog.testing.capture_logs() as logs:
        result = writer(smaller, on_drop="warn").execute(CTX)
    warnings = [m for m in messages(logs, "warning") if "Drop guard" in m]
    assert len(warnings) == 1, warnings
    assert "DE: 100 -> 80" in warnings[0]
    assert result["keys"]["DE"] == {"old": 100, "new": 80, "change": -20.0}
    assert counts(db) == {"DE": 80, "FR": 100}

    writer({"DE": parquet(tmp_path / "de72.parquet", "DE", 72, "x")}).execute(CTX)  # exactly 10% less passes
    assert counts(db) == {"DE": 72, "FR": 100}


# -- 7. the password never shows ---------------------------------------------------------------------


def test_the_password_never_appears_in_logs_xcom_or_errors(
    db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    with structlog.testing.capture_logs() as logs:
        seen.append(repr(writer({"DE": parquet(tmp_path / "a.parquet", "DE", 100)}).execute(CTX)))
        failing: list[tuple[type[Exception], dict[str, Any]]] = [
            (DropGuardError, {"input_path": {"DE": parquet(tmp_path / "b.parquet", "DE", 10)}}),
            (InvalidSpecError, {"table": "missing", "input_path": {"DE": parquet(tmp_path / "c.parquet", "DE", 10)}}),
        ]
        for error, kwargs in failing:
            with pytest.raises(error) as info:
                writer(**kwargs).execute(CTX)
            seen += [str(info.value), repr(info.value)]
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", f"postgresql://{USER}:{quote(SECRET)}@{HOST}:1/x")
        with pytest.raises((psycopg2.OperationalError, psycopg.OperationalError)) as info:
            writer({"DE": parquet(tmp_path / "a.parquet", "DE", 100)}).execute(CTX)
        seen += [str(info.value), repr(info.value), repr(info.value.__context__)]
    seen += [repr(e) for e in logs]
    assert len(seen) >= 7
    assert not [s for s in seen if SECRET in s or quote(SECRET) in s]
