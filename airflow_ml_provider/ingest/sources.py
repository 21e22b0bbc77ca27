"""Reading a table or query from an Airflow SQL connection, one chunk at a time, read-only.

One class per database family, picked by the connection's type (:func:`open_source`); each
connects through its provider's hook (credentials come only from the connection), opens a
**read-only** transaction and streams the result with a server-side cursor, so memory is bounded
by the chunk, never by the table:

* PostgreSQL (``PostgresHook``, psycopg2 or psycopg 3): ``SET TRANSACTION READ ONLY``, a named
  cursor (``DECLARE ... CURSOR``), ``FETCH FORWARD n``. ``numeric``, ``json``, ``jsonb`` and
  ``uuid`` values are loaded as text (Arrow parses the numbers).
* MariaDB/MySQL (``MySqlHook``; mysqlclient, or mysql-connector-python): ``START TRANSACTION READ
  ONLY`` with the session in UTC, an unbuffered cursor (mysqlclient's ``SSCursor``: rows are read
  from the socket as they are fetched), ``net_write_timeout`` raised so writing a chunk to HDFS
  never makes the server drop the stream. mysqlclient hands decimals and dates over as text.
* SQLite (``SqliteHook``; the connection's host is the database file, which must exist):
  ``PRAGMA query_only``, ``fetchmany``.

Driver errors that no retry can fix (a missing table or column, bad SQL, no privilege, a query that
writes) become :class:`~airflow_ml_provider.exceptions.InvalidSpecError` s naming the table or query
and the fix (:meth:`Source.failure`); others (the server going away) stay as they are, retryable.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

from airflow_ml_provider.erp.identifiers import TableName
from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError
from airflow_ml_provider.ingest import dbtypes
from airflow_ml_provider.ingest.columns import Column
from airflow_ml_provider.utils.messages import first_line
from airflow_ml_provider.utils.optional_deps import requires_extra

#: Connection types with a source (``mysql`` serves MariaDB and MySQL).
SUPPORTED_CONN_TYPES = ("postgres", "mysql", "sqlite")
#: The alias of a query wrapped to filter it by the watermark.
QUERY_ALIAS = "ml_ingest_src"
#: Seconds the MariaDB/MySQL server waits for us to take the next rows before it drops the stream.
MYSQL_NET_WRITE_TIMEOUT_S = 3600

_HINTS = {
    "table": "Check the table's name and schema in the connection's database (names are matched as given, "
    "case included)",
    "column": "Check the column names (columns, partition_by, watermark_column, or those in the query)",
    "syntax": "Fix the query's SQL (one SELECT statement, without a trailing semicolon if the driver objects)",
    "denied": "Grant the connection's user SELECT on it, or use a connection whose user may read it",
    "readonly": "The source is read in a read-only transaction: give a SELECT, not a statement that writes",
    "invalid": "Fix the query (or the data it reads)",
}


class Source(abc.ABC):
    """One database family: connect read-only, stream a result, describe its columns.

    :param conn_id: the Airflow connection of the source database.
    """

    family: str = ""
    placeholder: str = "%s"
    #: Compare the watermark as the driver hands it over (SQLite: ISO text as stored), not as written.
    watermark_from_wire: bool = False

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.conn: Any = None
        self.cursor: Any = None

    @staticmethod
    @abc.abstractmethod
    def quote(name: str) -> str:
        """``name`` (checked by :mod:`airflow_ml_provider.erp.identifiers`) as a quoted identifier."""

    def table_sql(self, table: TableName) -> str:
        """The table's quoted, possibly schema-qualified name."""
        return ".".join(self.quote(p) for p in (table.schema, table.name) if p)

    @abc.abstractmethod
    def open(self, sql: str, params: Sequence[Any] | None) -> None:
        """Connect, start the read-only session and execute ``sql`` on a streaming cursor."""

    def fetch(self, n: int) -> list[tuple[Any, ...]]:
        """Up to ``n`` more rows (none at the end)."""
        return list(self.cursor.fetchmany(n))

    @abc.abstractmethod
    def columns(self, table: TableName | None) -> list[Column]:
        """The result's columns (call after the first :meth:`fetch`); ``table`` for catalog types."""

    @abc.abstractmethod
    def error_kind(self, error: BaseException) -> str | None:
        """``table``/``column``/``syntax``/``denied``/``readonly``/``invalid`` for a permanent error, else ``None``."""

    def bind(self, value: Any) -> Any:
        """The watermark as a query parameter."""
        return value

    def failure(self, error: BaseException, what: str) -> InvalidSpecError | None:
        """An :class:`InvalidSpecError` for a permanent driver error while doing ``what``, else ``None``."""
        kind = self.error_kind(error)
        if kind is None:
            return None
        return InvalidSpecError(
            f"{what} failed on connection {self.conn_id!r} ({self.family}): {first_line(_message(error), 300)}. "
            f"{_HINTS[kind]}. Nothing was written."
        )

    def close(self) -> None:
        """Close the connection (a half-read result is dropped by the server)."""
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = self.cursor = None


