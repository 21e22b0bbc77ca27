"""The sensor against a real HA NameNode pair: standby answers, failover, all-standby, NameNode down."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor
from scripts.testbed.counting_proxy import CountingProxy
from tests.integration.conftest import admin_client, set_hdfs_conn

pytestmark = pytest.mark.integration
CTX: Any = {}


def other(nn: str) -> str:
    return "nn2" if nn == "nn1" else "nn1"


@pytest.fixture
def ha(hdfs_ha: Any) -> Iterator[Any]:
    """The HA pair with exactly one active NameNode before and after each test."""
    yield hdfs_ha
    for nn in ("nn1", "nn2"):
        try:
            hdfs_ha.state(nn)
        except Exception:
            hdfs_ha.start_namenode(nn)
    if hdfs_ha.state("nn1") != "active" and hdfs_ha.state("nn2") != "active":
        hdfs_ha.transition_to_active("nn1")


@pytest.fixture
def ha_dir(ha: Any) -> str:
    path = f"/ha/{uuid.uuid4().hex[:10]}"
    admin_client(ha).makedirs(path)
    return path


class Waiter:
    """Runs a sensor in a thread and keeps its outcome."""

    def __init__(self, sensor: HdfsSuccessSensor) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(sensor,), daemon=True)
        self.thread.start()

    def _run(self, sensor: HdfsSuccessSensor) -> None:
        try:
            self.result = sensor.execute(CTX)
        except BaseException as e:
            self.error = e

    def finished(self) -> bool:
        return not self.thread.is_alive()

    def wait(self, timeout: float) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "sensor still waiting"
        if self.error:
            raise self.error
        return self.result


def sensor(path: str, timeout: float = 90) -> HdfsSuccessSensor:
    return HdfsSuccessSensor(task_id="wait", paths=path, hdfs_conn_id="hdfs_ha_it", poke_interval=0.5, timeout=timeout)


def test_standby_listed_first_is_skipped(ha: Any, ha_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    active = ha.active()
    admin_client(ha).write(f"{ha_dir}/_SUCCESS", data=b"")
    with CountingProxy(ha.url_of(other(active))) as standby_proxy:
        set_hdfs_conn(monkeypatch, "hdfs_ha_it", [standby_proxy.url, ha.url_of(active)])
        result = sensor(ha_dir).execute(CTX)
        assert result[0]["path"] == f"{ha_dir}/_SUCCESS"
        assert standby_proxy.counts()["GETFILESTATUS"] >= 1  # asked, answered StandbyException, skipped


def test_failover_while_waiting(ha: Any, ha_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    set_hdfs_conn(monkeypatch, "hdfs_ha_it", [ha.url_of("nn1"), ha.url_of("nn2")])
    waiter = Waiter(sensor(ha_dir))
    time.sleep(2)
    assert not waiter.finished()
    active = ha.active()
    ha.failover(active, other(active))
    admin_client(ha).write(f"{ha_dir}/_SUCCESS", data=b"")
    assert waiter.wait(60)[0]["path"] == f"{ha_dir}/_SUCCESS"


def test_all_standby_means_poke_again_not_fail(ha: Any, ha_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    admin_client(ha).write(f"{ha_dir}/_SUCCESS", data=b"")
    set_hdfs_conn(monkeypatch, "hdfs_ha_it", [ha.url_of("nn1"), ha.url_of("nn2")])
    active = ha.active()
    ha.transition_to_standby(active)
    waiter = Waiter(sensor(ha_dir))
    time.sleep(3)
    assert not waiter.finished(), "must keep waiting while every NameNode is in standby"
    ha.transition_to_active(other(active))
    assert waiter.wait(60)[0]["path"] == f"{ha_dir}/_SUCCESS"


def test_active_namenode_down(ha: Any, ha_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    admin_client(ha).write(f"{ha_dir}/_SUCCESS", data=b"")
    set_hdfs_conn(monkeypatch, "hdfs_ha_it", [ha.url_of("nn1"), ha.url_of("nn2")], timeout=2)
    active = ha.active()
    ha.stop_namenode(active)
    ha.failover(active, other(active))  # fences the dead one (shell(/bin/true)) and activates the other
    assert sensor(ha_dir, timeout=30).execute(CTX)[0]["path"] == f"{ha_dir}/_SUCCESS"
