"""MlflowBatchPredictOperator(engine="spark") on the Spark standalone master with a real HDFS 2.7.3 and
models on a real MLflow server: a pyfunc (scikit-learn) model through ``spark_udf`` in the operator's
own session, and a Spark ML pipeline logged with ``mlflow.spark.log_model`` scored natively in a
session the tests share.

Spark reads and writes HDFS over NameNode RPC (the connection's ``rpc_port`` extra); the storage
layer (WebHDFS) lists the input, checks the footers, renames the parts and publishes, ``_SUCCESS`` last.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_ml_provider.exceptions import MlProviderError
from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator
from scripts.testbed import spark_bed
from scripts.testbed.predict_data import FEATURES, make_frame
from tests.integration.conftest import admin_client, set_hdfs_conn

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]
CTX: Any = {}
USER = "etl"
CONN = "hdfs_spark"
SHARED_APP = "batch-predict-cluster-tests"


def stop_jvm() -> None:
    """Stop PySpark's gateway JVM when no context runs in it: Hadoop keeps the user the JVM started with."""
    from pyspark import SparkContext

    if SparkContext._active_spark_context is None and SparkContext._gateway is not None:
        SparkContext._gateway.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None


@pytest.fixture(scope="module", autouse=True)
def _own_driver_jvm() -> Iterator[None]:
    stop_jvm()
    yield
    from pyspark.sql import SparkSession

    if (session := SparkSession.getActiveSession()) is not None:
        session.stop()
    stop_jvm()


