"""ErpWriteOperator against a real SQLite database file: one ``BEGIN IMMEDIATE`` transaction per write.

Each test gets its own database file under ``tmp_path``; the connection ``erp_sqlite_test``
(type ``sqlite``, ``host`` = the file) points at it. The scenarios shared with the other families
are in :mod:`tests.integration.erp_cases`.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError
from tests.integration import erp_cases
from tests.integration.erp_cases import CTX, ErpDb, parquet

pytestmark = pytest.mark.integration

CONN_ID = "erp_sqlite_test"
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
    return erp_cases.writer(input_path, conn_id=CONN_ID, **kwargs)


def query(conn: sqlite3.Connection, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    return list(conn.execute(sql, params).fetchall())


@pytest.fixture
def erp(db: sqlite3.Connection) -> ErpDb:
    """The ``prices`` table as the shared scenarios use it; the reader is ``db`` (its own connection)."""

    @contextlib.contextmanager
    def reader() -> Iterator[Callable[[str], erp_cases.Rows]]:
        yield lambda sql: query(db, sql)

    return ErpDb(CONN_ID, lambda sql: query(db, sql), reader)


# -- replace only the given keys; idempotent ----------------------------------------------------------


def test_replaces_only_the_given_keys_and_a_rerun_is_idempotent(erp: ErpDb, tmp_path: Path) -> None:
    result = erp_cases.replaces_only_the_given_keys(erp, tmp_path)
    assert result["table"] == "main.prices"
    assert erp.query("SELECT DISTINCT typeof(sku), typeof(price) FROM prices") == [("integer", "real")]


# -- a reader never sees a partial or empty key ---------------------------------------------------------


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_a_reader_polling_1000_times_sees_only_whole_sets(erp: ErpDb, tmp_path: Path, journal_mode: str) -> None:
    """WAL: the reader is never blocked; rollback journal (``delete``): it waits out the commit."""
    assert erp.query(f"PRAGMA journal_mode = {journal_mode}") == [(journal_mode,)]
    erp_cases.reader_sees_only_whole_sets(erp, tmp_path)


# -- a constraint violation deep in the load: nothing changes ----------------------------------------


def test_a_constraint_violation_deep_in_the_load_rolls_back_everything(erp: ErpDb, tmp_path: Path) -> None:
    erp_cases.constraint_violation_rolls_back(erp, tmp_path, match="price_check")
    assert not erp.query("SELECT name FROM sqlite_temp_master")  # no staging left behind on this connection


# -- two concurrent writers: exactly one input, whole -------------------------------------------------


def test_two_concurrent_writers_end_with_exactly_one_input(erp: ErpDb, tmp_path: Path) -> None:
    erp_cases.concurrent_writers_end_with_one_input(erp, tmp_path)


# -- bad inputs: a clear error, nothing written ---------------------------------------------------------


def test_each_bad_input_gives_a_clear_error_and_writes_nothing(erp: ErpDb, tmp_path: Path) -> None:
    erp_cases.bad_inputs_write_nothing(erp, tmp_path)  # the same messages as PostgreSQL's (BIGINT is "bigint")


def test_bad_identifiers_are_refused(db: sqlite3.Connection, tmp_path: Path) -> None:
    path = {"DE": parquet(tmp_path / "x.parquet", "DE", 5)}
    op = sqlite_writer(path)
    op.table = 'prices" ; DROP TABLE prices; --'  # as if a template had rendered to it
    with pytest.raises(InvalidSpecError, match="not a valid SQL name"):
        op.execute(CTX)
    assert query(db, "SELECT name FROM sqlite_master WHERE type = 'table'") == [("prices",)]


# -- the drop guard ---------------------------------------------------------------------------------


def test_drop_guard_fails_with_the_keys_and_writes_nothing(erp: ErpDb, tmp_path: Path) -> None:
    erp_cases.drop_guard_fails_naming_keys(erp, tmp_path)


# -- other connection types -----------------------------------------------------------------------


def test_an_unsupported_connection_type_is_refused_naming_the_supported_ones(
    db_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_conn(monkeypatch, "mssql", "127.0.0.1")
    with pytest.raises(ConnectionConfigError, match=r"'mssql'.*\['postgres', 'mysql', 'sqlite'\]"):
        sqlite_writer({"DE": parquet(tmp_path / "a.parquet", "DE", 5)}).execute(CTX)
