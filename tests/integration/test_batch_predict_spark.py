"""MlflowBatchPredictOperator(engine="spark") with a real local SparkSession and real MLflow models.

Spark sessions are slow to start (5-15 s), so the tests that do not check the operator's own session
share one (``spark``), which the operator then reuses and must leave running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator
from scripts.testbed.predict_data import dataset, read_output

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]
CTX: Any = {}


def op(**kw: Any) -> MlflowBatchPredictOperator:
    kw.setdefault("model_uri", "models:/lin@champion")
    kw.setdefault("engine", "spark")
    return MlflowBatchPredictOperator(task_id="score", **kw)


def active_context() -> Any:
    from pyspark import SparkContext

    return SparkContext._active_spark_context


@pytest.fixture(scope="module")
def _stop_spark_at_end() -> Iterator[None]:
    yield
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()
    # and the JVM, while logging still works (py4j logs from __del__ otherwise, at interpreter exit)
    if SparkContext._gateway is not None:
        SparkContext._gateway.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None


@pytest.fixture
def spark(_stop_spark_at_end: None) -> Any:
    """A session shared by the tests that use it, built with the operator's own settings."""
    import logging

    from pyspark.sql import SparkSession

    from airflow_ml_provider.operators.batch_predict import DEFAULT_SPARK_MASTER
    from airflow_ml_provider.scoring.spark_engine import spark_session

    session = SparkSession.getActiveSession()
    if session is None:
        session, _ = spark_session(DEFAULT_SPARK_MASTER, None, "batch-predict-tests", logging.getLogger(__name__))
    return session


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "."))


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# -- no Spark needed --------------------------------------------------------------------------


def test_engine_arguments_are_checked_and_hdfs_paths_accepted() -> None:
    with pytest.raises(InvalidSpecError, match=r"engine='dask' is not one of \['pandas', 'spark'\]"):
        op(input_path="/in", output_path="/out", engine="dask")
    with pytest.raises(InvalidSpecError, match="spark_conf="):
        op(input_path="/in", output_path="/out", spark_conf=[("spark.driver.memory", "1g")])
    with pytest.raises(InvalidSpecError, match="spark_master=''"):
        op(input_path="/in", output_path="/out", spark_master="")
    # HDFS paths are Spark's too (tests/integration/test_batch_predict_spark_cluster.py scores them)
    op(input_path="hdfs:///data/in", output_path="/out")
    op(input_path="/data/in", output_path="/out", hdfs_conn_id="lake")
    with pytest.raises(InvalidSpecError, match="overlaps"):
        op(input_path="hdfs:///data/in", output_path="hdfs:///data/in/scores")


