"""One triggerer holding N deferred marker waits (N = 100, 500, 1000): its CPU, memory, logs and requests.

Three variants, each in a fresh real Airflow 3 (PostgreSQL, LocalExecutor, Airflow's default
INFO logging) running ``bench/dags/triggerer_scale.py``: N waits over 50 directories
(N/50 waits on each directory's ``_SUCCESS``), ``poke_interval=10``:

* ``stock`` -- the standard provider's ``FileSensor(deferrable=True)`` on local files (baseline);
* ``ours`` -- ``HdfsSuccessSensor(deferrable=True)`` on ``file://`` directories;
* ``ours_hdfs`` -- the same on a real NameNode, reached through a counting proxy.

Within one bed N grows step by step (one more DAG run per step). Per step: seconds from the
trigger until all N task instances are ``deferred``; then, once every trigger is assigned and has
polled, a 60 s window: CPU of the triggerer's whole process tree (main process, trigger runner,
children) as % of one core, its RSS at the end, the bytes of trigger logs written, and (HDFS)
the WebHDFS requests. After the last window all 50 markers are written at once and the time
until all N tasks are ``success`` is measured.

``BENCH_TRIGGERER_SIZES`` (default ``100,500,1000``) sets the steps; ``BENCH_TRIGGERER_VARIANTS``
(default all three) picks variants; ``BENCH_TRIGGERER_PARALLELISM`` the LocalExecutor's
parallelism (default 32). ``python -m bench.triggerer_scale`` runs it alone (its own HDFS).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Row, run_alone
from scripts.testbed.proc_usage import cpu_percent, sample_tree

DAG_FILE = Path(__file__).resolve().parent / "dags" / "triggerer_scale.py"
VARIANTS = ("stock", "ours", "ours_hdfs")
DIRS = 50
POKE_INTERVAL = 10.0
WINDOW = 60.0
HDFS_ROOT = "/bench/triggerer_scale"
STOCK = "stock FileSensor (local)"


def _sizes() -> list[int]:
    sizes = [int(s) for s in os.environ.get("BENCH_TRIGGERER_SIZES", "100,500,1000").split(",") if s.strip()]
    if not sizes or sizes != sorted(set(sizes)) or sizes[0] <= 0:
        raise ValueError(f"BENCH_TRIGGERER_SIZES={sizes}: give increasing positive sizes, e.g. 100,500,1000")
    return sizes


@dataclass
class Step:
    """What one step measured: N waits held by the triggerer.

    :param n: deferred waits held.
    :param defer_seconds: from triggering this step's run until all N were ``deferred``.
    :param cpu_pct: triggerer process tree CPU over the window, % of one core.
    :param rss_mib: the tree's summed RSS at the end of the window, MiB.
    :param trigger_log_bytes: bytes of trigger logs (the bed's log folder) written in the window.
    :param component_log_bytes: bytes the triggerer wrote to its own stdout log in the window.
    :param requests: WebHDFS requests in the window (``ours_hdfs`` only).
    """

    n: int
    defer_seconds: float
    cpu_pct: float
    rss_mib: float
    trigger_log_bytes: int
    component_log_bytes: int
    requests: int | None = None
    ops: dict[str, int] = field(default_factory=dict)


@dataclass
class VariantResult:
    """All steps of one variant, then the markers' release.

    :param variant: ``stock``, ``ours`` or ``ours_hdfs``.
    :param steps: one per size.
    :param success_seconds: from writing the markers until all N tasks were ``success``.
    :param wall_seconds: the variant's whole run, bed start to stop.
    """

    variant: str
    steps: list[Step] = field(default_factory=list)
    success_seconds: float = 0.0
    wall_seconds: float = 0.0


class _States:
    """Task-instance state counts of the bed's ``triggerer_scale_*`` DAGs, straight from PostgreSQL."""

    def __init__(self, database: str) -> None:
        import psycopg2

        self._conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=database, connect_timeout=10)
        self._conn.autocommit = True

    def counts(self) -> dict[str, int]:
        with self._conn.cursor() as cur:
            cur.execute(
                "SELECT coalesce(state, 'none'), count(*) FROM task_instance "
                "WHERE dag_id LIKE 'triggerer_scale%%' GROUP BY 1"
            )
            return {str(state): int(n) for state, n in cur.fetchall()}

    def assigned_triggers(self) -> int:
        """Triggers of deferred task instances that a triggerer has picked up."""
        with self._conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
                "WHERE ti.state = 'deferred' AND t.triggerer_id IS NOT NULL"
            )
            row = cur.fetchone()
            return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()


