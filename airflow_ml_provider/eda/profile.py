"""Profile a dataset: plan the columns from the Parquet footers, then stream every file's batches.

:func:`profile_dataset` reads each file's footer first (the column union, each column's kind, and
a type conflict between files fails before any data is read), then streams the files' record
batches through :meth:`Storage.iter_batches` (``chunk_rows`` rows at a time; HDFS files are copied
to local scratch one at a time) into :class:`DatasetProfile`: one :class:`~.stats.ColumnStats`
per column overall and one per column and Hive partition (``country=DE/`` directories). Partition
keys that are not stored in the files become categorical columns of the overall profile, counted
once per file (no constant column is built).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.eda.stats import Caps, ColumnStats, constant_summary, kind_of, summarize
from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.utils.optional_deps import requires_extra

with requires_extra("mlflow"):
    import numpy as np
    import pyarrow as pa

if TYPE_CHECKING:
    from airflow_ml_provider.storage.base import DataFile, Storage

#: Sketch sizes per partition: small, since there may be hundreds of partitions.
PARTITION_CAPS = Caps(sample=1_024, distinct=1_024, top=50)
#: Sketch sizes of the overall column statistics.
DEFAULT_CAPS = Caps()


def partition_label(partitions: Sequence[tuple[str, str]]) -> str:
    """``country=DE/week=2026-11-23`` for a file's partitions; ``""`` for none."""
    return "/".join(f"{k}={v}" for k, v in partitions)


@dataclass
class FilePlan:
    """What to read from one file.

    :param file: the data file.
    :param read: its stored columns to read (profiled ones; else one, to count the rows).
    :param constants: profiled partition keys not stored in the file, with the file's value.
    :param missing: profiled columns the file lacks (its rows count as nulls there).
    """

    file: DataFile
    read: list[str]
    constants: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


@dataclass
class PartitionStats:
    """One Hive partition: its rows and files, and its columns' stats (the partition keys aside)."""

    label: str
    values: dict[str, str]
    rows: int = 0
    files: int = 0
    columns: dict[str, ColumnStats] = field(default_factory=dict)


class DatasetProfile:
    """Statistics of a dataset, overall and per partition (see :func:`profile_dataset`).

    :param caps: sketch sizes of the overall column stats.
    :param partition_caps: sketch sizes of each partition's column stats.
    :param max_partitions: partitions that get column stats (in path order); later ones get row
        counts only, so memory stays bounded however many partitions there are.
    :param seed: seed of the sample's random priorities (the same data give the same report).
    """

    def __init__(
        self,
        *,
        caps: Caps = DEFAULT_CAPS,
        partition_caps: Caps = PARTITION_CAPS,
        max_partitions: int = 1_000,
        seed: int = 0,
    ) -> None:
        self.caps = caps
        self.partition_caps = partition_caps
        self.max_partitions = max_partitions
        self.rng = np.random.default_rng(seed)
        self.columns: dict[str, ColumnStats] = {}
        self.partition_keys: list[str] = []
        self.partitions: dict[str, PartitionStats] = {}
        self.partition_rows: dict[str, int] = {}
        self.rows = self.files = self.bytes = 0
        self.seconds = 0.0

    # -- planning --------------------------------------------------------------------------------

    def plan(self, storage: Storage, files: list[DataFile], columns: Sequence[str] | None) -> list[FilePlan]:
        """Read every footer: the profiled columns with their kinds, and what to read per file."""
        schemas: list[pa.Schema] = []
        types: dict[str, tuple[pa.DataType, str]] = {}
        for file in files:
            schema = storage.readable_schema(file)
            schemas.append(schema)
            for arrow_field in schema:
                self._check_type(types, arrow_field.name, arrow_field.type, storage.location(file.path))
            for key, _ in file.partitions:
                if key not in self.partition_keys:
                    self.partition_keys.append(key)
        for key in self.partition_keys:
            types.setdefault(key, (pa.string(), "categorical"))
        wanted = list(types) if columns is None else list(columns)
        unknown = [c for c in wanted if c not in types]
        if unknown:
            raise InvalidSpecError(
                f"columns={list(columns or [])!r} names {unknown}, which no input file has; the dataset has "
                f"{list(types)}."
            )
        for name in wanted:
            arrow_type, kind = types[name]
            self.columns[name] = ColumnStats(name, kind, arrow_type, self.caps)
        plans = []
        for file, schema in zip(files, schemas, strict=True):
            stored = set(schema.names)
            values = dict(file.partitions)
            read = [c for c in wanted if c in stored]
            plan = FilePlan(
                file,
                read or schema.names[:1],
                constants={c: values[c] for c in wanted if c not in stored and c in values},
                missing=[c for c in wanted if c not in stored and c not in values],
            )
            plans.append(plan)
        return plans

    @staticmethod
    def _check_type(types: dict[str, tuple[pa.DataType, str]], name: str, arrow_type: pa.DataType, where: str) -> None:
        kind = kind_of(arrow_type)
        if name not in types:
            types[name] = (arrow_type, kind)
            return
        first, first_kind = types[name]
        if first_kind != kind or (kind == "temporal" and first != arrow_type):
            raise InvalidSpecError(
                f"Column {name!r} is {first} in an earlier file but {arrow_type} in {where}; give every file the "
                "same column types (or leave the column out with columns=[...])."
            )

    # -- reading ---------------------------------------------------------------------------------

    def _partition(self, file: DataFile) -> tuple[str, PartitionStats | None]:
        """The file's partition label (``""`` when the dataset has none) and its stats, if it gets them."""
        if not self.partition_keys:
            return "", None
        label = partition_label(file.partitions) or "(no partition)"
        self.partition_rows.setdefault(label, 0)
        found = self.partitions.get(label)
        if found is None and len(self.partitions) < self.max_partitions:
            found = PartitionStats(label, dict(file.partitions))
            for name, stats in self.columns.items():
                if name not in found.values:
                    found.columns[name] = ColumnStats(name, stats.kind, stats.arrow_type, self.partition_caps)
            self.partitions[label] = found
        return label, found

    def add_file(self, storage: Storage, plan: FilePlan, *, chunk_rows: int, scratch: str) -> int:
        """Stream one file's batches into the stats; returns its rows."""
        label, partition = self._partition(plan.file)
        targets = partition.columns if partition is not None else {}
        rows = 0
        for batch in storage.iter_batches(plan.file, columns=plan.read, batch_size=chunk_rows, scratch=scratch):
            rows += batch.num_rows
            for name in plan.read:
                stats = self.columns.get(name)
                if stats is None:
                    continue  # read only to count the rows
                summary = summarize(batch.column(name), stats.kind, self.caps, self.rng)
                stats.add(summary)
                if name in targets:
                    targets[name].add(summary)
        for name, value in plan.constants.items():
            if rows:
                self.columns[name].add(constant_summary(value, rows))
        for name in plan.missing:
            for stats in (self.columns[name], targets.get(name)):
                if stats is not None:
                    stats.add_missing(rows)
                    stats.missing_in_files += 1
        if partition is not None:
            partition.rows += rows
            partition.files += 1
        if label:
            self.partition_rows[label] += rows
        self.rows += rows
        self.files += 1
        self.bytes += plan.file.size
        return rows

    # -- output ----------------------------------------------------------------------------------

    def to_dict(self, top_k: int) -> dict[str, Any]:
        """The JSON summary's statistics (the operator adds the dataset, gate and settings)."""
        omitted = [label for label in self.partition_rows if label not in self.partitions]
        return {
            "rows": self.rows,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "columns": [stats.to_dict(top_k) for stats in self.columns.values()],
            "partition_keys": list(self.partition_keys),
            "partitions": [
                {
                    "label": p.label,
                    "values": p.values,
                    "rows": p.rows,
                    "files": p.files,
                    "columns": [c.to_dict(min(top_k, 5), histogram=False) for c in p.columns.values()],
                }
                for p in self.partitions.values()
            ],
            "partition_rows": dict(self.partition_rows),
            "partitions_without_column_stats": len(omitted),
        }


