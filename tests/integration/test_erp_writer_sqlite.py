"""ErpWriteOperator against a real SQLite database file: one ``BEGIN IMMEDIATE`` transaction per write.

Each test gets its own database file under ``tmp_path``; the connection ``erp_sqlite_test``
(type ``sqlite``, ``host`` = the file) points at it. The helpers (Parquet inputs, the operator
with the test's column map, the bad-input cases) are the PostgreSQL module's.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.exceptions import ConnectionConfigError, DropGuardError, InvalidSpecError
from tests.integration.test_erp_writer_postgres import _bad_cases, parquet, writer

pytestmark = pytest.mark.integration

CONN_ID = "erp_sqlite_test"
CTX: Any = {}
TABLE_SQL = """
CREATE TABLE prices (
    country TEXT NOT NULL,
    sku BIGINT NOT NULL,
    price DOUBLE NOT NULL CONSTRAINT price_check CHECK (price >= 0),
    source VARCHAR(10),
    model_version TEXT,
    written_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (country, sku)
)"""


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_type: str, host: str) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": conn_type, "host": host}))


@pytest.fixture
def db_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A database file with a fresh ``prices`` table; the connection points at it."""
    path = tmp_path / "erp.db"
    with sqlite3.connect(path) as conn:
        conn.execute(TABLE_SQL)
    conn.close()
    _set_conn(monkeypatch, "sqlite", str(path))
    return path


@pytest.fixture
def db(db_file: Path) -> Iterator[sqlite3.Connection]:
    """A separate reading connection (autocommit; waits up to 30 s for a writer's commit)."""
    conn = sqlite3.connect(db_file, timeout=30, isolation_level=None, check_same_thread=False)
    yield conn
    conn.close()


def sqlite_writer(input_path: Any, **kwargs: Any) -> Any:
    return writer(input_path, conn_id=CONN_ID, **kwargs)


def query(conn: sqlite3.Connection, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    return list(conn.execute(sql, params).fetchall())


def snapshot(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return query(conn, "SELECT country, sku, price, source, model_version FROM prices ORDER BY 1, 2")


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(query(conn, "SELECT country, count(*) FROM prices GROUP BY 1"))


# -- replace only the given keys; idempotent ----------------------------------------------------------


def test_replaces_only_the_given_keys_and_a_rerun_is_idempotent(db: sqlite3.Connection, tmp_path: Path) -> None:
    first = {c: parquet(tmp_path / f"v1/{c}.parquet", c, n, "v1") for c, n in (("DE", 100), ("FR", 50), ("IT", 30))}
    result = sqlite_writer(first, constants={"model_version": "1"}).execute(CTX)
    assert result["rows"] == 180
    assert result["table"] == "main.prices"
    assert result["keys"]["IT"] == {"old": 0, "new": 30, "change": None}
    italy = [r for r in snapshot(db) if r[0] == "IT"]

    second = {
        "DE": parquet(tmp_path / "v2/DE.parquet", "DE", 95, "v2"),
        "FR": parquet(tmp_path / "v2/FR.parquet", "FR", 50, "v2"),
    }
    op = sqlite_writer(second, keys=["DE", "FR"], constants={"model_version": "2"}, batch_rows=7)
    result = op.execute(CTX)
    assert result["keys"] == {
        "DE": {"old": 100, "new": 95, "change": -5.0},
        "FR": {"old": 50, "new": 50, "change": 0.0},
    }
    assert counts(db) == {"DE": 95, "FR": 50, "IT": 30}
    assert [r for r in snapshot(db) if r[0] == "IT"] == italy  # untouched
    assert query(db, "SELECT DISTINCT source, model_version FROM prices WHERE country <> 'IT'") == [("v2", "2")]
    assert query(db, "SELECT count(*) FROM prices WHERE written_at IS NULL") == [(0,)]  # the default applied
    assert query(db, "SELECT DISTINCT typeof(sku), typeof(price) FROM prices") == [("integer", "real")]

    before = snapshot(db)
    again = op.execute(CTX)
    assert snapshot(db) == before
    assert again["keys"]["DE"] == {"old": 95, "new": 95, "change": 0.0}


# -- a reader never sees a partial or empty key ---------------------------------------------------------


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_a_reader_polling_1000_times_sees_only_whole_sets(
    db: sqlite3.Connection, tmp_path: Path, journal_mode: str
) -> None:
    """WAL: the reader is never blocked; rollback journal (``delete``): it waits out the commit."""
    assert query(db, f"PRAGMA journal_mode = {journal_mode}") == [(journal_mode,)]
    sizes = (2000, 2100)
    inputs = [parquet(tmp_path / f"r{n}.parquet", "DE", n, f"s{n}") for n in sizes]
    sqlite_writer({"DE": inputs[0]}).execute(CTX)
    stop = threading.Event()
    writes: list[int] = []
    errors: list[BaseException] = []

    def write_repeatedly() -> None:
        try:
            while not stop.is_set():
                sqlite_writer({"DE": inputs[(len(writes) + 1) % 2]}, batch_rows=300).execute(CTX)
                writes.append(1)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=write_repeatedly)
    thread.start()
    seen = []
    try:
        for _ in range(1000):
            seen.append(query(db, "SELECT count(*) FROM prices WHERE country = ?", ("DE",))[0][0])
            time.sleep(0.002)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors
    assert len(writes) >= 4, "the writer did not run during the polling"
    assert set(seen) <= set(sizes), sorted(set(seen) - set(sizes))
    assert set(seen) == set(sizes), "the reader never saw a write land"


# -- a constraint violation deep in the load: nothing changes ----------------------------------------


def test_a_constraint_violation_deep_in_the_load_rolls_back_everything(db: sqlite3.Connection, tmp_path: Path) -> None:
    sqlite_writer({"DE": parquet(tmp_path / "old.parquet", "DE", 100_000, "old")}).execute(CTX)
    before = snapshot(db)
    prices = [1.0] * 100_000
    prices[87_654] = -1.0  # violates CHECK (price >= 0)
    bad = parquet(tmp_path / "bad.parquet", "DE", 100_000, "new", prediction=prices)
    with pytest.raises(InvalidSpecError, match="price_check") as info:
        sqlite_writer({"DE": bad}, batch_rows=10_000).execute(CTX)
    assert "Nothing was written" in str(info.value)
    assert ".." not in str(info.value)
    assert snapshot(db) == before
    assert not query(db, "SELECT name FROM sqlite_temp_master")  # no staging left behind on this connection


# -- two concurrent writers: exactly one input, whole -------------------------------------------------


def test_two_concurrent_writers_end_with_exactly_one_input(db: sqlite3.Connection, tmp_path: Path) -> None:
    sizes = {"a": 3000, "b": 2900}
    files = {s: parquet(tmp_path / f"{s}.parquet", "DE", n, s) for s, n in sizes.items()}
    sqlite_writer({"DE": files["a"]}).execute(CTX)
    for round_ in range(5):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []
        done: list[str] = []

        def run(
            source: str, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors, done: Any = done
        ) -> None:
            try:
                barrier.wait()
                sqlite_writer({"DE": files[source]}, batch_rows=500).execute(CTX)
                done.append(source)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=(s,)) for s in sizes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert sorted(done) == ["a", "b"]  # both committed, one after the other
        rows = query(db, "SELECT source, count(*) FROM prices WHERE country = 'DE' GROUP BY 1")
        assert len(rows) == 1, (round_, rows)
        assert rows[0][1] == sizes[rows[0][0]], (round_, rows)
        assert rows[0][0] == done[-1], (round_, rows, done)  # the last commit wins, whole


