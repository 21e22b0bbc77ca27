"""Copy a table or query from a SQL database (PostgreSQL, MariaDB/MySQL, SQLite) into a Parquet dataset.

This module holds the operator: its arguments, their validation and the orchestration. Reading
lives in :mod:`airflow_ml_provider.ingest.sources`, types in :mod:`airflow_ml_provider.ingest.columns`,
the run in :mod:`airflow_ml_provider.ingest.load`, partitioned writing in
:mod:`airflow_ml_provider.ingest.parts`, incremental state in :mod:`airflow_ml_provider.ingest.state`,
publishing in :mod:`airflow_ml_provider.storage`. DAG files
import this module; it imports neither pyarrow nor a database driver, and the constructor does no I/O.
"""

from __future__ import annotations

import posixpath
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow.sdk import BaseOperator

from airflow_ml_provider.erp.identifiers import TableName, check_identifier, parse_table
from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.hooks.webhdfs import HdfsHook
from airflow_ml_provider.ingest.columns import check_type_name
from airflow_ml_provider.ingest.state import BATCH_KEY
from airflow_ml_provider.storage.base import MARKER
from airflow_ml_provider.storage.paths import StoragePath, parse_path
from airflow_ml_provider.utils.templating import is_templated

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ml_provider.ingest.state import State

DEFAULT_CHUNK_ROWS = 100_000
DEFAULT_ROWS_PER_FILE = 1_000_000
DEFAULT_MAX_PARTITIONS = 1_000
QUERY_EXAMPLE = "query='SELECT * FROM orders WHERE status = 1'"


class _Spec(NamedTuple):
    """The rendered, checked arguments."""

    table: TableName | None
    query: str | None
    columns: list[str] | None
    partition_by: list[str]
    watermark: str | None
    column_types: dict[str, str] | None
    dst: StoragePath


