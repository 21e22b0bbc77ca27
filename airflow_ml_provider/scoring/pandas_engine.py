"""The pandas engine of batch prediction: file by file, chunk by chunk, in the task's process.

Memory stays bounded by ``chunk_rows``: each input file is streamed in record batches
(:meth:`Storage.iter_batches`), each chunk is scored with one ``predict`` call and appended as one
row group to that file's output part, which goes into the storage's staging directory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.utils.messages import first_line
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    import pyarrow as pa
    from mlflow.pyfunc import PyFuncModel

    from airflow_ml_provider.storage.base import DataFile, Staging, Storage

#: Dictionary page limit of the output: a column with more distinct values (random floats, ids)
#: falls back to plain encoding after 128 KiB instead of 1 MiB. With chunk-sized row groups the
#: 1 MiB default dictionary-encodes whole high-cardinality columns: 4x the write time, 25% larger.
DICTIONARY_LIMIT = 128 * 1024


class Plan(NamedTuple):
    """What to read from one input file and what to score it with.

    :param file: the input file.
    :param passthrough: output columns copied from the input.
    :param inputs: the model's input columns; ``None`` for all columns (no signature).
    :param schema: the file's stored schema, read once from its footer while planning.
    """

    file: DataFile
    passthrough: list[str]
    inputs: list[str] | None
    schema: pa.Schema


def score_plans(
    model: PyFuncModel,
    source: Storage,
    staging: Staging,
    plans: Sequence[Plan],
    *,
    chunk_rows: int,
    model_uri: str,
    prediction_column: str,
) -> int:
    """Score every planned file into one part file each in ``staging``; return the rows scored.

    Files with no rows produce no part; when no file has a row, one empty part with the output
    schema is written (:func:`empty_output`), so readers still see the columns and their types.
    Part names are ``part-00000.parquet``, ``part-00001…``.
    """
    with requires_extra("mlflow"):
        import pyarrow as pa
        import pyarrow.parquet as pq

    total = 0
    for plan in plans:
        columns = list(dict.fromkeys([*plan.passthrough, *(plan.inputs or plan.schema.names)]))
        batches = source.iter_batches(plan.file, columns=columns, batch_size=chunk_rows, scratch=staging.scratch)
        first = next(batches, None)
        if first is None:
            continue
        with staging.part(f"part-{len(staging.parts):05d}.parquet") as part_path:
            writer: pq.ParquetWriter | None = None
            try:
                file_row = 0
                for batch in _chain(first, batches):
                    table = pa.Table.from_batches([batch])
                    span = (
                        f"rows {total}-{total + table.num_rows - 1} of the dataset (rows {file_row}-"
                        f"{file_row + table.num_rows - 1} of {source.location(plan.file.path)})"
                    )
                    features = table.select(plan.inputs) if plan.inputs is not None else table
                    out = table.select(plan.passthrough)
                    for name, column in predict_chunk(
                        model, features, span, model_uri=model_uri, prediction_column=prediction_column
                    ):
                        out = out.append_column(name, column)
                    if writer is None:
                        writer = pq.ParquetWriter(part_path, out.schema, dictionary_pagesize_limit=DICTIONARY_LIMIT)
                    elif out.schema != writer.schema:
                        out = out.cast(writer.schema)
                    writer.write_table(out)
                    total += table.num_rows
                    file_row += table.num_rows
            finally:
                if writer is not None:
                    writer.close()
    if not staging.parts and plans:
        empty = empty_output(model, plans[0], prediction_column)
        with staging.part("part-00000.parquet") as part_path:
            pq.write_table(empty, part_path)
    return total


def empty_output(model: PyFuncModel, plan: Plan, prediction_column: str) -> pa.Table:
    """A 0-row table with the output columns of ``plan``: the passthrough columns with the input
    file's types (partition keys as strings), then the prediction column(s) (:func:`prediction_fields`)."""
    with requires_extra("mlflow"):
        import pyarrow as pa

    stored = plan.schema
    fields = [stored.field(c) if c in stored.names else pa.field(c, pa.string()) for c in plan.passthrough]
    return pa.schema([*fields, *prediction_fields(model, prediction_column)]).empty_table()


