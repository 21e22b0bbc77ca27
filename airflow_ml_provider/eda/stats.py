"""Per-column statistics of a dataset, overall and per Hive partition, one record batch at a time.

Each batch of each column is summarized once (:func:`summarize`: counts, min/max, moments,
distinct hashes, sample candidates, top values) and that summary is merged into the column's
overall :class:`ColumnStats` and into its partition's, so memory depends on the number of columns
and partitions and on the sketch sizes (:class:`Caps`), never on the number of rows.

Kinds of columns (from the Arrow type):

* ``numeric`` (integers, floats, decimals): min/max, mean/std, quantiles, histogram, distinct.
  NaN counts as missing (in ``null_rate``, as pandas does) and +-inf is counted in ``infinite``;
  both are left out of min/max/mean/quantiles/distinct.
* ``temporal`` (dates, timestamps): as numeric, on the underlying integers; shown as ISO dates.
* ``boolean``: counts of true/false (exact), mean = fraction true.
* ``categorical`` (strings, dictionaries of strings, partition keys): top values, distinct,
  lexicographic min/max.
* ``other`` (binary, lists, structs, ...): rows and nulls only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_ml_provider.eda.sketches import (
    DistinctSketch,
    Moments,
    Sample,
    TopValues,
    batch_top_values,
    hash_values,
)
from airflow_ml_provider.utils.optional_deps import requires_extra

with requires_extra("mlflow"):
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
QUANTILE_NAMES = ("p05", "p25", "p50", "p75", "p95")
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class Caps:
    """Sketch sizes: they bound memory per column and set the accuracy (see :mod:`.sketches`).

    :param sample: values kept for quantiles and histograms (exact up to this many values).
    :param distinct: hashes kept for the distinct count (exact below this many distinct values).
    :param top: Misra-Gries counters for the most frequent values (exact up to this many).
    """

    sample: int = 16_384
    distinct: int = 16_384
    top: int = 1_000


def kind_of(arrow_type: pa.DataType) -> str:
    """The column kind (module docstring) of an Arrow type."""
    if pt.is_dictionary(arrow_type):
        return (
            "categorical"
            if pt.is_string(arrow_type.value_type) or pt.is_large_string(arrow_type.value_type)
            else "other"
        )
    if pt.is_boolean(arrow_type):
        return "boolean"
    if pt.is_integer(arrow_type) or pt.is_floating(arrow_type) or pt.is_decimal(arrow_type):
        return "numeric"
    if pt.is_date(arrow_type) or pt.is_timestamp(arrow_type):
        return "temporal"
    if pt.is_string(arrow_type) or pt.is_large_string(arrow_type) or str(arrow_type) == "string_view":
        return "categorical"
    return "other"


@dataclass
class BatchSummary:
    """One column of one record batch, summarized (merged into the overall and the partition stats)."""

    rows: int
    nulls: int = 0
    nan: int = 0
    infinite: int = 0
    minimum: Any = None
    maximum: Any = None
    moments: Moments = field(default_factory=Moments)
    hashes: Any = None
    sample_values: Any = None
    sample_priorities: Any = None
    sampled_from: int = 0
    top: dict[Any, int] | None = None
    top_error: int = 0


def _min_max(values: pa.Array) -> tuple[Any, Any]:
    found = pc.min_max(values)
    return found["min"].as_py(), found["max"].as_py()


def summarize(values: pa.Array, kind: str, caps: Caps, rng: np.random.Generator) -> BatchSummary:
    """Summarize one batch of one column of ``kind``; ``caps`` are the largest sketch sizes it feeds."""
    summary = BatchSummary(rows=len(values), nulls=values.null_count)
    if kind == "other" or summary.nulls == summary.rows:
        return summary
    if pt.is_dictionary(values.type):
        values = values.dictionary_decode()
    valid = values.drop_null() if summary.nulls else values
    if kind in ("categorical", "boolean"):
        summary.minimum, summary.maximum = _min_max(valid) if kind == "categorical" else (None, None)
        summary.top, summary.top_error = batch_top_values(valid, caps.top)
        if kind == "boolean":
            true = summary.top.get(True, 0)
            summary.moments = Moments(len(valid), true / len(valid), true * (len(valid) - true) / len(valid))
            summary.hashes = np.array(sorted(i for i, v in enumerate((False, True)) if summary.top.get(v)), np.uint64)
        else:
            summary.hashes = hash_values(pc.unique(valid))
        return summary
    if kind == "temporal":
        width = pa.int32() if pt.is_date32(valid.type) else pa.int64()
        numbers = valid.cast(width).to_numpy().astype(np.int64)
        summary.minimum, summary.maximum = int(numbers.min()), int(numbers.max())
        floats = numbers.astype(np.float64)
        keys = numbers
    else:
        if pt.is_floating(valid.type):
            floats = valid.to_numpy().astype(np.float64, copy=False)
            nan = np.isnan(floats)
            finite = np.isfinite(floats)
            summary.nan = int(nan.sum())
            summary.infinite = int((~finite).sum()) - summary.nan
            if not finite.all():
                floats = floats[finite]
            keys = floats
        elif pt.is_integer(valid.type):
            keys = valid.to_numpy()
            floats = keys.astype(np.float64)
        else:  # decimal
            floats = valid.cast(pa.float64()).to_numpy()
            keys = floats
        if floats.size == 0:
            return summary
        if pt.is_integer(valid.type):
            summary.minimum, summary.maximum = int(keys.min()), int(keys.max())
        else:
            summary.minimum, summary.maximum = float(floats.min()), float(floats.max())
    summary.moments = Moments.of(floats)
    summary.hashes = hash_values(keys)
    priorities = rng.random(floats.size)
    if floats.size > caps.sample:
        keep = np.argpartition(priorities, caps.sample - 1)[: caps.sample]
        summary.sample_values, summary.sample_priorities = floats[keep], priorities[keep]
    else:
        summary.sample_values, summary.sample_priorities = floats, priorities
    summary.sampled_from = int(floats.size)
    return summary


def constant_summary(value: str, rows: int) -> BatchSummary:
    """The summary of ``rows`` copies of one string (a partition key's value for a whole file)."""
    return BatchSummary(
        rows=rows, minimum=value, maximum=value, hashes=hash_values(pa.array([value])), top={value: rows}
    )


class ColumnStats:
    """Everything known about one column over some rows (the whole dataset, or one partition).

    :param name: the column's name.
    :param kind: its kind (module docstring).
    :param arrow_type: its Arrow type (formats temporal values).
    :param caps: sketch sizes.
    """

    def __init__(self, name: str, kind: str, arrow_type: pa.DataType, caps: Caps) -> None:
        self.name = name
        self.kind = kind
        self.arrow_type = arrow_type
        self.rows = self.nulls = self.nan = self.infinite = 0
        self.missing_in_files = 0
        self.minimum: Any = None
        self.maximum: Any = None
        self.moments = Moments()
        self.distinct = DistinctSketch(caps.distinct)
        self.sample = Sample(caps.sample)
        self.top = TopValues(caps.top)

    def add(self, batch: BatchSummary) -> None:
        """Merge one batch's summary."""
        self.rows += batch.rows
        self.nulls += batch.nulls
        self.nan += batch.nan
        self.infinite += batch.infinite
        if batch.minimum is not None and (self.minimum is None or batch.minimum < self.minimum):
            self.minimum = batch.minimum
        if batch.maximum is not None and (self.maximum is None or batch.maximum > self.maximum):
            self.maximum = batch.maximum
        self.moments.merge(batch.moments)
        if batch.hashes is not None:
            self.distinct.add_hashes(batch.hashes)
        if batch.sample_values is not None:
            self.sample.add(batch.sample_values, batch.sample_priorities, batch.sampled_from)
        if batch.top is not None:
            self.top.add(batch.top, batch.top_error)

    def add_missing(self, rows: int) -> None:
        """``rows`` rows of a file without this column: counted as nulls."""
        self.rows += rows
        self.nulls += rows

    @property
    def null_rate(self) -> float:
        """(nulls + NaN) / rows; 0 for no rows."""
        return (self.nulls + self.nan) / self.rows if self.rows else 0.0

    def to_dict(self, top_k: int, histogram: bool = True) -> dict[str, Any]:
        """The column's JSON summary (``histogram=False`` leaves the histogram out, as per partition)."""
        from airflow_ml_provider.eda.values import display_value, jsonable

        def shown(value: Any) -> Any:
            return display_value(value, self.arrow_type) if self.kind == "temporal" else jsonable(value)

        out: dict[str, Any] = {
            "name": self.name,
            "type": str(self.arrow_type),
            "kind": self.kind,
            "rows": self.rows,
            "nulls": self.nulls,
            "nan": self.nan,
            "infinite": self.infinite,
            "null_rate": self.null_rate,
            "missing_in_files": self.missing_in_files,
        }
        if self.kind == "other":
            return out
        out["distinct"] = self.distinct.count
        out["distinct_exact"] = self.distinct.exact
        out["min"], out["max"] = shown(self.minimum), shown(self.maximum)
        if self.kind in ("numeric", "temporal", "boolean"):
            out["mean"] = shown(self.moments.mean) if self.moments.count else None
            out["std"] = jsonable(self.moments.std) if self.kind != "temporal" else None
        if self.kind in ("numeric", "temporal"):
            qs = self.sample.quantiles(QUANTILES)
            out["quantiles"] = None if qs is None else dict(zip(QUANTILE_NAMES, map(shown, qs), strict=True))
            out["quantiles_exact"] = self.sample.exact
            out["sample_size"] = int(self.sample.values.size)
            if histogram and self.minimum is not None:
                out["histogram"] = self._histogram(shown)
        if self.kind in ("categorical", "boolean"):
            top = self.top.top(top_k)
            out["top"] = [{"value": jsonable(v), "count": n} for v, n in top]
            out["top_exact"] = self.top.error == 0
            out["top_error"] = self.top.error
            out["other_count"] = self.rows - self.nulls - sum(n for _, n in top)
        return out

    def _histogram(self, shown: Any) -> dict[str, Any]:
        """Counts per value when the sample has few distinct values (steps, weeks), else per equal-width bin."""
        exact = self.sample.exact
        values, counts = np.unique(self.sample.values, return_counts=True)
        if values.size <= HISTOGRAM_BINS:
            scale = self.sample.seen / max(self.sample.values.size, 1)
            return {
                "kind": "values",
                "values": [
                    shown(int(v) if self.kind == "temporal" or isinstance(self.minimum, int) else float(v))
                    for v in values
                ],
                "counts": [round(float(c) * scale) for c in counts],
                "exact": exact,
            }
        integral = self.kind == "temporal" or isinstance(self.minimum, int)
        edges, binned = self.sample.histogram(float(self.minimum), float(self.maximum), HISTOGRAM_BINS, integral)
        return {"kind": "bins", "edges": [shown(e) for e in edges], "counts": binned, "exact": exact}
