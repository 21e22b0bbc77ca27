"""One ingest run once its arguments are checked: fix the column types, stream the chunks, publish.

:func:`plan` turns the source's columns and first chunk into a :class:`~.columns.Converter` and
checks the result against the arguments (duplicate names, partition and watermark columns, the
schema of earlier batches). :func:`load` streams every chunk into a staging directory through a
:class:`~.parts.PartWriter` and publishes it: the whole dataset in one rename (``_SUCCESS`` last),
or in incremental mode one ``ingest_batch=N`` directory with its ``_watermark.json`` (see
:mod:`.state`). Any error before the rename leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.ingest.state import BATCH_KEY, WATERMARK_FILE, batch_name, schema_pairs
from airflow_ml_provider.storage.base import MARKER
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    from airflow_ml_provider.ingest.columns import Column, Converter
    from airflow_ml_provider.ingest.parts import PartWriter
    from airflow_ml_provider.ingest.sources import Source
    from airflow_ml_provider.ingest.state import State
    from airflow_ml_provider.storage.base import Storage

Rows = list[tuple[Any, ...]]


@dataclass
class Job:
    """What one run reads and writes.

    :param source: the open source.
    :param storage: the target file system.
    :param root: the dataset's path on it.
    :param what: ``Reading table x`` or ``The query``, for messages.
    :param output_arg: ``output_path='...'`` as the DAG author wrote it, for messages.
    :param partition_by: the partition columns (may be empty).
    :param watermark: the watermark column (``None``: not incremental).
    :param column_types: the DAG author's type overrides.
    :param chunk_rows: rows fetched at a time.
    :param rows_per_file: rows after which a part file is closed.
    :param max_partitions: the most partitions allowed.
    :param log: the task's logger.
    :param previous: the incremental dataset's state (``None``: none yet, or not incremental).
    """

    source: Source
    storage: Storage
    root: str
    what: str
    output_arg: str
    partition_by: list[str]
    watermark: str | None
    column_types: dict[str, str] | None
    chunk_rows: int
    rows_per_file: int
    max_partitions: int
    log: Any
    previous: State | None = None


@contextlib.contextmanager
def translated(source: Source, what: str) -> Iterator[None]:
    """Driver errors no retry can fix become InvalidSpecErrors naming the table or query."""
    try:
        yield
    except MlProviderError:
        raise
    except Exception as e:
        failure = source.failure(e, what)
        if failure is None:
            raise
        raise failure from None


def plan(job: Job, columns: list[Column], first: Rows) -> Converter:
    """Fix the columns' types and check the partition and watermark columns against them."""
    from airflow_ml_provider.ingest.columns import Converter, apply_overrides, infer
    from airflow_ml_provider.ingest.parts import check_partition_columns

    with requires_extra("mlflow"):
        import pyarrow.types as pt

    names = [c.name for c in columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidSpecError(
            f"The result has the column name(s) {twice} more than once; give every column its own name (e.g. "
            "'SELECT a.id AS order_id, b.id AS customer_id ...'). Nothing was written."
        )
    columns = apply_overrides(columns, job.column_types)
    previous = job.previous
    for name in infer(columns, first, previous.types() if previous is not None else None):
        if first:
            job.log.warning(
                "Column %r is NULL in all of the first %d rows and its type is unknown: written as string. Give "
                "its type in column_types if it holds something else.",
                name,
                len(first),
            )
    converter = Converter(columns)
    check_partition_columns(converter.schema, job.partition_by)
    if not job.watermark:
        return converter
    if job.watermark not in names:
        raise InvalidSpecError(
            f"watermark_column={job.watermark!r} is not a column of the result; its columns are {names}. "
            "Nothing was written."
        )
    if BATCH_KEY in names:
        raise InvalidSpecError(
            f"The result has a column {BATCH_KEY!r}, the name incremental mode gives its directories; rename it "
            "in a query. Nothing was written."
        )
    t = converter.schema.field(job.watermark).type
    if not any(f(t) for f in (pt.is_integer, pt.is_floating, pt.is_decimal, pt.is_date, pt.is_timestamp)):
        raise InvalidSpecError(
            f"watermark_column={job.watermark!r} is of type {t}; it must be a number, date or timestamp that only "
            "grows, e.g. an auto-increment id or an updated_at timestamp. Nothing was written."
        )
    schema = schema_pairs(converter.schema)
    if first and previous is not None and previous.schema and previous.schema != schema:
        raise InvalidSpecError(
            f"The result's columns changed since batch {previous.batch} of {job.output_arg}: then "
            f"{previous.schema}, now {schema}. Select the earlier columns, or load everything into a new path (or "
            "delete this one). Nothing was written."
        )
    return converter


def load(job: Job, converter: Converter, pending: list[Rows]) -> tuple[int, list[str], Any]:
    """Stream every chunk (the first one popped from ``pending``) into a staging directory, publish it.

    :return: the rows written, the partition directories written, the highest watermark.
    """
    from airflow_ml_provider.ingest import state as st
    from airflow_ml_provider.ingest.parts import PartWriter

    storage, root = job.storage, job.root
    number = job.previous.batch + 1 if job.previous is not None else 0
    hidden = posixpath.join(root, f"_ingest_tmp-{uuid.uuid4().hex[:12]}")  # readers skip '_' directories
    final = posixpath.join(hidden, batch_name(number)) if job.watermark else root
    new_root = job.watermark is not None and storage.stat(root) is None
    published = False
    try:
        with storage.staged(final, log=job.log) as staging:
            writer = PartWriter(
                staging,
                converter.schema,
                job.partition_by,
                chunk_rows=job.chunk_rows,
                rows_per_file=job.rows_per_file,
                max_partitions=job.max_partitions,
            )
            try:
                rows, high = stream(job, converter, pending, writer)
                writer.close()
            except BaseException as e:
                writer.abort(e)
                raise
            if job.watermark:
                body = st.state_json(
                    column=job.watermark, value=high, batch=number, rows=rows, schema=converter.schema, source=job.what
                )
                storage.write_bytes(posixpath.join(staging.path, WATERMARK_FILE), body)
            staging.publish(marker=None if job.watermark else MARKER)
        if job.watermark:
            target = posixpath.join(root, batch_name(number))
            if storage.stat(target) is not None:
                raise MlProviderError(
                    f"{storage.location(target)} appeared while this run loaded it: another run appends to the same "
                    "dataset. This run's rows were not added; run it again."
                )
            storage.rename(final, target)
            storage.write_bytes(posixpath.join(root, MARKER), b"")
        published = True
    finally:
        if job.watermark:
            with contextlib.suppress(MlProviderError):
                storage.delete(hidden)
                if new_root and not published and not storage.list_dir(root):
                    storage.delete(root)  # made for this run's staging: nothing was written
    return rows, writer.stats()["partitions"] if rows else [], high


def stream(job: Job, converter: Converter, pending: list[Rows], writer: PartWriter) -> tuple[int, Any]:
    """Convert and write every chunk, the first one popped from ``pending``; (rows, highest watermark).

    Each chunk's rows are dropped before the next ones are fetched, so one chunk of Python rows and
    one record batch (plus the partition buffers) are the most held at any time.
    """
    with requires_extra("mlflow"):
        import pyarrow.compute as pc

    watermark, source = job.watermark, job.source
    index = converter.schema.get_field_index(watermark) if watermark else -1
    rows, high, chunk = 0, None, pending.pop()
    while chunk:
        n = len(chunk)
        batch = converter.batch(chunk, rows)
        chunk = []
        if index >= 0:
            column = converter.wire[index] if source.watermark_from_wire else batch.column(index)
            if column.null_count:
                raise InvalidSpecError(
                    f"watermark_column={watermark!r} is NULL in {column.null_count} of rows {rows + 1}-{rows + n} "
                    "of the result; such rows could never be loaded incrementally. Fill it (e.g. "
                    f"COALESCE({watermark}, ...) in a query) or pick a NOT NULL column. Nothing was written."
                )
            top = pc.max(column).as_py()
            high = top if high is None or top > high else high
        writer.write(batch)
        batch, converter.wire = None, []
        rows += n
        with translated(source, job.what):
            chunk = source.fetch(job.chunk_rows)
    return rows, high
