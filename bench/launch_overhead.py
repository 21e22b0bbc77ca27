"""Launch overhead: a task's wall time minus its container's own run time, ours against two baselines.

The same image (the test bed's base image) and the same trivial command (``python3 -c "print('hi')"``)
are started by three tools in one run, five counted times each (the median is reported):

* **ours**: ``ContainerJobOperator`` (defaults, ``network="none"``) as a real Airflow task;
* **docker CLI**: ``docker run --rm --network=none`` (``/usr/bin/docker``), timed around the process;
* **DockerOperator**: the stock operator of ``apache-airflow-providers-docker``
  (``network_mode="none"``, ``mount_tmp_dir=False``, ``auto_remove="force"`` so that it also removes
  its container whatever the outcome, as ours does), as a real Airflow task.

How the two operators run: both are tasks of one DAG (``bench/dags/launch_overhead.py``) executed by
``dag.test()`` in a subprocess with its own ``AIRFLOW_HOME`` (a migrated SQLite database). That is the
real task runner (``run_task_in_process``: the Execution API calls that mark the task running,
templates rendering, ``execute``, XCom pushes, the final state) without a scheduler or executor, whose
latencies would swamp the figure and have nothing to do with the operator. Both operators get exactly
the same treatment: round 0 runs one task of each to warm up (imports, the first docker client) and
is not counted; after it the rounds alternate which operator goes first. A task's wall time is
measured around dag.test's per-task function (``_run_task``, wrapped in the subprocess), in
``time.time_ns()``; for the CLI it is the ``docker run`` process's wall time (its rounds run just
before the DAG, one warm-up first too). Each round also runs a no-op PythonOperator task: its wall
time, Airflow's own cost of a task (~0.1 s on a 2-CPU VM, a fifth of either operator's overhead), is
shown in the notes; it is in both operators' figures and not in the CLI's.

Not measured: ``deferrable=True``. ``dag.test()`` runs the trigger inline, so the figure would be
mostly the trigger's ``poll_interval``, not what a real triggerer adds.

The container's own run time comes from ``docker events`` (followed in a thread for the whole run,
filtered by a per-run label every tool sets): ``die.timeNano - start.timeNano``. The ``create`` and
``destroy`` events also split each overhead into where it goes: before ``create`` (client, image
check, for ours the job lookup), ``create`` → ``start``, ``die`` → ``destroy`` (noticing the end,
reading the exit code and result, removing the container) and after ``destroy`` (XCom, final state).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Row, table

REPS = 5
COMMAND = ["python3", "-c", "print('hi')"]
DAG_FILE = Path(__file__).resolve().parent / "dags" / "launch_overhead.py"
DAG_ID = "bench_launch_overhead"
TOOLS = {"ours": "ContainerJobOperator", "cli": "docker run --rm (CLI)", "stock": "DockerOperator"}
#: The phases of one launch, between consecutive marks (see the module docstring).
PHASES = (
    ("pre-create", "begin", "create"),
    ("create→start", "create", "start"),
    ("run", "start", "die"),
    ("die→destroy", "die", "destroy"),
    ("after destroy", "destroy", "end"),
)


@dataclass
class Sample:
    """One launch: wall-clock marks in ns (``begin``/``end`` of the task, docker event times)."""

    tool: str
    task: str
    marks: dict[str, int] = field(default_factory=dict)

    def span(self, a: str, b: str) -> float:
        return (self.marks[b] - self.marks[a]) / 1e9

    @property
    def wall(self) -> float:
        return self.span("begin", "end")

    @property
    def run_time(self) -> float:
        return self.span("start", "die")

    @property
    def overhead(self) -> float:
        return self.wall - self.run_time


class EventLog:
    """``docker events`` for containers labelled ``bench.run=<run>``: task label -> action -> timeNano."""

    ACTIONS = ("create", "start", "die", "destroy")

    def __init__(self, client: Any, run: str) -> None:
        self.times: dict[str, dict[str, int]] = {}
        self._cond = threading.Condition()
        self._closing = False
        # Subscribed once events() returns (the engine has answered), so no event of ours is missed.
        self._stream = client.events(decode=True, filters={"type": "container", "label": f"bench.run={run}"})
        self._thread = threading.Thread(target=self._follow, name="docker-events", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for event in self._stream:
                action = event.get("Action") or event.get("status")
                task = ((event.get("Actor") or {}).get("Attributes") or {}).get("bench.task")
                if task and action in self.ACTIONS:
                    with self._cond:
                        self.times.setdefault(task, {}).setdefault(action, int(event["timeNano"]))
                        self._cond.notify_all()
        except Exception as e:  # close() ends the stream under us; anything else is worth a word
            if not self._closing:
                print(f"docker events stopped: {e!r}", file=sys.stderr)

    def wait_for(self, tasks: list[str], timeout: float = 10.0) -> None:
        """Wait until every task's container has all four events."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(set(self.ACTIONS) <= set(self.times.get(t, {})) for t in tasks):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = {t: sorted(set(self.ACTIONS) - set(self.times.get(t, {}))) for t in tasks}
                    raise RuntimeError(f"docker events missing: { {t: m for t, m in missing.items() if m} }")
                self._cond.wait(left)

    def close(self) -> None:
        self._closing = True
        self._stream.close()
        self._thread.join(timeout=5)