def _wait_for(bed: Any, states: _States, what: str, done: Any, timeout: float) -> float:
    """Poll ``done(counts)`` every 0.5 s; seconds taken. Fail loudly on a failed task, a dead bed or timeout."""
    from scripts.testbed.airflow_bed import AirflowBedError

    started = time.monotonic()
    while True:
        counts = states.counts()
        if done(counts):
            return time.monotonic() - started
        bad = {s: n for s, n in counts.items() if s in ("failed", "upstream_failed", "up_for_retry", "skipped")}
        if bad or time.monotonic() - started > timeout:
            why = f"tasks ended {bad}" if bad else f"timed out after {timeout:.0f} s"
            raise AirflowBedError(f"waiting for {what}: {why}; states {counts}\n{bed.logs_tail(60)}")
        bed.check_alive()
        time.sleep(0.5)


def _log_bytes(bed: Any) -> tuple[int, int]:
    """(bytes of trigger log files under the bed's log folder, bytes of the triggerer's stdout log)."""
    trigger = 0
    for path in bed.log_dir.rglob("*.log.trigger.*"):  # attempt=N.log.trigger.<triggerer job id>.log
        with contextlib.suppress(OSError):
            if path.is_file():
                trigger += path.stat().st_size
    component = bed.component_log_dir / "triggerer.log"
    return trigger, component.stat().st_size if component.exists() else 0


def _bed_env(variant: str, root: str, sizes: list[int], conn: str | None, parallelism: int) -> dict[str, str]:
    env = {
        "TRIGGERER_SCALE_VARIANT": variant,
        "TRIGGERER_SCALE_ROOT": root,
        "TRIGGERER_SCALE_SIZES": ",".join(map(str, sizes)),
        # a default deployment logs at INFO; bench/__main__.py's WARNING must not leak in
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": str(max(128, parallelism)),
        "AIRFLOW__CORE__MAX_MAP_LENGTH": str(max(1024, max(b - a for a, b in zip([0, *sizes], sizes, strict=False)))),
        "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": str(parallelism),
        "AIRFLOW__TRIGGERER__CAPACITY": str(max(1000, sizes[-1])),
        "AIRFLOW_CONN_FS_DEFAULT": json.dumps({"conn_type": "fs", "extra": {"path": "/"}}),
    }
    if conn is not None:
        env["AIRFLOW_CONN_ML_HDFS_DEFAULT"] = conn
    return env


@contextlib.contextmanager
def _markers(variant: str, workdir: Path, cluster: Any) -> Iterator[tuple[str, Callable[[], None], Any]]:
    """The marker root, a function writing all 50 markers, and the counting proxy (HDFS only, else None)."""
    if variant != "ours_hdfs":
        root = workdir / "markers"
        shutil.rmtree(root, ignore_errors=True)
        for d in range(DIRS):
            (root / f"d{d:02d}").mkdir(parents=True)

        def write_local() -> None:
            for d in range(DIRS):
                (root / f"d{d:02d}" / "_SUCCESS").touch()

        yield str(root), write_local, None
        return
    from hdfs import InsecureClient

    from scripts.testbed.counting_proxy import CountingProxy

    admin = InsecureClient(cluster.namenode_urls[0], user=cluster.superuser, timeout=60)
    admin.delete(HDFS_ROOT, recursive=True)
    for d in range(DIRS):
        admin.makedirs(f"{HDFS_ROOT}/d{d:02d}")

    def write_hdfs() -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda d: admin.write(f"{HDFS_ROOT}/d{d:02d}/_SUCCESS", data=b""), range(DIRS)))

    with CountingProxy(cluster.namenode_urls[0]) as proxy:
        yield HDFS_ROOT, write_hdfs, proxy


