"""SQLite: batched inserts into a TEMP staging table, then delete + insert, in one transaction.

What :meth:`SqliteErpWriter.replace` does, on one connection of the sqlite provider's
``SqliteHook`` (the connection's ``host`` is the database file), without committing before the end:

1. ``BEGIN IMMEDIATE``: SQLite's write lock on the whole database. A second writer waits for the
   first's commit (up to :data:`BUSY_TIMEOUT_MS`, then ``database is locked``, which Airflow
   retries), then replaces its rows: the result is exactly one input, never a mix.
2. ``CREATE TEMP TABLE ... AS SELECT <written columns> FROM <target> WHERE 0``: a staging table with
   the target columns' affinities and no constraints.
3. ``executemany`` of one record batch at a time (values bound, dates and timestamps as ISO text,
   decimals as text): memory is bounded by the batch.
4. Duplicate primary keys, in SQL on the staging table.
5. The keys go into a TEMP key table; old (target) and new (staging) row counts per key; the
   drop guard may raise.
6. ``DELETE`` the keys' rows and ``INSERT ... SELECT`` from staging (the target's constraints apply
   here). Then one ``COMMIT``.

Readers keep seeing the old rows until the commit, then the new ones: never a partial or empty
key. The writer does not change the database's journal mode (a persistent property of the file,
owned by the ERP): in WAL mode readers are never blocked; in the default rollback-journal mode a
reader waits (its own busy timeout) while the commit is written. Any exception rolls back. Names
are quoted with SQLAlchemy's SQLite identifier preparer (after :mod:`.identifiers` checked them);
values are always bound. Keys are compared as text (``CAST(column AS TEXT)``), as the operator
gives them.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from typing import Any

from airflow_ml_provider.erp.checks import DB_FAMILY
from airflow_ml_provider.erp.dialect import (
    KEY_SEPARATOR,
    SHOW_DUPLICATES,
    ErpWriter,
    ReplaceJob,
    TargetColumn,
    TargetTable,
    does_not_fit_error,
    duplicates_error,
    key_text,
)
from airflow_ml_provider.erp.drop_guard import KeyCount
from airflow_ml_provider.erp.identifiers import TableName
from airflow_ml_provider.utils.optional_deps import requires_extra

STAGING = "ml_erp_staging"
KEYS = "ml_erp_keys"
#: How long ``BEGIN IMMEDIATE`` waits for another writer's commit before ``database is locked``.
BUSY_TIMEOUT_MS = 60_000


def sqlite_data_type(declared: str) -> str:
    """A declared SQLite column type as a catalog type name that :mod:`.checks` knows, lower case.

    A declared name the checks know (``bigint``, ``double``, ``timestamp``, ``decimal(10,2)`` ->
    ``decimal``) is kept; otherwise SQLite's affinity rules pick it: a name containing ``INT`` is
    ``integer``, ``CHAR``/``CLOB``/``TEXT`` is ``text``, ``BLOB`` or no type is ``blob`` (any value),
    ``REAL``/``FLOA``/``DOUB`` is ``real``; of the rest (NUMERIC affinity) names with ``DATETIME``
    or ``TIMESTAMP`` are ``timestamp``, ``DATE`` is ``date``, ``BOOL`` is ``boolean``, others ``numeric``.

    :param declared: the type as ``PRAGMA table_info`` gives it, e.g. ``"VARCHAR(10)"``.
    """
    name = " ".join(declared.lower().split())
    base = name.split("(")[0].strip()
    if base in DB_FAMILY:
        return base
    if "int" in name:
        return "integer"
    if any(part in name for part in ("char", "clob", "text")):
        return "text"
    if not name or "blob" in name:
        return "blob"
    if any(part in name for part in ("real", "floa", "doub")):
        return "real"
    if "datetime" in name or "timestamp" in name:
        return "timestamp"
    if "date" in name:
        return "date"
    if "bool" in name:
        return "boolean"
    return "numeric"


def quote(name: str) -> str:
    """``name`` as a quoted SQLite identifier (``"name"``), by SQLAlchemy's SQLite dialect."""
    from sqlalchemy.dialects import sqlite

    return str(sqlite.dialect().identifier_preparer.quote_identifier(name))


def _names(names: Sequence[str]) -> str:
    return ", ".join(quote(n) for n in names)


def _key_expr(key_columns: Sequence[str], prefix: str = "") -> str:
    """The key as one text value (``CAST(a AS TEXT) || '|' || CAST(b AS TEXT)``), like :func:`.key_text`."""
    sep = " || '" + KEY_SEPARATOR + "' || "
    return sep.join(f"CAST({prefix}{quote(k)} AS TEXT)" for k in key_columns)


def _bindable(value: Any) -> Any:
    """A Python value from Arrow as sqlite3 binds it (no deprecated default adapters)."""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


