"""PostgreSQL: COPY into a staging table, then delete + insert, in one transaction.

What :meth:`PostgresErpWriter.replace` does, on one connection of the postgres provider's
``PostgresHook`` (psycopg2, or psycopg 3 when the hook picks it), without committing before the end:

1. ``pg_advisory_xact_lock`` per (table, key), in sorted order: two writers of the same keys
   serialize (the second waits for the first's commit, then replaces its rows), so the result is
   exactly one input. The locks are released by the commit or rollback.
2. ``CREATE TEMP TABLE ... ON COMMIT DROP AS SELECT <written columns> FROM <target> WITH NO DATA``:
   a staging table with the target columns' types and no constraints.
3. ``COPY staging FROM STDIN (FORMAT csv)`` fed by :class:`CsvStream`, which turns one record batch
   at a time into CSV (pyarrow's writer): memory is bounded by the batch. psycopg2 reads the
   stream (``copy_expert``); with psycopg 3 each batch's CSV is written to ``cursor.copy``.
4. Duplicate primary keys: when the checked columns are the table's primary key, the INSERT of
   step 6 refuses them (behind a savepoint, after which a query on the staging table names them);
   other columns are checked in SQL on the staging table here. Checking only on failure saves a
   sort of the whole input on every write (about 10% of a 1M-row write).
5. Old (target) and new (staging) row counts per key; the drop guard may raise.
6. ``DELETE FROM target WHERE (keys) IN (...)`` and ``INSERT INTO target (...) SELECT ... FROM
   staging``; the target's constraints apply here. Then one commit.

Readers keep seeing the old rows until the commit (MVCC), then the new ones: never a partial
or empty key. Any exception (a failed check, a constraint violation, the drop guard, a killed
process) rolls back. Names are quoted with the driver's ``sql.Identifier``; values are bound.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
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
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    import pyarrow as pa

STAGING = "ml_erp_staging"


class CsvStream(io.RawIOBase):
    """A readable file of CSV rows made one record batch at a time (what ``copy_expert`` reads)."""

    def __init__(self, batches: Iterable[pa.RecordBatch]) -> None:
        super().__init__()
        self._chunks = self.chunks(batches)
        self._buffer = b""

    @staticmethod
    def chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
        """The CSV bytes of each batch in turn (no header)."""
        with requires_extra("mlflow"):
            import pyarrow as pa
            import pyarrow.csv as pacsv

        options = pacsv.WriteOptions(include_header=False)
        for batch in batches:
            sink = pa.BufferOutputStream()
            pacsv.write_csv(batch, sink, write_options=options)
            yield sink.getvalue().to_pybytes()

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for ``-1``); ``b""`` at the end."""
        want = size if size is not None and size >= 0 else None
        while want is None or len(self._buffer) < want:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if want is None:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:want], self._buffer[want:]
        return data


