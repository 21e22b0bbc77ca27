"""The drop guard's rule: strictly below (1 - max_drop) fails; first runs pass and say so."""

from __future__ import annotations

import logging

import pytest

from airflow_ml_provider.erp import drop_guard
from airflow_ml_provider.erp.drop_guard import KeyCount
from airflow_ml_provider.exceptions import DropGuardError, InvalidSpecError, PermanentError

LOG = logging.getLogger("test_drop_guard")


def _apply(counts: list[KeyCount], **kwargs: object) -> None:
    drop_guard.apply(counts, table_name="erp.prices", log=LOG, **{"max_drop": 0.10, "on_drop": "fail", **kwargs})  # type: ignore[arg-type]


def test_exactly_ten_percent_passes_one_row_more_fails() -> None:
    _apply([KeyCount("DE", 100, 90), KeyCount("FR", 10, 9)])
    with pytest.raises(DropGuardError) as info:
        _apply([KeyCount("DE", 100, 89), KeyCount("FR", 10, 9), KeyCount("IT", 1000, 899)])
    assert info.value.keys == ["DE", "IT"]
    assert isinstance(info.value, PermanentError)
    assert "DE: 100 -> 89 (-11.00%)" in str(info.value)
    assert "Nothing was written" in str(info.value)


@pytest.mark.parametrize(("max_drop", "new"), [(0.2, 80), (0.3, 70), (0.0, 100), (1.0, 0)])
def test_boundary_is_exact_for_other_thresholds(max_drop: float, new: int) -> None:
    _apply([KeyCount("DE", 100, new)], max_drop=max_drop)
    if new > 0:
        with pytest.raises(DropGuardError):
            _apply([KeyCount("DE", 100, new - 1)], max_drop=max_drop)


def test_first_run_passes_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOG.name):
        _apply([KeyCount("DE", 0, 5), KeyCount("FR", 0, 0)])
    assert "first run" in caplog.text
    assert "DE" in caplog.text


def test_warn_mode_warns_and_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOG.name):
        _apply([KeyCount("DE", 100, 50)], on_drop="warn")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "DE: 100 -> 50 (-50.00%)" in warnings[0].getMessage()


def test_table_and_xcom() -> None:
    counts = [KeyCount("DE", 100, 80), KeyCount("FR", 0, 3)]
    text = drop_guard.table(counts)
    assert text.splitlines()[0].split() == ["key", "old", "new", "change"]
    assert "-20.00%" in text
    assert "first run" in text
    assert drop_guard.xcom_counts(counts) == {
        "DE": {"old": 100, "new": 80, "change": -20.0},
        "FR": {"old": 0, "new": 3, "change": None},
    }


@pytest.mark.parametrize(
    ("max_drop", "on_drop"),
    [(-0.1, "fail"), (1.5, "fail"), (True, "fail"), (0.1, "ignore"), ("ten", "fail"), ("nan", "fail"), (None, "fail")],
)
def test_bad_arguments(max_drop: object, on_drop: object) -> None:
    with pytest.raises(InvalidSpecError):
        drop_guard.check_max_drop(max_drop, on_drop)


@pytest.mark.parametrize(("max_drop", "expected"), [(0.1, 0.1), (0, 0.0), ("0.25", 0.25), (" 1 ", 1.0)])
def test_max_drop_from_a_number_or_a_rendered_string(max_drop: object, expected: float) -> None:
    assert drop_guard.check_max_drop(max_drop, "warn") == expected