class SqliteErpWriter(ErpWriter):
    """The SQLite family (connection type ``sqlite``), through the sqlite provider's hook.

    :param conn_id: the Airflow connection; its ``host`` is the database file.
    """

    conn_types = ("sqlite",)

    def _connect(self) -> Any:
        with requires_extra("sqlite"):
            from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        conn: Any = SqliteHook(sqlite_conn_id=self.conn_id).get_conn()
        conn.isolation_level = None  # no implicit BEGIN: the transaction is ours
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
        return conn

    def describe(self, table: TableName) -> TargetTable | None:
        """Columns and primary key from ``PRAGMA table_xinfo``; no schema means ``main``."""
        schema = table.schema or "main"
        conn = self._connect()
        try:
            rows = conn.execute(f"PRAGMA {quote(schema)}.table_xinfo({quote(table.name)})").fetchall()
        finally:
            conn.close()
        if not rows:
            return None
        # cid, name, type, notnull, dflt_value, pk, hidden (1: virtual-table hidden, 2/3: generated)
        rows = [r for r in rows if r[6] != 1]
        pk = tuple(r[1] for r in sorted((r for r in rows if r[5] > 0), key=lambda r: r[5]))
        columns = {}
        for _, name, declared, notnull, default, in_pk, hidden in rows:
            data_type = sqlite_data_type(declared or "")
            rowid = len(pk) == 1 and in_pk == 1 and (declared or "").strip().upper() == "INTEGER"
            has_default = default is not None or hidden in (2, 3) or rowid
            columns[name] = TargetColumn(name, data_type, not notnull and not rowid, has_default)
        return TargetTable(TableName(schema, table.name), columns, pk)

    def replace(self, job: ReplaceJob) -> list[KeyCount]:
        """The steps in the module docstring; rolled back on any exception."""
        import sqlite3

        conn = self._connect()
        target = f"{quote(job.table.name.schema or 'main')}.{quote(job.table.name.name)}"
        staging = f"temp.{quote(STAGING)}"
        keys_table = f"temp.{quote(KEYS)}"
        cols = _names(job.columns)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"DROP TABLE IF EXISTS {staging}")
            conn.execute(f"DROP TABLE IF EXISTS {keys_table}")
            conn.execute(f"CREATE TEMP TABLE {quote(STAGING)} AS SELECT {cols} FROM {target} WHERE 0")
            conn.execute(f"CREATE TEMP TABLE {quote(KEYS)} (k TEXT PRIMARY KEY)")
            insert = f"INSERT INTO {staging} ({cols}) VALUES ({', '.join('?' * len(job.columns))})"
            for batch in job.batches:
                values = [[_bindable(v) for v in batch.column(name).to_pylist()] for name in job.columns]
                conn.executemany(insert, zip(*values, strict=True))
            if job.keys is not None:
                conn.executemany(f"INSERT INTO {keys_table} (k) VALUES (?)", [(key_text(k),) for k in job.keys])
            else:
                conn.execute(
                    f"INSERT INTO {keys_table} (k) SELECT DISTINCT {_key_expr(job.key_columns)} FROM {staging}"
                )
            if job.primary_key:
                self._check_duplicates(conn, staging, job)
            counts = self._counts(conn, target, staging, keys_table, job.key_columns)
            job.guard(counts)
            key = _key_expr(job.key_columns)
            conn.execute(f"DELETE FROM {target} WHERE {key} IN (SELECT k FROM {keys_table})")
            conn.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging}")
            conn.execute(f"DROP TABLE {staging}")
            conn.execute(f"DROP TABLE {keys_table}")
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as e:
            _rollback(conn)
            raise does_not_fit_error(job.table.name, str(e)) from None
        except BaseException:
            _rollback(conn)
            raise
        finally:
            conn.close()
        return counts

    @staticmethod
    def _check_duplicates(conn: Any, staging: str, job: ReplaceJob) -> None:
        pk = _names(job.primary_key)
        rows = conn.execute(
            f"SELECT {pk}, count(*) FROM {staging} GROUP BY {pk} HAVING count(*) > 1 ORDER BY {pk} LIMIT ?",
            (SHOW_DUPLICATES,),
        ).fetchall()
        if rows:
            raise duplicates_error(job, rows)

    @staticmethod
    def _counts(conn: Any, target: str, staging: str, keys_table: str, key_columns: list[str]) -> list[KeyCount]:
        """Old and new row counts per key (every key in the key table, zero where there are none)."""
        key = _key_expr(key_columns)
        found: dict[str, list[int]] = {k: [0, 0] for (k,) in conn.execute(f"SELECT k FROM {keys_table}")}
        for index, table in enumerate((target, staging)):
            rows = conn.execute(
                f"SELECT {key}, count(*) FROM {table} WHERE {key} IN (SELECT k FROM {keys_table}) GROUP BY 1"
            ).fetchall()
            for k, n in rows:
                found[k][index] = n
        return [KeyCount(k, old, new) for k, (old, new) in sorted(found.items())]


def _rollback(conn: Any) -> None:
    """``ROLLBACK`` if a transaction is open (a failed ``BEGIN IMMEDIATE`` opened none)."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")
