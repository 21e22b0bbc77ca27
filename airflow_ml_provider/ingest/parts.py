"""Record batches into Parquet part files, optionally in Hive partition directories (``country=DE/``).

:class:`PartWriter` writes into a :class:`~airflow_ml_provider.storage.base.Staging` directory:

* Without ``partition_by`` each chunk is one row group of the current part file.
* With it, each batch is split by the partition columns' values (one sort, no Python loop per row)
  and every partition gets its own part files under ``col=value/`` (``a=1/b=x/`` for several
  columns), without the partition columns themselves, as Hive and Spark lay them out. Values are
  written as text, escaped as Spark escapes them (``/`` is ``%2F``, ``:`` is ``%3A``, ...); NULL and
  the empty string are ``__HIVE_DEFAULT_PARTITION__``, which Spark reads back as NULL.
* Rows wait in per-partition buffers so that row groups are not tiny; a partition's buffer is
  written when it holds ``chunk_rows`` rows, and all buffers when together they hold more, so
  memory stays bounded by about two chunks whatever the number of partitions.
* A part file is closed (and on HDFS uploaded) when it holds ``rows_per_file`` rows; the next rows
  go to a new one. Part names are numbered across the whole dataset (``part-00000.parquet``, ...).
* More than ``max_partitions`` distinct partitions fail the task (a column with too many values).

A dataset without rows gets one part file without rows (under the partitions' ``__HIVE_DEFAULT_PARTITION__``
directories when partitioned, so that every file is at the same depth, as Spark requires).
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_ml_provider.storage.base import Staging

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
#: Characters Spark escapes in partition directory names (besides control characters).
_ESCAPED = frozenset("\"#%'*/:=?\\\x7f{[]^")
COMPRESSION = "snappy"


def escape(value: str) -> str:
    """A partition value as a directory name part, escaped as Spark does (``%`` + two hex digits)."""
    return "".join(f"%{ord(c):02X}" if c in _ESCAPED or ord(c) < 0x20 else c for c in value)


def check_partition_columns(schema: pa.Schema, partition_by: Sequence[str]) -> None:
    """Partition columns must exist and hold integers, text, dates, timestamps, decimals or booleans.

    :raises InvalidSpecError: naming the column, its type and the columns the result has.
    """
    with requires_extra("mlflow"):
        import pyarrow.types as pt

    for name in partition_by:
        if name not in schema.names:
            raise InvalidSpecError(
                f"partition_by names {name!r}, which the result does not have; its columns are {schema.names}. "
                "Nothing was written."
            )
        t = schema.field(name).type
        kinds = (pt.is_integer, pt.is_string, pt.is_large_string, pt.is_date, pt.is_timestamp, pt.is_decimal)
        if not any(test(t) for test in (*kinds, pt.is_boolean)):
            raise InvalidSpecError(
                f"partition_by column {name!r} is of type {t}; partition by integers, text, dates, timestamps, "
                "decimals or booleans (or cast the column in a query). Nothing was written."
            )
    if len(partition_by) == len(schema.names):
        raise InvalidSpecError(
            f"partition_by={list(partition_by)} names every column of the result; at least one column must remain "
            "in the files. Nothing was written."
        )


def part_in(staging: Staging, subdir: str, name: str) -> contextlib.AbstractContextManager[str]:
    """:meth:`Staging.part` for ``name`` in the staging directory's ``subdir`` (``""``: its top)."""
    return staging.part(posixpath.join(subdir, name) if subdir else name)


class _OpenFile:
    """One part file being written: its writer, rows so far and the block that publishes it."""

    def __init__(self, stack: contextlib.ExitStack, writer: pq.ParquetWriter) -> None:
        self.stack, self.writer, self.rows = stack, writer, 0


