"""The optional data-quality gate: thresholds checked against the profile, with readable reasons.

Checks (each optional):

* ``min_rows`` -- the dataset has at least this many rows;
* ``min_partition_rows`` -- every Hive partition has at least this many rows;
* ``max_null_rate`` -- ``{column: fraction}``: the column's null rate (nulls and NaN over rows)
  is at most the fraction; a column that is not in the dataset fails the check.

Every failed check gives one reason naming the column or partition, the value and the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from airflow_ml_provider.eda.values import percent
from airflow_ml_provider.exceptions import InvalidSpecError


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_thresholds(min_rows: Any, min_partition_rows: Any, max_null_rate: Any) -> None:
    """Refuse malformed thresholds, naming the argument and showing a valid one.

    :param min_rows: ``None`` or a whole number >= 0.
    :param min_partition_rows: ``None`` or a whole number >= 0.
    :param max_null_rate: ``None`` or ``{column: fraction between 0 and 1}``.
    :raises InvalidSpecError: naming the argument.
    """
    for name, value in (("min_rows", min_rows), ("min_partition_rows", min_partition_rows)):
        if value is not None and not _is_count(value):
            raise InvalidSpecError(f"{name}={value!r} must be a whole number >= 0, e.g. {name}=1000, or None.")
    if max_null_rate is None:
        return
    example = "max_null_rate={'units_sold': 0.05}"
    if not isinstance(max_null_rate, Mapping):
        raise InvalidSpecError(f"max_null_rate={max_null_rate!r} must map column names to fractions, e.g. {example}.")
    for column, rate in max_null_rate.items():
        if not isinstance(column, str) or not column:
            raise InvalidSpecError(f"max_null_rate has the key {column!r}; keys are column names, e.g. {example}.")
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or not 0 <= rate <= 1
        ):
            raise InvalidSpecError(
                f"max_null_rate[{column!r}]={rate!r} must be a fraction between 0 and 1 (0.05 is 5 %), e.g. {example}."
            )


def evaluate(
    summary: Mapping[str, Any],
    *,
    min_rows: int | None = None,
    min_partition_rows: int | None = None,
    max_null_rate: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Check the thresholds against a profile's summary (:meth:`DatasetProfile.to_dict`).

    Returns ``{"status": "passed" | "failed", "passed": bool, "reasons": [...], "checks": [...]}``
    where each check is ``{"check", "subject", "value", "threshold", "passed"}``.
    """
    checks: list[dict[str, Any]] = []
    reasons: list[str] = []

    def record(check: str, subject: str, value: Any, threshold: Any, passed: bool, reason: str) -> None:
        checks.append({"check": check, "subject": subject, "value": value, "threshold": threshold, "passed": passed})
        if not passed:
            reasons.append(reason)

    rows = int(summary["rows"])
    if min_rows is not None:
        record(
            "min_rows", "dataset", rows, min_rows, rows >= min_rows,
            f"the dataset has {rows:,} rows, fewer than min_rows={min_rows:,}",
        )  # fmt: skip
    if min_partition_rows is not None:
        for label, count in summary.get("partition_rows", {}).items():
            record(
                "min_partition_rows", label, count, min_partition_rows, count >= min_partition_rows,
                f"partition {label} has {count:,} rows, fewer than min_partition_rows={min_partition_rows:,}",
            )  # fmt: skip
    columns = {c["name"]: c for c in summary["columns"]}
    for name, limit in (max_null_rate or {}).items():
        column = columns.get(name)
        if column is None:
            record(
                "max_null_rate", name, None, limit, False,
                f"column {name!r} of max_null_rate is not in the dataset (it has {sorted(columns)})",
            )  # fmt: skip
            continue
        rate = float(column["null_rate"])
        missing = column["nulls"] + column["nan"]
        record(
            "max_null_rate", name, rate, limit, rate <= limit,
            f"column {name!r} has a null rate of {percent(rate)} ({missing:,} of {column['rows']:,} rows), "
            f"above max_null_rate {percent(limit)}",
        )  # fmt: skip
    passed = not reasons
    return {"status": "passed" if passed else "failed", "passed": passed, "reasons": reasons, "checks": checks}
