"""MlflowBatchPredictOperator: throughput against calling the model directly, and peak memory.

A real sklearn model (LinearRegression: the cheapest ``predict``, so the operator's own
overhead shows the most) is registered in a local MLflow store (SQLite). The data are 1M rows
of an id and 20 float features in 4 Parquet files (row groups of ``CHUNK`` rows).

* Throughput: the operator's whole ``execute`` (model load from the registry, footer checks,
  chunked read, predict, NaN check, Parquet write, atomic rename, ``_SUCCESS``) against, in the
  same process on the same data, ``model.predict`` on the DataFrame already in memory (the floor:
  no I/O at all) and the script the operator replaces (``read_parquet`` everything, ``predict``,
  ``to_parquet``).
* Memory: peak RSS growth in a fresh interpreter (Linux VmHWM, reset after imports and a first
  model load) scoring 10x ``CHUNK`` rows against scoring 1x, and against the read-all script.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Row

CHUNK = 100_000
FILES = 4
ROWS_PER_FILE = 250_000
EXTRA_FEATURES = 17  # plus a, b, c: 20 features
MODEL_URI = "models:/lin@champion"


def _median_seconds(fn: Callable[[], None], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def run(base: Path, repeats: int = 3) -> list[Row]:
    """Build the store and data under ``base``, then measure; returns four rows."""
    import mlflow.pyfunc
    import pandas as pd

    from airflow_ml_provider.hooks.mlflow import MlflowHook
    from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator
    from scripts.testbed.predict_data import (
        local_mlflow_conn,
        log_local_models,
        make_frame,
        peak_rss_growth,
        write_parquet,
    )

    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        stack.enter_context(local_mlflow_conn(base / "mlflow"))
        models = log_local_models(base / "mlflow")
        src = base / "in"
        for i in range(FILES):
            frame = make_frame(ROWS_PER_FILE, seed=i, start_id=i * ROWS_PER_FILE, extra_features=EXTRA_FEATURES)
            write_parquet(frame, src / f"part-{i:05d}.parquet", row_group_size=CHUNK)
        rows = FILES * ROWS_PER_FILE

        def ours() -> None:
            MlflowBatchPredictOperator(
                task_id="score",
                model_uri=MODEL_URI,
                input_path=str(src),
                output_path=str(base / "out"),
                chunk_rows=CHUNK,
            ).execute({})

        with MlflowHook().scoped():
            model = mlflow.pyfunc.load_model(MODEL_URI)
        data = pd.read_parquet(src)

        def predict_only() -> None:
            model.predict(data)

        def read_all_script() -> None:
            frame = pd.read_parquet(src)
            frame["prediction"] = model.predict(frame)
            (base / "naive").mkdir(exist_ok=True)
            frame.to_parquet(base / "naive" / "part-00000.parquet", index=False)

        ours()  # warm: imports, SQLAlchemy engine, page cache
        t_ours = _median_seconds(ours, repeats)
        t_floor = _median_seconds(predict_only, repeats)
        t_script = _median_seconds(read_all_script, repeats)

        mem_chunk = CHUNK // 2
        for mult in (1, 10):
            frame = make_frame(mem_chunk * mult, seed=7, extra_features=EXTRA_FEATURES)
            write_parquet(frame, base / f"mem{mult}" / "part-00000.parquet", row_group_size=mem_chunk)
            del frame

        def growth_mb(mode: str, mult: int) -> float:
            result = peak_rss_growth(
                mode,
                models.conn_json,
                MODEL_URI,
                str(base / f"mem{mult}"),
                str(base / f"mem-out-{mode}{mult}"),
                mem_chunk,
            )
            return result["growth"] / 2**20

        ours_1, ours_10, script_10 = growth_mb("operator", 1), growth_mb("operator", 10), growth_mb("naive", 10)

    def rate(seconds: float) -> str:
        return f"{rows / seconds / 1e6:.2f}M rows/s"

    what = f"{rows // 1_000_000}M rows x 20 features, LinearRegression, chunk_rows={CHUNK}"
    note = f"median of {repeats}; operator {rate(t_ours)} incl. model load and write"
    return [
        Row(
            f"batch scoring wall time, {what}",
            t_ours,
            t_floor,
            "s",
            "model.predict on the DataFrame in memory (no I/O)",
            f"{note}; predict alone {rate(t_floor)}",
        ),
        Row(
            f"batch scoring wall time, {what}",
            t_ours,
            t_script,
            "s",
            "read_parquet all, predict, to_parquet",
            f"{note}; script {rate(t_script)}",
        ),
        Row(
            f"peak RSS growth scoring 10x chunk_rows ({10 * mem_chunk} rows)",
            ours_10,
            ours_1,
            "MB",
            f"same operator on 1x chunk_rows ({mem_chunk} rows)",
            "fresh interpreter, VmHWM reset after imports and a model load",
        ),
        Row(
            f"peak RSS growth scoring {10 * mem_chunk} rows",
            ours_10,
            script_10,
            "MB",
            "read_parquet all, predict, to_parquet",
            "fresh interpreter, VmHWM reset after imports and a model load",
        ),
    ]


if __name__ == "__main__":  # python -m bench.batch_predict
    from bench.common import table
    from scripts.testbed import TESTBED

    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    print(table(run(TESTBED / "bench" / "batch-predict")))