class PostgresErpWriter(ErpWriter):
    """The PostgreSQL family (connection type ``postgres``), through the postgres provider's hook.

    :param conn_id: the Airflow connection; credentials come only from it.
    """

    conn_types = ("postgres",)

    def _connect(self) -> Any:
        with requires_extra("postgres"):
            from airflow.providers.postgres.hooks.postgres import PostgresHook

        conn: Any = PostgresHook(postgres_conn_id=self.conn_id).get_conn()
        conn.autocommit = False
        return conn

    def describe(self, table: TableName) -> TargetTable | None:
        """Columns and primary key from ``information_schema``; the schema resolved by ``current_schema()``."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT table_schema, column_name, data_type, is_nullable = 'YES', column_default IS NOT NULL "
                    "OR is_identity = 'YES' OR is_generated <> 'NEVER' FROM information_schema.columns "
                    "WHERE table_schema = COALESCE(%s, current_schema()) AND table_name = %s ORDER BY ordinal_position",
                    (table.schema, table.name),
                )
                rows = cur.fetchall()
                if not rows:
                    return None
                schema = rows[0][0]
                cur.execute(
                    "SELECT k.column_name FROM information_schema.table_constraints c "
                    "JOIN information_schema.key_column_usage k ON k.constraint_schema = c.constraint_schema "
                    "AND k.constraint_name = c.constraint_name AND k.table_name = c.table_name "
                    "WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = %s AND c.table_name = %s "
                    "ORDER BY k.ordinal_position",
                    (schema, table.name),
                )
                pk = tuple(r[0] for r in cur.fetchall())
            conn.rollback()
        finally:
            conn.close()
        columns = {r[1]: TargetColumn(r[1], r[2].lower(), bool(r[3]), bool(r[4])) for r in rows}
        return TargetTable(TableName(schema, table.name), columns, pk)

    def replace(self, job: ReplaceJob) -> list[KeyCount]:
        """The steps in the module docstring; rolled back on any exception."""
        conn = self._connect()
        driver, sql = _driver(conn)
        q = _Sql(sql)
        target = q.sql.Identifier(job.table.name.schema or "", job.table.name.name)
        staging = q.sql.Identifier(STAGING)
        cols = q.names(job.columns)
        try:
            with conn.cursor() as cur:
                if job.keys is not None:
                    self._lock(cur, job.table, job.keys)
                cur.execute(q.sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
                cur.execute(
                    q.sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                        staging, cols, target
                    )
                )
                copy = q.sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(staging, cols)
                if hasattr(cur, "copy_expert"):  # psycopg2: it reads the stream
                    cur.copy_expert(copy.as_string(conn), CsvStream(job.batches))
                else:  # psycopg 3: we write to it
                    with cur.copy(copy) as sink:
                        for chunk in CsvStream.chunks(job.batches):
                            sink.write(chunk)
                keys = job.keys
                if keys is None:
                    keys = self._staged_keys(cur, q, staging, job.key_columns)
                    self._lock(cur, job.table, keys)
                # The table's own primary key refuses duplicates in the INSERT below: the query that names
                # them runs only then. Another set of columns is checked here, before anything changes.
                enforced = set(job.primary_key) == set(job.table.primary_key)
                if job.primary_key and not enforced:
                    self._check_duplicates(cur, q, staging, job)
                counts = self._counts(cur, q, target, staging, job.key_columns, keys)
                job.guard(counts)
                if keys:
                    cur.execute(
                        q.sql.SQL("DELETE FROM {} WHERE ({}) IN ({})").format(
                            target, q.names(job.key_columns), q.key_list(keys)
                        ),
                        [v for key in keys for v in key],
                    )
                cur.execute("SAVEPOINT ml_erp_insert")
                try:
                    cur.execute(q.sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(target, cols, cols, staging))
                except driver.IntegrityError:
                    if job.primary_key and enforced:  # duplicates in the input, or a clash with other rows?
                        cur.execute("ROLLBACK TO SAVEPOINT ml_erp_insert")
                        self._check_duplicates(cur, q, staging, job)
                    raise
            conn.commit()
        except (driver.IntegrityError, driver.DataError) as e:
            conn.rollback()
            raise does_not_fit_error(job.table.name, str(e)) from None
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()
        return counts

    @staticmethod
    def _lock(cur: Any, table: TargetTable, keys: Sequence[tuple[str, ...]]) -> None:
        """One transaction-scoped advisory lock per (table, key), in sorted order (no deadlock)."""
        for key in sorted({key_text(k) for k in keys}):
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{table.name}{KEY_SEPARATOR}{key}",))

    @staticmethod
    def _staged_keys(cur: Any, q: _Sql, staging: Any, key_columns: list[str]) -> list[tuple[str, ...]]:
        texts = q.sql.SQL(", ").join(q.sql.SQL("{}::text").format(q.sql.Identifier(k)) for k in key_columns)
        cur.execute(q.sql.SQL("SELECT DISTINCT {} FROM {} ORDER BY 1").format(texts, staging))
        return [tuple(r) for r in cur.fetchall()]

    @staticmethod
    def _check_duplicates(cur: Any, q: _Sql, staging: Any, job: ReplaceJob) -> None:
        pk = q.names(job.primary_key)
        cur.execute(
            q.sql.SQL("SELECT {}, count(*) FROM {} GROUP BY {} HAVING count(*) > 1 ORDER BY 1 LIMIT {}").format(
                pk, staging, pk, q.sql.Literal(SHOW_DUPLICATES)
            )
        )
        rows = cur.fetchall()
        if rows:
            raise duplicates_error(job, rows)

    @staticmethod
    def _counts(
        cur: Any, q: _Sql, target: Any, staging: Any, key_columns: list[str], keys: Sequence[tuple[str, ...]]
    ) -> list[KeyCount]:
        """Old and new row counts per key (every key in ``keys``, zero where there are none)."""
        if not keys:
            return []
        texts = q.sql.SQL(", ").join(q.sql.SQL("{}::text").format(q.sql.Identifier(k)) for k in key_columns)
        text = q.sql.SQL("concat_ws({}, {})").format(q.sql.Literal(KEY_SEPARATOR), texts)
        found: dict[str, list[int]] = {key_text(k): [0, 0] for k in keys}
        params = [v for key in keys for v in key]
        for index, table in enumerate((target, staging)):
            cur.execute(
                q.sql.SQL("SELECT {}, count(*) FROM {} WHERE ({}) IN ({}) GROUP BY 1").format(
                    text, table, q.names(key_columns), q.key_list(keys)
                ),
                params,
            )
            for key, n in cur.fetchall():
                if key in found:
                    found[key][index] = n
        return [KeyCount(k, old, new) for k, (old, new) in sorted(found.items())]


def _driver(conn: Any) -> tuple[Any, Any]:
    """The DB-API module of ``conn`` and its ``sql`` module: psycopg (3) or psycopg2, as the hook chose.

    The postgres provider's hook hands out a psycopg 3 connection when psycopg 3 and SQLAlchemy 2
    are installed, else psycopg2; both have the same ``sql`` composition API and DB-API errors.
    """
    with requires_extra("postgres"):
        if type(conn).__module__.split(".")[0] == "psycopg":
            import psycopg as driver
            from psycopg import sql
        else:
            import psycopg2 as driver  # type: ignore[no-redef]
            from psycopg2 import sql  # type: ignore[no-redef]
    return driver, sql


class _Sql:
    """Query pieces in the driver's ``sql`` module (names quoted as identifiers, values as placeholders)."""

    def __init__(self, sql: Any) -> None:
        self.sql = sql

    def names(self, names: Sequence[str]) -> Any:
        """``"a", "b"``."""
        return self.sql.SQL(", ").join(self.sql.Identifier(n) for n in names)

    def key_list(self, keys: Sequence[tuple[str, ...]]) -> Any:
        """``(%s, %s), (%s, %s)`` placeholders for ``keys`` (bound in the same order)."""
        row = self.sql.SQL("({})").format(self.sql.SQL(", ").join(self.sql.Placeholder() * len(keys[0])))
        return self.sql.SQL(", ").join([row] * len(keys))
