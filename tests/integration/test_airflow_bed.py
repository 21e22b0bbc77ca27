"""The Airflow test bed itself: a real Airflow 3 runs a deferrable sensor, respects a pool, stops cleanly."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.testbed.airflow_bed import AirflowBed, AirflowBedError
from tests.integration.conftest import running_airflow

pytestmark = pytest.mark.integration

SENSOR_DAG = "bed_deferrable_sensor"
POOL_DAG = "bed_pool_limit"
POOL = "bed_single_slot"

DAG_FILE = textwrap.dedent(
    f"""
    from __future__ import annotations

    import datetime as dt
    import time

    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
    from airflow.sdk import DAG


    def _hold() -> None:
        time.sleep(2)


    def _finish() -> str:
        print("bed sensor dag finished")
        return "done"


    with DAG({SENSOR_DAG!r}, schedule=None, start_date=dt.datetime(2024, 1, 1), catchup=False):
        wait = TimeDeltaSensor(task_id="wait", delta=dt.timedelta(seconds=15), deferrable=True)
        finish = PythonOperator(task_id="finish", python_callable=_finish)
        wait >> finish


    with DAG({POOL_DAG!r}, schedule=None, start_date=dt.datetime(2024, 1, 1), catchup=False):
        for i in range(3):
            PythonOperator(task_id=f"hold_{{i}}", python_callable=_hold, pool={POOL!r})
    """
)


@pytest.fixture(scope="module")
def bed() -> Iterator[AirflowBed]:
    """One Airflow deployment for this module, with the scratch DAGs and a one-slot pool."""
    with running_airflow("airflow-bed", {"bed_dags.py": DAG_FILE}, pools={POOL: 1}, timeout=180) as airflow:
        yield airflow


def test_deferrable_sensor_defers_then_succeeds(bed: AirflowBed) -> None:
    """A deferrable TimeDeltaSensor is seen `deferred` (in the triggerer), then the whole run succeeds."""
    bed.wait_for_dag(SENSOR_DAG, timeout=60)
    run_id = bed.trigger(SENSOR_DAG)

    assert bed.wait_for_task_state(SENSOR_DAG, run_id, "wait", {"deferred"}, timeout=60) == "deferred"
    assert bed.wait_for_run(SENSOR_DAG, run_id, timeout=120) == "success"
    assert bed.task_state(SENSOR_DAG, run_id, "wait") == "success"
    assert bed.task_state(SENSOR_DAG, run_id, "finish") == "success"
    assert "bed sensor dag finished" in bed.task_log(SENSOR_DAG, run_id, "finish")


def test_pool_limits_concurrency(bed: AirflowBed) -> None:
    """Three tasks in a one-slot pool run strictly one after another."""
    pool = bed.api("GET", f"/api/v2/pools/{POOL}")
    assert pool["slots"] == 1
    bed.wait_for_dag(POOL_DAG, timeout=60)
    run_id = bed.trigger(POOL_DAG)

    state = bed.wait_for_run(POOL_DAG, run_id, timeout=120)
    assert state == "success", bed.task_states(POOL_DAG, run_id)
    tis = bed.api("GET", f"/api/v2/dags/{POOL_DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]
    spans = sorted(
        (dt.datetime.fromisoformat(ti["start_date"]), dt.datetime.fromisoformat(ti["end_date"]), ti["task_id"])
        for ti in tis
    )
    assert len(spans) == 3
    assert all(ti["pool"] == POOL and ti["state"] == "success" for ti in tis)
    for (_, prev_end, prev), (start, _, task) in itertools.pairwise(spans):
        assert start >= prev_end, f"{task} started before {prev} ended: {spans}"


def test_wait_for_dag_reports_import_errors(bed: AirflowBed) -> None:
    """A DAG file that does not import makes wait_for_dag fail with the import error."""
    broken = bed.dags_folder / "bed_broken.py"
    broken.write_text("from airflow.sdk import DAG\nraise RuntimeError('bed broken dag marker')\n")
    try:
        with pytest.raises(AirflowBedError, match="bed broken dag marker"):
            bed.wait_for_dag("bed_broken", timeout=8)
    finally:
        broken.unlink()


def test_stop_leaves_no_process(bed: AirflowBed) -> None:
    """stop() ends every component and everything they spawned; a second stop() is a no-op."""
    started = bed.pids()
    assert len(started) >= 4  # api-server, scheduler, triggerer, dag-processor (+ their children)
    assert os.getpid() not in started

    bed.stop()
    bed.stop()

    assert not bed.pids()
    left = [pid for pid in started if Path(f"/proc/{pid}").exists()]
    assert not left, f"processes left behind (or unreaped): {left}"