def test_signature_mismatch_fails_before_spark_starts(
    local_models_conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyspark.sql import SparkSession

    from scripts.testbed.predict_data import make_frame, write_parquet

    created: list[Any] = []
    real = SparkSession.Builder.getOrCreate

    def recording_get_or_create(builder: Any) -> Any:
        created.append(builder)
        return real(builder)

    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", recording_get_or_create)
    write_parquet(make_frame(10), tmp_path / "in" / "p0.parquet")
    write_parquet(make_frame(10).drop(columns=["c"]), tmp_path / "in" / "p1.parquet")
    out = tmp_path / "out"
    with pytest.raises(InvalidSpecError) as e:
        op(input_path=str(tmp_path / "in"), output_path=str(out)).execute(CTX)
    assert "p1.parquet" in str(e.value)
    assert "['c']" in str(e.value)
    assert "Nothing was written" in str(e.value)
    assert created == []
    assert SparkSession.getActiveSession() is None
    assert active_context() is None
    assert not out.exists()
    assert siblings(out) == []


# -- the operator's own session -----------------------------------------------------------------


def test_nan_predictions_fail_keep_the_old_output_and_stop_the_own_session(
    local_models_conn: Any, tmp_path: Path
) -> None:
    from pyspark.sql import SparkSession

    from scripts.testbed.predict_data import make_frame, write_parquet

    if (session := SparkSession.getActiveSession()) is not None:
        session.stop()  # so that the operator creates its own
    frame = make_frame(300)
    frame["a"] = frame["a"] * 0.5
    frame.loc[[57, 157], "a"] = 0.95  # the NanModel predicts NaN there
    write_parquet(frame, tmp_path / "in.parquet")
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-00000.parquet").write_bytes(b"old")
    (out / "_SUCCESS").touch()
    before = snapshot(out)

    with pytest.raises(MlProviderError) as e:
        op(model_uri="models:/nan@champion", input_path=f"file://{tmp_path / 'in.parquet'}",
           output_path=f"file://{out}", spark_conf={"spark.sql.shuffle.partitions": 2}).execute(CTX)  # fmt: skip
    message = str(e.value)
    assert "2 NaN" in message
    assert "out of 300 rows" in message
    assert "'id': 57" in message or "'id': 157" in message
    assert "Nothing was written" in message
    assert snapshot(out) == before
    assert siblings(out) == []
    assert active_context() is None, "the operator did not stop the SparkSession it created"


# -- a shared session -------------------------------------------------------------------------------


def test_spark_output_equals_pandas_output_and_success_is_written_last(
    local_models_conn: Any, spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import pandas as pd

    from airflow_ml_provider.storage.local import LocalStorage

    dataset(tmp_path / "in", {"FR": 250, "DE": 130, "IT": 40})
    pandas_out = tmp_path / "pandas"
    op(input_path=str(tmp_path / "in"), output_path=str(pandas_out), engine="pandas", chunk_rows=100).execute(CTX)

    calls: list[tuple[str, str]] = []
    rename, write = LocalStorage.rename, LocalStorage.write_bytes

    def recording_rename(fs: Any, src: str, dst: str) -> None:
        calls.append(("rename", dst))
        rename(fs, src, dst)

    def recording_write(fs: Any, path: str, data: bytes) -> None:
        calls.append(("touch", path))
        write(fs, path, data)

    monkeypatch.setattr(LocalStorage, "rename", recording_rename)
    monkeypatch.setattr(LocalStorage, "write_bytes", recording_write)
    out = tmp_path / "scores" / "day=1"
    result = op(input_path=str(tmp_path / "in"), output_path=f"file://{out}").execute(CTX)

    # Spark's parts are renamed within the staging directory first; then it is published, _SUCCESS last
    staged = [c for c in calls if c[1].startswith(f"{out}.tmp-")]
    assert staged
    assert all(c[0] == "rename" for c in staged)
    assert calls[len(staged) :] == [("rename", str(out)), ("touch", str(out / "_SUCCESS"))]
    assert result["rows"] == 420
    assert result["model_uri"] == "models:/lin@champion"
    assert result["output_path"] == f"file://{out}"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["_SUCCESS"] + [f"part-{i:05d}.parquet" for i in range(result["files"])]
    success = (out / "_SUCCESS").stat()
    assert success.st_size == 0
    assert all(success.st_mtime_ns >= p.stat().st_mtime_ns for p in out.glob("part-*"))
    assert siblings(out) == []

    got, expected = read_output(out, sort_by_id=True), read_output(pandas_out, sort_by_id=True)
    assert list(got.columns) == list(expected.columns) == ["id", "a", "b", "c", "country", "prediction"]
    assert got.dtypes.to_dict() == expected.dtypes.to_dict()
    pd.testing.assert_frame_equal(got.drop(columns="prediction"), expected.drop(columns="prediction"))
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected["prediction"].to_numpy(), rtol=1e-12)
    assert spark.sparkContext._jsc is not None, "the operator stopped a SparkSession it did not create"
    assert active_context() is not None


def test_rerun_replaces_the_output_atomically(local_models_conn: Any, spark: Any, tmp_path: Path) -> None:
    import numpy as np

    from scripts.testbed.predict_data import FEATURES, make_frame, write_parquet

    out = tmp_path / "out"
    write_parquet(make_frame(30), tmp_path / "a" / "x.parquet")
    write_parquet(make_frame(30, start_id=30), tmp_path / "a" / "y.parquet")
    first = op(input_path=str(tmp_path / "a"), output_path=str(out), passthrough_columns=["id"],
               prediction_column="score").execute(CTX)  # fmt: skip
    assert first["rows"] == 60
    assert read_output(out, sort_by_id=True)["id"].tolist() == list(range(60))
    old_inode = out.stat().st_ino

    frame = make_frame(12, start_id=1000)
    write_parquet(frame, tmp_path / "b" / "x.parquet")
    result = op(input_path=str(tmp_path / "b"), output_path=str(out), passthrough_columns=["id"],
                prediction_column="score").execute(CTX)  # fmt: skip
    assert result["rows"] == 12
    assert out.stat().st_ino != old_inode  # a new directory renamed in, not files overwritten in place
    assert siblings(out) == []
    assert not [p.name for p in out.iterdir() if p.name != "_SUCCESS" and not p.name.startswith("part-")]
    got = read_output(out, sort_by_id=True)
    assert list(got.columns) == ["id", "score"]
    assert got["id"].tolist() == list(range(1000, 1012))
    np.testing.assert_allclose(got["score"], local_models_conn.sklearn_model.predict(frame[list(FEATURES)]), rtol=1e-12)
    assert os.path.getsize(out / "_SUCCESS") == 0


def test_a_reused_session_gets_the_connections_hadoop_settings_and_must_act_as_its_user(spark: Any) -> None:
    from airflow_ml_provider.scoring.spark_engine import prepare_session

    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    try:
        prepare_session(spark, {"spark.hadoop.dfs.nameservices": "lake-ns", "spark.sql.x": "y"}, {}, created=False)
        assert hadoop.get("dfs.nameservices") == "lake-ns"  # what an HA connection needs, on the running context
        assert hadoop.get("spark.sql.x") is None
    finally:
        hadoop.unset("dfs.nameservices")
    jvm_user = str(
        spark.sparkContext._jvm.org.apache.hadoop.security.UserGroupInformation.getCurrentUser().getShortUserName()
    )
    prepare_session(spark, {}, {"HADOOP_USER_NAME": jvm_user}, created=False)
    with pytest.raises(MlProviderError) as e:  # Hadoop fixed the user when this JVM started
        prepare_session(spark, {}, {"HADOOP_USER_NAME": "etl-not-me"}, created=False)
    message = str(e.value)
    assert f"acts as HDFS user {jvm_user!r}, not the connection's 'etl-not-me'" in message
    assert "Run the task in a fresh process" in message
