"""Write a predictions dataset into an ERP table, replacing the rows of some keys in one transaction.

This module holds the operator: its arguments, their validation, reading the dataset in batches
through :mod:`airflow_ml_provider.storage` and the XCom. What is checked lives in
:mod:`airflow_ml_provider.erp.checks`, the drop guard in :mod:`airflow_ml_provider.erp.drop_guard`
and the transaction in the dialect (:mod:`airflow_ml_provider.erp.postgres`,
:mod:`airflow_ml_provider.erp.mysql`, :mod:`airflow_ml_provider.erp.sqlite`). DAG files import this
module; it imports neither psycopg2, MySQLdb, sqlite3, pandas nor pyarrow, and the constructor does no I/O.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_ml_provider.erp import drop_guard
from airflow_ml_provider.erp.identifiers import TableName, check_identifier, parse_table
from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError
from airflow_ml_provider.hooks.webhdfs import HdfsHook
from airflow_ml_provider.storage.paths import StoragePath, parse_path
from airflow_ml_provider.utils.templating import is_templated

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context

    from airflow_ml_provider.erp.checks import ColumnPlan
    from airflow_ml_provider.erp.dialect import ErpWriter, TargetTable
    from airflow_ml_provider.storage.base import DataFile, Storage

DEFAULT_BATCH_ROWS = 50_000
#: Connection types with a writer (``mysql`` serves MariaDB and MySQL).
SUPPORTED_CONN_TYPES = ("postgres", "mysql", "sqlite")
_SCALARS = (str, int, float, bool, dt.date, dt.datetime, type(None))


class _Input:
    """One input file: its storage, the file, a name for messages and its column plan."""

    def __init__(self, storage: Storage, file: DataFile, where: str) -> None:
        self.storage, self.file, self.where = storage, file, where
        self.plan: ColumnPlan | None = None


class ErpWriteOperator(BaseOperator):
    """Replace the rows of some partition keys of an ERP table with a Parquet dataset, in one transaction.

    What happens when the task runs:

    1. The connection's type picks the database family (``postgres``, ``mysql`` for MariaDB and
       MySQL, or ``sqlite``; others fail naming the supported ones). The table's columns and
       primary key are read from the catalog.
    2. Every input file's Parquet footer is checked before anything is written: the mapped and
       constant columns exist in the table, NOT NULL columns without a default and the key
       columns are provided, and the types are compatible.
    3. In one transaction (see :mod:`airflow_ml_provider.erp.postgres`,
       :mod:`airflow_ml_provider.erp.mysql` and :mod:`airflow_ml_provider.erp.sqlite`): a lock per
       (table, key) (SQLite: the database's write lock, ``BEGIN IMMEDIATE``), the dataset
       streamed ``batch_rows`` rows at a time into a staging table (each batch checked for
       null/NaN/infinite values in NOT NULL columns and for keys outside ``keys``), duplicate
       primary keys refused, old and new counts per key compared by the drop guard, the keys' rows
       deleted and the new ones inserted, one commit. Readers see the old rows until the commit,
       then the new ones. Any failure rolls back: nothing is written.

    :param conn_id: the Airflow connection of the ERP database (type ``postgres``; ``mysql`` for
        MariaDB/MySQL, its ``schema`` being the database; or ``sqlite`` with the database file as
        ``host``); credentials come only from it.
    :param table: templated; ``"table"`` or ``"schema.table"`` (letters, digits, ``_``).
    :param input_path: templated; a Parquet file or directory (``key=value`` directories become
        string columns), or ``{key: path}`` (then ``keys`` defaults to the dict's keys, and with
        one key column a file without that column gets the dict's key as its value). Local
        (``file:///x``, or ``/x`` without ``hdfs_conn_id``) or HDFS (``hdfs://…``).
    :param key_column: templated; the partition column(s) whose rows are replaced, e.g.
        ``"country"`` or ``["country", "week"]``.
    :param keys: templated; the keys replaced, e.g. ``["DE", "FR"]`` (with several key columns,
        lists such as ``[["DE", "2026-W48"]]``). A key without input rows is emptied (the drop
        guard objects if it had rows). Rows with other keys fail the task. ``None``: the keys in
        the input (or the ``input_path`` dict's keys).
    :param column_map: templated; dataset column -> table column. ``None``: every dataset column
        the table has, by name.
    :param constants: templated; table column -> value written to every row, e.g.
        ``{"model_version": "7", "run_id": "{{ run_id }}"}``.
    :param primary_key: templated; columns that must be unique in the input. ``None``: the
        table's primary key.
    :param max_drop: templated; the largest allowed drop of a key's row count, as a fraction
        (0.10: 10%); a rendered string such as ``"0.1"`` is read as a number.
    :param on_drop: templated; ``"fail"`` (a larger drop fails the task, nothing written) or ``"warn"``.
    :param batch_rows: rows read and sent per batch (bounds memory).
    :param hdfs_conn_id: the ``ml_hdfs`` connection for HDFS paths; ``hdfs://`` URLs use
        ``ml_hdfs_default`` when this is ``None``.
    :param kwargs: the other :class:`~airflow.sdk.BaseOperator` arguments.

    XCom: ``{"table", "keys": {key: {"old", "new", "change"}}, "rows", "seconds"}``; ``change`` is
    in percent, ``None`` for a key with no old rows. Several key columns form one key ``"DE|2026-W48"``.
    """

    template_fields: Sequence[str] = (
        "table",
        "input_path",
        "key_column",
        "keys",
        "column_map",
        "constants",
        "primary_key",
        "max_drop",
        "on_drop",
    )
    ui_color = "#d5f5e3"

    def __init__(
        self,
        *,
        conn_id: str,
        table: str,
        input_path: str | dict[str, str],
        key_column: str | list[str],
        keys: list[Any] | None = None,
        column_map: dict[str, str] | None = None,
        constants: dict[str, Any] | None = None,
        primary_key: list[str] | None = None,
        max_drop: float | str = drop_guard.DEFAULT_MAX_DROP,
        on_drop: str = "fail",
        batch_rows: int = DEFAULT_BATCH_ROWS,
        hdfs_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.table = table
        self.input_path = input_path
        self.key_column = key_column
        self.keys = keys
        self.column_map = column_map
        self.constants = constants
        self.primary_key = primary_key
        self.max_drop = max_drop
        self.on_drop = on_drop
        self.batch_rows = batch_rows
        self.hdfs_conn_id = hdfs_conn_id
        if not isinstance(conn_id, str) or not conn_id:
            raise InvalidSpecError(f"conn_id={conn_id!r} must name a connection, e.g. 'erp_postgres'.")
        if hdfs_conn_id is not None and (not isinstance(hdfs_conn_id, str) or not hdfs_conn_id):
            raise InvalidSpecError(f"hdfs_conn_id={hdfs_conn_id!r} must name a connection or be None.")
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise InvalidSpecError(f"batch_rows={batch_rows!r} must be a whole number >= 1, e.g. 50_000.")
        if not (is_templated(max_drop) or is_templated(on_drop)):
            drop_guard.check_max_drop(max_drop, on_drop)
        self._validate(parse_time=True)

    # -- validation -----------------------------------------------------------------------------

    def _validate(self, parse_time: bool = False) -> tuple[TableName, list[str], list[tuple[str, ...]] | None]:
        """Check every argument (at parse time only the static ones); table, key columns, keys."""
        skip = is_templated if parse_time else (lambda _: False)
        table = None if skip(self.table) else parse_table(self.table)
        key_columns: list[str] = []
        if not skip(self.key_column):
            names = [self.key_column] if isinstance(self.key_column, str) else self.key_column
            if not isinstance(names, (list, tuple)) or not names:
                raise InvalidSpecError(f"key_column={self.key_column!r} must be a column name or a list of them.")
            key_columns = [check_identifier(n, arg="key_column") for n in names]
        if not skip(self.column_map) and self.column_map is not None:
            if not isinstance(self.column_map, Mapping) or not all(isinstance(s, str) and s for s in self.column_map):
                raise InvalidSpecError(
                    f"column_map={self.column_map!r} must map dataset columns to table columns, e.g. "
                    "{'prediction': 'price'}."
                )
            for source, target in self.column_map.items():
                check_identifier(target, arg=f"column_map[{source!r}]")
        if not skip(self.constants) and self.constants is not None:
            if not isinstance(self.constants, Mapping):
                raise InvalidSpecError(f"constants={self.constants!r} must be a dict, e.g. {{'model_version': '7'}}.")
            for name, value in self.constants.items():
                check_identifier(name, arg="constants")
                if not isinstance(value, _SCALARS):
                    raise InvalidSpecError(
                        f"constants[{name!r}]={value!r} must be a string, number, boolean, date or None."
                    )
        if not skip(self.primary_key) and self.primary_key is not None:
            if isinstance(self.primary_key, str) or not isinstance(self.primary_key, (list, tuple)):
                raise InvalidSpecError(f"primary_key={self.primary_key!r} must be a list of column names or None.")
            for name in self.primary_key:
                check_identifier(name, arg="primary_key")
        if not skip(self.input_path):
            self._paths()
        keys = None
        if not (skip(self.keys) or skip(self.key_column) or skip(self.input_path)):
            keys = self._keys(key_columns)
        assert table is not None or parse_time
        return table or TableName(None, ""), key_columns, keys

    def _paths(self) -> dict[str | None, StoragePath]:
        local = self.hdfs_conn_id is None
        if isinstance(self.input_path, Mapping):
            if not self.input_path:
                raise InvalidSpecError("input_path={} names no dataset; give a path or {key: path}.")
            return {
                str(k): parse_path(v, arg=f"input_path[{k!r}]", default_local=local, allow_root=False)
                for k, v in self.input_path.items()
            }
        return {None: parse_path(self.input_path, arg="input_path", default_local=local, allow_root=False)}

    def _keys(self, key_columns: list[str]) -> list[tuple[str, ...]] | None:
        raw = self.keys
        if raw is None and isinstance(self.input_path, Mapping) and len(key_columns) == 1:
            raw = list(self.input_path)
        if raw is None:
            return None
        if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple, set)) or not raw:
            raise InvalidSpecError(f"keys={raw!r} must be a non-empty list of key values, e.g. ['DE', 'FR'], or None.")
        keys = []
        for value in raw:
            parts = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            if len(parts) != len(key_columns) or not all(isinstance(p, _SCALARS) and p is not None for p in parts):
                raise InvalidSpecError(
                    f"keys has {value!r}, which is not one value per key column {key_columns}; e.g. "
                    f"{['DE'] if len(key_columns) == 1 else [['DE', '2026-W48']]}."
                )
            keys.append(tuple(str(p) for p in parts))
        return sorted(set(keys))

    # -- execution ------------------------------------------------------------------------------

    def _writer(self) -> ErpWriter:
        """The dialect for the connection's type."""
        from airflow.sdk import BaseHook

        conn_type = BaseHook.get_connection(self.conn_id).conn_type
        if conn_type == "postgres":
            from airflow_ml_provider.erp.postgres import PostgresErpWriter

            return PostgresErpWriter(self.conn_id)
        if conn_type == "mysql":
            from airflow_ml_provider.erp.mysql import MySqlErpWriter

            return MySqlErpWriter(self.conn_id)
        if conn_type == "sqlite":
            from airflow_ml_provider.erp.sqlite import SqliteErpWriter

            return SqliteErpWriter(self.conn_id)
        raise ConnectionConfigError(
            f"Connection {self.conn_id!r} has the type {conn_type!r}; ErpWriteOperator supports "
            f"{list(SUPPORTED_CONN_TYPES)} (mysql serves MariaDB and MySQL). Use a connection of one of those types."
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Check the inputs, then replace the keys' rows in one transaction (see the class docstring)."""
        from airflow_ml_provider.erp.dialect import ReplaceJob

        started = time.monotonic()
        table_name, key_columns, keys = self._validate()
        max_drop = drop_guard.check_max_drop(self.max_drop, self.on_drop)
        writer = self._writer()
        table = writer.describe(table_name)
        if table is None:
            raise InvalidSpecError(
                f"Table {table_name} does not exist in the database of connection {self.conn_id!r}; create it "
                "first (or fix the name or schema)."
            )
        primary_key = list(self.primary_key) if self.primary_key is not None else list(table.primary_key)
        missing = [c for c in [*primary_key, *key_columns] if c not in table.columns]
        if missing:
            raise InvalidSpecError(f"Table {table.name} has no column(s) {missing}; it has {list(table.columns)}.")
        inputs = self._inputs(key_columns)
        columns = self._plan(inputs, table, key_columns)
        with tempfile.TemporaryDirectory(prefix="ml-erp-") as scratch:
            job = ReplaceJob(
                table=table,
                columns=columns,
                key_columns=key_columns,
                keys=keys,
                primary_key=primary_key,
                batches=self._batches(inputs, table, key_columns, keys, scratch),
                guard=partial(
                    drop_guard.apply,
                    table_name=str(table.name),
                    max_drop=max_drop,
                    on_drop=self.on_drop,
                    log=self.log,
                ),
            )
            counts = writer.replace(job)
        seconds = time.monotonic() - started
        rows = sum(c.new for c in counts)
        self.log.info("Replaced %d key(s) of %s with %d rows in %.1fs", len(counts), table.name, rows, seconds)
        return {
            "table": str(table.name),
            "keys": drop_guard.xcom_counts(counts),
            "rows": rows,
            "seconds": round(seconds, 3),
        }

    def _inputs(self, key_columns: list[str]) -> list[_Input]:
        """Every input file; a missing or file-less input fails naming it.

        With ``{key: path}`` and one key column, a file that has no such column (nor a
        ``column=value`` directory) gets the dict's key as that column, as a partition directory
        would give it: ``{"DE": ".../part-0.parquet"}`` writes ``country = 'DE'``.
        """
        found = []
        for key, path in self._paths().items():
            storage = HdfsHook(self.hdfs_conn_id or HdfsHook.default_conn_name).storage_for(path)
            arg = "input_path" if key is None else f"input_path[{key!r}]"
            files = storage.list_dataset(path.path)
            if files is None:
                raise InvalidSpecError(f"{arg} does not exist ({storage.location(path.path)}). Nothing was written.")
            if not files:
                raise InvalidSpecError(
                    f"{arg} holds no data files ({storage.location(path.path)}); files whose names start with '_' "
                    "or '.' are skipped. Nothing was written."
                )
            if key is not None and len(key_columns) == 1:
                files = [
                    f
                    if any(name == key_columns[0] for name, _ in f.partitions)
                    else f._replace(partitions=(*f.partitions, (key_columns[0], key)))
                    for f in files
                ]
            found += [_Input(storage, f, storage.location(f.path)) for f in files]
        return found

    def _plan(self, inputs: list[_Input], table: TargetTable, key_columns: list[str]) -> list[str]:
        """Check each file's footer against the table; the target columns written (the same for all)."""
        from airflow_ml_provider.erp.checks import plan_columns
        from airflow_ml_provider.utils.optional_deps import requires_extra

        with requires_extra("mlflow"):
            import pyarrow as pa

        columns: list[str] | None = None
        for item in inputs:
            schema = item.storage.readable_schema(item.file, after="Nothing was written.")
            for name, _ in item.file.partitions:
                if name not in schema.names:
                    schema = schema.append(pa.field(name, pa.string()))
            item.plan = plan_columns(
                schema,
                f"input file {item.where}",
                table,
                column_map=self.column_map,
                constants=self.constants,
                key_columns=key_columns,
            )
            if columns is not None and item.plan.columns != columns:
                raise InvalidSpecError(
                    f"Input file {item.where} gives the columns {item.plan.columns} but an earlier file gives "
                    f"{columns}; give every file the same columns or set column_map. Nothing was written."
                )
            columns = item.plan.columns
        assert columns is not None
        return columns

    def _batches(
        self,
        inputs: list[_Input],
        table: TargetTable,
        key_columns: list[str],
        keys: list[tuple[str, ...]] | None,
        scratch: str,
    ) -> Iterator[pa.RecordBatch]:
        """Each file's batches renamed to the table's columns, constants appended, each one checked."""
        from airflow_ml_provider.erp.checks import check_batch
        from airflow_ml_provider.utils.optional_deps import requires_extra

        with requires_extra("mlflow"):
            import pyarrow as pa

        expected = set(keys) if keys is not None else None
        total = 0
        for item in inputs:
            plan = item.plan
            assert plan is not None
            first_row = 0
            for batch in item.storage.iter_batches(
                item.file, columns=plan.sources, batch_size=self.batch_rows, scratch=scratch
            ):
                arrays = [a.dictionary_decode() if pa.types.is_dictionary(a.type) else a for a in batch.columns] + [
                    pa.repeat(pa.scalar(v), batch.num_rows) for v in plan.constants.values()
                ]
                out = pa.RecordBatch.from_arrays(arrays, names=plan.columns)
                check_batch(
                    out,
                    table,
                    where=f"input file {item.where}",
                    first_row=first_row,
                    key_columns=key_columns,
                    keys=expected,
                )
                first_row += batch.num_rows
                total += batch.num_rows
                yield out
        if total == 0:
            raise InvalidSpecError(
                f"input_path={self.input_path!r} holds no rows; refusing to empty the keys of {table.name}. "
                "Check the upstream task. Nothing was written."
            )
