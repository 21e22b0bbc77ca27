"""``bench_fanout_4`` and ``bench_fanout_45``: 45 countries fanned out over a pool, one mapped task per group.

Used by ``bench/fanout.py`` in a real Airflow. Every group's job is the same fixed 2 s container
(``sleep 2``), so the makespan shows what the scheduler, the pool and each task's start-up add.
The settings come from the environment at parse time: ``BENCH_IMAGE`` (default: the test bed's
base image) and ``BENCH_POOL`` (default ``bench_fanout``).
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

from airflow_ml_provider.operators.container import ContainerJobOperator
from airflow_ml_provider.utils.partitioning import split_into_groups

IMAGE = os.environ.get("BENCH_IMAGE", "airflow-ml-provider/base:bookworm")
POOL = os.environ.get("BENCH_POOL", "bench_fanout")
JOB_SECONDS = 2
COUNTRIES = [
    *["AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR", "HR", "HU"],
    *["IE", "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK"],
    *["US", "CA", "MX", "BR", "AR", "CL", "CO", "PE", "JP", "KR", "AU", "NZ", "IN"],
]
assert len(COUNTRIES) == 45

for n_groups in (4, 45):
    with DAG(
        dag_id=f"bench_fanout_{n_groups}",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1),
        catchup=False,
        max_active_tasks=64,
        tags=["bench"],
    ):
        ContainerJobOperator.partial(
            task_id="country_group",
            image=IMAGE,
            command=["sh", "-c", f'echo "countries: $COUNTRIES"; sleep {JOB_SECONDS}'],
            network="none",
            pool=POOL,
        ).expand(environment=[{"COUNTRIES": " ".join(group)} for group in split_into_groups(COUNTRIES, n_groups)])
