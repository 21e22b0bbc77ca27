"""MariaDB and MySQL: batched inserts into a TEMPORARY staging table, then delete + insert, in one transaction.

What :meth:`MySqlErpWriter.replace` does, on one connection of the mysql provider's ``MySqlHook``
(mysqlclient; mysql-connector-python with the connection extra ``{"client": "mysql-connector-python"}``),
without committing before the end:

0. The session is set up so that bad data is an error and reads are current: ``sql_mode =
   'TRADITIONAL'`` (strict: a value that does not fit its column fails the statement instead of
   being truncated with a warning), ``READ COMMITTED`` (each statement reads what is committed,
   and InnoDB locks only the rows it changes, not gaps) and ``time_zone = '+00:00'`` while staging.
1. ``GET_LOCK`` per (database, table, key), in sorted order, each waiting up to
   :data:`LOCK_TIMEOUT_S`: two writers of the same keys serialize (the second waits for the
   first's commit, then replaces its rows), so the result is exactly one input. Named locks belong
   to the session, not the transaction: they are released after the commit or rollback, and by the
   server when a killed writer's connection goes.
2. ``CREATE TEMPORARY TABLE ... ENGINE=InnoDB AS SELECT <written columns> FROM <target> LIMIT 0``:
   a staging table with the target columns' types and no constraints. ``TEMPORARY`` matters:
   ``CREATE``/``DROP TABLE`` without it commit the open transaction implicitly.
3. ``executemany`` of one record batch at a time, in chunks of :data:`CHUNK_ROWS` rows (the
   drivers send each chunk as multi-row ``INSERT`` statements; values bound): memory is bounded
   by the batch. ``LOAD DATA LOCAL INFILE`` is not used: the server turns its data errors into
   warnings even in strict mode (``LOCAL`` implies ``IGNORE``), and it must be enabled on both the
   client and the server, which lets the server read client files.
4. Duplicate primary keys, in SQL on the staging table.
5. The keys go into a TEMPORARY key table typed like the key columns; old (target) and new
   (staging) row counts per key are joins on it (the target's key index is used); the drop guard
   may raise.
6. ``DELETE`` the target rows that join the key table and ``INSERT ... SELECT`` from staging (the
   target's constraints apply here; ``DEFAULT CURRENT_TIMESTAMP`` in the session's own time zone).
   Then one ``COMMIT``.

Readers keep seeing the old rows until the commit (InnoDB's consistent reads, in ``REPEATABLE
READ`` or ``READ COMMITTED``), then the new ones: never a partial or empty key. Any exception rolls
back. Names are quoted with backticks by SQLAlchemy's MySQL identifier preparer (after
:mod:`.identifiers` checked them); values are always bound. Keys are compared in the key
columns' own types and collations (as the table's indexes and unique keys compare them) and
reported as text (``CAST(column AS CHAR)``). A table without a schema is in the connection's
database (``DATABASE()``); the temporary tables are made in the target's database. A table whose
engine has no transactions (MyISAM, Aria, MEMORY) is refused before anything is read. Timezone-aware
timestamps are written as UTC.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

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
from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError, MlProviderError
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    import pyarrow as pa

STAGING = "ml_erp_staging"
KEYS = "ml_erp_keys"
#: The key table's column numbering the keys (maps the counts back to the operator's key texts).
KEY_INDEX = "ml_erp_key_index"
#: How long ``GET_LOCK`` waits for another writer of the same key before the task fails (retryable).
LOCK_TIMEOUT_S = 600
#: Rows per ``executemany`` call (bounds one call's statements whatever ``batch_rows`` is).
CHUNK_ROWS = 5_000
#: Server error codes that mean "the input does not fit the table" (NOT NULL, duplicate or foreign
#: key, out of range, too long, wrong value, CHECK constraint on MariaDB (4025) and MySQL (3819)).
DATA_ERRORS = frozenset(
    {1048, 1062, 1216, 1217, 1263, 1264, 1265, 1292, 1364, 1366, 1367, 1406, 1411, 1451, 1452, 1586, 1690}
    | {3819, 4025}
)


def mysql_data_type(data_type: str, column_type: str) -> str:
    """A column's type as :mod:`.checks` names it: ``information_schema``'s ``data_type``, lower case.

    ``tinyint(1)`` (what ``BOOL``/``BOOLEAN`` declare) stays ``tinyint(1)``: it takes booleans and
    integers. ``int(11) unsigned`` is ``int``, ``varchar(10)`` is ``varchar``, ``decimal(10,2)`` is
    ``decimal``.

    :param data_type: the catalog's ``DATA_TYPE`` (``int``, ``varchar``, ``datetime``, ...).
    :param column_type: the catalog's ``COLUMN_TYPE`` (``tinyint(1)``, ``int(11) unsigned``, ...).
    """
    if column_type.lower().replace(" ", "").startswith("tinyint(1)"):
        return "tinyint(1)"
    return data_type.strip().lower()


def quote(name: str) -> str:
    """``name`` as a quoted MySQL identifier (```name```), by SQLAlchemy's MySQL dialect."""
    from sqlalchemy.dialects import mysql

    return str(mysql.dialect().identifier_preparer.quote_identifier(name))