class PartWriter:
    """Write batches of ``schema`` into ``staging`` (see the module docstring).

    :param staging: where the part files go.
    :param schema: the batches' schema (partition columns included).
    :param partition_by: the partition columns, outermost first; empty for none.
    :param chunk_rows: the buffering threshold (rows).
    :param rows_per_file: rows after which a part file is closed.
    :param max_partitions: the most distinct partitions allowed.
    """

    def __init__(
        self,
        staging: Staging,
        schema: pa.Schema,
        partition_by: Sequence[str],
        *,
        chunk_rows: int,
        rows_per_file: int,
        max_partitions: int,
    ) -> None:
        self.staging = staging
        self.schema = schema
        self.partition_by = list(partition_by)
        self.file_schema = schema
        for name in self.partition_by:
            self.file_schema = self.file_schema.remove(self.file_schema.get_field_index(name))
        self.chunk_rows, self.rows_per_file, self.max_partitions = chunk_rows, rows_per_file, max_partitions
        self.partitions: set[str] = set()
        self.files = 0
        self._open: dict[str, _OpenFile] = {}
        self._buffers: dict[str, list[pa.RecordBatch]] = {}
        self._buffered: dict[str, int] = {}
        self._total = 0

    def write(self, batch: pa.RecordBatch) -> None:
        """Buffer (and write, past the thresholds) one batch of :attr:`schema`."""
        if batch.num_rows == 0:
            return
        parts = self._split(batch) if self.partition_by else iter([("", batch)])
        for subdir, part in parts:
            self._add(subdir, part)
        if self._total > self.chunk_rows:
            for name in list(self._buffers):
                self._flush(name)

    def _split(self, batch: pa.RecordBatch) -> Iterator[tuple[str, pa.RecordBatch]]:
        """(partition directory, its rows without the partition columns) for each partition in ``batch``."""
        with requires_extra("mlflow"):
            import pyarrow as pa
            import pyarrow.compute as pc

        texts = [self._text(batch.column(name)) for name in self.partition_by]
        key = texts[0] if len(texts) == 1 else pc.binary_join_element_wise(*texts, "\x00")
        encoded = key.dictionary_encode()
        indices, values = encoded.indices, encoded.dictionary.to_pylist()
        data = pa.RecordBatch.from_arrays([batch.column(f.name) for f in self.file_schema], schema=self.file_schema)
        dirs = [
            "/".join(f"{n}={escape(v)}" for n, v in zip(self.partition_by, value.split("\x00"), strict=True))
            for value in values
        ]
        if len(dirs) == 1:
            yield dirs[0], data
            return
        order = pc.sort_indices(indices)
        ordered = data.take(order)
        counts = {c["values"].as_py(): c["counts"].as_py() for c in pc.value_counts(indices)}
        start = 0
        for index in range(len(dirs)):
            n = counts.get(index, 0)
            if n:
                yield dirs[index], ordered.slice(start, n)
            start += n

    @staticmethod
    def _text(column: pa.Array) -> pa.Array:
        """A partition column's values as directory text; NULL and '' are :data:`HIVE_NULL`."""
        with requires_extra("mlflow"):
            import pyarrow as pa
            import pyarrow.compute as pc

        text = column if pa.types.is_string(column.type) else column.cast(pa.string())
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        return pc.fill_null(text, HIVE_NULL)

    def _add(self, subdir: str, batch: pa.RecordBatch) -> None:
        if subdir not in self.partitions:
            if len(self.partitions) >= self.max_partitions:
                raise InvalidSpecError(
                    f"partition_by={self.partition_by} gives more than max_partitions={self.max_partitions} "
                    f"partitions (the latest: {subdir}); partition by a column with fewer distinct values, or raise "
                    "max_partitions. Nothing was written."
                )
            self.partitions.add(subdir)
        self._buffers.setdefault(subdir, []).append(batch)
        self._buffered[subdir] = self._buffered.get(subdir, 0) + batch.num_rows
        self._total += batch.num_rows
        if self._buffered[subdir] >= self.chunk_rows:
            self._flush(subdir)

    def _flush(self, subdir: str) -> None:
        """Write a partition's buffered rows as one row group; close the file once it is full."""
        with requires_extra("mlflow"):
            import pyarrow as pa

        batches = self._buffers.pop(subdir, [])
        rows = self._buffered.pop(subdir, 0)
        self._total -= rows
        if not rows:
            return
        current = self._open.get(subdir) or self._new_file(subdir, self.file_schema)
        current.writer.write_table(pa.Table.from_batches(batches, schema=self.file_schema), row_group_size=rows)
        current.rows += rows
        if current.rows >= self.rows_per_file:
            self._close_file(subdir)

    def _new_file(self, subdir: str, schema: pa.Schema) -> _OpenFile:
        with requires_extra("mlflow"):
            import pyarrow.parquet as pq

        name = f"part-{self.files:05d}.parquet"
        self.files += 1
        stack = contextlib.ExitStack()
        try:
            local = stack.enter_context(part_in(self.staging, subdir, name))
            opened = _OpenFile(stack, pq.ParquetWriter(local, schema, compression=COMPRESSION))
        except BaseException:
            stack.close()
            raise
        self._open[subdir] = opened
        return opened

    def _close_file(self, subdir: str) -> None:
        opened = self._open.pop(subdir)
        opened.writer.close()
        opened.stack.close()  # the file is in the staging directory now (uploaded, on HDFS)

    def close(self) -> None:
        """Write what is buffered and close every file; with no rows at all, one file without rows."""
        for subdir in list(self._buffers):
            self._flush(subdir)
        for subdir in list(self._open):
            self._close_file(subdir)
        if self.files == 0:  # the partitions' NULL directory keeps every file at the same depth
            subdir = "/".join(f"{name}={HIVE_NULL}" for name in self.partition_by)
            self._new_file(subdir, self.file_schema)
            self._close_file(subdir)

    def abort(self, error: BaseException) -> None:
        """Close every file without publishing it (the staging directory is removed by the caller)."""
        self._buffers.clear()
        for opened in self._open.values():
            with contextlib.suppress(Exception):
                opened.writer.close()
            with contextlib.suppress(Exception):
                opened.stack.__exit__(type(error), error, error.__traceback__)
        self._open.clear()

    def stats(self) -> dict[str, Any]:
        """Files and partitions written, for the log."""
        return {"files": self.files, "partitions": sorted(p for p in self.partitions if p)}
