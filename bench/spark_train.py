"""Per-country LightGBM training: the Spark application on ``local[2]`` and on a standalone cluster,
against the container fan-out of ``markdown_pricing``, at 1x and 2x data.

The data is :func:`airflow_ml_provider.jobs.synthetic.write_week` (``COUNTRIES`` countries, Parquet
partitioned ``country=XX``), the same files for every contender:

* **Spark** -- ``spark-submit`` of :mod:`airflow_ml_provider.jobs.spark_train` with
  ``algorithm="lightgbm_per_group"`` (one model per country in ``groupBy(country).applyInPandas``,
  ``ROUNDS`` boosting rounds, a 20 % holdout, the MLflow run and model logged to a local SQLite
  store), once with ``--master local[2]`` and once on a real standalone master + worker (2 cores)
  started here from the venv's ``pyspark``. Timed around the ``spark-submit`` process: JVM and
  session start, reading, training, evaluation and logging, as a task pays them.
* **Baseline: container fan-out** -- what ``markdown_pricing`` runs: ``python -m
  airflow_ml_provider.jobs.markdown_train`` in the locally built train image, the countries split
  into 2 groups (one container each, both at once: the machine's 2 cores, ``ML_NUM_THREADS=1`` as
  in the DAG), timed from the first ``docker run`` to the last exit, after one untimed round (the
  first containers of a run pay cold page caches). Its job does a little more
  than train (it also picks each SKU's markdown and writes predictions), so the ratio slightly
  favours Spark.

The ratio of the 2x row to the 1x row of each contender is how its cost grows with the data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Row, run_alone

COUNTRIES = ("DE", "FR", "IT", "ES", "PL", "NL", "BE", "AT")
ROWS_PER_COUNTRY = 100_000  # 1x: 800,000 rows in all
WEEK = "2026-11-23"
ROUNDS = 50
GROUPS = 2


def _spark_seconds(master: str, dataset: Path, store: Path, result: Path) -> float:
    """Wall time of one ``spark-submit`` of the training application on ``master``."""
    from scripts.testbed.spark_bed import spark_submit, submit_env

    spec = {
        "input": str(dataset),
        "label": "units_sold",
        "algorithm": "lightgbm_per_group",
        "group_column": "country",
        "exclude": ["sku"],
        "params": {"num_iterations": ROUNDS},
        "mlflow": {"experiment": "bench-spark-train"},
    }
    env = submit_env()
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    app = Path(__file__).resolve().parents[1] / "airflow_ml_provider" / "jobs" / "spark_train.py"
    command = [spark_submit(), "--master", master, "--conf", "spark.ui.enabled=false", str(app)]
    command += ["--spec", json.dumps(spec), "--result", str(result)]
    started = time.perf_counter()
    # cwd: a SQLite tracking store puts new experiments' artifacts under ./mlruns
    done = subprocess.run(command, env=env, cwd=store, capture_output=True, text=True, timeout=1800, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"spark-submit on {master} exited {done.returncode}: {done.stderr[-3000:]}")
    trained = json.loads(result.read_text())["groups"]
    if sorted(trained) != sorted(COUNTRIES):
        raise RuntimeError(f"spark-submit on {master} trained {sorted(trained)}, not {sorted(COUNTRIES)}")
    return seconds


def _containers_seconds(root: Path, image: str) -> float:
    """Wall time of the ``markdown_pricing`` fan-out: ``GROUPS`` train containers at once."""
    from airflow_ml_provider.utils.partitioning import split_into_groups
    from scripts.testbed.docker_bed import docker_cli

    started = time.perf_counter()
    procs = []
    for group in split_into_groups(list(COUNTRIES), GROUPS):
        command = [docker_cli(), "run", "--rm", "--network=none", "-e", "ML_NUM_THREADS=1", "-v", f"{root}:{root}"]
        command += [image, "python", "-m", "airflow_ml_provider.jobs.markdown_train", "--data-root", str(root)]
        command += ["--week", WEEK, "--countries", ",".join(group), "--num-boost-round", str(ROUNDS)]
        command += ["--result-path", str(root / f"result-{group[0]}.json")]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    failures = []
    for proc in procs:
        out, _ = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            failures.append(out[-2000:])
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"a train container failed: {failures}")
    return seconds


def run(base: Path) -> list[Row]:
    """Six rows: local[2] and standalone against the containers, at 1x and 2x; and each one's growth."""
    from airflow_ml_provider.jobs.synthetic import write_week
    from scripts.testbed.docker_bed import ensure_dockerd, ensure_train_image
    from scripts.testbed.spark_bed import start_spark

    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    ensure_dockerd()
    image = ensure_train_image()
    figures: dict[tuple[str, int], float] = {}
    cluster = start_spark(base / "spark", cores=2, memory="4g")
    try:
        for mult in (1, 2):
            root = base / f"data-{mult}x"
            write_week(str(root), WEEK, COUNTRIES, rows_per_country=ROWS_PER_COUNTRY * mult, seed=mult)
            dataset = root / WEEK / "sales"
            store = base / f"mlflow-{mult}x"
            store.mkdir()
            figures["local[2]", mult] = _spark_seconds("local[2]", dataset, store, base / f"local-{mult}.json")
            figures["standalone", mult] = _spark_seconds(cluster.master_url, dataset, store, base / f"sa-{mult}.json")
            if mult == 1:
                _containers_seconds(root, image)  # untimed: the first containers pay cold caches
            figures["containers", mult] = _containers_seconds(root, image)
            print(f"spark_train bench {mult}x: {figures}", file=sys.stderr, flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    rows = []
    fanout = f"markdown_train in {GROUPS} train containers at once (markdown_pricing's fan-out)"
    for mult in (1, 2):
        what = f"{len(COUNTRIES)} countries x {ROWS_PER_COUNTRY * mult:,} rows, {ROUNDS} rounds"
        for name, label in (("local[2]", "spark-submit --master local[2]"), ("standalone", "standalone 1 worker")):
            rows.append(
                Row(
                    f"per-country LightGBM training wall time, Spark {label}, {mult}x ({what})",
                    figures[name, mult],
                    figures["containers", mult],
                    "s",
                    fanout,
                    "one run each; Spark incl. JVM/session start and MLflow logging",
                )
            )
    for name in ("local[2]", "standalone", "containers"):
        rows.append(
            Row(
                f"per-country LightGBM training: cost growth 1x -> 2x data, {name}",
                figures[name, 2],
                figures[name, 1],
                "s",
                "the same at 1x data",
                "ratio = how wall time grows when the data doubles",
            )
        )
    return rows


if __name__ == "__main__":  # python -m bench.spark_train
    sys.exit(run_alone(run, "spark-train"))