def _run_cli(image: str, run: str, task: str) -> dict[str, int]:
    from scripts.testbed.docker_bed import docker_cli

    cmd = [
        docker_cli(),
        "run",
        "--rm",
        "--network=none",
        "--label",
        f"bench.run={run}",
        "--label",
        f"bench.task={task}",
    ]
    begin = time.time_ns()
    done = subprocess.run([*cmd, image, *COMMAND], capture_output=True, text=True, check=False)
    end = time.time_ns()
    if done.returncode != 0 or done.stdout.strip() != "hi":
        raise RuntimeError(f"docker run exited {done.returncode}: {done.stdout[-500:]} {done.stderr[-1000:]}")
    return {"begin": begin, "end": end}


def _run_operators(workdir: Path, image: str, run: str) -> dict[str, dict[str, int]]:
    """Run the benchmark DAG with dag.test() in a subprocess; task_id -> {begin, end} (ns)."""
    from scripts.testbed.airflow_bed import AirflowBed

    shutil.rmtree(workdir, ignore_errors=True)
    dags = workdir / "dags"
    dags.mkdir(parents=True)
    shutil.copy2(DAG_FILE, dags / DAG_FILE.name)
    bed = AirflowBed(workdir / "home", dags)  # only its environment and CLI: no component is started
    bed.home.mkdir(parents=True, exist_ok=True)
    bed.cli("db", "migrate")
    result = workdir / "tasks.json"
    log = workdir / "dag_test.log"
    env = {**bed.env, "BENCH_IMAGE": image, "BENCH_LAUNCH_REPS": str(REPS), "BENCH_RUN": run}
    root = Path(__file__).resolve().parent.parent
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "bench.launch_overhead", "--dag-test", str(dags / DAG_FILE.name), str(result)],
            env=env,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    if done.returncode != 0 or not result.exists():
        raise RuntimeError(f"dag.test() subprocess exited {done.returncode}; log {log}:\n{tail}")
    tasks: dict[str, dict[str, Any]] = json.loads(result.read_text())
    failed = {t: v["state"] for t, v in tasks.items() if v["state"] != "success"}
    if failed:
        raise RuntimeError(f"tasks did not succeed: {failed}; log {log}:\n{tail}")
    return {t: {"begin": v["begin"], "end": v["end"]} for t, v in tasks.items()}


