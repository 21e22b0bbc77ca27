"""Ingest → Spark training → register → promote → batch predict (Spark engine on the cluster), under ``dag.test()``.

The issue's chain on today's stack, every step a real service: a MariaDB database of this module's
own (127.0.0.1:3306) seeded with the project's generator; ``SqlIngestOperator`` copies its ``sales``
table into a country-partitioned Parquet dataset on the real HDFS; ``SparkTrainOperator`` trains one
LightGBM model per country on the real Spark standalone master, reading that dataset over NameNode
RPC as the lake connection's user; ``MlflowRegisterModelOperator`` and ``MlflowPromoteModelOperator``
(champion gate on ``rmse``) take the model it logged to the real MLflow server, unchanged; and
``MlflowBatchPredictOperator`` with ``engine="spark"`` scores the dataset on the same master and
publishes the predictions on HDFS (``_SUCCESS`` last). The source password shows nowhere.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from tests.integration import databases
from tests.integration.conftest import admin_client
from tests.integration.dag_test_runs import airflow_home, run_dag_test

pytestmark = pytest.mark.integration

SECRET = "Src-Pw-spark-pipe-7731"
COUNTRIES = ["DE", "FR", "IT"]
WEEKS, SKUS = 10, 12

#: The DAG file (dag.test() runs DAGs from the DAGs folder); paths and the master come from the environment.
DAG_FILE = """
import os
from airflow.sdk import DAG
from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator
from airflow_ml_provider.operators.ingest import SqlIngestOperator
from airflow_ml_provider.operators.mlflow_registry import MlflowPromoteModelOperator, MlflowRegisterModelOperator
from airflow_ml_provider.operators.spark_train import SparkTrainOperator

data, out, master = os.environ["PIPE_DATA"], os.environ["PIPE_OUT"], os.environ["PIPE_MASTER"]
with DAG(dag_id="spark_pipeline", schedule=None) as dag:
    ingest = SqlIngestOperator(task_id="ingest", conn_id="shop_src", table="sales", output_path=data,
                               hdfs_conn_id="lake", partition_by="country", chunk_rows=500)
    train = SparkTrainOperator(
        task_id="train", input_path=data, hdfs_conn_id="lake", label_column="units_sold",
        algorithm="lightgbm_per_group", group_column="country", exclude=["id", "week"], categorical=["sku"],
        estimator_params={"num_iterations": 30}, min_group_rows=20, experiment_name="spark-pipeline",
        master=master, spark_conf={"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"},
        driver_memory="1g",
    )
    register = MlflowRegisterModelOperator(task_id="register", name="sales_units",
                                           model_uri="{{ ti.xcom_pull('train')['model_uri'] }}")
    promote = MlflowPromoteModelOperator(task_id="promote", name="sales_units",
                                         version="{{ ti.xcom_pull('register')['version'] }}",
                                         gate_metric="rmse", higher_is_better=False)
    predict = MlflowBatchPredictOperator(task_id="predict", model_uri="models:/sales_units@champion",
                                         input_path=data, output_path=out, hdfs_conn_id="lake", engine="spark",
                                         spark_master=master, passthrough_columns=["id", "country"],
                                         spark_conf={"spark.ui.enabled": "false"})
    ingest >> train >> register >> promote >> predict
