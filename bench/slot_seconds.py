"""Worker slot-seconds held while waiting 60 s for a marker: deferrable vs poke mode.

Both sensors run at once in a real Airflow (scheduler, triggerer, LocalExecutor). The task
instance states are sampled through the REST API; time in state ``running`` is time holding a
worker slot (``deferred`` tasks wait in the triggerer and hold none).
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

from bench.common import Row

WAIT = 60.0
DAG = textwrap.dedent(
    """
    import datetime as dt
    from airflow.sdk import DAG
    from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor

    for name, deferrable in (("bench_poke", False), ("bench_defer", True)):
        with DAG(dag_id=name, schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False):
            HdfsSuccessSensor(task_id="wait", paths="/bench/slots/" + name, poke_interval=5,
                              timeout=600, deferrable=deferrable, mode="poke")
    """
)


def run(cluster: Any, workdir: Path) -> list[Row]:
    """Wait 60 s for a marker in both modes at once; integrate the time each held a slot."""
    from hdfs import InsecureClient

    from scripts.testbed.airflow_bed import AirflowBed

    admin = InsecureClient(cluster.namenode_urls[0], user=cluster.superuser)
    for name in ("bench_poke", "bench_defer"):
        admin.delete(f"/bench/slots/{name}", recursive=True)
        admin.makedirs(f"/bench/slots/{name}")
    dags = workdir / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    (dags / "bench_slots.py").write_text(DAG)
    host = ",".join(u.removeprefix("http://") for u in cluster.namenode_urls)
    env = {"AIRFLOW_CONN_ML_HDFS_DEFAULT": json.dumps({"conn_type": "ml_hdfs", "host": host, "login": "etl"})}
    bed = AirflowBed(workdir / "home", dags, env=env)
    bed.start()
    try:
        for name in ("bench_poke", "bench_defer"):
            bed.wait_for_dag(name)
        runs = {name: bed.trigger(name) for name in ("bench_poke", "bench_defer")}
        running = {name: 0.0 for name in runs}
        seen: dict[str, set[str]] = {name: set() for name in runs}
        started = last = time.monotonic()
        written = False
        done: set[str] = set()
        while len(done) < len(runs):
            time.sleep(0.5)
            now = time.monotonic()
            for name, run_id in runs.items():
                if name in done:
                    continue
                state = bed.task_state(name, run_id, "wait")
                seen[name].add(str(state))
                if state == "running":
                    running[name] += now - last
                if state in ("success", "failed", "upstream_failed", "skipped"):
                    if state != "success":
                        raise RuntimeError(f"{name} ended {state}: {bed.task_log(name, run_id, 'wait')[-2000:]}")
                    done.add(name)
            last = now
            if not written and now - started >= WAIT:
                for name in runs:
                    admin.write(f"/bench/slots/{name}/_SUCCESS", data=b"")
                written = True
            if now - started > WAIT + 240:
                raise RuntimeError(f"timed out; states seen {seen}; {bed.logs_tail()}")
        if "deferred" not in seen["bench_defer"]:
            raise RuntimeError(f"the deferrable sensor never deferred: {seen}")
    finally:
        bed.stop()
    return [
        Row(
            name=f"worker slot-seconds while waiting {WAIT:.0f} s for a marker",
            ours=running["bench_defer"],
            baseline=running["bench_poke"],
            unit="slot-s",
            baseline_name="same sensor, mode=poke",
            note="real scheduler+triggerer, LocalExecutor; time in state 'running' sampled every 0.5 s",
        )
    ]
