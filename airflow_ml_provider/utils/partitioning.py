"""Split a list (e.g. countries) into groups for fan-out over an Airflow pool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from airflow_ml_provider.exceptions import InvalidSpecError

T = TypeVar("T")


def split_into_groups(items: Sequence[T], n: int) -> list[list[T]]:
    """Split ``items`` into ``n`` contiguous groups, keeping order; sizes differ by at most one.

    The first ``len(items) % n`` groups get the extra item. With ``n`` larger than the list,
    each item is its own group (no empty groups are made).

    :param items: what to split, in the order to keep (e.g. country codes).
    :param n: how many groups, usually a pool's slot count; must be >= 1.
    :raises InvalidSpecError: when ``n < 1`` or ``items`` is empty.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidSpecError(f"Number of groups n={n!r} must be a whole number >= 1, e.g. the pool's slot count.")
    if not items:
        raise InvalidSpecError("Nothing to split into groups: the list is empty; give at least one item.")
    n = min(n, len(items))
    size, extra = divmod(len(items), n)
    groups: list[list[T]] = []
    start = 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        groups.append(list(items[start:end]))
        start = end
    return groups