def run_variant(variant: str, workdir: Path, sizes: list[int], cluster: Any = None) -> VariantResult:
    """Run one variant in a fresh bed under ``workdir`` through all ``sizes``; always stops the bed.

    :param variant: ``stock``, ``ours`` or ``ours_hdfs``.
    :param workdir: scratch directory (emptied).
    :param sizes: increasing numbers of waits to hold.
    :param cluster: a running HDFS cluster (``ours_hdfs`` only).
    """
    from scripts.testbed.airflow_bed import AirflowBed

    parallelism = int(os.environ.get("BENCH_TRIGGERER_PARALLELISM", "32"))
    shutil.rmtree(workdir, ignore_errors=True)
    dags = workdir / "dags"
    dags.mkdir(parents=True)
    shutil.copy2(DAG_FILE, dags / DAG_FILE.name)
    result = VariantResult(variant)
    started = time.monotonic()
    with _markers(variant, workdir, cluster) as (root, write_markers, proxy):
        conn = None
        if proxy is not None:
            conn = json.dumps({"conn_type": "ml_hdfs", "host": proxy.url.removeprefix("http://"), "login": "etl"})
        env = _bed_env(variant, root, sizes, conn, parallelism)
        bed = AirflowBed(workdir / "home", dags, env=env, database="postgres")
        bed.start()
        states: _States | None = None
        try:
            states = _States(bed.pg_database)
            steps = list(zip([0, *sizes[:-1]], sizes, strict=True))
            for lo, hi in steps:
                bed.wait_for_dag(f"triggerer_scale_{lo}_{hi}")
            for lo, hi in steps:
                bed.trigger(f"triggerer_scale_{lo}_{hi}")
                defer_s = _wait_for(
                    bed, states, f"{hi} deferred", lambda c, n=hi: c.get("deferred", 0) == n, 120 + 2.0 * (hi - lo)
                )
                # steady state: every trigger picked up, and one poke interval for all to have polled
                _wait_for(bed, states, f"{hi} triggers assigned", lambda _c, n=hi: states.assigned_triggers() == n, 60)
                time.sleep(POKE_INTERVAL + 2)
                root_pid = bed.component_pids()["triggerer"]
                logs0, before = _log_bytes(bed), sample_tree(root_pid)
                if proxy is not None:
                    proxy.reset()
                t0 = time.monotonic()
                time.sleep(WINDOW)
                after, logs1 = sample_tree(root_pid), _log_bytes(bed)
                seconds = time.monotonic() - t0
                bed.check_alive()
                step = Step(
                    n=hi,
                    defer_seconds=defer_s,
                    cpu_pct=cpu_percent(before, after, seconds),
                    rss_mib=after.rss_bytes / 2**20,
                    trigger_log_bytes=logs1[0] - logs0[0],
                    component_log_bytes=logs1[1] - logs0[1],
                )
                if proxy is not None:
                    step.requests = len(proxy.requests)
                    step.ops = dict(proxy.counts())
                result.steps.append(step)
                print(f"  triggerer_scale {variant}: {step}", file=sys.stderr, flush=True)
            n = sizes[-1]
            t0 = time.monotonic()
            write_markers()
            _wait_for(bed, states, f"{n} success", lambda c: c.get("success", 0) == n, 180 + 2.0 * n)
            result.success_seconds = time.monotonic() - t0
        finally:
            if states is not None:
                states.close()
            bed.stop()
    result.wall_seconds = time.monotonic() - started
    print(
        f"  triggerer_scale {variant}: success in {result.success_seconds:.1f} s, {result.wall_seconds:.0f} s in all",
        file=sys.stderr,
        flush=True,
    )
    return result


