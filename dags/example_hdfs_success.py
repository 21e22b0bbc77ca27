r"""Wait for a week's per-country partitions on HDFS, then report what arrived.

The shape our users start from: one `_SUCCESS` marker per country partition
(`<base_path>/week=YYYY-MM-DD/country=XX/_SUCCESS`), written by the upstream export. The
sensor waits for all of them in the triggerer (no worker slot held) and, with `fresh_since`,
ignores markers left over from earlier runs. The week is the run's logical date: the Monday
08:00 UTC of a scheduled run, the moment of a triggered one.

## Before the first run

Create an `ml_hdfs` connection named `ml_hdfs_default` (NameNodes in failover order):

```bash
airflow connections add ml_hdfs_default --conn-type ml_hdfs \
    --conn-host 'nn1.corp,nn2.corp' --conn-port 9870 --conn-login etl
```

## Quick start on local disk (`file://`)

A connection whose host is `file:///some/dir` reads the local disk under that directory. Make
today's markers for the default countries, then press Trigger without changing anything:

```bash
airflow connections add ml_hdfs_default --conn-type ml_hdfs --conn-host file:///tmp/lake
for c in DE FR IT ES PL; do
    mkdir -p /tmp/lake/data/sales/week=$(date -u +%F)/country=$c
    touch /tmp/lake/data/sales/week=$(date -u +%F)/country=$c/_SUCCESS
done
```

## Schedule and backfill

No catch-up: unpausing the DAG, also with the Trigger form's "Unpause" box, starts nothing by
itself. The first scheduled run is the next Monday 08:00 UTC; a run you trigger starts at once.
Earlier weeks run only when you ask for them (Trigger → Backfill in the UI, or the CLI; both
dates inclusive, a bare date means 00:00 UTC). Its runs start while the DAG is unpaused; a
backfill runs up to 10 weeks at once unless told otherwise, so keep the DAG's one at a time:

```bash
airflow backfill create --dag-id example_hdfs_success --max-active-runs 1 \
    --from-date 2026-11-02 --to-date 2026-11-23T08:00:00+00:00
```
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.sdk import CronTriggerTimetable, Param, dag, task

from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor

DEFAULT_COUNTRIES = ["DE", "FR", "IT", "ES", "PL"]

#: Task output goes through logging: print() lands in a collapsed "task.stdout" group of the task
#: log. Named explicitly: the dag-processor loads this file under a mangled module name.
log = logging.getLogger("example_hdfs_success")


def partition_paths(base_path: str, week: str, countries: list[str]) -> list[str]:
    """One directory per country partition of the week (a template macro)."""
    return [f"{base_path.rstrip('/')}/week={week}/country={c}" for c in countries]


@dag(
    # Mondays 08:00 UTC. No start_date and run_immediately=0: unpausing starts nothing by itself (with a
    # past start_date even catchup=False runs the latest past Monday at once, ahead of a triggered run);
    # past weeks run only when backfilled (see the docs above).
    schedule=CronTriggerTimetable("0 8 * * 1", timezone="UTC", run_immediately=dt.timedelta(0)),
    catchup=False,
    max_active_runs=1,
    # Retries: Airflow <= 3.3.2 can fail a deferred task whose trigger fired before the scheduler
    # handled the deferral (apache/airflow#67287); a retry finds the markers at its first poke.
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=1)},
    tags=["example", "hdfs"],
    doc_md=__doc__,
    params={
        "base_path": Param(
            "/data/sales",
            type="string",
            description="Directory holding week=YYYY-MM-DD/country=XX/ (on the NameNodes of ml_hdfs_default, "
            "or under its file:// directory).",
        ),
        "countries": Param(
            DEFAULT_COUNTRIES, type="array", description="Country partitions to wait for, one per line."
        ),
        "fresh_since": Param(
            None,
            type=["null", "string"],
            description="ISO timestamp, e.g. 2026-11-23T06:00:00+00:00: older markers are stale leftovers and "
            "do not count. Empty: any marker counts.",
        ),
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
        """Log each marker found and when it was written; return how many."""
        for m in markers:
            log.info("%s written at %s", m["path"], m["modification_time"])
        return len(markers)

    summarize(wait.output)  # type: ignore[arg-type]  # an XComArg, resolved to the list at run time


example_dag = example_hdfs_success()
