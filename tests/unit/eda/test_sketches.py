"""The mergeable summaries against exact answers from numpy/pandas."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from airflow_ml_provider.eda.sketches import (
    DistinctSketch,
    Moments,
    Sample,
    TopValues,
    batch_top_values,
    hash_values,
)


def test_moments_merged_from_pieces_equal_the_whole() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(1e6, 3.0, 10_001)  # a large mean: the naive sum of squares would lose the variance
    merged = Moments()
    for piece in np.array_split(values, 7):
        merged.merge(Moments.of(piece))
    assert merged.count == values.size
    assert merged.mean == pytest.approx(values.mean(), rel=1e-12)
    assert merged.std == pytest.approx(values.std(ddof=1), rel=1e-9)
    assert Moments.of(np.array([2.0])).std is None


def test_hashes_are_deterministic_distinct_and_never_zero() -> None:
    a = hash_values(pa.array(["a", "b", "a", ""]))
    assert a.size == 3
    assert a.dtype == np.uint64
    assert (a > 0).all()
    assert np.array_equal(a, hash_values(pa.array(["", "b", "a"])))
    assert hash_values(np.array([0.0, -0.0])).size == 1
    assert 0 not in hash_values(np.array([0.0, 0], dtype=np.float64))


def test_distinct_is_exact_below_the_cap() -> None:
    sketch = DistinctSketch(cap=1_000)
    for start in range(0, 5_000, 1_000):  # 999 distinct values, seen many times
        sketch.add_hashes(hash_values(np.arange(start, start + 1_000) % 999))
    assert sketch.exact
    assert sketch.count == 999


@pytest.mark.parametrize("true_count", [5_000, 200_000])
def test_distinct_estimate_above_the_cap_is_within_four_standard_errors(true_count: int) -> None:
    cap = 1_024
    sketch = DistinctSketch(cap=cap)
    for piece in np.array_split(np.arange(true_count, dtype=np.int64), 13):
        sketch.add_hashes(hash_values(np.concatenate([piece, piece[:10]])))  # duplicates do not count
    assert not sketch.exact
    assert abs(sketch.count / true_count - 1) < 4 / math.sqrt(cap - 2)


def test_distinct_merge_does_not_depend_on_the_split() -> None:
    values = np.random.default_rng(1).integers(0, 50_000, 100_000)
    whole, parts = DistinctSketch(512), DistinctSketch(512)
    whole.add_hashes(hash_values(values))
    for piece in np.array_split(values, 9):
        parts.add_hashes(hash_values(piece))
    assert np.array_equal(whole.hashes, parts.hashes)


def test_sample_is_exact_when_everything_fits() -> None:
    sample = Sample(cap=100)
    rng = np.random.default_rng(0)
    for piece in np.array_split(np.arange(90, dtype=float), 4):
        sample.add(piece, rng.random(piece.size), piece.size)
    assert sample.exact
    assert sample.quantiles((0.5,)) == [44.5]
    edges, counts = sample.histogram(0, 89, 10, integral=True)
    assert sum(counts) == 90
    assert len(counts) == 10
    assert edges[0] == 0
    assert edges[-1] == 89


def test_sample_quantiles_are_within_the_documented_rank_error() -> None:
    cap = 4_096
    rng = np.random.default_rng(5)
    values = rng.permutation(np.arange(200_000, dtype=float))
    sample = Sample(cap)
    for piece in np.array_split(values, 17):
        sample.add(piece, rng.random(piece.size), piece.size)
    assert sample.values.size == cap
    assert sample.seen == values.size
    assert not sample.exact
    bound = math.sqrt(math.log(2 / 0.01) / (2 * cap))  # DKW at 99 %
    qs = (0.05, 0.25, 0.5, 0.75, 0.95)
    for q, got in zip(qs, sample.quantiles(qs) or [], strict=True):
        assert abs(got / values.size - q) < bound, (q, got)
    _, counts = sample.histogram(0, 199_999, 4, integral=False)
    assert sum(counts) == pytest.approx(values.size, rel=0.01)
    assert all(abs(c / values.size - 0.25) < bound for c in counts)


def test_top_values_are_exact_while_few() -> None:
    top = TopValues(capacity=3)
    top.add({"a": 2, "b": 1})
    top.add({"a": 1, "c": 5})
    assert top.error == 0
    assert top.top(2) == [("c", 5), ("a", 3)]


def test_top_values_keep_heavy_hitters_within_the_misra_gries_bound() -> None:
    rng = np.random.default_rng(2)
    heavy = np.repeat(np.array(["h1", "h2", "h3"]), [30_000, 20_000, 10_000])
    tail = np.array([f"t{i}" for i in rng.integers(0, 40_000, 40_000)])
    values = rng.permutation(np.concatenate([heavy, tail]))
    capacity = 50
    top = TopValues(capacity)
    for piece in np.array_split(values, 10):
        counts, error = batch_top_values(pa.array(piece), capacity)
        top.add(counts, error)
    assert 0 < top.error <= values.size / (capacity + 1)
    found = dict(top.top(3))
    assert list(found) == ["h1", "h2", "h3"]
    for name, true in (("h1", 30_000), ("h2", 20_000), ("h3", 10_000)):
        assert true - top.error <= found[name] <= true


def test_batch_top_values_prunes_to_capacity() -> None:
    counts, error = batch_top_values(pa.array(["a"] * 5 + ["b"] * 3 + ["c", "d"]), 2)
    assert error == 1
    assert counts == {"a": 4, "b": 2}
    exact, none = batch_top_values(pa.array(["x", "y", "x"]), 2)
    assert none == 0
    assert exact == {"x": 2, "y": 1}
