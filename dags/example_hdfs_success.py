"""Wait for a week's per-country partitions on HDFS, then report what arrived.

The shape our users start from: one ``_SUCCESS`` marker per country partition, written by the
upstream export; the sensor waits for all of them in the triggerer (no worker slot held) and
ignores markers left over from earlier weeks. Trigger it from the UI with another
``base_path`` or ``countries`` to try it on your own data.

Needs an ``ml_hdfs`` connection named ``ml_hdfs_default`` (or set its host to
``file:///some/dir`` to run against a local directory).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor

DEFAULT_COUNTRIES = ["DE", "FR", "IT", "ES", "PL"]


def partition_paths(base_path: str, week: str, countries: list[str]) -> list[str]:
    """One directory per country partition of the week (a template macro)."""
    return [f"{base_path.rstrip('/')}/week={week}/country={c}" for c in countries]


@dag(
    schedule="0 8 * * 1",
    start_date=dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    # Retries: Airflow <= 3.3.2 can fail a deferred task whose trigger fired before the scheduler
    # handled the deferral (apache/airflow#67287); a retry finds the markers at its first poke.
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=1)},
    tags=["example", "hdfs"],
    params={
        "base_path": Param("/data/sales", type="string", description="Directory holding week=YYYY-MM-DD/."),
        "countries": Param(DEFAULT_COUNTRIES, type="array", description="Country partitions to wait for."),
        "fresh_since": Param("", type="string", description="ISO timestamp; older markers are stale. Empty: any."),
    },
    user_defined_macros={"partition_paths": partition_paths},
    render_template_as_native_obj=True,
)
def example_hdfs_success() -> None:
    """Wait for every country's partition of the week, then summarize."""
    wait = HdfsSuccessSensor(
        task_id="wait_for_week",
        paths="{{ partition_paths(params.base_path, (data_interval_end or dag_run.run_after) | ds, "
        "params.countries) }}",
        newer_than="{{ params.fresh_since or None }}",
        deferrable=True,
        poke_interval=60,
        timeout=6 * 3600,
    )

    @task
    def summarize(markers: list[dict[str, Any]]) -> int:
        for m in markers:
            print(f"{m['path']} written at {m['modification_time']}")
        return len(markers)

    summarize(wait.output)  # type: ignore[arg-type]  # an XComArg, resolved to the list at run time


example_dag = example_hdfs_success()
