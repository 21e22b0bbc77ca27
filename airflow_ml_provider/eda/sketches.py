"""Mergeable, bounded-memory summaries of one column: moments, distinct values, a sample, top values.

Each summary is built from one record batch and merged into the dataset's and the partition's
summaries; merging two summaries gives the summary of the union, so the result does not depend on
how the data were split into files and batches (apart from the sample's random draw).

* :class:`Moments` -- count, mean and the sum of squared deviations (Welford's update, Chan et
  al.'s pairwise merge): exact mean and standard deviation in one pass, without the cancellation
  of ``sum(x**2) - n*mean**2``.
* :class:`DistinctSketch` -- the ``cap`` smallest distinct 64-bit hashes of the values (a
  *k minimum values* sketch, Bar-Yossef et al. 2002). Fewer than ``cap`` distinct hashes: the count
  is exact (up to 64-bit hash collisions, p < 1e-11 at 16,384 values). Otherwise the estimate is
  ``(cap - 1) / (h_cap / 2**64)``, unbiased with a relative standard error of about
  ``1 / sqrt(cap - 2)`` (0.8 % at ``cap=16384``, 3 % at 1,024).
* :class:`Sample` -- a uniform sample without replacement of ``cap`` values: every value gets a
  random priority and the ``cap`` smallest are kept (*bottom-k* sampling, the mergeable form of a
  reservoir). Quantiles and histograms come from it: with ``cap`` values the empirical CDF is
  within ``sqrt(ln(2/0.01) / (2 cap))`` of the true one with 99 % probability (Dvoretzky-Kiefer-
  Wolfowitz), i.e. a reported p-quantile's rank in the data is within +-1.3 % of p at 16,384 and
  +-5.1 % at 1,024. A column with at most ``cap`` values is sampled whole: everything is exact.
* :class:`TopValues` -- a Misra-Gries summary with ``capacity`` counters: counts of frequent values.
  Exact while a column has at most ``capacity`` distinct values; beyond, each count is a lower
  bound at most ``error`` below the true count, and ``error <= rows / (capacity + 1)`` (Agarwal et
  al., "Mergeable summaries", 2012), so every value more frequent than that is kept.

Hashes come from :func:`pandas.util.hash_array` (SipHash for strings, a fixed mixing for numbers;
deterministic across processes), re-mixed with SplitMix64's finalizer so no value hashes to 0.
numpy, pandas and pyarrow (the ``mlflow`` extra) are imported with this module, which only the
operator's ``execute`` imports (never a DAG file).
"""

from __future__ import annotations

import math
from typing import Any

from airflow_ml_provider.utils.optional_deps import requires_extra

with requires_extra("mlflow"):
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

