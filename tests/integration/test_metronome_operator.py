"""ContainerJobOperator on the ml_metronome connection type, end to end against the Metronome
test server (real HTTP, runs really execute): success, failure, kill, and the password."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_ml_provider.exceptions import ContainerJobFailed
from airflow_ml_provider.operators.container import ContainerJobOperator
from scripts.testbed.metronome_server import MetronomeTestServer

pytestmark = pytest.mark.integration

PASSWORD = "metronome-pw-" + "q" * 10


class TI:
    dag_id = "pricing"
    task_id = "train"
    map_index = -1

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetronomeTestServer]:
    with MetronomeTestServer(uid="airflow", password=PASSWORD, launch_delay=0.2, kill_grace=1.0) as srv:
        monkeypatch.setenv(
            "AIRFLOW_CONN_DCOS",
            json.dumps(
                {
                    "conn_type": "ml_metronome",
                    "host": srv.url,
                    "login": "airflow",
                    "password": PASSWORD,
                    "extra": {"retries": 3, "backoff": 0.05},
                }
            ),
        )
        yield srv


def ctx(ti: TI) -> Any:
    return {"ti": ti}


def operator(command: list[str]) -> ContainerJobOperator:
    return ContainerJobOperator(
        task_id="train",
        image="airflow-ml-provider/train:latest",
        command=command,
        entrypoint=["/bin/sh", "-c"],
        resources={"cpus": 0.5, "memory": "256Mi"},
        network="host",
        conn_id="dcos",
        poll_interval=0.2,
    )


def test_success_and_failure_map_to_the_task(server: MetronomeTestServer) -> None:
    ti = TI("run-ok")
    assert operator(["echo hello; exit 0"]).execute(ctx(ti)) is None
    assert ti.pushed["job"]["backend"] == "metronome"
    assert server.job_ids() == []  # removed after success
    with pytest.raises(ContainerJobFailed, match="failed") as err:
        operator(["exit 3"]).execute(ctx(TI("run-fail")))
    assert PASSWORD not in str(err.value)
    assert server.job_ids() == []
    for request in server.requests:
        if request.method == "GET":
            assert PASSWORD not in json.dumps(request._asdict(), default=str)


def test_on_kill_stops_the_run_and_deletes_the_job(server: MetronomeTestServer) -> None:
    op = operator(["sleep 60"])
    ti = TI("run-kill")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            op.execute(ctx(ti))
        except BaseException as e:  # collected for the assertion below
            errors.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while "job" not in ti.pushed or not server.job_ids():
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.1)
    time.sleep(1.0)
    op.on_kill()
    worker.join(30)
    assert not worker.is_alive()
    assert server.job_ids() == []
    assert errors, "a killed job must not look like a success"