def _dag_test(dag_file: str, result: str) -> int:
    """In the subprocess: run the DAG with dag.test(), timing each task run; write task_id -> marks."""
    import importlib.util

    import airflow.sdk.definitions.dag as dag_module

    spec = importlib.util.spec_from_file_location("bench_launch_overhead_dag", dag_file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    marks: dict[str, dict[str, Any]] = {}
    original = dag_module._run_task

    def timed(*, ti: Any, task: Any, run_triggerer: bool = False) -> Any:
        begin = time.time_ns()
        try:
            return original(ti=ti, task=task, run_triggerer=run_triggerer)
        finally:
            marks[ti.task_id] = {
                "begin": begin,
                "end": time.time_ns(),
                "state": str(getattr(ti.state, "value", ti.state)),
            }

    dag_module._run_task = timed
    try:
        module.dag.test()
    finally:
        dag_module._run_task = original
    Path(result).write_text(json.dumps(marks))
    return 0


@dataclass
class Measurement:
    """All samples, and ``floor``: the median wall time of a no-op task in the same dag.test() run."""

    samples: list[Sample]
    floor: float


def measure(workdir: Path, reps: int = REPS) -> Measurement:
    """Launch the container ``reps`` times with each tool (after one warm-up each); the samples."""
    import docker

    from scripts.testbed.docker_bed import ensure_base_image, ensure_dockerd

    ensure_dockerd()
    image = ensure_base_image()
    run = uuid.uuid4().hex[:12]
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", version="auto")
    events = EventLog(client, run)
    try:
        samples: list[Sample] = []
        for i in range(reps + 1):
            marks = _run_cli(image, run, f"cli_{i}")
            if i:
                samples.append(Sample("cli", f"cli_{i}", marks))
        tasks = _run_operators(workdir, image, run)
        noop = [(tasks[f"noop_{i}"]["end"] - tasks[f"noop_{i}"]["begin"]) / 1e9 for i in range(1, reps + 1)]
        for tool in ("ours", "stock"):
            samples += [Sample(tool, f"{tool}_{i}", tasks[f"{tool}_{i}"]) for i in range(1, reps + 1)]
        events.wait_for([s.task for s in samples])
    finally:
        events.close()
        client.close()
    for s in samples:
        s.marks.update(events.times[s.task])
    return Measurement(samples, statistics.median(noop))


def median_by_tool(samples: list[Sample], value: Any) -> dict[str, float]:
    return {t: statistics.median(value(s) for s in samples if s.tool == t) for t in TOOLS}


def breakdown(samples: list[Sample]) -> str:
    """A Markdown table: median seconds of each phase per tool."""
    lines = [
        "| tool | wall | overhead | " + " | ".join(p for p, _, _ in PHASES) + " |",
        "|---|" + "---:|" * (2 + len(PHASES)),
    ]
    wall = median_by_tool(samples, lambda s: s.wall)
    over = median_by_tool(samples, lambda s: s.overhead)
    for tool, label in TOOLS.items():
        parts = [statistics.median(s.span(a, b) for s in samples if s.tool == tool) for _, a, b in PHASES]
        cells = " | ".join(f"{p:.3f}" for p in parts)
        lines.append(f"| {label} | {wall[tool]:.3f} | {over[tool]:.3f} | {cells} |")
    return "\n".join(lines)


def rows_from(m: Measurement) -> list[Row]:
    over = median_by_tool(m.samples, lambda s: s.overhead)
    run = median_by_tool(m.samples, lambda s: s.run_time)
    n = sum(1 for s in m.samples if s.tool == "ours")
    how = (
        f"median of {n}; wall - container run (docker events start→die, ~{run['ours']:.2f} s); "
        f"operators as tasks of one dag.test() run (a no-op task there: {m.floor:.2f} s), base image, `python3 -c`"
    )
    baselines = (
        ("docker CLI", "cli", "`docker run --rm --network=none`"),
        ("DockerOperator", "stock", "DockerOperator (auto_remove=force)"),
    )
    return [
        Row(f"launch overhead: ContainerJobOperator vs {vs}", over["ours"], over[tool], "s", baseline_name, how)
        for vs, tool, baseline_name in baselines
    ]


def run(workdir: Path) -> list[Row]:
    """The two rows: our operator's launch overhead against the docker CLI's and DockerOperator's."""
    return rows_from(measure(workdir))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--dag-test"]:
        return _dag_test(argv[1], argv[2])
    from scripts.testbed import TESTBED

    started = time.monotonic()
    m = measure(TESTBED / "bench" / "launch")
    print(table(rows_from(m)))
    print(f"\nmedian seconds per phase ({time.monotonic() - started:.0f} s in all):\n")
    print(breakdown(m.samples))
    print(f"\nno-op PythonOperator task in the same dag.test() run: {m.floor:.3f} s (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