def profile_dataset(
    storage: Storage,
    files: list[DataFile],
    *,
    columns: Sequence[str] | None,
    chunk_rows: int,
    scratch: str,
    caps: Caps = DEFAULT_CAPS,
    partition_caps: Caps = PARTITION_CAPS,
    max_partitions: int = 1_000,
) -> DatasetProfile:
    """Profile ``files`` (one dataset) on ``storage``, streaming ``chunk_rows`` rows at a time.

    :param storage: where the files are.
    :param files: the dataset's data files (:meth:`Storage.list_dataset`).
    :param columns: the columns to profile (stored columns or partition keys); ``None``: all.
    :param chunk_rows: rows per record batch.
    :param scratch: local directory for HDFS files' temporary copies.
    :param caps: overall sketch sizes.
    :param partition_caps: per-partition sketch sizes.
    :param max_partitions: partitions with column stats (the rest get row counts only).
    :raises InvalidSpecError: a file is not Parquet, a column's type differs between files, or
        ``columns`` names a column no file has.
    """
    started = time.monotonic()
    profile = DatasetProfile(caps=caps, partition_caps=partition_caps, max_partitions=max_partitions)
    for plan in profile.plan(storage, files, columns):
        profile.add_file(storage, plan, chunk_rows=chunk_rows, scratch=scratch)
    profile.seconds = time.monotonic() - started
    return profile


def accuracy(caps: Caps, partition_caps: Caps) -> dict[str, Any]:
    """The sketch sizes and what they mean for the numbers in the report (for the JSON and the HTML)."""
    import math

    def dkw(n: int) -> float:  # 99 % bound on the sample CDF's error (Dvoretzky-Kiefer-Wolfowitz)
        return math.sqrt(math.log(2 / 0.01) / (2 * n))

    return {
        "sample_size": caps.sample,
        "distinct_cap": caps.distinct,
        "top_capacity": caps.top,
        "partition_sample_size": partition_caps.sample,
        "partition_distinct_cap": partition_caps.distinct,
        "partition_top_capacity": partition_caps.top,
        "notes": [
            "Row counts, null and NaN counts, min, max, mean and standard deviation are exact.",
            f"Distinct counts are exact below {caps.distinct:,} distinct values ({partition_caps.distinct:,} per "
            f"partition); above, a k-minimum-values estimate with a relative standard error of about "
            f"{100 / math.sqrt(caps.distinct - 2):.1f} % ({100 / math.sqrt(partition_caps.distinct - 2):.1f} % per "
            "partition), marked ≈.",
            f"Quantiles and histograms come from a uniform random sample of {caps.sample:,} values per column "
            f"({partition_caps.sample:,} per partition): exact when a column has no more values, else a reported "
            f"p-quantile's rank in the data is within ±{100 * dkw(caps.sample):.1f} % of p "
            f"(±{100 * dkw(partition_caps.sample):.1f} % per partition) with 99 % probability; marked ≈.",
            f"Top values are exact up to {caps.top:,} distinct values; beyond, each count is a lower bound at most "
            f"rows / {caps.top + 1:,} below the truth (Misra-Gries), and every more frequent value is listed.",
        ],
    }
