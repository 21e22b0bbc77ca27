"""HdfsMarkersTrigger: exact serialization and its single event, stepped with asend()."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, cast

from airflow_ml_provider.triggers.hdfs import HdfsMarkersTrigger


def _first_event(trigger: HdfsMarkersTrigger) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        gen = cast(AsyncGenerator[Any, None], trigger.run())
        event = await gen.asend(None)
        try:
            await gen.asend(None)
        except StopAsyncIteration:
            pass
        else:
            raise AssertionError("trigger yielded more than one event")
        return event.payload

    return asyncio.run(go())


def test_serialize_round_trips_exactly() -> None:
    trigger = HdfsMarkersTrigger(
        markers=["/d/a/_SUCCESS", "file:///tmp/x/_SUCCESS"],
        hdfs_conn_id="my_hdfs",
        newer_than="2026-11-23T08:00:00+00:00",
        poke_interval=7.5,
        deadline=1_800_000_000.25,
        summary_interval=30.0,
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_ml_provider.triggers.hdfs.HdfsMarkersTrigger"
    assert kwargs == {
        "markers": ["/d/a/_SUCCESS", "file:///tmp/x/_SUCCESS"],
        "hdfs_conn_id": "my_hdfs",
        "newer_than": "2026-11-23T08:00:00+00:00",
        "poke_interval": 7.5,
        "deadline": 1_800_000_000.25,
        "summary_interval": 30.0,
    }
    assert HdfsMarkersTrigger(**kwargs).serialize() == (path, kwargs)


def test_success_event_with_local_markers(tmp_path: Path) -> None:
    (tmp_path / "_SUCCESS").write_text("")
    payload = _first_event(HdfsMarkersTrigger(markers=[f"file://{tmp_path}/_SUCCESS"], poke_interval=0.01))
    assert payload["status"] == "success"
    assert payload["markers"][0]["path"] == f"{tmp_path}/_SUCCESS"


def test_waits_until_marker_appears(tmp_path: Path) -> None:
    trigger = HdfsMarkersTrigger(markers=[f"file://{tmp_path}/_SUCCESS"], poke_interval=0.05)

    async def go() -> dict[str, Any]:
        task = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(0.3)
        assert not task.done()
        (tmp_path / "_SUCCESS").write_text("")
        event = await asyncio.wait_for(task, 5)
        return event.payload

    assert asyncio.run(go())["status"] == "success"


def test_timeout_event_names_missing_markers(tmp_path: Path) -> None:
    payload = _first_event(
        HdfsMarkersTrigger(markers=[f"file://{tmp_path}/_SUCCESS"], poke_interval=0.05, deadline=time.time() + 0.2)
    )
    assert payload["status"] == "timeout"
    assert f"missing: {tmp_path}/_SUCCESS" in payload["message"]


def test_marker_directory_is_an_access_error_event(tmp_path: Path) -> None:
    (tmp_path / "_SUCCESS").mkdir()
    payload = _first_event(HdfsMarkersTrigger(markers=[f"file://{tmp_path}/_SUCCESS"], poke_interval=0.01))
    assert payload["status"] == "error"
    assert payload["kind"] == "access"
    assert "is a directory" in payload["message"]


def test_unreachable_namenodes_keep_waiting_then_time_out(monkeypatch: Any) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEAD_HDFS",
        '{"conn_type": "ml_hdfs", "host": "127.0.0.1:1,127.0.0.1:2", "extra": {"timeout": 1}}',
    )
    payload = _first_event(
        HdfsMarkersTrigger(
            markers=["/d/_SUCCESS"], hdfs_conn_id="dead_hdfs", poke_interval=0.1, deadline=time.time() + 0.5
        )
    )
    assert payload["status"] == "timeout"
    assert "Last error: No NameNode answered" in payload["message"]
    assert "127.0.0.1:1" in payload["message"]
    assert "127.0.0.1:2" in payload["message"]
