"""`make bench`: every benchmark, each against a baseline measured in the same run."""

from __future__ import annotations

import os

# Keep the output a table: Airflow's INFO lines (every stock sensor poke) go unprinted.
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

import shutil
import sys

from bench import (
    batch_predict,
    compose_stack,
    eda,
    endpoint,
    erp_write,
    fanout,
    imports,
    ingest,
    launch_overhead,
    ml_pipeline,
    requests_per_poke,
    slot_seconds,
    spark_predict,
    spark_train,
    triggerer_scale,
)
from bench.common import Row, table
from scripts.testbed import TESTBED


def main() -> int:
    """Run all benchmarks on real services started here, print one table."""
    from scripts.testbed import hdfs as hdfs_bed

    rows: list[Row] = []
    rows += imports.run()
    print(table(rows), flush=True)
    base = TESTBED / "bench"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    cluster = hdfs_bed.start_single(base / "hdfs")
    try:
        rows += requests_per_poke.run(cluster)
        print(table(rows[-1:]), flush=True)
        rows += slot_seconds.run(cluster, base / "airflow")
        scale_rows = triggerer_scale.run(cluster, base / "triggerer")  # three Airflow beds, one at a time
        rows += scale_rows
        print(table(scale_rows), flush=True)
    finally:
        cluster.stop()
    # Docker benchmarks after the HDFS cluster is gone: its JVMs would compete for the CPUs.
    rows += launch_overhead.run(base / "launch")
    print(table(rows[-2:]), flush=True)
    rows += fanout.run(base / "fanout")
    print(table(rows[-2:]), flush=True)
    rows += endpoint.run(base / "endpoint")  # starts and stops its own MLflow server
    print(table(rows[-4:]), flush=True)
    rows += batch_predict.run(base / "batch-predict")
    print(table(rows[-4:]), flush=True)
    erp_rows = erp_write.run(base / "erp")  # the local PostgreSQL and MariaDB
    rows += erp_rows
    print(table(erp_rows), flush=True)
    rows += eda.run(base / "eda")  # local Parquet only
    print(table(rows[-5:]), flush=True)
    rows += ingest.run(base / "ingest")  # the local MariaDB
    print(table(rows[-4:]), flush=True)
    rows += spark_train.run(base / "spark-train")  # its own standalone cluster and train containers
    print(table(rows[-7:]), flush=True)
    rows += spark_predict.run(base / "spark-predict")
    print(table(rows[-2:]), flush=True)
    pipeline_rows = ml_pipeline.run(base / "ml-pipeline")  # its own MLflow server and Airflow
    rows += pipeline_rows
    print(table(pipeline_rows), flush=True)
    compose_rows = compose_stack.run(base / "compose")  # docker-compose.yaml; BENCH_COMPOSE_COLD=1: cold build too
    rows += compose_rows
    print(table(compose_rows), flush=True)
    print("\n## airflow-ml-provider benchmarks (lower ratio is better)\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
