"""MlflowBatchPredictOperator: the Spark engine against the pandas engine at 1M and 5M rows.

The same registered model (a scikit-learn LinearRegression over 20 float features, from
:func:`scripts.testbed.predict_data.log_local_models`) scores the same Parquet dataset (files of
``ROWS_PER_FILE`` rows, row groups of ``CHUNK``) once per engine and size, each through the
operator's whole ``execute``: model load, reading, scoring, the NaN check, the Parquet write and the
atomic publish. The Spark engine runs ``local[2]`` (both cores of this machine) and its figure
includes starting the SparkSession, as a task pays it; the pandas engine scores chunk by chunk in
the task's process. The ratio says how much the Spark engine costs on one 2-core machine, where
it has nothing to gain; its point is a cluster (the operator's ``spark_master``) and data larger
than one worker's memory, which a 2-core bench machine cannot show.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

from bench.common import Row, run_alone

CHUNK = 100_000
ROWS_PER_FILE = 500_000
EXTRA_FEATURES = 17  # plus a, b, c: 20 features
MODEL_URI = "models:/lin@champion"
SIZES = (1_000_000, 5_000_000)
SPARK_MASTER = "local[2]"


def _score(engine: str, src: Path, dst: Path) -> float:
    """Seconds for one ``execute`` of the operator with ``engine`` (output removed afterwards)."""
    from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator

    started = time.perf_counter()
    MlflowBatchPredictOperator(
        task_id=f"score_{engine}",
        model_uri=MODEL_URI,
        input_path=str(src),
        output_path=str(dst),
        chunk_rows=CHUNK,
        engine=engine,
        spark_master=SPARK_MASTER,
    ).execute({})
    seconds = time.perf_counter() - started
    shutil.rmtree(dst, ignore_errors=True)
    return seconds


def run(base: Path) -> list[Row]:
    """One row per size: Spark engine seconds against pandas engine seconds."""
    from scripts.testbed.predict_data import local_mlflow_conn, log_local_models, make_frame, write_parquet

    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        stack.enter_context(local_mlflow_conn(base / "mlflow"))
        log_local_models(base / "mlflow")
        src = base / "in"
        written = 0
        for size in SIZES:
            while written < size:  # the 5M dataset is the 1M one plus four more files
                frame = make_frame(ROWS_PER_FILE, seed=written, start_id=written, extra_features=EXTRA_FEATURES)
                write_parquet(frame, src / f"part-{written // ROWS_PER_FILE:05d}.parquet", row_group_size=CHUNK)
                written += ROWS_PER_FILE
                del frame
            if size == SIZES[0]:
                _score("pandas", src, base / "warm")  # imports, SQLAlchemy engine, page cache
            t_pandas = _score("pandas", src, base / "out-pandas")
            t_spark = _score("spark", src, base / "out-spark")
            rows.append(
                Row(
                    f"batch predict, Spark engine ({SPARK_MASTER}), {size // 1_000_000}M rows x 20 features",
                    t_spark,
                    t_pandas,
                    "s",
                    f"pandas engine, same model and data (chunk_rows={CHUNK})",
                    f"one execute each, incl. model load, session start (Spark) and publish; "
                    f"Spark {size / t_spark / 1e6:.2f}M rows/s, pandas {size / t_pandas / 1e6:.2f}M rows/s",
                )
            )
    return rows


if __name__ == "__main__":  # python -m bench.spark_predict
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    sys.exit(run_alone(run, "spark-predict"))