@pytest.fixture
def hdfs_conn(hdfs: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ml_hdfs connection the operator uses: WebHDFS host, user etl, and the NameNode's RPC port."""
    set_hdfs_conn(monkeypatch, CONN, hdfs.namenode_urls, rpc_port=urlsplit(hdfs.rpc_url).port)
    return CONN


def put_parquet(client: Any, path: str, frame: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, row_group_size=64)
    client.write(path, data=buf.getvalue(), overwrite=True)


def read_parts(client: Any, path: str) -> Any:
    import pandas as pd
    import pyarrow.parquet as pq

    frames = []
    for name in sorted(n for n in client.list(path) if n.startswith("part-")):
        with client.read(f"{path}/{name}") as reader:
            frames.append(pq.read_table(io.BytesIO(reader.read())).to_pandas())
    return pd.concat(frames, ignore_index=True).sort_values("id", ignore_index=True)


def hdfs_dataset(hdfs: Any, sizes: dict[str, int]) -> tuple[str, Any]:
    """A directory owned by the connection's user holding ``in/country=XX/part-00000.parquet`` and a
    ``_SUCCESS`` written over WebHDFS; returns (directory, the data with its country column)."""
    import pandas as pd

    admin = admin_client(hdfs)
    base = f"/t/{uuid.uuid4().hex[:10]}"
    admin.makedirs(base, permission="755")
    admin.set_owner(base, owner=USER)
    frames, start = [], 0
    for i, (country, rows) in enumerate(sorted(sizes.items())):
        frame = make_frame(rows, seed=i, start_id=start)
        put_parquet(admin, f"{base}/in/country={country}/part-00000.parquet", frame)
        frames.append(frame.assign(country=country))
        start += rows
    admin.write(f"{base}/in/_SUCCESS", data=b"")
    return base, pd.concat(frames, ignore_index=True)


def assert_published(hdfs: Any, out: str) -> dict[str, Any]:
    """``out`` holds our part files and ``_SUCCESS`` (written last, empty), owned by the connection's user,
    with no staging or Spark leftovers beside or inside it; returns the listing."""
    admin = admin_client(hdfs)
    listing = dict(admin.list(out, status=True))
    parts = [n for n in listing if n != "_SUCCESS"]
    assert "_SUCCESS" in listing
    assert parts
    assert sorted(parts) == [f"part-{i:05d}.parquet" for i in range(len(parts))]
    assert listing["_SUCCESS"]["length"] == 0
    assert all(listing["_SUCCESS"]["modificationTime"] >= s["modificationTime"] for s in listing.values())
    assert {s["owner"] for s in listing.values()} == {USER}
    parent, name = out.rsplit("/", 1)
    assert [n for n in admin.list(parent) if n.startswith(name)] == [name]  # no .tmp-/.old- siblings
    return listing


def app_states(cluster: Any, name: str) -> list[str]:
    apps = spark_bed.applications(cluster.ui_url)
    return [a["state"] for a in apps["active"] + apps["completed"] if a["name"] == name]


# -- (a) a pyfunc model, the operator's own session on the standalone master -----------------------


def test_pyfunc_model_scores_hdfs_on_the_standalone_master_in_its_own_session(
    hdfs: Any, hdfs_conn: str, mlflow_conn: str, spark_standalone: Any
) -> None:
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature
    from pyspark import SparkContext
    from pyspark.sql import SparkSession
    from sklearn.linear_model import LinearRegression

    if (session := SparkSession.getActiveSession()) is not None:
        session.stop()  # so that the operator starts its own
    train = make_frame(200, seed=42)
    x = train[list(FEATURES)]
    model = LinearRegression().fit(x, 3 * x["a"] - 2 * x["b"] + 0.5 * x["c"] + 1)
    name = f"spark-lin-{uuid.uuid4().hex[:8]}"
    with MlflowHook().scoped():
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(x, model.predict(x)),
                registered_model_name=name,
                pip_requirements=["scikit-learn"],  # else MLflow infers them in a slow subprocess
            )
        mlflow.MlflowClient().set_registered_model_alias(name, "champion", "1")

    base, data = hdfs_dataset(hdfs, {"DE": 230, "FR": 170})
    out = f"{base}/scores[v1]/day=1"  # '[' is a glob character to Spark's readers
    task_id = f"score_pyfunc_{uuid.uuid4().hex[:6]}"
    result = MlflowBatchPredictOperator(
        task_id=task_id,
        model_uri=f"models:/{name}@champion",
        input_path=f"hdfs://ignored{base}/in",
        output_path=out,
        hdfs_conn_id=hdfs_conn,
        engine="spark",
        spark_master=spark_standalone.master_url,
        spark_conf={"spark.executor.memory": "512m"},
    ).execute(CTX)

    assert result["rows"] == 400
    assert result["files"] >= 1
    assert_published(hdfs, out)
    got = read_parts(admin_client(hdfs), out)
    expected = data.sort_values("id", ignore_index=True)
    assert list(got.columns) == ["id", "a", "b", "c", "country", "prediction"]
    assert got["id"].tolist() == expected["id"].tolist()
    assert got["country"].tolist() == expected["country"].tolist()
    assert not got["prediction"].isna().any()
    np.testing.assert_allclose(got["prediction"], model.predict(expected[list(FEATURES)]), rtol=1e-12)
    # the job ran on the standalone master, and the operator stopped the session it started
    assert app_states(spark_standalone, f"airflow-ml-batch-predict-{task_id}") == ["FINISHED"]
    assert SparkContext._active_spark_context is None


# -- (b) a Spark ML pipeline logged with the spark flavor, in a session the tests share ----------


@pytest.fixture(scope="module")
def shared_spark(hdfs: Any, spark_standalone: Any) -> Iterator[Any]:
    """A session on the standalone master started as the operator would start it for the connection."""
    from airflow.sdk import Connection

    from airflow_ml_provider.hooks.webhdfs import HdfsConfig
    from airflow_ml_provider.scoring.spark_engine import spark_session
    from airflow_ml_provider.storage.spark_urls import SparkHdfs, spark_filesystem

    conn = Connection(
        conn_id=CONN,
        conn_type="ml_hdfs",
        host=hdfs.namenode_urls[0].removeprefix("http://"),
        login=USER,
        extra=json.dumps({"rpc_port": urlsplit(hdfs.rpc_url).port}),
    )
    fs = spark_filesystem(HdfsConfig.from_connection(conn), SparkHdfs.from_connection(conn))
    settings = {**fs.conf, "spark.executor.memory": "512m"}
    session, _ = spark_session(
        spark_standalone.master_url, settings, SHARED_APP, logging.getLogger(__name__), env=fs.env
    )
    yield session
    session.stop()


