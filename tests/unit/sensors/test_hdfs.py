"""HdfsSuccessSensor on the local disk: poke mode, deferral, soft_fail and event validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException, TaskDeferred

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError, StorageRefusedError
from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor
from airflow_ml_provider.storage.markers import MarkerReport
from airflow_ml_provider.triggers.hdfs import HdfsMarkersTrigger

CTX: Any = {}


def sensor(**kw: Any) -> HdfsSuccessSensor:
    kw.setdefault("poke_interval", 0.05)
    kw.setdefault("timeout", 0.3)
    return HdfsSuccessSensor(task_id="wait", **kw)


def test_template_fields_and_defaults() -> None:
    s = sensor(paths="/d")
    assert s.template_fields == ("paths", "marker", "newer_than")
    assert s.deferrable is False
    assert s.marker == "_SUCCESS"
    assert s.hdfs_conn_id is None


def test_default_conn_id_is_the_hooks() -> None:
    from airflow_ml_provider.hooks.webhdfs import HdfsHook

    assert sensor(paths="/d").hook.hdfs_conn_id == HdfsHook.default_conn_name == "ml_hdfs_default"
    assert sensor(paths="/d", hdfs_conn_id="mine").hook.hdfs_conn_id == "mine"


def test_keyword_only() -> None:
    with pytest.raises(TypeError):
        HdfsSuccessSensor("wait", "/d")  # type: ignore[call-arg]


def test_static_bad_input_fails_at_parse_time() -> None:
    with pytest.raises(InvalidSpecError, match="not absolute"):
        sensor(paths=["relative"])
    with pytest.raises(InvalidSpecError, match="ISO 8601"):
        sensor(paths="/d", newer_than="yesterday")
    sensor(paths="{{ params.dir }}", newer_than="{{ data_interval_end }}")  # templated: checked later


def test_poke_mode_success_returns_markers(tmp_path: Path) -> None:
    for c in ("FR", "DE"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "_SUCCESS").write_text("")
    result = sensor(paths=[f"file://{tmp_path}/FR", f"file://{tmp_path}/DE"]).execute(CTX)
    assert [m["path"] for m in result] == [f"{tmp_path}/DE/_SUCCESS", f"{tmp_path}/FR/_SUCCESS"]


def test_timeout_message_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "FR").mkdir()
    (tmp_path / "FR" / "_SUCCESS").write_text("")
    with pytest.raises(AirflowSensorTimeout, match=f"1/2 markers present; missing: {tmp_path}/DE/_SUCCESS"):
        sensor(paths=[f"file://{tmp_path}/FR", f"file://{tmp_path}/DE"]).execute(CTX)


def test_stale_marker_times_out(tmp_path: Path) -> None:
    (tmp_path / "_SUCCESS").write_text("")
    with pytest.raises(AirflowSensorTimeout, match="older than the freshness bound"):
        sensor(paths=f"file://{tmp_path}", newer_than="2999-01-01T00:00:00+00:00").execute(CTX)


def test_soft_fail_skips_on_timeout_but_not_on_permanent_errors(tmp_path: Path) -> None:
    with pytest.raises(AirflowSkipException):
        sensor(paths=f"file://{tmp_path}/nothing", soft_fail=True).execute(CTX)
    (tmp_path / "_SUCCESS").mkdir()
    with pytest.raises(StorageRefusedError, match="is a directory"):
        sensor(paths=f"file://{tmp_path}", soft_fail=True).execute(CTX)


def test_deferrable_returns_at_once_when_already_done(tmp_path: Path) -> None:
    (tmp_path / "_SUCCESS").write_text("")
    assert sensor(paths=f"file://{tmp_path}", deferrable=True).execute(CTX)[0]["path"] == f"{tmp_path}/_SUCCESS"


def test_deferrable_defers_with_a_serializable_trigger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = sensor(
        paths=[f"file://{tmp_path}", "/hdfs/x"],
        deferrable=True,
        timeout=600,
        hdfs_conn_id="h",
        newer_than="2026-11-23T08:00:00Z",
    )

    def nothing_yet(markers: Any, newer: Any) -> MarkerReport:
        return MarkerReport(missing=[str(m) for m in markers])

    monkeypatch.setattr(s.hook, "check_markers", nothing_yet)
    with pytest.raises(TaskDeferred) as info:
        s.execute(CTX)
    trigger = info.value.trigger
    assert isinstance(trigger, HdfsMarkersTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["markers"] == [f"file://{tmp_path}/_SUCCESS", "hdfs:///hdfs/x/_SUCCESS"]
    assert kwargs["hdfs_conn_id"] == "h"
    assert kwargs["newer_than"] == "2026-11-23T08:00:00+00:00"
    assert info.value.method_name == "execute_complete"
    assert info.value.timeout is not None
    assert info.value.timeout.total_seconds() == 660


def test_execute_complete_validates_events() -> None:
    s = sensor(paths="/d")
    markers = [{"path": "/d/_SUCCESS", "modification_time": "2026-11-23T08:00:00+00:00"}]
    assert s.execute_complete(CTX, {"status": "success", "markers": markers}) == markers
    with pytest.raises(AirflowSensorTimeout, match="missing"):
        s.execute_complete(CTX, {"status": "timeout", "message": "missing: /d/_SUCCESS"})
    with pytest.raises(StorageRefusedError, match="denied"):
        s.execute_complete(CTX, {"status": "error", "kind": "access", "message": "denied"})
    with pytest.raises(MlProviderError, match="invalid event"):
        s.execute_complete(CTX, None)
    with pytest.raises(MlProviderError, match="lacks 'markers'"):
        s.execute_complete(CTX, {"status": "success"})
    with pytest.raises(MlProviderError, match="boom"):
        s.execute_complete(CTX, {"status": "error", "kind": "unexpected", "message": "boom"})
