"""MlflowBatchPredictOperator: parse-time checks, cheap import, and scoring with real models in a local store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator
from scripts.testbed.loopback_http import free_port
from scripts.testbed.predict_data import dataset, read_output

CTX: Any = {}


def op(**kw: Any) -> MlflowBatchPredictOperator:
    kw.setdefault("model_uri", "models:/lin@champion")
    kw.setdefault("input_path", "/data/in")
    kw.setdefault("output_path", "/data/out")
    return MlflowBatchPredictOperator(task_id="score", **kw)


# -- parse time --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"chunk_rows": 0}, ["chunk_rows=0", "e.g. chunk_rows=100_000"]),
        ({"chunk_rows": True}, ["chunk_rows=True"]),
        ({"chunk_rows": "1000"}, ["chunk_rows='1000'"]),
        ({"input_path": "data/in"}, ["input_path='data/in'", "not absolute", "e.g."]),
        ({"input_path": "/data/../in"}, ["input_path=", "'..'"]),
        ({"output_path": "s3://bucket/out"}, ["output_path='s3://bucket/out'", "scheme 's3'"]),
        ({"output_path": ""}, ["output_path=''", "e.g."]),
        ({"output_path": "/data/in/scores"}, ["output_path='/data/in/scores'", "overlaps input_path"]),
        ({"model_uri": "churn"}, ["model_uri='churn'", "models:/churn@champion"]),
        ({"model_uri": "models:/churn"}, ["model_uri='models:/churn'", "models:/<name>@<alias>"]),
        ({"model_uri": "models:/churn@"}, ["model_uri='models:/churn@'"]),
        ({"model_uri": "runs:/abc123"}, ["runs:/<run_id>/model"]),
        ({"passthrough_columns": "id"}, ["passthrough_columns='id'", "['customer_id']"]),
        ({"passthrough_columns": ["id", "prediction"]}, ["'prediction'", "prediction_column="]),
        ({"prediction_column": ""}, ["prediction_column=''", "e.g. 'prediction'"]),
        ({"mlflow_conn_id": ""}, ["mlflow_conn_id=''", "ml_mlflow_default"]),
    ],
)
def test_static_arguments_are_checked_at_parse_time(kwargs: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(InvalidSpecError) as e:
        op(**kwargs)
    for name in names:
        assert name in str(e.value)


def test_valid_and_templated_arguments_parse() -> None:
    op(model_uri="models:/churn/3", input_path="file:///data/in", output_path="hdfs:///data/out")
    op(model_uri="runs:/abc/model", input_path="/in", output_path="/out", hdfs_conn_id="lake", chunk_rows=1)
    # templated values are checked after rendering, at execute time
    t = op(model_uri="{{ params.model }}", input_path="/in/{{ ds }}", output_path="/in/{{ ds }}/x")
    assert t.template_fields == ("model_uri", "input_path", "output_path", "passthrough_columns", "spark_master")
    s = op(model_uri="models:/m@a", input_path="/in", output_path="/out", engine="spark", spark_master="{{ params.m }}")
    s.render_template_fields({"params": {"m": "local[2]"}})  # a minimal context
    assert s.spark_master == "local[2]"


def test_importing_the_module_and_building_the_operator_imports_nothing_heavy() -> None:
    """In a fresh interpreter, as the DAG processor would; the constructor does no I/O either."""
    heavy = ("mlflow", "pandas", "pyarrow", "hdfs", "pyspark", "sklearn", "numpy", "requests")
    code = (
        "import sys, json\n"
        "from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator\n"
        "MlflowBatchPredictOperator(task_id='t', model_uri='models:/m@a', input_path='hdfs:///in',"
        " output_path='/out', hdfs_conn_id='nope', mlflow_conn_id='nope')\n"
        f"print(json.dumps(sorted(n for n in {heavy!r} if n in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    # numpy may come with Airflow itself on some installs; the data libraries must not
    assert [n for n in loaded if n != "numpy"] == []


# -- execution against a local MLflow store -------------------------------------------------------


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "."))


def test_scores_in_chunks_and_matches_direct_predict(local_models_conn: Any, tmp_path: Path) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    from scripts.testbed.predict_data import FEATURES

    data = dataset(tmp_path / "in", {"FR": 250, "DE": 130})
    out = tmp_path / "scores" / "day=1"
    result = op(input_path=str(tmp_path / "in"), output_path=f"file://{out}", chunk_rows=100).execute(CTX)

    assert result["rows"] == 380
    assert result["files"] == 2
    assert result["model_uri"] == "models:/lin@champion"
    assert result["output_path"] == f"file://{out}"
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000.parquet", "part-00001.parquet"]
    # one row group per chunk: DE 130 rows -> 100 + 30, FR 250 rows -> 100 + 100 + 50
    assert [pq.ParquetFile(out / f"part-0000{i}.parquet").num_row_groups for i in (0, 1)] == [2, 3]
    got = read_output(out)
    assert list(got.columns) == ["id", "a", "b", "c", "country", "prediction"]
    expected = local_models_conn.sklearn_model.predict(data[list(FEATURES)])
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected, rtol=1e-12)
    assert got["id"].tolist() == data["id"].tolist()
    assert got["country"].tolist() == data["country"].tolist()
    assert siblings(out) == []


def test_passthrough_columns_and_runs_uri_and_model_without_signature(local_models_conn: Any, tmp_path: Path) -> None:
    import numpy as np

    from scripts.testbed.predict_data import FEATURES, make_frame, write_parquet

    frame = make_frame(55)
    write_parquet(frame, tmp_path / "in.parquet")
    expected = local_models_conn.sklearn_model.predict(frame[list(FEATURES)])
    for uri in (local_models_conn.run_uri, "models:/lin/1"):
        out = tmp_path / f"out-{len(uri)}"
        op(model_uri=uri, input_path=str(tmp_path / "in.parquet"), output_path=str(out),
           passthrough_columns=["id"], prediction_column="score").execute(CTX)  # fmt: skip
        got = read_output(out)
        assert list(got.columns) == ["id", "score"]
        np.testing.assert_allclose(got["score"].to_numpy(), expected, rtol=1e-12)

    # no signature: a warning, and the model gets all columns (here exactly its features)
    write_parquet(frame[list(FEATURES)], tmp_path / "features.parquet")
    out = tmp_path / "nosig"
    op(model_uri="models:/nosig/1", input_path=str(tmp_path / "features.parquet"), output_path=str(out)).execute(CTX)
    np.testing.assert_allclose(read_output(out)["prediction"].to_numpy(), expected, rtol=1e-12)


def test_missing_model_columns_are_named_and_nothing_is_written(local_models_conn: Any, tmp_path: Path) -> None:
    from scripts.testbed.predict_data import make_frame, write_parquet

    write_parquet(make_frame(10), tmp_path / "in" / "p0.parquet")
    write_parquet(make_frame(10).drop(columns=["b", "c"]), tmp_path / "in" / "p1.parquet")
    out = tmp_path / "out"
    with pytest.raises(InvalidSpecError) as e:
        op(input_path=str(tmp_path / "in"), output_path=str(out), chunk_rows=4).execute(CTX)
    message = str(e.value)
    assert "p1.parquet" in message
    assert "['b', 'c']" in message
    assert "Nothing was written" in message
    assert not out.exists()
    assert siblings(out) == []

    with pytest.raises(InvalidSpecError, match=r"lacks passthrough_columns \['customer'\]"):
        op(input_path=str(tmp_path / "in" / "p0.parquet"), output_path=str(out),
           passthrough_columns=["id", "customer"]).execute(CTX)  # fmt: skip
    assert not out.exists()


def test_nan_predictions_fail_naming_the_rows_and_keep_the_old_output(local_models_conn: Any, tmp_path: Path) -> None:
    from scripts.testbed.predict_data import make_frame, write_parquet

    frame = make_frame(300)
    frame["a"] = frame["a"] * 0.5
    frame.loc[157, "a"] = 0.95  # the NanModel predicts NaN here
    write_parquet(frame, tmp_path / "in.parquet")
    out = tmp_path / "out"
    first = op(model_uri="models:/lin@champion", input_path=str(tmp_path / "in.parquet"), output_path=str(out))
    first.execute(CTX)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    with pytest.raises(MlProviderError) as e:
        op(model_uri="models:/nan@champion", input_path=str(tmp_path / "in.parquet"), output_path=str(out),
           chunk_rows=100).execute(CTX)  # fmt: skip
    message = str(e.value)
    assert "rows 100-199" in message
    assert "1 NaN" in message
    assert "row 57" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert siblings(out) == []


def test_rerun_replaces_the_output_and_success_is_newest(local_models_conn: Any, tmp_path: Path) -> None:
    from scripts.testbed.predict_data import make_frame, write_parquet

    out = tmp_path / "out"
    write_parquet(make_frame(30), tmp_path / "a" / "x.parquet")
    write_parquet(make_frame(30), tmp_path / "a" / "y.parquet")
    op(input_path=str(tmp_path / "a"), output_path=str(out)).execute(CTX)
    assert len(list(out.glob("part-*"))) == 2
    old_inode = out.stat().st_ino

    write_parquet(make_frame(12, start_id=1000), tmp_path / "b" / "x.parquet")
    result = op(input_path=str(tmp_path / "b"), output_path=str(out)).execute(CTX)
    assert result["rows"] == 12
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000.parquet"]
    assert out.stat().st_ino != old_inode  # a new directory renamed in, not files overwritten in place
    assert read_output(out)["id"].tolist() == list(range(1000, 1012))
    assert siblings(out) == []
    success = (out / "_SUCCESS").stat()
    assert success.st_size == 0
    assert all(success.st_mtime_ns >= p.stat().st_mtime_ns for p in out.glob("part-*"))


def test_unknown_alias_and_missing_input_are_clear(local_models_conn: Any, tmp_path: Path) -> None:
    from scripts.testbed.predict_data import make_frame, write_parquet

    write_parquet(make_frame(5), tmp_path / "in.parquet")
    out = tmp_path / "out"
    with pytest.raises(InvalidSpecError) as e:
        op(model_uri="models:/lin@nope", input_path=str(tmp_path / "in.parquet"), output_path=str(out)).execute(CTX)
    assert "model_uri='models:/lin@nope' was not found" in str(e.value)
    assert "alias" in str(e.value)
    assert ".." not in str(e.value)
    with pytest.raises(InvalidSpecError, match="does not exist"):
        op(input_path=str(tmp_path / "missing"), output_path=str(out)).execute(CTX)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").touch()
    with pytest.raises(InvalidSpecError, match="holds no data files"):
        op(input_path=str(tmp_path / "empty"), output_path=str(out)).execute(CTX)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(InvalidSpecError, match=r"notes\.txt is not a readable Parquet file") as e:
        op(input_path=str(tmp_path / "junk"), output_path=str(out)).execute(CTX)
    assert ".." not in str(e.value)  # pyarrow's own text ends with a period
    assert not out.exists()
    assert siblings(out) == []


def test_hdfs_connection_to_a_local_directory(
    local_models_conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``ml_hdfs`` connection with host ``file:///root`` maps absolute paths under that root."""
    from scripts.testbed.predict_data import make_frame, write_parquet

    monkeypatch.setenv("AIRFLOW_CONN_LAKE", json.dumps({"conn_type": "ml_hdfs", "host": f"file://{tmp_path}"}))
    write_parquet(make_frame(20), tmp_path / "data" / "in" / "p.parquet")
    result = op(input_path="/data/in", output_path="hdfs:///data/out", hdfs_conn_id="lake").execute(CTX)
    assert result["rows"] == 20
    assert sorted(os.listdir(tmp_path / "data" / "out")) == ["_SUCCESS", "part-00000.parquet"]


