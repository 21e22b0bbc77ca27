"""split_into_groups: order kept, sizes within one, clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.utils.partitioning import split_into_groups


def test_45_countries_into_4_groups() -> None:
    countries = [f"C{i:02d}" for i in range(45)]
    groups = split_into_groups(countries, 4)
    assert [len(g) for g in groups] == [12, 11, 11, 11]
    assert [c for g in groups for c in g] == countries


def test_more_groups_than_items_gives_one_per_item() -> None:
    assert split_into_groups(["DE", "FR"], 5) == [["DE"], ["FR"]]


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "4"])
def test_bad_group_count(n: object) -> None:
    with pytest.raises(InvalidSpecError, match="must be a whole number >= 1"):
        split_into_groups(["DE"], n)  # type: ignore[arg-type]


def test_empty_list() -> None:
    with pytest.raises(InvalidSpecError, match="list is empty"):
        split_into_groups([], 3)


@given(st.lists(st.integers(), min_size=1, max_size=200), st.integers(min_value=1, max_value=60))
def test_properties(items: list[int], n: int) -> None:
    groups = split_into_groups(items, n)
    assert [x for g in groups for x in g] == items
    assert len(groups) == min(n, len(items))
    sizes = [len(g) for g in groups]
    assert min(sizes) >= 1
    assert max(sizes) - min(sizes) <= 1