def _message(error: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(error, "args", ()))
    if len(args) == 2 and isinstance(args[0], int):  # mysqlclient: (code, message)
        return f"{args[1]} (error {args[0]})"
    return str(error)


class PostgresSource(Source):
    """PostgreSQL through ``PostgresHook`` (psycopg2 or psycopg 3)."""

    family = "PostgreSQL"

    @staticmethod
    def quote(name: str) -> str:
        """``"name"``."""
        return f'"{name}"'

    def open(self, sql: str, params: Sequence[Any] | None) -> None:
        """Read-only transaction, text loaders, a named cursor; ``DECLARE`` checks the SQL."""
        with requires_extra("postgres"):
            from airflow.providers.postgres.hooks.postgres import PostgresHook

        self.conn = PostgresHook(postgres_conn_id=self.conn_id).get_conn()
        self.conn.autocommit = False
        with self.conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
        if type(self.conn).__module__.startswith("psycopg2"):
            import psycopg2.extensions as ext

            as_text = ext.new_type(dbtypes.PG_TEXT_OIDS, "ML_INGEST_TEXT", lambda value, _cur: value)
            ext.register_type(as_text, self.conn)
            # plain tuples, whatever cursor the connection's extra asks the hook for (dicts, namedtuples)
            self.cursor = self.conn.cursor(name="ml_ingest", cursor_factory=ext.cursor)
        else:
            from psycopg.rows import tuple_row
            from psycopg.types.string import TextLoader

            for oid in dbtypes.PG_TEXT_OIDS:
                self.conn.adapters.register_loader(oid, TextLoader)
            self.cursor = self.conn.cursor(name="ml_ingest", row_factory=tuple_row)
        self.cursor.execute(sql, params)

    def columns(self, table: TableName | None) -> list[Column]:
        """From the cursor description: type OID, precision and scale."""
        return [dbtypes.pg_column(d.name, d.type_code, d.precision, d.scale) for d in self.cursor.description]

    def error_kind(self, error: BaseException) -> str | None:
        """By SQLSTATE: class 42 (undefined table/column, syntax, privilege), 22 (data), 25006 (read-only)."""
        state = getattr(error, "pgcode", None) or getattr(error, "sqlstate", None)
        if not isinstance(state, str):
            return None
        kinds = {"42P01": "table", "3F000": "table", "42703": "column", "42702": "column", "42701": "column"}
        kinds |= {"42501": "denied", "25006": "readonly"}
        if state in kinds:
            return kinds[state]
        if state.startswith("42"):
            return "syntax"
        return "invalid" if state.startswith("22") else None


class MySqlSource(Source):
    """MariaDB and MySQL through ``MySqlHook`` (mysqlclient, or mysql-connector-python)."""

    family = "MariaDB/MySQL"
    _TABLE = frozenset({1146, 1049, 1109, 1051})
    _COLUMN = frozenset({1054, 1052, 1060})
    _SYNTAX = frozenset({1064, 1248, 1305, 1241, 1222})
    _DENIED = frozenset({1142, 1143, 1044})
    _INVALID = frozenset({1242, 1690, 1366, 1292, 1411, 1525, 1365})

    def __init__(self, conn_id: str) -> None:
        super().__init__(conn_id)
        self.text = False  # mysqlclient with decimals and dates as text

    @staticmethod
    def quote(name: str) -> str:
        """```name```."""
        return f"`{name}`"

    def open(self, sql: str, params: Sequence[Any] | None) -> None:
        """UTC session, read-only transaction, an unbuffered cursor."""
        with requires_extra("mysql"):
            from airflow.providers.mysql.hooks.mysql import MySqlHook

        hook = MySqlHook(mysql_conn_id=self.conn_id)
        self.conn = hook.get_conn()
        hook.set_autocommit(self.conn, False)
        setup = self.conn.cursor()
        setup.execute(f"SET SESSION time_zone = '+00:00', net_write_timeout = {MYSQL_NET_WRITE_TIMEOUT_S}")
        setup.execute("START TRANSACTION READ ONLY")
        setup.close()
        if type(self.conn).__module__.startswith("MySQLdb"):
            import MySQLdb.cursors

            converter = dict(self.conn.converter)
            for field_type in dbtypes.MYSQL_TEXT_TYPES:
                converter.pop(field_type, None)
            self.conn.converter = converter
            self.text = True
            self.cursor = self.conn.cursor(MySQLdb.cursors.SSCursor)
        else:
            self.cursor = self.conn.cursor(buffered=False)
        self.cursor.execute(sql, params)

    def columns(self, table: TableName | None) -> list[Column]:
        """From the description (and mysqlclient's ``description_flags``)."""
        out = []
        flags = getattr(self.cursor, "description_flags", None)
        for i, d in enumerate(self.cursor.description):
            if len(d) >= 9:  # mysql-connector-python: ..., flags, charset
                out.append(dbtypes.mysql_column(d[0], d[1], d[7] or 0, charset=d[8]))
            else:
                field_flags = flags[i] if flags else 0
                out.append(dbtypes.mysql_column(d[0], d[1], field_flags, length=d[3], scale=d[5], text=self.text))
        return out

    def error_kind(self, error: BaseException) -> str | None:
        """By the server's error number."""
        code = getattr(error, "errno", None)
        args = getattr(error, "args", ())
        if code is None and args and isinstance(args[0], int):
            code = args[0]
        for kind, codes in (
            ("table", self._TABLE),
            ("column", self._COLUMN),
            ("syntax", self._SYNTAX),
            ("denied", self._DENIED),
            ("invalid", self._INVALID),
        ):
            if code in codes:
                return kind
        return "readonly" if code == 1792 else None

    def bind(self, value: Any) -> Any:
        """Timestamps as naive UTC (the session's time zone)."""
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value