def rows(results: dict[str, VariantResult]) -> list[Row]:
    """Rows of ours (local, and HDFS where measured) against the stock FileSensor of the same run."""
    stock = results["stock"]
    out: list[Row] = []
    for i, base in enumerate(stock.steps):
        n = base.n
        logs = "; trigger-log bytes/60 s: " + ", ".join(
            f"{v} {r.steps[i].trigger_log_bytes}" for v, r in results.items() if i < len(r.steps)
        )
        how = "(utime+stime) of triggerer main + runner + children over 60 s"
        if "ours" in results:
            ours = results["ours"].steps[i]
            out.append(
                Row(
                    f"triggerer CPU holding {n} waits (local markers)",
                    ours.cpu_pct,
                    base.cpu_pct,
                    "% core",
                    STOCK,
                    how + logs,
                )
            )
            out.append(
                Row(
                    f"triggerer RSS holding {n} waits (local markers)",
                    ours.rss_mib,
                    base.rss_mib,
                    "MiB",
                    STOCK,
                    "summed RSS of the triggerer's processes at the window's end",
                )
            )
        if "ours_hdfs" in results:
            hd = results["ours_hdfs"].steps[i]
            out.append(
                Row(
                    f"triggerer CPU holding {n} waits (HDFS)",
                    hd.cpu_pct,
                    base.cpu_pct,
                    "% core",
                    STOCK,
                    how + f"; real NameNode via counting proxy; RSS {hd.rss_mib:.0f} MiB",
                )
            )
            per = WINDOW / POKE_INTERVAL
            out.append(
                Row(
                    f"WebHDFS requests per poke interval, {n} waits over {DIRS} dirs",
                    (hd.requests or 0) / per,
                    float(n),
                    "req",
                    "one request per wait per interval (per-wait polling)",
                    f"requests in 60 s / {per:.0f}; {hd.ops}; floor of one LISTSTATUS per dir = {DIRS}",
                )
            )
    for name, key in (("ours", "local"), ("ours_hdfs", "HDFS")):
        if name not in results:
            continue
        r = results[name]
        steps = ", ".join(f"{s.n}: {s.defer_seconds:.0f} s" for s in r.steps)
        base_steps = ", ".join(f"{s.n}: {s.defer_seconds:.0f} s" for s in stock.steps)
        last, base_last = r.steps[-1], stock.steps[-1]
        out.append(
            Row(
                f"time to defer waits {r.steps[-2].n if len(r.steps) > 1 else 0}->{last.n} ({key})",
                last.defer_seconds,
                base_last.defer_seconds,
                "s",
                STOCK,
                f"trigger -> all deferred per step: ours {steps}; stock {base_steps}",
            )
        )
        out.append(
            Row(
                f"markers -> all {last.n} waits success ({key})",
                r.success_seconds,
                stock.success_seconds,
                "s",
                STOCK,
                f"{DIRS} markers written at once; LocalExecutor resumes each task",
            )
        )
    return out


def run(cluster: Any, workdir: Path) -> list[Row]:
    """All variants (``BENCH_TRIGGERER_VARIANTS``) at ``BENCH_TRIGGERER_SIZES``, one fresh bed each."""
    sizes = _sizes()
    wanted = [v.strip() for v in os.environ.get("BENCH_TRIGGERER_VARIANTS", ",".join(VARIANTS)).split(",")]
    if "stock" not in wanted or not set(wanted) <= set(VARIANTS):
        raise ValueError(f"BENCH_TRIGGERER_VARIANTS={wanted}: pick from {VARIANTS}, including stock")
    results = {v: run_variant(v, workdir / v, sizes, cluster) for v in VARIANTS if v in wanted}
    return rows(results)


def _alone(workdir: Path) -> list[Row]:
    from scripts.testbed import hdfs as hdfs_bed

    if "ours_hdfs" not in os.environ.get("BENCH_TRIGGERER_VARIANTS", "ours_hdfs"):
        return run(None, workdir)
    cluster = hdfs_bed.start_single(workdir / "hdfs")
    try:
        return run(cluster, workdir)
    finally:
        cluster.stop()


if __name__ == "__main__":  # python -m bench.triggerer_scale
    # SIGTERM (or SIGINT, even when a background shell ignores it) unwinds: the finally blocks stop the beds
    for _sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(_sig, lambda *_: sys.exit(128 + 15))
    sys.exit(run_alone(_alone, "triggerer"))
