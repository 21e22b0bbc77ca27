"""ErpWriteOperator against a real MariaDB (127.0.0.1:3306): one transaction per write.

The module creates its own database and a user with a password (unique names) and drops both at
the end; the connection ``erp_mysql_test`` (type ``mysql``) logs in as that user. Under CI=true a
MariaDB that cannot be reached fails the tests; elsewhere they are skipped. The scenarios shared
with the other families are in :mod:`tests.integration.erp_cases`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import MySQLdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import structlog

from airflow_ml_provider.exceptions import ConnectionConfigError, DropGuardError, InvalidSpecError
from tests.integration import databases, erp_cases
from tests.integration.erp_cases import CTX, ErpDb, parquet

pytestmark = pytest.mark.integration

HOST, PORT, ADMIN = "127.0.0.1", 3306, "root"
CONN_ID = "erp_mysql_test"
#: The writer user's password: it must never show in logs, XCom or errors.
SECRET = "Pw-s3cr3t-ERP-" + secrets.token_hex(6)
TABLE_SQL = """
CREATE TABLE prices (
    country VARCHAR(8) NOT NULL,
    sku BIGINT NOT NULL,
    price DOUBLE NOT NULL,
    source VARCHAR(10),
    model_version VARCHAR(20),
    written_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (country, sku),
    CONSTRAINT price_check CHECK (price >= 0)
) ENGINE=InnoDB"""


def _connect(db: str = "", **kwargs: Any) -> Any:
    return MySQLdb.connect(host=HOST, port=PORT, user=ADMIN, passwd="", db=db, connect_timeout=5, **kwargs)


@pytest.fixture(scope="module")
def account() -> Iterator[tuple[str, str]]:
    """(database, user): a database of this module's own and a user with :data:`SECRET` allowed only
    on it; both dropped at the end."""
    with databases.mariadb_database("erp_test", password=SECRET, grant="ALL") as name:
        yield name, name


def _set_conn(monkeypatch: pytest.MonkeyPatch, account: tuple[str, str], port: int = PORT, **extra: Any) -> None:
    database, user = account
    conn = {"conn_type": "mysql", "host": HOST, "port": port, "login": user, "password": SECRET, "schema": database}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn | ({"extra": extra} if extra else {})))


@pytest.fixture
def admin(account: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh ``prices`` table; an autocommit root connection to the module's database."""
    _set_conn(monkeypatch, account)
    conn = _connect(account[0])
    conn.autocommit(True)
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS prices")
    cur.execute(TABLE_SQL)
    yield conn
    conn.close()


def _run(conn: Any) -> Callable[[str], erp_cases.Rows]:
    def query(sql: str) -> erp_cases.Rows:
        cur = conn.cursor()
        cur.execute(sql)
        return list(cur.fetchall())

    return query


@pytest.fixture
def db(admin: Any, account: tuple[str, str]) -> ErpDb:
    @contextlib.contextmanager
    def reader() -> Iterator[Callable[[str], erp_cases.Rows]]:
        conn = _connect(account[0])
        conn.autocommit(True)
        try:
            yield _run(conn)
        finally:
            conn.close()

    return ErpDb(CONN_ID, _run(admin), reader)


# -- the scenarios every family passes --------------------------------------------------------------


@pytest.mark.parametrize("client", ["mysqlclient", "mysql-connector-python"])
def test_replaces_only_the_given_keys_and_a_rerun_is_idempotent(
    db: ErpDb, tmp_path: Path, client: str, account: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With either client the mysql provider's hook offers (the connection extra ``client``)."""
    _set_conn(monkeypatch, account, client=client)
    written_at = dt.datetime(2026, 11, 23, 10, 30, 15, 123456, tzinfo=dt.timezone.utc)
    result = erp_cases.replaces_only_the_given_keys(
        db, tmp_path, constants={"model_version": "1", "written_at": written_at}
    )
    assert result["table"] == f"{account[0]}.prices"
    assert db.query("SELECT DISTINCT written_at FROM prices WHERE country = 'IT'") == [
        (written_at.replace(tzinfo=None),)
    ]


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "READ COMMITTED"])
def test_a_reader_polling_1000_times_sees_only_whole_sets(
    db: ErpDb, tmp_path: Path, account: tuple[str, str], isolation: str
) -> None:
    """InnoDB's consistent reads at both isolation levels readers use."""

    @contextlib.contextmanager
    def reader() -> Iterator[Callable[[str], erp_cases.Rows]]:
        conn = _connect(account[0])
        conn.autocommit(True)
        conn.cursor().execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {isolation}")
        try:
            yield _run(conn)
        finally:
            conn.close()

    erp_cases.reader_sees_only_whole_sets(ErpDb(db.conn_id, db.query, reader), tmp_path)