"""


@pytest.fixture(scope="module")
def source() -> Iterator[str]:
    """A MariaDB database for the generator's ``sales`` table; its name (also the user's)."""
    with databases.mariadb_database("spark_pipe", password=SECRET, grant="ALL") as name:
        yield name


@pytest.fixture(scope="module")
def airflow_env(source: str, hdfs: Any, mlflow_server: Any, spark_standalone: Any) -> dict[str, str]:
    from scripts.testbed.spark_bed import submit_env

    src = {"conn_type": "mysql", "host": databases.MARIADB_HOST, "port": databases.MARIADB_PORT, "login": source,
           "password": SECRET, "schema": source}  # fmt: skip
    lake = {"conn_type": "ml_hdfs", "host": ",".join(u.removeprefix("http://") for u in hdfs.namenode_urls),
            "login": "etl", "extra": {"timeout": 10, "rpc_port": str(urlsplit(hdfs.rpc_url).port)}}  # fmt: skip
    mlflow = {"conn_type": "ml_mlflow", "host": mlflow_server.url, "extra": {"max_retries": 1, "timeout": 30}}
    env = {
        **{k: v for k, v in submit_env().items() if not k.startswith(("MLFLOW_", "HADOOP_", "PYSPARK_"))},
        "AIRFLOW_CONN_SHOP_SRC": json.dumps(src),
        "AIRFLOW_CONN_LAKE": json.dumps(lake),
        "AIRFLOW_CONN_ML_MLFLOW_DEFAULT": json.dumps(mlflow),
        "PIPE_MASTER": spark_standalone.master_url,
    }  # PYSPARK_*: the operator chooses the driver's and executors' Python itself
    return airflow_home("airflow-spark-pipeline", "spark_pipeline", DAG_FILE, env)


def test_ingest_train_register_promote_predict_on_the_cluster(
    airflow_env: dict[str, str],
    source: str,
    hdfs: Any,
    hdfs_dir: str,
    spark_standalone: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_ml_provider.jobs.synthetic_seed import seed_database
    from scripts.testbed.spark_bed import applications

    monkeypatch.setenv("AIRFLOW_CONN_SHOP_SRC", airflow_env["AIRFLOW_CONN_SHOP_SRC"])
    seeded = seed_database("shop_src", skus_per_country=SKUS, weeks=WEEKS, countries=COUNTRIES, seed=1)
    total = WEEKS * len(COUNTRIES) * SKUS
    assert seeded["rows"] == total
    admin = admin_client(hdfs)
    admin.set_owner(hdfs_dir, owner="etl")  # the lake connection's user writes the datasets
    before = {a["id"] for a in applications(spark_standalone.ui_url)["completed"]}

    paths = {"PIPE_DATA": f"hdfs://nn{hdfs_dir}/sales", "PIPE_OUT": f"hdfs://nn{hdfs_dir}/predictions"}
    result, output = run_dag_test({**airflow_env, **paths}, "spark_pipeline", timeout=1200)
    assert result["state"] == "success", (result["states"], output[-8000:])
    xcoms = result["xcoms"]
    assert xcoms["ingest"]["rows"] == total
    train = xcoms["train"]
    assert sorted(train["groups"]) == COUNTRIES
    assert train["master"] == spark_standalone.master_url
    assert train["model_uri"] == f"runs:/{train['run_id']}/model"
    assert train["metrics"]["rmse"] > 0
    assert xcoms["register"]["version"] in (1, "1")
    promote = xcoms["promote"]
    assert promote["promoted"] is True, promote  # the first version ever becomes champion
    predict = xcoms["predict"]
    assert predict["rows"] == total
    # both Spark jobs ran on the standalone master
    completed = {a["id"]: a["name"] for a in applications(spark_standalone.ui_url)["completed"]}
    ran = [name for app_id, name in completed.items() if app_id not in before]
    assert any("spark_train" in name or "airflow-ml-train" in name for name in ran), ran
    assert any("batch-predict" in name for name in ran), ran

    listing = admin.list(f"{hdfs_dir}/predictions")
    assert "_SUCCESS" in listing
    status = admin.status(f"{hdfs_dir}/predictions/_SUCCESS")
    assert status["owner"] == "etl"
    parts = sorted(p for p in listing if p.endswith(".parquet"))
    assert parts
    scored = 0
    for part in parts:
        with admin.read(f"{hdfs_dir}/predictions/{part}") as f:
            table = pq.read_table(io.BytesIO(f.read()))
        assert {"id", "country", "prediction"} <= set(table.column_names)
        values = table.column("prediction").to_pylist()
        assert all(v is not None and v == v for v in values)
        scored += table.num_rows
    assert scored == total
    assert SECRET not in output
    assert SECRET not in json.dumps(result)