def _names(names: Sequence[str], prefix: str = "") -> str:
    return ", ".join(prefix + quote(n) for n in names)


def _key_join(key_columns: Sequence[str], left: str, right: str) -> str:
    """``l.a <=> r.a AND l.b <=> r.b`` (NULL-safe: a NULL key is a key like the others)."""
    return " AND ".join(f"{left}.{quote(k)} <=> {right}.{quote(k)}" for k in key_columns)


def lock_name(table: TableName, key: str) -> str:
    """The ``GET_LOCK`` name of one (table, key): at most 64 characters, the same in every session."""
    digest = hashlib.sha256(f"{table}{KEY_SEPARATOR}{key}".encode()).hexdigest()
    return f"ml_erp:{digest[:56]}"


def rows(
    batch: pa.RecordBatch, columns: Sequence[str], chunk_rows: int = CHUNK_ROWS
) -> Iterator[list[tuple[Any, ...]]]:
    """The batch's rows as tuples the drivers bind, ``chunk_rows`` at a time, in ``columns`` order.

    Timestamps become naive UTC (the session stages in UTC; MySQL keeps microseconds), NaN in a
    float column becomes NULL (MySQL has no NaN); an infinite value fails naming the column.
    """
    with requires_extra("mlflow"):
        import pyarrow as pa
        import pyarrow.compute as pc

    values = []
    for name in columns:
        column = batch.column(name)
        if pa.types.is_timestamp(column.type):
            column = pc.cast(column, pa.timestamp("us"), safe=False)
        elif pa.types.is_floating(column.type):
            infinite = pc.index(pc.fill_null(pc.is_inf(column), False), True).as_py()
            if infinite >= 0:
                raise InvalidSpecError(
                    f"Column {name!r} has {column[infinite].as_py()} in a row of the input; MariaDB/MySQL cannot "
                    "store infinite values. Replace them upstream. Nothing was written."
                )
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        values.append(column.to_pylist())
    for start in range(0, batch.num_rows, chunk_rows):
        yield list(zip(*(v[start : start + chunk_rows] for v in values), strict=True))