def log_classifier(models: Any) -> str:
    """Register ``cls``: a scikit-learn classifier whose output schema is an int64 tensor; its URI."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from airflow_ml_provider.hooks.mlflow import MlflowHook
    from scripts.testbed.predict_data import FEATURES, PIP, make_frame

    with MlflowHook().scoped():
        if MlflowClient().search_model_versions("name='cls'"):
            return "models:/cls/1"
        train = make_frame(100, seed=3)
        x = train[list(FEATURES)]
        model = LogisticRegression().fit(x, (x["a"] > 0.5).astype("int64"))
        experiment = MlflowClient().get_experiment_by_name("batch-predict")
        assert experiment is not None
        with mlflow.start_run(experiment_id=experiment.experiment_id):
            mlflow.sklearn.log_model(
                model, name="cls", signature=infer_signature(x, model.predict(x)),
                registered_model_name="cls", pip_requirements=PIP,
            )  # fmt: skip
    return "models:/cls/1"


def test_input_without_rows_gives_an_empty_part_with_the_output_schema(local_models_conn: Any, tmp_path: Path) -> None:
    """0 rows: one empty Parquet part with passthrough columns (their input types, partition keys as
    strings) and the prediction column typed by the model's output schema (float64 without one)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import structlog

    from scripts.testbed.predict_data import FEATURES, make_frame, write_parquet

    empty = make_frame(0)
    write_parquet(empty, tmp_path / "in" / "country=FR" / "part-0.parquet")
    write_parquet(empty, tmp_path / "in" / "country=DE" / "part-0.parquet")
    write_parquet(empty[list(FEATURES)], tmp_path / "features.parquet")
    cases = [
        ("models:/lin@champion", "in", None, {"id": pa.int64(), "a": pa.float64(), "b": pa.float64(),
         "c": pa.float64(), "country": pa.string(), "prediction": pa.float64()}),
        (log_classifier(local_models_conn), "in", ["id", "country"],
         {"id": pa.int64(), "country": pa.string(), "prediction": pa.int64()}),
        ("models:/nosig/1", "features.parquet", ["a"], {"a": pa.float64(), "prediction": pa.float64()}),
    ]  # fmt: skip
    for i, (uri, source, passthrough, expected) in enumerate(cases):
        out = tmp_path / f"out{i}"
        with structlog.testing.capture_logs() as logs:
            result = op(model_uri=uri, input_path=str(tmp_path / source), output_path=str(out),
                        passthrough_columns=passthrough).execute(CTX)  # fmt: skip
        assert (result["rows"], result["files"]) == (0, 1), uri
        assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000.parquet"]
        table = pq.read_table(out / "part-00000.parquet")
        assert table.num_rows == 0
        assert dict(zip(table.schema.names, table.schema.types, strict=True)) == expected, uri
        assert list(read_output(out).columns) == list(expected)
        warnings = [e["event"] for e in logs if e["log_level"] == "warning" and "has no rows" in e["event"]]
        assert len(warnings) == 1, logs
        assert str(tmp_path / source) in warnings[0]
        assert ".." not in warnings[0]
        assert siblings(out) == []