def prediction_fields(model: PyFuncModel, prediction_column: str) -> list[pa.Field]:
    """The prediction column(s) the model's output schema announces, named as :func:`predict_chunk`
    names them: one column, or ``<prediction_column>_<name>`` per named column; a 2-d tensor output
    is a fixed-size list. ``float64`` when the model has no output schema or one this cannot map."""
    with requires_extra("mlflow"):
        import numpy as np
        import pyarrow as pa
        from mlflow.types import DataType

    def arrow_type(dtype: Any) -> pa.DataType | None:
        if not isinstance(dtype, np.dtype):
            return None
        if dtype.kind in "OUS":
            return pa.string() if dtype.kind in "OU" else pa.binary()
        try:
            return pa.from_numpy_dtype(dtype)
        except (pa.ArrowNotImplementedError, NotImplementedError, TypeError):
            return None

    fallback = [pa.field(prediction_column, pa.float64())]
    schema = model.metadata.get_output_schema()
    if schema is None or not schema.inputs:
        return fallback
    specs = schema.inputs
    if schema.is_tensor_spec():
        if len(specs) != 1:
            return fallback
        base, shape = arrow_type(specs[0].type), tuple(specs[0].shape)
        if base is None:
            return fallback
        if len(shape) == 2 and shape[1] > 1:
            return [pa.field(prediction_column, pa.list_(base, shape[1]))]
        return [pa.field(prediction_column, base)]
    types = [arrow_type(s.type.to_numpy()) if isinstance(s.type, DataType) else None for s in specs]
    if len(specs) == 1:
        return [pa.field(prediction_column, types[0] or pa.float64())]
    names = [s.name if s.name is not None else str(i) for i, s in enumerate(specs)]
    return [pa.field(f"{prediction_column}_{n}", t or pa.float64()) for n, t in zip(names, types, strict=True)]


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def predict_chunk(
    model: PyFuncModel, features: pa.Table, span: str, *, model_uri: str, prediction_column: str
) -> list[tuple[str, pa.Array]]:
    """Score one chunk; return the output column(s); fail on errors and NaN/inf/null values."""
    with requires_extra("mlflow"):
        import numpy as np
        import pandas as pd
        import pyarrow as pa
        from mlflow.exceptions import MlflowException

    frame = features.to_pandas()
    try:
        raw = model.predict(frame)
    except MlflowException as e:
        raise InvalidSpecError(
            f"The model {model_uri} rejected {span}: {first_line(e.message, 500).rstrip('.')}. Fix the input's column "
            "types to match the model signature. Nothing was written."
        ) from e
    except Exception as e:
        raise MlProviderError(
            f"The model {model_uri} failed on {span}: {type(e).__name__}: {first_line(str(e), 500).rstrip('.')}. "
            "Nothing was written."
        ) from e

    n = len(frame)
    columns: list[tuple[str, Any]]
    if isinstance(raw, pd.DataFrame):
        if raw.shape[1] == 1:
            columns = [(prediction_column, raw.iloc[:, 0].to_numpy())]
        else:
            columns = [(f"{prediction_column}_{c}", raw[c].to_numpy()) for c in raw.columns]
    else:
        values = raw.to_numpy() if isinstance(raw, pd.Series) else np.asarray(raw)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        columns = [(prediction_column, values)]
    result = []
    for name, values in columns:
        if len(values) != n:
            raise MlProviderError(
                f"The model {model_uri} returned {len(values)} predictions for the {n} {span}. Nothing was written."
            )
        if isinstance(values, np.ndarray) and values.ndim == 2:
            flat = np.ascontiguousarray(values).ravel()
            array: pa.Array = pa.FixedSizeListArray.from_arrays(pa.array(flat), values.shape[1])
            bad = ~np.isfinite(values).all(axis=1) if values.dtype.kind in "fc" else pd.isna(values).any(axis=1)
        else:
            bad = ~np.isfinite(values) if values.dtype.kind in "fc" else np.asarray(pd.isna(values))
            try:
                array = pa.array(values, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise MlProviderError(
                    f"The model {model_uri} returned predictions that are not a table column for {span}: {e}"
                ) from None
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise MlProviderError(
                f"The model {model_uri} returned {int(bad.sum())} NaN, infinite or empty prediction(s) "
                f"in {name!r} for {span}; the first is the chunk's row {first}. Nothing was written. Check "
                "those rows for missing or out-of-range features, or fix the model."
            )
        result.append((name, array))
    return result
