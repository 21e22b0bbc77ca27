r"""The ML funnel every 150 minutes: ingest → data report → Spark training → champion gate → deploy → predict → ERP.

Each run, on the data as it is when the run starts:

1. `ingest` copies the `source_table` (default `sales`, the layout
   `python -m airflow_ml_provider.jobs.synthetic seed` writes) from the `ml_pipeline_source`
   database into `<storage_root>/<source_table>/ingested/`, one `country=XX/` directory per
   country, published atomically (`_SUCCESS` last).
2. `eda` writes the data report (`…/ingested/_eda/report.html` and `summary.json`, also logged to
   MLflow in the `ml_pipeline-eda` experiment). Its checks (at most 5% of `units_sold` missing,
   at least 50 rows per country) only warn; a report that cannot be made at all fails `eda` and
   alerts, but the training still runs (`plan_training` waits for the report whatever its outcome,
   and runs when the ingest succeeded).
3. `train` runs one Spark training per entry of `algorithms` (dynamic task mapping; default
   LightGBM per country) on `spark_master` (default `local[*]`), each logged to MLflow in the
   `ml_pipeline` experiment; `select_model` keeps the one with the lowest holdout RMSE.
4. `register` registers it as a new version of the `ml_pipeline_units` model; `promote` makes it
   `@champion` only if its RMSE beats the current champion's (else it becomes `@challenger` and
   the champion stays).
5. `deploy_gate` lets `deploy` run only when this run promoted a new champion and the `deploy`
   param allows it (`auto`, the default: when a Docker engine with the serving image answers and
   MLflow is a tracking server; `on`: always; `off`: never). The reason for its decision is in its
   log and in its XCom `decision`. The champion is then served blue/green behind
   `http://127.0.0.1:8790` (endpoint `ml-pipeline`; the environment variables `ML_PIPELINE_ENDPOINT`
   and `ML_PIPELINE_ENDPOINT_PORT` of the DAG processor and the workers change them) on the local
   Docker engine; the old version serves until the new one is
   healthy. Otherwise `deploy` is skipped and the endpoint is left as it is.
6. `predict` scores `predict_input` (empty: the ingested data) with `models:/ml_pipeline_units@champion`
   on Spark (`spark_master` again) into `<storage_root>/<source_table>/predictions/`; it runs
   after a skipped deploy, not after a failed one.
7. `write_erp` replaces each country's rows of `erp_table` in the `ml_pipeline_erp` database in
   one transaction, behind the drop guard: a country whose row count falls by more than `max_drop`
   against the rows it replaces fails the task and writes nothing (unless `on_drop` is `warn`).

A task that fails for good sends the failure alert to the `ml_webhook_default` connection (type
`ml_webhook`) when it exists; without it the task log says the alert was not delivered.

## Connections

- `ml_pipeline_source` (type `sqlite`, `postgres` or `mysql`): the source database holding
  `source_table`. On a laptop: `sqlite`, Host = the database file, e.g. `/tmp/ml-pipeline/source.db`
  (`make demo` makes its own under `.demo/`).
- `ml_pipeline_erp` (type `sqlite`, `postgres` or `mysql`): the ERP database; `erp_table` must
  exist (`ERP_TABLE_DDL` in this file creates it). On a laptop: `sqlite`, Host =
  `/tmp/ml-pipeline/erp.db`.
- `ml_mlflow_default` (type `ml_mlflow`): tracking and registry. A local store
  (`sqlite:////tmp/ml-pipeline/mlflow.db`; create the `ml_pipeline` and `ml_pipeline-eda`
  experiments with an artifact location first, or the artifacts land in the worker's `./mlruns`)
  trains and predicts, but the deploy step needs an http(s) tracking server the model containers
  can reach, e.g. `mlflow server` on `http://127.0.0.1:5000` over that same store (what `make demo`
  runs).
- `ml_hdfs_default` (type `ml_hdfs`): only read when `storage_root` is not a `file://` path.
- `spark_default` (type `spark`): spark-submit's settings (deploy mode, binary, queue); the
  master always comes from `spark_master`. Without it, the worker's pyspark runs spark-submit.
- `ml_docker_default` (type `ml_docker`): the engine the endpoint runs on; without it, the local
  Docker engine.
- `ml_webhook_default` (type `ml_webhook`): failure alerts; without it they are logged as not
  delivered.

For example, as environment variables:

```bash
export AIRFLOW_CONN_ML_PIPELINE_SOURCE='{"conn_type": "sqlite", "host": "/tmp/ml-pipeline/source.db"}'
export AIRFLOW_CONN_ML_PIPELINE_ERP='{"conn_type": "sqlite", "host": "/tmp/ml-pipeline/erp.db"}'
export AIRFLOW_CONN_ML_MLFLOW_DEFAULT='{"conn_type": "ml_mlflow", "host": "http://127.0.0.1:5000"}'
```

## Before the first run

1. Seed a source table if you have none:
   `python -m airflow_ml_provider.jobs.synthetic seed --conn-id ml_pipeline_source --rows 20000 --countries DE,FR,IT`.
2. Create the ERP table from `ERP_TABLE_DDL` (format it with `table=ml_pipeline_predictions`).
3. Create the pool that bounds the Spark applications this DAG starts on the worker (training and
   scoring; raise it when `spark_master` is a cluster):
   `airflow pools set ml_pipeline_spark 1 "ml_pipeline Spark applications"`.
4. For the deploy step: the serving image `airflow-ml-provider/serve:latest` on the Docker engine
   (`make images`), and an http(s) MLflow tracking server. Without them, `deploy=auto` skips the
   deploy and says why in `deploy_gate`'s log; everything else runs.
   The serving image has LightGBM and scikit-learn, not Spark: a Spark ML champion (`linear`,
   `gbt`, `random_forest`) is scored by `predict` but cannot be served from it.

## Quick start on local disk (`file://`)

With the three connections above, press Trigger with the defaults: `storage_root` is
`file:///tmp/ml-pipeline/lake`, the Spark master `local[*]`. Put `storage_root` on HDFS with
`hdfs:///lake/ml-pipeline` (through `ml_hdfs_default`); `spark_master` such as
`spark://spark-master:7077` moves the training and the scoring to a cluster (whose executors must
then reach `storage_root`: HDFS, or a shared mount).

## Schedule and backfill

Every 150 minutes, counted from when the DAG is first unpaused: unpausing starts a run at once,
then one every 150 minutes. No catch-up, one run at a time (a run that overruns delays the next).
A run reads the source table as it is when it starts, not as of its date, so there is nothing to
backfill: `airflow backfill create --dag-id ml_pipeline ...` would only train again on today's
table. Press Trigger for an extra run.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from airflow.sdk import DAG, DeltaTriggerTimetable, Param, TriggerRule, task

from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.hooks.webhdfs import HdfsHook
from airflow_ml_provider.notifications.webhook import WebhookNotifier
from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator
from airflow_ml_provider.operators.eda import EdaReportOperator
from airflow_ml_provider.operators.erp_writer import ErpWriteOperator
from airflow_ml_provider.operators.ingest import SqlIngestOperator
from airflow_ml_provider.operators.mlflow_deploy import MlflowDeployModelOperator
from airflow_ml_provider.operators.mlflow_registry import MlflowPromoteModelOperator, MlflowRegisterModelOperator
from airflow_ml_provider.operators.spark_train import SparkTrainOperator

SCHEDULE = dt.timedelta(minutes=150)
#: A source database (sqlite, postgres or mysql) and an ERP database (the same types).
SOURCE_CONN_ID = "ml_pipeline_source"
ERP_CONN_ID = "ml_pipeline_erp"
#: Only read for a storage_root that is not file:// (the operators' hdfs_conn_id is not templated).
HDFS_CONN_ID = HdfsHook.default_conn_name
#: The Spark applications this DAG starts (training, scoring) share this pool; 1 slot on one machine.
SPARK_POOL = "ml_pipeline_spark"
#: The storage_root and spark_master params' defaults (what scheduled runs use); the environment
#: variables ML_PIPELINE_STORAGE_ROOT / ML_PIPELINE_SPARK_MASTER of the DAG processor override them
#: (the compose stack points them at its HDFS and its Spark master).
DEFAULT_STORAGE_ROOT = os.environ.get("ML_PIPELINE_STORAGE_ROOT") or "file:///tmp/ml-pipeline/lake"
DEFAULT_SOURCE_TABLE = "sales"
DEFAULT_ERP_TABLE = "ml_pipeline_predictions"
DEFAULT_SPARK_MASTER = os.environ.get("ML_PIPELINE_SPARK_MASTER") or "local[*]"
EXPERIMENT = "ml_pipeline"
MODEL_NAME = "ml_pipeline_units"
#: The endpoint and its stable port (its router's control port is the next one); the environment
#: variables ML_PIPELINE_ENDPOINT / ML_PIPELINE_ENDPOINT_PORT of the DAG processor and workers override them.
ENDPOINT_NAME = os.environ.get("ML_PIPELINE_ENDPOINT") or "ml-pipeline"
_PORT = os.environ.get("ML_PIPELINE_ENDPOINT_PORT") or "8790"
if not _PORT.isdigit():
    raise ValueError(f"ML_PIPELINE_ENDPOINT_PORT={_PORT!r}: give the endpoint's TCP port, e.g. 8790 (or unset it).")
ENDPOINT_PORT = int(_PORT)
LABEL = "units_sold"
#: The training's metric, which is also the champion gate's (lower is better).
METRIC = "rmse"
HIGHER_IS_BETTER = False
#: Countries with fewer rows are skipped by the per-country training, and flagged by the data report.
MIN_GROUP_ROWS = 50
SPARK_CONF = {"spark.sql.shuffle.partitions": "8"}
#: SparkTrainOperator arguments per algorithm the `algorithms` param offers (Spark ML models use the
#: country as a one-hot feature; LightGBM trains one model per country with the SKU as a category).
TRAINING: dict[str, dict[str, Any]] = {
    "lightgbm_per_group": {
        "group_column": "country",
        "categorical": ["sku"],
        "exclude": ["id", "week"],
        "estimator_params": {"num_iterations": 100, "num_leaves": 15},
    },
    "gbt": {
        "categorical": ["country"],
        "exclude": ["id", "week", "sku"],
        "estimator_params": {"maxIter": 30, "maxDepth": 5},
    },
    "random_forest": {
        "categorical": ["country"],
        "exclude": ["id", "week", "sku"],
        "estimator_params": {"numTrees": 30, "maxDepth": 8},
    },
    "linear": {
        "categorical": ["country"],
        "exclude": ["id", "week", "sku"],
        "estimator_params": {"maxIter": 50, "regParam": 0.01},
    },
}
INGESTED = "{{ params.storage_root }}/{{ params.source_table }}/ingested"
PREDICTIONS = "{{ params.storage_root }}/{{ params.source_table }}/predictions"
#: The model version predict scored with: this run's candidate if promoted, else the champion it lost to.
MODEL_IN_USE = (
    "{% set p = ti.xcom_pull(task_ids='promote') %}"
    "models:/{{ p['name'] }}/{{ p['version'] if p['promoted'] else p['previous_version'] }}"
)
#: The ERP table write_erp fills (PostgreSQL, MariaDB/MySQL and SQLite accept it as is): one row per
#: (country, sku, week), replaced per country.
ERP_TABLE_DDL = """CREATE TABLE {table} (
    country VARCHAR(16) NOT NULL,
    sku VARCHAR(40) NOT NULL,
    week DATE NOT NULL,
    predicted_units DOUBLE PRECISION NOT NULL,
    model_uri VARCHAR(250) NOT NULL,
    run_id VARCHAR(250) NOT NULL,
    written_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (country, sku, week)
)"""
#: The deploy param's values (see deploy_gate).
DEPLOY_MODES = ("auto", "on", "off")
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"


with DAG(
    dag_id="ml_pipeline",
    description="Ingest, report, train on Spark, gate, deploy, predict and write to the ERP, every 150 minutes",
    schedule=DeltaTriggerTimetable(SCHEDULE),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=2),
    default_args={
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "on_failure_callback": [WebhookNotifier()],
    },
    tags=["example", "spark", "mlflow", "ml-pipeline"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        "source_table": Param(
            DEFAULT_SOURCE_TABLE,
            type="string",
            pattern=_NAME,
            description="Table (or schema.table) of the ml_pipeline_source database to train on; it needs the "
            "columns of the synthetic sales table (country, sku, week, units_sold and numeric features).",
        ),
        "storage_root": Param(
            DEFAULT_STORAGE_ROOT,
            type="string",
            pattern=r"^(file:/|hdfs:/|/)",
            description="Directory for the ingested data, the report and the predictions: file:///… on the "
            "worker's disk, hdfs:///… (or /…) on the ml_hdfs_default connection.",
        ),
        "spark_master": Param(
            DEFAULT_SPARK_MASTER,
            type="string",
            minLength=1,
            description="Spark master of the training and the scoring, e.g. local[*], local[4], "
            "spark://host:7077 or yarn.",
        ),
        "algorithms": Param(
            ["lightgbm_per_group"],
            type="array",
            items={"type": "string", "enum": sorted(TRAINING)},
            minItems=1,
            uniqueItems=True,
            description="Algorithms to train, one per line (each a Spark application): lightgbm_per_group, "
            "gbt, random_forest, linear. The one with the lowest holdout RMSE goes to the champion gate.",
        ),
        "deploy": Param(
            "auto",
            enum=list(DEPLOY_MODES),
            description="Serve a newly promoted champion on the Docker engine (blue/green): auto = when an "
            "engine with the serving image answers and MLflow is a tracking server, else skipped saying why; "
            "on = always (the task fails if it cannot); off = never.",
        ),
        "predict_input": Param(
            None,
            type=["null", "string"],
            description="Parquet dataset to score with the champion. Empty: the ingested data.",
        ),
        "erp_table": Param(
            DEFAULT_ERP_TABLE,
            type="string",
            pattern=_NAME,
            description="The ERP table (table or schema.table) whose rows are replaced per country.",
        ),
        "max_drop": Param(
            0.10,
            type="number",
            minimum=0,
            maximum=1,
            description="Drop guard: the largest allowed fall of a country's row count against the rows it "
            "replaces (0.10: 10%).",
        ),
        "on_drop": Param(
            "fail",
            enum=["fail", "warn"],
            description="What a larger drop does: fail (nothing is written) or warn (write anyway).",
        ),
    },
) as dag:
    ingest = SqlIngestOperator(
        task_id="ingest",
        conn_id=SOURCE_CONN_ID,
        table="{{ params.source_table }}",
        output_path=INGESTED,
        partition_by="country",
        hdfs_conn_id=HDFS_CONN_ID,
    )

    # Non-blocking, as in the seed: the gate only warns, and a report that fails does not stop training.
    eda = EdaReportOperator(
        task_id="eda",
        input_path=INGESTED,
        hdfs_conn_id=HDFS_CONN_ID,
        title="ml_pipeline: {{ params.source_table }}, run {{ run_id }}",
        max_null_rate={LABEL: 0.05},
        min_partition_rows=MIN_GROUP_ROWS,
        fail_on_gate=False,
        mlflow_conn_id=MlflowHook.default_conn_name,
        mlflow_experiment=f"{EXPERIMENT}-eda",
        retries=0,
    )

    # The join after the report: runs when every upstream is done and one succeeded, i.e. when the
    # ingest succeeded, whatever the report did (a failed ingest leaves the report upstream_failed).
    @task(retries=0, trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
    def plan_training(algorithms: Any) -> list[dict[str, Any]]:
        """One training's arguments per algorithm of the ``algorithms`` param, in its order."""
        unknown = [a for a in algorithms if a not in TRAINING]
        if unknown or not algorithms:
            raise ValueError(f"algorithms={algorithms!r}: give one or more of {sorted(TRAINING)}.")
        return [{"algorithm": name, **TRAINING[name]} for name in algorithms]

    plan = plan_training(algorithms="{{ params.algorithms }}")
    [ingest, eda] >> plan
    ingest >> eda

    train = SparkTrainOperator.partial(
        task_id="train",
        input_path=INGESTED,
        hdfs_conn_id=HDFS_CONN_ID,
        label_column=LABEL,
        metric=METRIC,
        min_group_rows=MIN_GROUP_ROWS,
        experiment_name=EXPERIMENT,
        run_name="{{ task.algorithm }} {{ run_id }}",
        master="{{ params.spark_master }}",
        spark_conf=SPARK_CONF,
        pool=SPARK_POOL,
        map_index_template="{{ task.algorithm }}",
    ).expand_kwargs(plan)

    @task(retries=0, multiple_outputs=False)
    def select_model(results: Any) -> dict[str, Any]:
        """The training with the best holdout metric; logs every candidate's value."""
        import logging

        trained = list(results)
        if not trained:
            raise ValueError("No training returned a model; see the train tasks.")
        scores = {r["algorithm"]: float(r["metrics"][METRIC]) for r in trained}
        best = (max if HIGHER_IS_BETTER else min)(trained, key=lambda r: float(r["metrics"][METRIC]))
        logging.getLogger(__name__).info(
            "Holdout %s per algorithm: %s; selected %s (MLflow run %s).",
            METRIC,
            ", ".join(f"{name}={value:.6g}" for name, value in scores.items()),
            best["algorithm"],
            best["run_id"],
        )
        return {
            "model_uri": best["model_uri"],
            "run_id": best["run_id"],
            "algorithm": best["algorithm"],
            "metric": best["metric"],
            "value": float(best["metrics"][METRIC]),
            "candidates": scores,
        }

    selected = select_model(train.output)

    register = MlflowRegisterModelOperator(
        task_id="register",
        name=MODEL_NAME,
        model_uri="{{ ti.xcom_pull(task_ids='select_model')['model_uri'] }}",
        description="{{ ti.xcom_pull(task_ids='select_model')['algorithm'] }} on {{ params.source_table }}, "
        "run {{ run_id }}",
        tags={
            "algorithm": "{{ ti.xcom_pull(task_ids='select_model')['algorithm'] }}",
            "source_table": "{{ params.source_table }}",
        },
    )

    # The champion gate compares the metric the training reported (the selected run's `metric`).
    promote = MlflowPromoteModelOperator(
        task_id="promote",
        name=MODEL_NAME,
        version="{{ ti.xcom_pull(task_ids='register')['version'] }}",
        gate_metric="{{ ti.xcom_pull(task_ids='select_model')['metric'] }}",
        higher_is_better=HIGHER_IS_BETTER,
    )
    selected >> register >> promote

    # Skips only its direct downstream (deploy); predict's own trigger rule decides for it.
    @task.short_circuit(ignore_downstream_trigger_rules=False, retries=0)
    def deploy_gate(promotion: Any, mode: Any, ti: Any = None) -> bool:
        """Deploy only a champion this run promoted, as the ``deploy`` param says; the reason goes to XCom."""
        import logging

        from airflow_ml_provider.operators.mlflow_deploy import DEFAULT_IMAGE, DEFAULT_ROUTER_IMAGE
        from airflow_ml_provider.serving.readiness import deploy_blockers

        version = promotion["version"]
        if not promotion["promoted"]:
            reason = (
                f"version {version} did not become @champion ({promotion['reason']}); the endpoint keeps "
                f"serving version {promotion['previous_version']}"
            )
        elif mode == "off":
            reason = f"the deploy param is off (version {version} is @champion)"
        elif mode == "auto" and (blockers := deploy_blockers(images=[DEFAULT_IMAGE, DEFAULT_ROUTER_IMAGE])):
            reason = f"deploy=auto and {'; '.join(blockers)}"
        else:
            reason = ""
        if ti is not None:
            ti.xcom_push(key="decision", value=f"skipped: {reason}" if reason else f"deploying version {version}")
        if reason:
            logging.getLogger(__name__).warning("Deploy skipped: %s.", reason)
            return False
        logging.getLogger(__name__).info(
            "Version %s is the new @champion (%s): deploying it.", version, promotion["reason"]
        )
        return True

    deploy = MlflowDeployModelOperator(
        task_id="deploy",
        name=MODEL_NAME,
        alias="champion",
        endpoint_name=ENDPOINT_NAME,
        port=ENDPOINT_PORT,
        resources={"cpus": 1, "memory": "1Gi"},
    )
    deploy_gate(promote.output, mode="{{ params.deploy }}") >> deploy

    # After a skipped deploy (nothing promoted, or deploy off) but not after a failed one.
    predict = MlflowBatchPredictOperator(
        task_id="predict",
        model_uri=f"models:/{MODEL_NAME}@champion",
        input_path="{{ params.predict_input or (params.storage_root ~ '/' ~ params.source_table ~ '/ingested') }}",
        output_path=PREDICTIONS,
        passthrough_columns=["country", "sku", "week"],
        hdfs_conn_id=HDFS_CONN_ID,
        engine="spark",
        spark_master="{{ params.spark_master }}",
        spark_conf=SPARK_CONF,
        pool=SPARK_POOL,
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    )
    [promote, deploy] >> predict

    # Only this task reads the ERP connection.
    write_erp = ErpWriteOperator(
        task_id="write_erp",
        conn_id=ERP_CONN_ID,
        table="{{ params.erp_table }}",
        input_path=PREDICTIONS,
        key_column="country",
        # the complete mapping: with a column_map only the columns it names are written
        column_map={"country": "country", "sku": "sku", "week": "week", "prediction": "predicted_units"},
        constants={"model_uri": MODEL_IN_USE, "run_id": "{{ run_id }}"},
        max_drop="{{ params.max_drop }}",
        on_drop="{{ params.on_drop }}",
        hdfs_conn_id=HDFS_CONN_ID,
    )
    predict >> write_erp