class SqliteSource(Source):
    """SQLite through ``SqliteHook``; the connection's host is the database file."""

    family = "SQLite"
    placeholder = "?"
    watermark_from_wire = True

    @staticmethod
    def quote(name: str) -> str:
        """```name```: SQLite takes a double-quoted name that is no column for a string, a backquoted one never."""
        return f"`{name}`"

    def open(self, sql: str, params: Sequence[Any] | None) -> None:
        """``query_only`` on, then the statement."""
        with requires_extra("sqlite"):
            from airflow.providers.sqlite.hooks.sqlite import SqliteHook
        from airflow.sdk import BaseHook

        host = BaseHook.get_connection(self.conn_id).host or ""
        plain = host and not host.startswith(("file:", ":memory:")) and "?" not in host
        if plain and not os.path.isfile(host):
            raise ConnectionConfigError(
                f"Connection {self.conn_id!r} names the SQLite database file {host!r}, which does not exist on this "
                "worker; set the connection's host to the database file's absolute path. Nothing was written."
            )
        self.conn = SqliteHook(sqlite_conn_id=self.conn_id).get_conn()
        self.conn.execute("PRAGMA query_only = ON")
        self.cursor = self.conn.execute(sql, tuple(params or ()))

    def columns(self, table: TableName | None) -> list[Column]:
        """A table's declared types (``PRAGMA table_xinfo``); a query's columns are typed by their values."""
        names = [d[0] for d in self.cursor.description]
        declared: dict[str, str] = {}
        if table is not None:
            pragma = f"PRAGMA {self.quote(table.schema or 'main')}.table_xinfo({self.quote(table.name)})"
            declared = {r[1]: r[2] or "" for r in self.conn.execute(pragma).fetchall()}
        return [dbtypes.sqlite_column(n, declared.get(n) if table is not None else None) for n in names]

    def error_kind(self, error: BaseException) -> str | None:
        """By the message (sqlite3 has no error codes for these)."""
        text = str(error).lower()
        for kind, needles in (
            ("table", ("no such table", "unknown database")),
            ("column", ("no such column", "ambiguous column")),
            ("readonly", ("readonly database", "read-only")),
            ("syntax", ("syntax error", "incomplete input", "unrecognized token", "one statement at a time")),
            ("syntax", ("no such function", "wrong number of arguments")),
        ):
            if any(n in text for n in needles):
                return kind
        return None


def open_source(conn_id: str) -> Source:
    """The source for the connection's type.

    :raises ConnectionConfigError: a type with no source, naming the supported ones.
    """
    from airflow.sdk import BaseHook

    conn_type = BaseHook.get_connection(conn_id).conn_type
    families: dict[str, type[Source]] = {"postgres": PostgresSource, "mysql": MySqlSource, "sqlite": SqliteSource}
    if conn_type not in families:
        raise ConnectionConfigError(
            f"Connection {conn_id!r} has the type {conn_type!r}; SqlIngestOperator reads {list(SUPPORTED_CONN_TYPES)} "
            "connections (mysql serves MariaDB and MySQL). Use a connection of one of those types."
        )
    return families[conn_type](conn_id)


def select_sql(
    source: Source,
    *,
    table: TableName | None,
    columns: Sequence[str] | None,
    query: str | None,
    watermark_column: str | None,
    previous: bool,
) -> str:
    """The statement that reads the source: the table's columns, or the query (wrapped to filter by the watermark).

    With ``previous`` (a watermark from an earlier run) only rows whose watermark is greater, or
    NULL (so that a NULL is seen and refused rather than skipped for ever), are read; the
    watermark is the statement's one parameter.
    """
    if table is not None:
        cols = ", ".join(source.quote(c) for c in columns) if columns else "*"
        base = f"SELECT {cols} FROM {source.table_sql(table)}"  # noqa: S608 - names checked and quoted
    else:
        assert query is not None
        base = query.strip().rstrip(";").strip()
        if watermark_column and previous:
            base = f"SELECT * FROM ({base}) {QUERY_ALIAS}"  # noqa: S608 - the DAG author's own query
    if not (watermark_column and previous):
        return base
    if query is not None and source.placeholder == "%s":
        base = base.replace("%", "%%")  # the statement has a parameter: a literal % in the query must be doubled
    wm = source.quote(watermark_column)
    return f"{base} WHERE {wm} > {source.placeholder} OR {wm} IS NULL"
