"""Fan-out makespan: 45 countries over a 4-slot pool, each group one mapped 2 s container job.

A real Airflow (api-server, scheduler, triggerer, dag-processor; LocalExecutor with parallelism 8, so
the pool and not the executor is the limit) runs ``bench/dags/fanout.py``: ``ContainerJobOperator``
mapped with ``.expand()`` over ``split_into_groups(countries, n)``, every job ``sleep 2`` in the base
image, every task in the pool. The makespan is the last mapped task's end minus the first one's start
(task-instance ``start_date``/``end_date`` from the REST API); the baseline is the ideal schedule,
``ceil(n / slots) * 2 s`` -- only the jobs' own run time, no start-up at all. The ratio shows what
scheduling, the pool and each task's start-up (a task process, the docker client, container create
and start, removal; on a 2-CPU machine) add to the jobs' run time.

A first, untimed run warms the executor's workers up (the cold one took ~22 s for 4 groups), so no
figure carries their start-up; the 4-group DAG then runs three times (median), the 45-group one once.
"""

from __future__ import annotations

import math
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import Row, run_alone

DAG_FILE = Path(__file__).resolve().parent / "dags" / "fanout.py"
POOL = "bench_fanout"
SLOTS = 4
JOB_SECONDS = 2.0
N_COUNTRIES = 45
GROUPS = (SLOTS, N_COUNTRIES)
RUN_TIMEOUT = 150.0
#: Runs per DAG (the median makespan counts): the short fan-out is cheap and noisier, the long one ~70 s.
REPEATS = {SLOTS: 3, N_COUNTRIES: 1}


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _peak(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at once."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def _run_once(bed: Any, n_groups: int) -> dict[str, float]:
    """Trigger ``bench_fanout_<n>`` and wait for it; makespan, mean task duration, peak concurrency."""
    dag_id = f"bench_fanout_{n_groups}"
    run_id = bed.trigger(dag_id)
    state = bed.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    body = bed.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{bed._q(run_id)}/taskInstances?limit=100")
    tis = [t for t in body["task_instances"] if t["task_id"] == "country_group"]
    bad = {t["map_index"]: t["state"] for t in tis if t["state"] != "success"}
    if state != "success" or bad or len(tis) != n_groups:
        detail = bed.task_log(dag_id, run_id, "country_group", map_index=min(bad)) if bad else ""
        raise RuntimeError(
            f"{dag_id} ended {state} with {len(tis)} mapped tasks, not successful: {bad}\n{detail[-3000:]}"
        )
    intervals = [(_ts(t["start_date"]), _ts(t["end_date"])) for t in tis]
    if _peak(intervals) > SLOTS:
        raise RuntimeError(f"{_peak(intervals)} tasks of {dag_id} ran at once in a pool of {SLOTS} slots")
    return {
        "makespan": max(e for _, e in intervals) - min(s for s, _ in intervals),
        "mean_task": sum(e - s for s, e in intervals) / len(intervals),
        "peak": _peak(intervals),
    }


def measure(workdir: Path) -> dict[int, dict[str, float]]:
    """Run the 4-group DAG once untimed, then each DAG ``REPEATS`` times; n_groups -> the median run's figures."""
    from scripts.testbed.airflow_bed import AirflowBed
    from scripts.testbed.docker_bed import ensure_base_image, ensure_dockerd

    ensure_dockerd()
    image = ensure_base_image()
    shutil.rmtree(workdir, ignore_errors=True)
    dags = workdir / "dags"
    dags.mkdir(parents=True)
    shutil.copy2(DAG_FILE, dags / DAG_FILE.name)
    env = {"AIRFLOW__CORE__PARALLELISM": "8", "BENCH_IMAGE": image, "BENCH_POOL": POOL}
    bed = AirflowBed(workdir / "home", dags, env=env, pools={POOL: SLOTS}, database="postgres")
    bed.start()
    try:
        for n in GROUPS:
            bed.wait_for_dag(f"bench_fanout_{n}")
        _run_once(bed, SLOTS)  # warm-up: the executor's workers start and import on their first tasks
        results = {}
        for n in GROUPS:
            runs = sorted((_run_once(bed, n) for _ in range(REPEATS[n])), key=lambda r: r["makespan"])
            results[n] = {**runs[len(runs) // 2], "runs": len(runs)}
        return results
    finally:
        bed.stop()


def rows_from(results: dict[int, dict[str, float]]) -> list[Row]:
    rows = []
    for n, r in results.items():
        runs = int(r["runs"])
        how = f"median of {runs} runs; " if runs > 1 else ""
        how += f"real scheduler, LocalExecutor; {JOB_SECONDS:g} s jobs, mean task {r['mean_task']:.2f} s, "
        how += f"peak {r['peak']:.0f} at once; last end - first start of the mapped TIs"
        rows.append(
            Row(
                name=f"fan-out makespan: {N_COUNTRIES} countries in {n} mapped groups, pool of {SLOTS}",
                ours=r["makespan"],
                baseline=math.ceil(n / SLOTS) * JOB_SECONDS,
                unit="s",
                baseline_name=f"ideal: ceil({n}/{SLOTS}) * {JOB_SECONDS:g} s",
                note=how,
            )
        )
    return rows


def run(workdir: Path) -> list[Row]:
    """The two rows: makespan of 4 groups and of 45 groups against the ideal schedule."""
    return rows_from(measure(workdir))


if __name__ == "__main__":  # python -m bench.fanout
    sys.exit(run_alone(run, "fanout"))