# -- bad inputs: a clear error, nothing written ---------------------------------------------------------


def test_each_bad_input_gives_a_clear_error_and_writes_nothing(db: sqlite3.Connection, tmp_path: Path) -> None:
    sqlite_writer({"DE": parquet(tmp_path / "seed.parquet", "DE", 20, "seed")}).execute(CTX)
    before = snapshot(db)
    cases = _bad_cases(tmp_path)
    names = {name for name, _, _ in cases}
    assert {"missing column", "NaN in NOT NULL", "unknown key", "duplicate PK", "empty dataset"} <= names
    for name, kwargs, pattern in cases:  # the same messages as on PostgreSQL (BIGINT is named "bigint")
        with pytest.raises(InvalidSpecError, match=pattern) as info:
            sqlite_writer(**kwargs).execute(CTX)
        assert ".." not in str(info.value), name
        assert snapshot(db) == before, name


def test_bad_identifiers_are_refused(db: sqlite3.Connection, tmp_path: Path) -> None:
    path = {"DE": parquet(tmp_path / "x.parquet", "DE", 5)}
    op = sqlite_writer(path)
    op.table = 'prices" ; DROP TABLE prices; --'  # as if a template had rendered to it
    with pytest.raises(InvalidSpecError, match="not a valid SQL name"):
        op.execute(CTX)
    assert query(db, "SELECT name FROM sqlite_master WHERE type = 'table'") == [("prices",)]


# -- the drop guard ---------------------------------------------------------------------------------


def test_drop_guard_fails_with_the_keys_and_writes_nothing(db: sqlite3.Connection, tmp_path: Path) -> None:
    seed = {c: parquet(tmp_path / f"s{c}.parquet", c, 100, "seed") for c in ("DE", "FR")}
    sqlite_writer(seed).execute(CTX)
    before = snapshot(db)
    smaller = {
        "DE": parquet(tmp_path / "de80.parquet", "DE", 80, "new"),
        "FR": parquet(tmp_path / "fr.parquet", "FR", 100, "new"),
    }
    with pytest.raises(DropGuardError) as info:
        sqlite_writer(smaller).execute(CTX)
    assert info.value.keys == ["DE"]
    assert "DE: 100 -> 80 (-20.00%)" in str(info.value)
    assert snapshot(db) == before
    result = sqlite_writer(smaller, on_drop="warn").execute(CTX)
    assert result["keys"]["DE"] == {"old": 100, "new": 80, "change": -20.0}
    assert counts(db) == {"DE": 80, "FR": 100}


# -- other connection types -----------------------------------------------------------------------


def test_an_unsupported_connection_type_is_refused_naming_the_supported_ones(
    db_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_conn(monkeypatch, "mysql", "127.0.0.1")
    with pytest.raises(ConnectionConfigError, match=r"'mysql'.*\['postgres', 'sqlite'\]"):
        sqlite_writer({"DE": parquet(tmp_path / "a.parquet", "DE", 5)}).execute(CTX)
