"""``bench_launch_overhead``: the same trivial container, started by ContainerJobOperator and DockerOperator.

Used by ``bench/launch_overhead.py`` through ``dag.test()``. Round 0 warms both operators up (imports,
first docker client) and is not counted; each later round runs a no-op PythonOperator task (what a task
costs in Airflow without any container) and one task of each operator, alternating which operator goes
first. The settings come from the environment at parse time:

* ``BENCH_IMAGE``: the image (default: the test bed's base image);
* ``BENCH_LAUNCH_REPS``: counted rounds (default 5);
* ``BENCH_RUN``: a label value that tells this run's containers apart in ``docker events``.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, BaseOperator

from airflow_ml_provider.operators.container import ContainerJobOperator

IMAGE = os.environ.get("BENCH_IMAGE", "airflow-ml-provider/base:bookworm")
REPS = int(os.environ.get("BENCH_LAUNCH_REPS", "5"))
RUN = os.environ.get("BENCH_RUN", "manual")
COMMAND = ["python3", "-c", "print('hi')"]


def nothing() -> None:
    """The no-op task's callable: what a task costs in Airflow before any container."""


def labels(task_id: str) -> dict[str, str]:
    return {"bench.run": RUN, "bench.task": task_id}


with DAG(
    dag_id="bench_launch_overhead",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    tags=["bench"],
) as dag:
    previous: BaseOperator | None = None
    for i in range(REPS + 1):
        ours = ContainerJobOperator(
            task_id=f"ours_{i}", image=IMAGE, command=COMMAND, network="none", labels=labels(f"ours_{i}")
        )
        stock = DockerOperator(
            task_id=f"stock_{i}",
            image=IMAGE,
            command=COMMAND,
            docker_url="unix:///var/run/docker.sock",
            network_mode="none",
            auto_remove="force",  # removed whatever the outcome, like ours
            mount_tmp_dir=False,
            labels=labels(f"stock_{i}"),
        )
        noop = PythonOperator(task_id=f"noop_{i}", python_callable=nothing)
        for task in (noop, ours, stock) if i % 2 == 0 else (noop, stock, ours):
            if previous is not None:
                previous >> task
            previous = task