_TWO64 = float(2**64)


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer over a ``uint64`` array (wrapping arithmetic), after a fixed XOR."""
    z = values ^ np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: np.ndarray = z ^ (z >> np.uint64(31))
    return out


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``values`` sorted, duplicates dropped (for integers: a sort and a mask, faster than ``np.unique``'s hashing)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    out: np.ndarray = ordered[keep]
    return out


def hash_values(values: pa.Array | np.ndarray) -> np.ndarray:
    """Sorted distinct 64-bit hashes of ``values`` (an Arrow array without nulls, or a numpy array)."""
    if not isinstance(values, np.ndarray):
        values = values.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f":
        values = values + 0.0  # -0.0 and 0.0 are one value
    with np.errstate(over="ignore"):
        hashed = mix64(pd.util.hash_array(values, categorize=False).astype(np.uint64, copy=False))
    return sorted_unique(hashed)


class Moments:
    """Count, mean and sum of squared deviations of the finite values seen (exact, mergeable)."""

    __slots__ = ("count", "m2", "mean")

    def __init__(self, count: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.count = count
        self.mean = mean
        self.m2 = m2

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        """The moments of a float array (finite values only)."""
        if values.size == 0:
            return cls()
        mean = float(np.mean(values))
        return cls(int(values.size), mean, float(np.sum((values - mean) ** 2)))

    def merge(self, other: Moments) -> None:
        """Add ``other``'s values (Chan et al.'s pairwise formula)."""
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total

    @property
    def std(self) -> float | None:
        """Sample standard deviation (``ddof=1``); ``None`` under two values."""
        return math.sqrt(max(self.m2, 0.0) / (self.count - 1)) if self.count > 1 else None


class DistinctSketch:
    """The ``cap`` smallest distinct hashes: exact distinct count below ``cap``, an estimate above.

    :param cap: how many hashes are kept (memory: 8 bytes each).
    """

    __slots__ = ("cap", "hashes")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.hashes: np.ndarray = np.empty(0, dtype=np.uint64)

    def add_hashes(self, hashes: np.ndarray) -> None:
        """Merge sorted distinct hashes (from :func:`hash_values` or another sketch)."""
        if hashes.size == 0:
            return
        if self.hashes.size >= self.cap:
            hashes = hashes[hashes < self.hashes[-1]]
        self.hashes = sorted_unique(np.concatenate([self.hashes, hashes[: self.cap]]))[: self.cap]

    @property
    def exact(self) -> bool:
        """Whether :attr:`count` is exact (fewer distinct values than ``cap``)."""
        return self.hashes.size < self.cap

    @property
    def count(self) -> int:
        """Distinct values: exact below ``cap``, else the k-minimum-values estimate."""
        if self.exact:
            return int(self.hashes.size)
        return round((self.cap - 1) / ((float(self.hashes[-1]) + 1.0) / _TWO64))


class Sample:
    """A uniform random sample of ``cap`` values (bottom-k by random priority).

    :param cap: how many values are kept (memory: 16 bytes each).
    """

    __slots__ = ("cap", "priorities", "seen", "values")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.values: np.ndarray = np.empty(0, dtype=np.float64)
        self.priorities: np.ndarray = np.empty(0, dtype=np.float64)
        self.seen = 0

    def add(self, values: np.ndarray, priorities: np.ndarray, seen: int) -> None:
        """Merge ``values`` with their ``priorities``, drawn from ``seen`` values (a batch's or a sample's)."""
        self.seen += seen
        if values.size == 0:
            return
        merged_values = np.concatenate([self.values, values])
        merged_priorities = np.concatenate([self.priorities, priorities])
        if merged_values.size > self.cap:
            keep = np.argpartition(merged_priorities, self.cap - 1)[: self.cap]
            merged_values, merged_priorities = merged_values[keep], merged_priorities[keep]
        self.values, self.priorities = merged_values, merged_priorities

    def merge(self, other: Sample) -> None:
        """Add another sample (of other values)."""
        self.add(other.values, other.priorities, other.seen)

    @property
    def exact(self) -> bool:
        """Whether the sample holds every value seen."""
        return self.values.size == self.seen

    def quantiles(self, qs: tuple[float, ...]) -> list[float] | None:
        """The sample's quantiles (linear interpolation); ``None`` when empty."""
        if self.values.size == 0:
            return None
        return [float(v) for v in np.quantile(self.values, qs)]

    def histogram(self, low: float, high: float, bins: int, integral: bool) -> tuple[list[float], list[int]]:
        """Bin edges over ``[low, high]`` and counts scaled to :attr:`seen` (one bin per integer when few)."""
        if integral and high - low + 1 <= bins:
            edges = np.arange(low, high + 2) - 0.5
        elif high > low:
            edges = np.linspace(low, high, bins + 1)
        else:
            edges = np.array([low - 0.5, low + 0.5])
        counts, edges = np.histogram(self.values, bins=edges)
        if not self.exact and self.values.size:
            counts = np.rint(counts * (self.seen / self.values.size))
        return [float(e) for e in edges], [int(c) for c in counts]


class TopValues:
    """Misra-Gries counters of the most frequent values (exact while few distinct values).

    :param capacity: counters kept; every value more frequent than ``rows / (capacity + 1)`` is among them.
    """

    __slots__ = ("capacity", "counts", "error")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.counts: dict[Any, int] = {}
        #: Largest amount any count may be below the truth (0: all counts exact).
        self.error = 0

    def add(self, counts: dict[Any, int], error: int = 0) -> None:
        """Merge counts (themselves at most ``error`` below the truth), then prune to ``capacity``."""
        own = self.counts
        for value, n in counts.items():
            own[value] = own.get(value, 0) + n
        self.error += error
        if len(own) > self.capacity:
            threshold = sorted(own.values(), reverse=True)[self.capacity]
            self.counts = {v: n - threshold for v, n in own.items() if n > threshold}
            self.error += threshold

    def merge(self, other: TopValues) -> None:
        """Add another summary."""
        self.add(other.counts, other.error)

    def top(self, k: int) -> list[tuple[Any, int]]:
        """The ``k`` largest counts, largest first (ties by value text)."""
        return sorted(self.counts.items(), key=lambda item: (-item[1], str(item[0])))[:k]


def batch_top_values(values: pa.Array, capacity: int) -> tuple[dict[Any, int], int]:
    """Exact value counts of ``values`` (no nulls), pruned Misra-Gries style to ``capacity``; (counts, error)."""
    counted = pc.value_counts(values)
    keys, counts = counted.field("values"), counted.field("counts").to_numpy()
    error = 0
    if len(counts) > capacity:
        error = int(np.partition(counts, len(counts) - capacity - 1)[len(counts) - capacity - 1])
        keep = np.flatnonzero(counts > error)
        keys, counts = keys.take(keep), counts[keep] - error
    return dict(zip(keys.to_pylist(), (int(c) for c in counts), strict=True)), error
