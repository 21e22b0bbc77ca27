"""``ml_pipeline`` on the demo's data: wall time per task under ``dag.test()`` and under the real scheduler.

Both contenders run the same DAG file (``dags/ml_pipeline.py``) on the same embedded defaults
(:class:`scripts.testbed.demo_stack.DemoStack`: the seeded SQLite source, the SQLite ERP, ``file://``
storage, Spark ``local[*]``, one local ``mlflow server``), with ``deploy=off`` in both (the Docker
deploy is the endpoint benchmark's subject, and a second run would not be promoted anyway):

* **ours: the real scheduler** -- :class:`~scripts.testbed.airflow_bed.AirflowBed` (api-server,
  scheduler with the LocalExecutor, dag-processor, triggerer; SQLite metadata), the run created
  through the REST API. Each task runs in its own supervised process, as in production.
* **baseline: ``dag.test()``** -- the same DAG in one Python process (a fresh Airflow home, the
  same connections), each task run in-process one after the other.

Two runs of each, in the order scheduler, ``dag.test()``, ``dag.test()``, scheduler on the same
stack (the first run pays cold caches, and only the first run registers the model's first version:
each side gets one early and one late run); each figure is the mean of its side's two runs. Per
task: the seconds from its start to its end as Airflow recorded them (``start_date`` to
``end_date`` of the task instance; a task process of the scheduler's imports its modules afresh,
``dag.test()`` runs every task in one warm process). On a 2-CPU machine the Airflow components
share the CPUs with the Spark applications: the last row is the CPU time their main processes used
during a scheduler run (the task processes not counted). The ``run (trigger to end)`` row is the whole run's wall
time: for the scheduler from the REST trigger to the run's end as seen by polling, for
``dag.test()`` the process's wall time minus its start-up (imports, parsing), measured inside it.
The ``scheduler overhead per task`` row is (scheduler run - ``dag.test()`` run) / tasks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Row, run_alone

#: The dag.test() run: a fresh home, prints RESULT {json} with the wall time and each TI's times.
_RUNNER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import importlib.util
spec = importlib.util.spec_from_file_location("ml_pipeline", sys.argv[2])
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
dag = module.dag
from airflow.utils.session import create_session
t0 = time.monotonic()
dr = dag.test(run_conf=json.loads(sys.argv[3]))
wall = time.monotonic() - t0
with create_session() as session:
    tis = {}
    for ti in dr.get_task_instances(session=session):
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        secs = (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else None
        tis[key] = {"state": str(ti.state), "seconds": secs}
print("RESULT " + json.dumps({"state": str(dr.state), "wall": wall, "tasks": tis}))
"""


def _dag_test_env(stack: Any, home: Path) -> dict[str, str]:
    """A migrated Airflow home for ``dag.test()`` with the stack's connections and the Spark pool; its environment."""
    from scripts.testbed.demo_stack import DAGS_FOLDER, SPARK_POOL

    env = {**stack._cli_env(), **stack.task_env()}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )
    home.mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([airflow, "pools", "set", SPARK_POOL, "1", "bench"], env=env, check=True, capture_output=True)
    return env


def _dag_test(env: dict[str, str], conf: dict[str, Any]) -> dict[str, Any]:
    """One ``dag.test()`` run (a process of its own) in the home of ``env``: its wall time and task times."""
    from scripts.testbed import ROOT
    from scripts.testbed.demo_stack import DAGS_FOLDER

    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(ROOT), str(DAGS_FOLDER / "ml_pipeline.py"), json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=env["AIRFLOW_HOME"],
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"dag.test() gave no result:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    if not result["state"].endswith("success"):
        raise RuntimeError(f"dag.test() run ended {result['state']}: {result['tasks']}\n{done.stderr[-5000:]}")
    return result


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` used so far (not their children's)."""
    import os

    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def _scheduled(stack: Any, conf: dict[str, Any]) -> dict[str, Any]:
    """One run through the stack's scheduler: its wall time (trigger to end), task times, and the CPU
    seconds the four Airflow components' main processes used meanwhile (not the task processes)."""
    from scripts.testbed.demo_stack import DAG_ID, task_times, watch_run

    components = list(stack.bed.component_pids().values())
    cpu = _cpu_seconds(components)
    started = time.monotonic()
    run_id = stack.trigger(conf)
    state = watch_run(stack.bed, run_id, timeout=1800, say=lambda _: None)
    wall = time.monotonic() - started
    cpu = _cpu_seconds(components) - cpu
    times = task_times(stack.bed, run_id)
    if state != "success":
        raise RuntimeError(f"the scheduler's run of {DAG_ID} ended {state}: {times}")
    return {"wall": wall, "tasks": times, "components_cpu": cpu}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def run(base: Path) -> list[Row]:
    """Two runs of each on one demo stack under ``base``, in the order scheduler, dag.test(), dag.test(),
    scheduler (so neither side gets only the cold or only the warm runs); the mean of each side per task,
    for the whole run, and the scheduler's overhead per task."""
    from scripts.testbed.demo_stack import DemoStack

    say = print
    stack = DemoStack(base / "stack", say=lambda line: say(f"bench ml_pipeline: {line}", flush=True), no_docker=True)
    conf = {"deploy": "off"}
    sched: list[dict[str, Any]] = []
    tested: list[dict[str, Any]] = []
    with stack.running() as running:
        env = _dag_test_env(running, base / "dag-test-home")
        for i, side in enumerate(("scheduler", "dag.test()", "dag.test()", "scheduler"), 1):
            if side == "scheduler":
                sched.append(_scheduled(running, conf))
            else:
                tested.append(_dag_test(env, running.conf(**conf)))
            wall = (sched if side == "scheduler" else tested)[-1]["wall"]
            say(f"bench ml_pipeline: run {i} of 4 ({side}): {wall:.1f} s", flush=True)
    rows = []
    for task, t in sorted(sched[0]["tasks"].items(), key=lambda kv: kv[1]["start"] or "~"):
        ours = [r["tasks"][task]["seconds"] for r in sched if r["tasks"].get(task, {}).get("seconds")]
        theirs = [r["tasks"][task]["seconds"] for r in tested if r["tasks"].get(task, {}).get("seconds")]
        if len(ours) < len(sched) or len(theirs) < len(tested):
            continue  # skipped (deploy=off): no time on either side
        how = "start to end of the task instance, mean of 2 runs each, same data and services"
        rows.append(Row(f"ml_pipeline task {t['label']}", _mean(ours), _mean(theirs), "s", "dag.test()", how))
    wall, test_wall = _mean([r["wall"] for r in sched]), _mean([r["wall"] for r in tested])
    how = "scheduler: REST trigger to run end by polling; dag.test(): the call, in-process; mean of 2 runs each"
    rows.append(Row("ml_pipeline run (trigger to end)", wall, test_wall, "s", "dag.test()", how))
    n = len(sched[0]["tasks"])
    rows.append(
        Row(
            "ml_pipeline scheduler overhead per task",
            (wall - test_wall) / n,
            test_wall / n,
            "s",
            "dag.test() seconds per task",
            f"(scheduler run - dag.test() run) / {n} tasks",
        )
    )
    rows.append(
        Row(
            "ml_pipeline Airflow components' CPU during a scheduler run",
            _mean([r["components_cpu"] for r in sched]),
            wall,
            "s",
            "the run's wall time",
            "user+system CPU of the api-server, scheduler, dag-processor and triggerer main processes "
            "(ratio: CPUs they kept busy; the benchmark polls the REST API twice a second)",
        )
    )
    return rows


if __name__ == "__main__":
    sys.exit(run_alone(run, "ml-pipeline"))
