"""The deployment settings read through utils.compat."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_ml_provider.utils.compat import default_timezone


@pytest.mark.parametrize(
    ("setting", "offset_hours"), [("UTC", 0), ("Asia/Tokyo", 9), ("America/New_York", -5), ("utc", 0)]
)
def test_default_timezone_follows_core_default_timezone(
    monkeypatch: pytest.MonkeyPatch, setting: str, offset_hours: int
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__DEFAULT_TIMEZONE", setting)
    zone = default_timezone()
    assert zone.utcoffset(dt.datetime(2026, 11, 23, 12, 0)) == dt.timedelta(hours=offset_hours)


def test_system_means_the_machine_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    from pendulum.tz import local_timezone

    monkeypatch.setenv("AIRFLOW__CORE__DEFAULT_TIMEZONE", "system")
    assert default_timezone() == local_timezone()