def test_writer_sigkilled_mid_load_leaves_the_previous_rows(db: ErpDb, tmp_path: Path) -> None:
    def loading() -> bool:  # a session on this database is inserting batches into its staging table
        time.sleep(0.15)  # INNODB_TRX is a cache, refreshed only when not read for 0.1 s
        rows = db.query(
            "SELECT t.trx_rows_modified FROM information_schema.innodb_trx t JOIN information_schema.processlist p "
            "ON p.id = t.trx_mysql_thread_id WHERE p.db = DATABASE() AND p.info LIKE 'INSERT INTO %.`ml_erp_staging`%'"
        )
        return bool(rows) and rows[0][0] > 20_000

    erp_cases.sigkill_mid_load(db, tmp_path, loading, rows=600_000)


def test_a_constraint_violation_deep_in_the_load_rolls_back_everything(
    db: ErpDb, tmp_path: Path, account: tuple[str, str]
) -> None:
    from airflow_ml_provider.erp.identifiers import TableName
    from airflow_ml_provider.erp.mysql import lock_name

    erp_cases.constraint_violation_rolls_back(db, tmp_path, match=r"CONSTRAINT `price_check` failed.*error 4025")
    assert db.query(f"SELECT IS_USED_LOCK('{lock_name(TableName(account[0], 'prices'), 'DE')}')") == [(None,)]


def test_two_concurrent_writers_end_with_exactly_one_input(db: ErpDb, tmp_path: Path) -> None:
    erp_cases.concurrent_writers_end_with_one_input(db, tmp_path)


def test_each_bad_input_gives_a_clear_error_and_writes_nothing(db: ErpDb, tmp_path: Path) -> None:
    erp_cases.bad_inputs_write_nothing(db, tmp_path)


def test_drop_guard_fails_with_the_keys_and_writes_nothing(db: ErpDb, tmp_path: Path) -> None:
    erp_cases.drop_guard_fails_naming_keys(db, tmp_path)


# -- MariaDB's own ---------------------------------------------------------------------------------


def _session_on_connect(monkeypatch: pytest.MonkeyPatch, sql: str) -> None:
    """Run ``sql`` on every connection the hook opens: a server configured otherwise than the writer needs."""
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    get_conn = MySqlHook.get_conn

    def patched(self: MySqlHook) -> Any:
        conn = get_conn(self)
        conn.cursor().execute(sql)
        return conn

    monkeypatch.setattr(MySqlHook, "get_conn", patched)