class MySqlErpWriter(ErpWriter):
    """The MariaDB/MySQL family (connection type ``mysql``), through the mysql provider's hook.

    :param conn_id: the Airflow connection; its ``schema`` is the database of tables named without one.
    """

    conn_types = ("mysql",)

    def _connect(self) -> Any:
        with requires_extra("mysql"):
            from airflow.providers.mysql.hooks.mysql import MySqlHook

        hook = MySqlHook(mysql_conn_id=self.conn_id)
        conn: Any = hook.get_conn()
        hook.set_autocommit(conn, False)
        return conn

    def describe(self, table: TableName) -> TargetTable | None:
        """Columns and primary key from ``information_schema``; no schema means ``DATABASE()``.

        A table of an engine without transactions (MyISAM, Aria, MEMORY, ...) is refused: the write
        could not be rolled back.
        """
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT COALESCE(%s, DATABASE())", (table.schema,))
            (schema,) = cur.fetchone()
            if schema is None:
                raise ConnectionConfigError(
                    f"Connection {self.conn_id!r} names no database and table {table} has none; set the "
                    "connection's schema (the database) or give the table as 'database.table'."
                )
            cur.execute(
                "SELECT column_name, data_type, column_type, is_nullable = 'YES', column_default IS NOT NULL "
                "OR INSTR(extra, 'auto_increment') > 0 OR INSTR(UPPER(extra), 'GENERATED') > 0 "
                "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (schema, table.name),
            )
            found = cur.fetchall()
            cur.execute(
                "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = %s "
                "AND table_name = %s AND constraint_name = 'PRIMARY' ORDER BY ordinal_position",
                (schema, table.name),
            )
            pk = tuple(_text(r[0]) for r in cur.fetchall())
            cur.execute(
                "SELECT t.engine FROM information_schema.tables t JOIN information_schema.engines e "
                "ON e.engine = t.engine WHERE t.table_schema = %s AND t.table_name = %s AND e.transactions = 'NO'",
                (schema, table.name),
            )
            engine = cur.fetchone()
            conn.rollback()
        finally:
            conn.close()
        if not found:
            return None
        if engine is not None:
            raise InvalidSpecError(
                f"Table {_text(schema)}.{table.name} uses the {_text(engine[0])} engine, which cannot roll back: a "
                "failed write would leave its keys half replaced. Convert it (ALTER TABLE ... ENGINE=InnoDB) or "
                "write to an InnoDB table. Nothing was written."
            )
        columns = {}
        for name, data_type, column_type, nullable, has_default in found:
            name = _text(name)
            data_type = mysql_data_type(_text(data_type), _text(column_type))
            columns[name] = TargetColumn(name, data_type, bool(nullable), bool(has_default))
        return TargetTable(TableName(_text(schema), table.name), columns, pk)

    def replace(self, job: ReplaceJob) -> list[KeyCount]:
        """The steps in the module docstring; rolled back on any exception."""
        conn = self._connect()
        database = quote(job.table.name.schema or "")
        target = f"{database}.{quote(job.table.name.name)}"
        # TEMPORARY tables live in a database too: the target's (the connection may name none)
        staging, keys_table = f"{database}.{quote(STAGING)}", f"{database}.{quote(KEYS)}"
        cols = _names(job.columns)
        locks: list[str] = []
        try:
            cur = conn.cursor()
            cur.execute("SELECT @@SESSION.time_zone")
            (zone,) = cur.fetchone()
            cur.execute("SET SESSION sql_mode = 'TRADITIONAL', time_zone = '+00:00'")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute("START TRANSACTION")
            if job.keys is not None:
                locks += self._lock(cur, job.table.name, job.keys)
            cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {staging}, {keys_table}")
            cur.execute(f"CREATE TEMPORARY TABLE {staging} ENGINE=InnoDB AS SELECT {cols} FROM {target} LIMIT 0")
            insert = f"INSERT INTO {staging} ({cols}) VALUES ({', '.join(['%s'] * len(job.columns))})"
            for batch in job.batches:
                for chunk in rows(batch, job.columns):
                    cur.executemany(insert, chunk)
            cur.execute("SET SESSION time_zone = %s", (_text(zone),))
            keys: Sequence[tuple[str | None, ...]]
            if job.keys is not None:
                keys = job.keys
            else:
                keys = self._staged_keys(cur, staging, job.key_columns)
                locks += self._lock(cur, job.table.name, keys)
            if job.primary_key:
                self._check_duplicates(cur, staging, job)
            key_cols = _names(job.key_columns)
            cur.execute(
                f"CREATE TEMPORARY TABLE {keys_table} ({quote(KEY_INDEX)} INT NOT NULL DEFAULT 0) ENGINE=InnoDB "
                f"AS SELECT {key_cols} FROM {target} LIMIT 0"
            )
            if keys:
                placeholders = ", ".join(["%s"] * (len(job.key_columns) + 1))
                cur.executemany(
                    f"INSERT INTO {keys_table} ({quote(KEY_INDEX)}, {key_cols}) VALUES ({placeholders})",
                    [(i, *key) for i, key in enumerate(keys)],
                )
            counts = self._counts(cur, target, staging, keys_table, job.key_columns, keys)
            job.guard(counts)
            # no alias for the target: an alias in a multi-table DELETE needs a default database
            join = _key_join(job.key_columns, target, "k")
            cur.execute(f"DELETE {target} FROM {target} JOIN {keys_table} AS k ON {join}")
            cur.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging}")
            cur.execute(f"DROP TEMPORARY TABLE {staging}, {keys_table}")
            conn.commit()
        except Exception as e:
            _rollback(conn)
            code, message = _error(e)
            if code in DATA_ERRORS:
                raise does_not_fit_error(job.table.name, f"{message} (error {code})") from None
            raise
        except BaseException:
            _rollback(conn)
            raise
        finally:
            _release(conn, locks)
            conn.close()
        return counts

    @staticmethod
    def _lock(cur: Any, table: TableName, keys: Sequence[tuple[str | None, ...]]) -> list[str]:
        """``GET_LOCK`` per (table, key) in sorted order (no deadlock); the names taken."""
        taken = []
        by_name = {lock_name(table, key_text(k)): key_text(k) for k in keys}
        for name in sorted(by_name):
            cur.execute("SELECT GET_LOCK(%s, %s)", (name, LOCK_TIMEOUT_S))
            (got,) = cur.fetchone()
            if got != 1:
                raise MlProviderError(
                    f"Another writer has held the lock of key {by_name[name]!r} of {table} for {LOCK_TIMEOUT_S} s "
                    f"(MySQL named lock {name!r}); nothing was written. Retry when it has finished (task retries), "
                    "or find the session holding it: SELECT IS_USED_LOCK(<name>)."
                )
            taken.append(name)
        return taken

    @staticmethod
    def _staged_keys(cur: Any, staging: str, key_columns: list[str]) -> list[tuple[str | None, ...]]:
        """The distinct keys in staging (as the key columns compare), as text."""
        texts = ", ".join(f"CAST({quote(k)} AS CHAR)" for k in key_columns)
        group = _names(key_columns)
        cur.execute(f"SELECT {texts} FROM {staging} GROUP BY {group} ORDER BY {group}")
        return [tuple(None if v is None else _text(v) for v in r) for r in cur.fetchall()]

    @staticmethod
    def _check_duplicates(cur: Any, staging: str, job: ReplaceJob) -> None:
        pk = _names(job.primary_key)
        cur.execute(
            f"SELECT {pk}, COUNT(*) FROM {staging} GROUP BY {pk} HAVING COUNT(*) > 1 ORDER BY {pk} "
            f"LIMIT {int(SHOW_DUPLICATES)}"
        )
        found = cur.fetchall()
        if found:
            raise duplicates_error(job, found, _text)

    @staticmethod
    def _counts(
        cur: Any,
        target: str,
        staging: str,
        keys_table: str,
        key_columns: list[str],
        keys: Sequence[tuple[str | None, ...]],
    ) -> list[KeyCount]:
        """Old and new row counts per key (every key, zero where there are none)."""
        found = [[0, 0] for _ in keys]
        for index, table in enumerate((target, staging)):
            cur.execute(
                f"SELECT k.{quote(KEY_INDEX)}, COUNT(*) FROM {keys_table} AS k JOIN {table} AS t "
                f"ON {_key_join(key_columns, 't', 'k')} GROUP BY k.{quote(KEY_INDEX)}"
            )
            for i, n in cur.fetchall():
                found[int(i)][index] = int(n)
        merged: dict[str, list[int]] = {}
        for key, (old, new) in zip(keys, found, strict=True):
            merged.setdefault(key_text(key), [old, new])
        return [KeyCount(k, old, new) for k, (old, new) in sorted(merged.items())]


def _text(value: Any) -> str:
    """A catalog value as ``str`` (mysql-connector-python may hand out ``bytes``/``bytearray``)."""
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def _error(e: BaseException) -> tuple[int | None, str]:
    """The server error code and message of a driver exception (mysqlclient: ``args``; connector: attributes)."""
    code = getattr(e, "errno", None)
    message = getattr(e, "msg", None)
    if code is None and len(e.args) >= 2 and isinstance(e.args[0], int):
        code, message = e.args[0], e.args[1]
    text = " ".join(str(message if message is not None else e).split()).rstrip(".")
    return (code if isinstance(code, int) else None), text


def _rollback(conn: Any) -> None:
    """``ROLLBACK``; a connection that is already gone has nothing to roll back (the server did)."""
    with contextlib.suppress(Exception):
        conn.rollback()


def _release(conn: Any, locks: Sequence[str]) -> None:
    """Release the named locks (after the commit or rollback); a lost session's locks are already gone,
    and closing the connection releases them too."""
    if not locks:
        return
    with contextlib.suppress(Exception):
        cur = conn.cursor()
        for name in locks:
            cur.execute("SELECT RELEASE_LOCK(%s)", (name,))
            cur.fetchall()