class SqlIngestOperator(BaseOperator):
    """Copy a table or query from a SQL connection into a Parquet dataset, atomically, memory bounded by a chunk.

    What happens when the task runs:

    1. The connection's type picks the source (``postgres``, ``mysql`` for MariaDB and MySQL, or
       ``sqlite``; others fail naming the supported ones). The source is read in a **read-only**
       transaction through a server-side cursor, ``chunk_rows`` rows at a time (see
       :mod:`airflow_ml_provider.ingest.sources`).
    2. Column types come from ``column_types``, else the database's declared types, else the first
       chunk's values (see :mod:`airflow_ml_provider.ingest.dbtypes`); they are fixed before anything
       is written. Missing partition or watermark columns, duplicate column names and values that do
       not fit their column's type fail the task naming the column and the fix.
    3. Each chunk becomes an Arrow record batch and goes to the part files (with ``partition_by``,
       Hive directories such as ``country=DE/``; see :mod:`airflow_ml_provider.ingest.parts`) in
       ``<output_path>.tmp-<id>``, which then replaces ``output_path`` in one rename (an old version
       is renamed aside and deleted), ``_SUCCESS`` written last. On any error nothing is visible.
    4. With ``watermark_column`` (incremental mode), each run reads only rows whose watermark is
       above the highest one loaded so far and appends them as a new ``ingest_batch=N`` directory
       (renamed into place in one step, with its ``_watermark.json``), then rewrites ``_SUCCESS``.
       A NULL watermark fails the task (such a row could never be loaded). A run without new rows
       writes nothing new and still rewrites ``_SUCCESS``. See :mod:`airflow_ml_provider.ingest.state`.

    An empty result fails the task (nothing is written) unless ``allow_empty=True``, which writes a
    dataset with the columns and no rows, and ``_SUCCESS``.

    :param conn_id: the Airflow connection of the source database (type ``postgres``, ``mysql``
        (its ``schema`` is the database) or ``sqlite`` (its ``host`` is the database file)).
    :param output_path: templated; the dataset directory. ``file:///x`` and, without
        ``hdfs_conn_id``, ``/x`` are local; ``hdfs://…`` and, with ``hdfs_conn_id``, ``/x`` are on HDFS.
    :param table: templated; ``"table"`` or ``"schema.table"`` (letters, digits, ``_``; matched as
        given, case included). Give ``table`` or ``query``, not both.
    :param query: templated; one SELECT statement (or a path ending in ``.sql``, rendered as a
        template). With ``watermark_column`` it is wrapped as ``SELECT * FROM (query) ... WHERE``.
    :param columns: templated; the table's columns to copy (``None``: all); only with ``table``.
    :param partition_by: templated; column(s) whose values become ``col=value`` directories, e.g.
        ``"country"`` or ``["country", "week"]``; integers, text, dates, timestamps, decimals or booleans.
    :param watermark_column: templated; turns on incremental mode: an integer, decimal, float, date
        or timestamp column that only grows (an auto-increment id, a ``created_at`` timestamp).
    :param allow_empty: write an empty dataset (the columns, no rows, ``_SUCCESS``) for an empty
        result instead of failing.
    :param column_types: templated; column -> Arrow type name overriding the derived type, e.g.
        ``{"price": "decimal128(12, 2)", "note": "string"}``.
    :param chunk_rows: rows fetched per round trip and converted at a time (bounds memory, >= 1).
    :param rows_per_file: rows after which a part file is closed and the next one started.
    :param max_partitions: the most partition directories one run may write (guards against
        partitioning by a column with too many values).
    :param hdfs_conn_id: the ``ml_hdfs`` connection for HDFS paths; ``hdfs://`` URLs use
        ``ml_hdfs_default`` when this is ``None``.
    :param kwargs: the other :class:`~airflow.sdk.BaseOperator` arguments. With ``watermark_column``,
        ``max_active_tis_per_dag`` defaults to 1, so two runs never append to the dataset at once.

    XCom: ``{"path", "rows", "partitions", "watermark", "seconds"}``: the output path, the rows
    written by this run, the partition directories it wrote (``["country=DE", ...]``), the highest
    watermark so far (``None`` without ``watermark_column``; dates and decimals as text).
    """

    template_fields: Sequence[str] = (
        "table",
        "query",
        "columns",
        "output_path",
        "partition_by",
        "watermark_column",
        "column_types",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"query": "sql"}
    ui_color = "#fdebd0"

    def __init__(
        self,
        *,
        conn_id: str,
        output_path: str,
        table: str | None = None,
        query: str | None = None,
        columns: list[str] | None = None,
        partition_by: str | list[str] | None = None,
        watermark_column: str | None = None,
        allow_empty: bool = False,
        column_types: dict[str, str] | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        rows_per_file: int = DEFAULT_ROWS_PER_FILE,
        max_partitions: int = DEFAULT_MAX_PARTITIONS,
        hdfs_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if watermark_column is not None:
            kwargs.setdefault("max_active_tis_per_dag", 1)
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.output_path = output_path
        self.table = table
        self.query = query
        self.columns = columns
        self.partition_by = partition_by
        self.watermark_column = watermark_column
        self.allow_empty = allow_empty
        self.column_types = column_types
        self.chunk_rows = chunk_rows
        self.rows_per_file = rows_per_file
        self.max_partitions = max_partitions
        self.hdfs_conn_id = hdfs_conn_id
        if not isinstance(conn_id, str) or not conn_id:
            raise InvalidSpecError(f"conn_id={conn_id!r} must name a connection, e.g. 'warehouse_mysql'.")
        if hdfs_conn_id is not None and (not isinstance(hdfs_conn_id, str) or not hdfs_conn_id):
            raise InvalidSpecError(f"hdfs_conn_id={hdfs_conn_id!r} must name a connection or be None.")
        if not isinstance(allow_empty, bool):
            raise InvalidSpecError(f"allow_empty={allow_empty!r} must be True or False.")
        for arg, value, example in (
            ("chunk_rows", chunk_rows, "100_000"),
            ("rows_per_file", rows_per_file, "1_000_000"),
            ("max_partitions", max_partitions, "1000"),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidSpecError(f"{arg}={value!r} must be a whole number >= 1, e.g. {arg}={example}.")
        if (table is None) == (query is None):
            given = "both" if table is not None else "neither"
            raise InvalidSpecError(
                f"Give either table or query, not {given}; e.g. table='sales.orders' or {QUERY_EXAMPLE}."
            )
        self._validate(parse_time=True)

    # -- validation -----------------------------------------------------------------------------

    def _validate(self, parse_time: bool = False) -> _Spec:
        """Check every argument (at parse time only those already final)."""
        skip = is_templated if parse_time else (lambda _: False)
        table = None
        if self.table is not None and not skip(self.table):
            table = parse_table(self.table)
        query = None
        if self.query is not None and not skip(self.query):
            if not isinstance(self.query, str) or not self.query.strip().rstrip(";").strip():
                raise InvalidSpecError(f"query={self.query!r} must be one SELECT statement, e.g. {QUERY_EXAMPLE}.")
            query = self.query
        columns = None
        if self.columns is not None and not skip(self.columns):
            if self.query is not None:
                raise InvalidSpecError("columns applies to table only; with query, select the columns in the query.")
            if isinstance(self.columns, str) or not isinstance(self.columns, (list, tuple)) or not self.columns:
                raise InvalidSpecError(f"columns={self.columns!r} must be a non-empty list of column names, or None.")
            columns = [check_identifier(c, arg="columns") for c in self.columns]
        partition_by: list[str] = []
        if self.partition_by is not None and not skip(self.partition_by):
            names = [self.partition_by] if isinstance(self.partition_by, str) else self.partition_by
            if not isinstance(names, (list, tuple)) or not names:
                raise InvalidSpecError(f"partition_by={self.partition_by!r} must be a column name or a list of them.")
            partition_by = [check_identifier(n, arg="partition_by") for n in names]
            hidden = [n for n in partition_by if n.startswith("_")]
            if hidden:
                raise InvalidSpecError(
                    f"partition_by names {hidden}: directories starting with '_' are hidden from every reader "
                    "(Spark, Hive, pyarrow). Partition by a column whose name starts with a letter (rename it in a "
                    "query)."
                )
            if len(set(partition_by)) != len(partition_by):
                raise InvalidSpecError(f"partition_by={partition_by} names a column twice.")
        watermark = None
        if self.watermark_column is not None and not skip(self.watermark_column):
            watermark = check_identifier(self.watermark_column, arg="watermark_column")
            if BATCH_KEY in partition_by:
                raise InvalidSpecError(
                    f"partition_by may not name {BATCH_KEY!r}: incremental mode makes that directory."
                )
        column_types = None
        if self.column_types is not None and not skip(self.column_types):
            if not isinstance(self.column_types, Mapping) or not self.column_types:
                raise InvalidSpecError(
                    f"column_types={self.column_types!r} must be a dict, e.g. {{'price': 'float64'}}."
                )
            column_types = {str(k): check_type_name(v, column=str(k)) for k, v in self.column_types.items()}
        dst = StoragePath(True, "/")
        if not skip(self.output_path):
            local = self.hdfs_conn_id is None
            dst = parse_path(self.output_path, arg="output_path", default_local=local, allow_root=False)
        return _Spec(table, query, columns, partition_by, watermark, column_types, dst)

    # -- execution ------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        """Read the source in chunks and publish the dataset (see the class docstring)."""
        from airflow_ml_provider.ingest import state as st
        from airflow_ml_provider.ingest.load import Job, load, plan, translated
        from airflow_ml_provider.ingest.sources import open_source, select_sql

        started = time.monotonic()
        spec = self._validate()
        storage = HdfsHook(self.hdfs_conn_id or HdfsHook.default_conn_name).storage_for(spec.dst)
        what = f"Reading table {spec.table}" if spec.table is not None else "The query"
        arg = f"output_path={self.output_path!r}"
        with tempfile.TemporaryDirectory(prefix="ml-ingest-") as scratch:
            previous: State | None = None
            if spec.watermark:
                previous = st.read_state(storage, spec.dst.path, scratch, arg)
                if previous is not None and previous.column != spec.watermark:
                    raise InvalidSpecError(
                        f"{arg} was loaded with watermark_column={previous.column!r}, not {spec.watermark!r}; keep "
                        "the column, or load into a new path. Nothing was written."
                    )
            else:
                existing = storage.stat(spec.dst.path)
                if existing is not None and existing.kind != "DIRECTORY":
                    raise InvalidSpecError(f"{arg} is a file; give a directory path.")
            since = previous.value if previous is not None else None
            source = open_source(self.conn_id)
            job = Job(
                source=source,
                storage=storage,
                root=spec.dst.path,
                what=what,
                output_arg=arg,
                partition_by=spec.partition_by,
                watermark=spec.watermark,
                column_types=spec.column_types,
                chunk_rows=self.chunk_rows,
                rows_per_file=self.rows_per_file,
                max_partitions=self.max_partitions,
                log=self.log,
                previous=previous,
            )
            try:
                sql = select_sql(
                    source,
                    table=spec.table,
                    columns=spec.columns,
                    query=spec.query,
                    watermark_column=spec.watermark,
                    previous=since is not None,
                )
                with translated(source, what):
                    source.open(sql, None if since is None else [source.bind(since)])
                    first = source.fetch(self.chunk_rows)
                    columns = source.columns(spec.table)
                converter = plan(job, columns, first)
                if not first and previous is not None:
                    storage.write_bytes(posixpath.join(spec.dst.path, MARKER), b"")
                    self.log.info("No rows above the watermark %s=%r: nothing to add.", spec.watermark, since)
                    return self._finished(0, [], since, started, storage.location(spec.dst.path))
                if not first and not self.allow_empty:
                    raise InvalidSpecError(
                        f"{what} on connection {self.conn_id!r} gave no rows, so nothing was written. If an empty "
                        "dataset is expected, set allow_empty=True (it writes the columns, no rows, and _SUCCESS); "
                        "otherwise check the source or the upstream task."
                    )
                pending = [first]
                del first  # the load lets go of each chunk before fetching the next one
                rows, partitions, high = load(job, converter, pending)
            finally:
                source.close()
        if rows == 0:
            self.log.warning("%s gave no rows: wrote an empty dataset (allow_empty=True).", what)
        return self._finished(rows, partitions, high, started, storage.location(spec.dst.path))

    def _finished(self, rows: int, partitions: list[str], high: Any, started: float, where: str) -> dict[str, Any]:
        """Log the throughput and build the XCom."""
        from airflow_ml_provider.ingest.state import display

        seconds = time.monotonic() - started
        self.log.info(
            "Wrote %d rows into %s (%d partition(s)) in %.1fs (%.0f rows/s)%s",
            rows,
            where,
            len(partitions),
            seconds,
            rows / seconds if seconds else 0,
            f"; watermark {self.watermark_column} = {display(high)!r}" if self.watermark_column else "",
        )
        return {
            "path": str(self.output_path),
            "rows": rows,
            "partitions": partitions,
            "watermark": display(high),
            "seconds": round(seconds, 3),
        }