def test_a_value_too_long_fails_even_where_the_server_is_not_strict(
    db: ErpDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-strict sql_mode would store 'x' * 10 with a warning; the writer's session is strict."""
    db.writer({"DE": parquet(tmp_path / "old.parquet", "DE", 50_000, "old")}).execute(CTX)
    before = db.snapshot()
    _session_on_connect(monkeypatch, "SET SESSION sql_mode = ''")
    sources = ["new"] * 50_000
    sources[41_234] = "x" * 11  # source is VARCHAR(10)
    bad = tmp_path / "long.parquet"
    n = len(sources)
    data = {"country": ["DE"] * n, "sku": list(range(n)), "prediction": [1.0] * n, "source": sources}
    pq.write_table(pa.table(data), bad)
    with pytest.raises(InvalidSpecError, match=r"does not fit table .*prices: Data too long for column 'source'"):
        db.writer({"DE": str(bad)}, batch_rows=10_000).execute(CTX)
    assert db.snapshot() == before


def test_types_round_trip_and_timestamps_are_utc_whatever_the_session_zone(
    admin: Any, db: ErpDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cur = admin.cursor()
    cur.execute(
        "CREATE TABLE typed (k INT NOT NULL, id INT NOT NULL, flag BOOL, qty DECIMAL(10, 2), score DOUBLE, "
        "day DATE, at_ts TIMESTAMP(6) NULL, at_dt DATETIME(6), label ENUM('a', 'b'), "
        "created DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (k, id))"
    )
    instant = dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone.utc)
    data = pa.table(
        {
            "k": pa.array([7, 7], pa.int32()),
            "id": [1, 2],
            "flag": [True, None],
            "qty": pa.array([1.25, 2], pa.float64()),
            "score": [float("nan"), 0.5],
            "day": [dt.date(2026, 1, 2), None],
            "at_ts": pa.array([instant, None], pa.timestamp("ns", tz="Europe/Berlin")),
            "at_dt": pa.array([instant, None], pa.timestamp("us", tz="UTC")),
            "label": ["b", None],
        }
    )
    pq.write_table(data, tmp_path / "typed.parquet")
    _session_on_connect(monkeypatch, "SET SESSION time_zone = '+05:00'")
    table = db.writer(str(tmp_path / "typed.parquet"), table="typed", key_column="k", column_map=None)
    result = table.execute(CTX)
    assert result["keys"] == {"7": {"old": 0, "new": 2, "change": None}}
    cur.execute("SET SESSION time_zone = '+00:00'")
    cur.execute("SELECT id, flag, qty, score, day, at_ts, at_dt, label FROM typed ORDER BY id")
    assert cur.fetchall() == (
        (1, 1, 1.25, None, dt.date(2026, 1, 2), instant.replace(tzinfo=None), instant.replace(tzinfo=None), "b"),
        (2, None, 2, 0.5, None, None, None, None),
    )
    # CURRENT_TIMESTAMP defaults are the writer's session's own zone (+05:00), as for any client
    cur.execute("SELECT TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), MIN(created)) FROM typed")
    assert 295 <= cur.fetchone()[0] <= 300


def test_keys_from_the_data_over_two_typed_key_columns(admin: Any, db: ErpDb, tmp_path: Path) -> None:
    """keys=None: the staged keys (``CAST(... AS CHAR)``) are locked, counted and replaced; given keys
    are text that the key table converts to the columns' types (``week`` is INT)."""
    cur = admin.cursor()
    cur.execute(
        "CREATE TABLE weekly (country CHAR(2) NOT NULL, week INT NOT NULL, sku INT NOT NULL, price DOUBLE NOT NULL, "
        "PRIMARY KEY (country, week, sku))"
    )
    rows = [("DE", 48, 3), ("DE", 49, 2), ("FR", 48, 1)]
    data = {
        "country": [c for c, _, n in rows for _ in range(n)],
        "week": [w for _, w, n in rows for _ in range(n)],
        "sku": [i for *_, n in rows for i in range(n)],
        "price": [1.0] * 6,
    }
    pq.write_table(pa.table(data), tmp_path / "all.parquet")
    op = db.writer(str(tmp_path / "all.parquet"), table="weekly", key_column=["country", "week"], column_map=None)
    result = op.execute(CTX)
    assert {k: v["new"] for k, v in result["keys"].items()} == {"DE|48": 3, "DE|49": 2, "FR|48": 1}
    pq.write_table(pa.table({"country": ["DE"], "week": [48], "sku": [9], "price": [2.0]}), tmp_path / "de48.parquet")
    again = db.writer(
        str(tmp_path / "de48.parquet"),
        table="weekly",
        key_column=["country", "week"],
        keys=[["DE", 48], ["FR", "49"]],
        column_map=None,
        max_drop=1,
    ).execute(CTX)
    assert again["keys"] == {
        "DE|48": {"old": 3, "new": 1, "change": -66.67},
        "FR|49": {"old": 0, "new": 0, "change": None},
    }
    cur.execute("SELECT country, week, COUNT(*), SUM(price) FROM weekly GROUP BY 1, 2 ORDER BY 1, 2")
    assert cur.fetchall() == (("DE", 48, 1, 2.0), ("DE", 49, 2, 2.0), ("FR", 48, 1, 1.0))


def test_a_key_held_by_another_session_times_out_with_a_clear_error(
    db: ErpDb, tmp_path: Path, account: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_ml_provider.erp import mysql as dialect
    from airflow_ml_provider.erp.identifiers import TableName
    from airflow_ml_provider.exceptions import MlProviderError, PermanentError

    path = {"DE": parquet(tmp_path / "a.parquet", "DE", 10)}
    db.writer(path).execute(CTX)
    before = db.snapshot()
    monkeypatch.setattr(dialect, "LOCK_TIMEOUT_S", 1)
    holder = _connect()
    try:
        holder.cursor().execute("SELECT GET_LOCK(%s, 0)", (dialect.lock_name(TableName(account[0], "prices"), "DE"),))
        started = time.monotonic()
        with pytest.raises(MlProviderError, match=r"Another writer has held the lock of key 'DE' of .*prices for 1 s"):
            db.writer(path).execute(CTX)
        assert time.monotonic() - started < 30
    finally:
        holder.close()
    assert db.snapshot() == before
    assert not isinstance(MlProviderError("x"), PermanentError)  # the task's retries apply


def test_a_table_that_cannot_roll_back_is_refused(admin: Any, db: ErpDb, tmp_path: Path) -> None:
    admin.cursor().execute("CREATE TABLE plain (country VARCHAR(2) NOT NULL, sku INT NOT NULL) ENGINE=MyISAM")
    op = db.writer({"DE": parquet(tmp_path / "a.parquet", "DE", 5)}, table="plain", column_map=None)
    with pytest.raises(
        InvalidSpecError, match=r"\.plain uses the MyISAM engine, which cannot roll back.*ENGINE=InnoDB"
    ):
        op.execute(CTX)
    assert db.query("SELECT COUNT(*) FROM plain") == [(0,)]


def test_the_database_comes_from_the_connection_or_the_table_name(
    db: ErpDb, tmp_path: Path, account: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    database, user = account
    no_schema = {"conn_type": "mysql", "host": HOST, "port": PORT, "login": user, "password": SECRET}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(no_schema))
    path = {"DE": parquet(tmp_path / "a.parquet", "DE", 5)}
    with pytest.raises(ConnectionConfigError, match=r"names no database .*'database\.table'"):
        db.writer(path).execute(CTX)
    result = db.writer(path, table=f"{database}.prices").execute(CTX)
    assert result["table"] == f"{database}.prices"
    assert db.counts() == {"DE": 5}


def test_bad_identifiers_are_refused(db: ErpDb, tmp_path: Path) -> None:
    op = db.writer({"DE": parquet(tmp_path / "x.parquet", "DE", 5)})
    op.table = "prices` ; DROP TABLE prices; --"  # as if a template had rendered to it
    with pytest.raises(InvalidSpecError, match="not a valid SQL name"):
        op.execute(CTX)
    assert ("prices",) in db.query("SHOW TABLES")


def test_the_password_never_appears_in_logs_xcom_or_errors(
    db: ErpDb, tmp_path: Path, account: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    with structlog.testing.capture_logs() as logs:
        seen.append(repr(db.writer({"DE": parquet(tmp_path / "a.parquet", "DE", 100)}).execute(CTX)))
        failing: list[tuple[type[Exception], dict[str, Any]]] = [
            (DropGuardError, {"input_path": {"DE": parquet(tmp_path / "b.parquet", "DE", 10)}}),
            (InvalidSpecError, {"table": "missing", "input_path": {"DE": parquet(tmp_path / "c.parquet", "DE", 10)}}),
        ]
        for error, kwargs in failing:
            with pytest.raises(error) as info:
                db.writer(**kwargs).execute(CTX)
            seen += [str(info.value), repr(info.value)]
        _set_conn(monkeypatch, account, port=1)
        with pytest.raises(MySQLdb.OperationalError) as bad_port:
            db.writer({"DE": parquet(tmp_path / "a.parquet", "DE", 100)}).execute(CTX)
        seen += [str(bad_port.value), repr(bad_port.value), repr(bad_port.value.__context__)]
        for client in ("mysqlclient", "mysql-connector-python"):  # a wrong login, with either client
            nobody = {"conn_type": "mysql", "host": HOST, "login": "nobody", "password": SECRET}
            monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(nobody | {"extra": {"client": client}}))
            with pytest.raises(Exception, match="Access denied") as denied:
                db.writer({"DE": parquet(tmp_path / "a.parquet", "DE", 100)}).execute(CTX)
            seen += [str(denied.value), repr(denied.value)]
    seen += [repr(e) for e in logs]
    assert len(seen) >= 11
    assert not [s for s in seen if SECRET in s]