def train_pipeline(spark: Any) -> tuple[Any, Any]:
    """A VectorAssembler + LinearRegression pipeline fitted on the executors; (model, training features)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression

    train = make_frame(300, seed=7)
    train["label"] = 2 * train["a"] + 4 * train["b"] - train["c"] + 0.25
    assembler = VectorAssembler(inputCols=list(FEATURES), outputCol="features", handleInvalid="keep")
    pipeline = Pipeline(stages=[assembler, LinearRegression(featuresCol="features", labelCol="label")])
    return pipeline.fit(spark.createDataFrame(train)), train[list(FEATURES)]


def test_spark_ml_model_is_scored_natively_and_its_nan_predictions_are_refused(
    hdfs: Any, hdfs_conn: str, mlflow_conn: str, spark_standalone: Any, shared_spark: Any, tmp_path: Any
) -> None:
    import mlflow
    import mlflow.spark
    import numpy as np
    from mlflow.models import infer_signature

    pipeline, x = train_pipeline(shared_spark)
    lr = pipeline.stages[-1]
    name = f"spark-ml-{uuid.uuid4().hex[:8]}"
    with MlflowHook().scoped():
        with mlflow.start_run():
            info = mlflow.spark.log_model(
                pipeline,
                "model",  # the spark flavor's log_model still takes artifact_path, not name
                signature=infer_signature(x, np.zeros(len(x))),
                registered_model_name=name,
                pip_requirements=["pyspark"],
                dfs_tmpdir=str(
                    tmp_path / "dfs"
                ),  # MLflow saves through Spark first; the bed's executors share this disk
            )
        mlflow.MlflowClient().set_registered_model_alias(name, "champion", "1")
    assert "spark" in info.flavors

    base, data = hdfs_dataset(hdfs, {"DE": 120, "IT": 80})
    out = f"{base}/scores"

    def score(**kw: Any) -> dict[str, Any]:
        return MlflowBatchPredictOperator(
            task_id="score_spark_ml",
            model_uri=f"models:/{name}@champion",
            output_path=out,
            hdfs_conn_id=hdfs_conn,
            engine="spark",
            spark_master=spark_standalone.master_url,
            passthrough_columns=["id", "country"],
            prediction_column="score",
            **kw,
        ).execute(CTX)

    result = score(input_path=f"{base}/in")
    assert result["rows"] == 200
    assert_published(hdfs, out)
    got = read_parts(admin_client(hdfs), out)
    expected = data.sort_values("id", ignore_index=True)
    assert list(got.columns) == ["id", "country", "score"]
    assert got["id"].tolist() == expected["id"].tolist()
    assert got["country"].tolist() == expected["country"].tolist()
    assert not got["score"].isna().any()
    features = expected[list(FEATURES)].to_numpy()
    np.testing.assert_allclose(got["score"], features @ np.array(lr.coefficients) + lr.intercept, rtol=1e-9)
    # transformed in the shared session on the standalone master, not in a local session of MLflow's own
    assert shared_spark.sparkContext.master == spark_standalone.master_url
    assert app_states(spark_standalone, SHARED_APP) == ["RUNNING"]
    assert shared_spark.sparkContext._jsc is not None  # a session it did not start is left running

    # NaN features give NaN predictions: the same check as for pyfunc models; the old output stays
    before = {n: s["modificationTime"] for n, s in admin_client(hdfs).list(out, status=True)}
    bad = make_frame(50, seed=3, start_id=5000)
    bad.loc[[4, 40], "a"] = np.nan
    put_parquet(admin_client(hdfs), f"{base}/bad/country=DE/part-00000.parquet", bad)
    with pytest.raises(MlProviderError) as e:
        score(input_path=f"{base}/bad")
    message = str(e.value)
    assert "2 NaN" in message
    assert "out of 50 rows" in message
    assert "'id': 5004" in message or "'id': 5040" in message
    assert "Nothing was written" in message
    assert {n: s["modificationTime"] for n, s in admin_client(hdfs).list(out, status=True)} == before
    assert [n for n in admin_client(hdfs).list(base) if n.startswith("scores")] == ["scores"]