def test_loading_a_skops_model_silences_only_airflows_deprecated_import_warnings(
    local_models_conn: Any, tmp_path: Path
) -> None:
    """skops, imported by the first load of a scikit-learn model in a process, scans ``sys.modules``;
    each of Airflow's deprecated shim modules answers with a ``DeprecatedImportWarning`` (~1,100 log
    lines in a task). They are ignored during the load only; any other warning still shows.

    In a fresh interpreter, as a task process: there the shims are loaded before skops."""
    code = f"""
import json, sys, types, warnings
import airflow.utils.timezone  # a deprecated shim module, loaded in every task process
from airflow.utils.deprecation_tools import DeprecatedImportWarning
from airflow_ml_provider.scoring.model import load_model

def noisy(name):
    warnings.warn(f"noisy_shim.{{name}} looked up", UserWarning, stacklevel=2)
    raise AttributeError(name)

shim = types.ModuleType("noisy_shim")
shim.__getattr__ = noisy
sys.modules["noisy_shim"] = shim
assert "skops" not in sys.modules
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    load_model("models:/lin@champion", "ml_mlflow_default", {str(tmp_path / "model")!r})
    warnings.warn("after the load", DeprecatedImportWarning, stacklevel=1)
assert "skops" in sys.modules
print(json.dumps({{
    "deprecated": [str(w.message) for w in caught if issubclass(w.category, DeprecatedImportWarning)],
    "noisy": sum("noisy_shim." in str(w.message) for w in caught),
}}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[3])
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert list(tmp_path.rglob("model.skops")), "the model is not skops-serialized: this test proves nothing"
    assert got["deprecated"] == ["after the load"], got["deprecated"][:3]
    assert got["noisy"] > 0, "other warnings must still show"


def test_a_tracking_server_that_is_down_is_reported_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens on the connection's port: the load says unreachable, naming the URI."""
    from scripts.testbed.predict_data import make_frame, write_parquet

    uri = f"http://127.0.0.1:{free_port()}"
    conn = {"conn_type": "ml_mlflow", "host": uri, "extra": {"max_retries": 0, "timeout": 5}}
    monkeypatch.setenv("AIRFLOW_CONN_ML_MLFLOW_DOWN", json.dumps(conn))
    write_parquet(make_frame(5), tmp_path / "in.parquet")
    with pytest.raises(MlProviderError) as e:
        op(input_path=str(tmp_path / "in.parquet"), output_path=str(tmp_path / "out"),
           mlflow_conn_id="ml_mlflow_down").execute(CTX)  # fmt: skip
    message = str(e.value)
    assert f"the MLflow registry at {uri} was unreachable" in message, message
    assert "Connection refused" in message
    assert "'ml_mlflow_down'" in message
    assert "INTERNAL_ERROR" not in message
    assert ".." not in message
