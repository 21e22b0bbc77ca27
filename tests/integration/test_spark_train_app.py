"""The Spark training application (airflow_ml_provider/jobs/spark_train.py) through a real ``spark-submit
--master local[2]``, logging to the real MLflow test server, the way SparkTrainOperator runs it: the
script path, the jobs package as a ``--py-files`` zip, ``--spec JSON --result PATH``.

Spark startups are few: three trainings (linear with a cross-validated 2x1 grid, GBT classification,
lightgbm_per_group) run once for the module; two bad inputs (a missing column, an empty dataset) run
once each; one loader process loads all three models with mlflow.pyfunc (one JVM for the two Spark
models) where ``airflow_ml_provider`` cannot be imported. Spec and environment errors exit before
Spark starts, so those runs are plain ``python`` processes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ml_provider.jobs.synthetic import make_country_frame
from scripts.testbed import spark_bed
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

JOBS = ROOT / "airflow_ml_provider" / "jobs"
APP = JOBS / "spark_train.py"
#: Rows per country; LU is below min_group_rows (50) and is skipped by lightgbm_per_group.
COUNTRIES = {"DE": 1200, "FR": 1000, "IT": 800, "LU": 30}
TOTAL_ROWS = sum(COUNTRIES.values())
FEATURES = ["week_of_year", "base_price", "discount", "stock", "days_to_season_end"]
RESULT_KEYS = {
    "run_id",
    "experiment_id",
    "model_uri",
    "algorithm",
    "task",
    "metric",
    "metrics",
    "best_params",
    "rows",
    "columns",
    "classes",
    "groups",
    "skipped_groups",
    "application_id",
    "seconds",
}
#: Test settings: small shuffles, no UI, and the driver JVM (local mode: the executors too) with the C1
#: JIT only and the serial GC, as the Spark test bed's daemons: a short run uses about 40 % less CPU.
SPARK_CONF = [
    "--conf",
    "spark.ui.enabled=false",
    "--conf",
    "spark.sql.shuffle.partitions=4",
    "--conf",
    "spark.log.level=WARN",
    "--driver-memory",
    "1g",
    "--driver-java-options",
    " ".join(spark_bed.JVM_FLAGS),
]


def write_dataset(root: Path) -> Path:
    """The synthetic sales as the ingest writes them (``country=XX/`` partitions, no country column in
    the files) plus a string ``segment`` and a yes/no ``big_sale``; with ``_SUCCESS`` and hidden files."""
    for country, rows in COUNTRIES.items():
        frame = make_country_frame(country, "2026-11-23", rows, seed=3)
        frame["segment"] = np.where(frame["base_price"] < 30, "low", np.where(frame["base_price"] < 60, "mid", "high"))
        frame["big_sale"] = np.where(frame["units_sold"] > 8, "yes", "no")  # a string label
        part = root / f"country={country}"
        part.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), part / "part-0.parquet")
    (root / "_SUCCESS").write_bytes(b"")
    (root / ".part-1.parquet.crc").write_bytes(b"not parquet")  # hidden: Spark skips . and _ files
    (root / "_temporary").mkdir()
    (root / "_temporary" / "junk.parquet").write_bytes(b"not parquet")
    return root


def jobs_zip(path: Path) -> Path:
    """What the operator ships as ``--py-files``: the jobs package and an empty provider ``__init__``."""
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("airflow_ml_provider/__init__.py", "")
        for module in sorted(JOBS.glob("*.py")):
            out.write(module, f"airflow_ml_provider/jobs/{module.name}")
    return path


def app_env(mlflow_url: str | None) -> dict[str, str]:
    env = spark_bed.submit_env()
    env.pop("PYTHONPATH", None)
    for name in [k for k in env if k.startswith("MLFLOW_")]:
        env.pop(name)
    if mlflow_url:
        env["MLFLOW_TRACKING_URI"] = mlflow_url
    return env


def submit(spec: dict[str, Any], workdir: Path, zip_path: Path, mlflow_url: str) -> dict[str, Any]:
    """One ``spark-submit`` of the application; its exit code, output, result (or None) and seconds."""
    result = workdir / f"result-{uuid.uuid4().hex[:8]}.json"
    cmd = [
        spark_bed.spark_submit(),
        "--master",
        "local[2]",
        *SPARK_CONF,
        "--py-files",
        str(zip_path),
        str(APP),
        "--spec",
        json.dumps(spec),
        "--result",
        str(result),
    ]
    started = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=workdir, env=app_env(mlflow_url), capture_output=True, text=True, timeout=600, check=False
    )
    return {
        "code": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "result": json.loads(result.read_text()) if result.exists() else None,
        "seconds": time.monotonic() - started,
        "workdir": workdir,
    }


def mlflow_spec(tag: str, **extra: Any) -> dict[str, Any]:
    return {"experiment": "spark-train-app", "submission_tag": tag, "tags": {"team": "pricing"}, **extra}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("spark_train")
    empty = base / "empty"
    empty.mkdir()
    (empty / "_SUCCESS").write_bytes(b"")
    return {"base": base, "dataset": write_dataset(base / "sales"), "zip": jobs_zip(base / "jobs.zip"), "empty": empty}


@pytest.fixture(scope="module")
def client(mlflow_server: Any) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url)


SPECS: dict[str, dict[str, Any]] = {
    "linear": {
        "label": "units_sold",
        "algorithm": "linear",
        "categorical": ["segment", "country"],
        "exclude": ["big_sale"],
        "param_grid": {"regParam": [0.01, 0.3], "elasticNetParam": [0.0]},
        "folds": 2,
    },
    "gbt": {
        "label": "big_sale",
        "task": "classification",
        "algorithm": "gbt",
        "categorical": ["segment"],
        "exclude": ["units_sold"],
        "params": {"maxIter": 5, "maxDepth": 3},
    },
    "lightgbm": {
        "label": "units_sold",
        "algorithm": "lightgbm_per_group",
        "group_column": "country",
        "categorical": ["segment"],
        "exclude": ["big_sale"],
        "params": {"num_iterations": 30},
        "param_grid": {"num_leaves": [7, 15]},
        "folds": 2,
    },
}


@pytest.fixture(scope="module")
def trained(data: dict[str, Path], mlflow_server: Any) -> dict[str, dict[str, Any]]:
    """The three trainings, each one spark-submit (sequential: the machine has 2 cores)."""
    runs = {}
    for name, body in SPECS.items():
        spec = {"input": str(data["dataset"]), **body, "mlflow": mlflow_spec(f"{name}-{uuid.uuid4().hex[:8]}")}
        runs[name] = {"spec": spec, **submit(spec, data["base"], data["zip"], mlflow_server.url)}
        print(f"spark_train {name}: exit {runs[name]['code']} in {runs[name]['seconds']:.1f} s")
    return runs


def succeeded(run: dict[str, Any]) -> dict[str, Any]:
    assert run["code"] == 0, f"stdout:\n{run['stdout'][-4000:]}\nstderr:\n{run['stderr'][-4000:]}"
    result = run["result"]
    assert result is not None
    assert set(result) == RESULT_KEYS
    assert result["model_uri"] == f"runs:/{result['run_id']}/model"
    last = run["stdout"].strip().splitlines()[-1]
    assert last.startswith("spark_train: result ")
    assert json.loads(last.removeprefix("spark_train: result ")) == result
    for value in result["metrics"].values():
        assert value is None or math.isfinite(value)
    return dict(result)


def finished_run(client: Any, run: dict[str, Any]) -> Any:
    """The MLflow run, found by the submission tag as the operator finds it in cluster mode."""
    tag = run["spec"]["mlflow"]["submission_tag"]
    found = client.search_runs(
        [client.get_experiment_by_name("spark-train-app").experiment_id],
        filter_string=f"tags.`airflow_ml_provider.submission` = '{tag}'",
    )
    assert len(found) == 1
    return found[0]


def logged_models(client: Any, mlflow_run: Any) -> list[str]:
    """Where a model of the run is: run artifacts (mlflow.spark) or MLflow 3 logged models (pyfunc)."""
    names = [a.path for a in client.list_artifacts(mlflow_run.info.run_id) if a.path == "model"]
    models = client.search_logged_models(
        experiment_ids=[mlflow_run.info.experiment_id], filter_string=f"source_run_id = '{mlflow_run.info.run_id}'"
    )
    return names + [m.name for m in models]


# --------------------------------------------------------------------------- the trainings


def test_linear_regression_cross_validated_over_the_grid(trained: dict[str, Any], client: Any) -> None:
    run = trained["linear"]
    result = succeeded(run)
    assert (result["algorithm"], result["task"], result["metric"]) == ("linear", "regression", "rmse")
    assert set(result["metrics"]) == {"rmse", "mae", "r2", "cv_rmse"}
    assert result["metrics"]["r2"] > 0.1
    assert result["best_params"]["regParam"] in (0.01, 0.3)
    assert result["best_params"]["elasticNetParam"] == 0.0
    assert result["rows"]["train"] + result["rows"]["holdout"] == TOTAL_ROWS  # hidden files ignored
    assert 0.1 < result["rows"]["holdout"] / TOTAL_ROWS < 0.3
    assert result["columns"] == {
        "label": "units_sold",
        "features": FEATURES,
        "categorical": ["segment", "country"],
        "group": None,
        "classes": None,
    }
    assert (result["groups"], result["skipped_groups"], result["classes"]) == ({}, {}, None)
    out = run["stdout"]
    # the driver imports the package from the --py-files zip (before the venv's editable install)
    assert f"code={run['workdir'] / 'jobs.zip'}/airflow_ml_provider/jobs" in out
    assert f"rows={TOTAL_ROWS} label=units_sold features={FEATURES}" in out
    assert "estimator=LinearRegression 2 grid point(s) x 2 folds" in out
    assert "best params={" in out
    assert "holdout metrics={" in out

    mlflow_run = finished_run(client, run)
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.info.run_id == result["run_id"]
    assert mlflow_run.data.tags["team"] == "pricing"
    assert mlflow_run.data.metrics["rmse"] == pytest.approx(result["metrics"]["rmse"])
    assert mlflow_run.data.metrics["cv_rmse"] == pytest.approx(result["metrics"]["cv_rmse"])
    assert mlflow_run.data.metrics["rows_holdout"] == result["rows"]["holdout"]
    params = mlflow_run.data.params
    assert params["best.regParam"] == json.dumps(result["best_params"]["regParam"])
    assert (params["algorithm"], params["estimator"], params["grid_size"], params["folds"]) == (
        "linear",
        "LinearRegression",
        "2",
        "2",
    )
    assert params["features"] == ",".join(FEATURES)
    logged_spec = Path(client.download_artifacts(result["run_id"], "spec.json", str(run["workdir"])))
    assert json.loads(logged_spec.read_text())["param_grid"] == SPECS["linear"]["param_grid"]
    assert logged_models(client, mlflow_run) == ["model"]


def test_gbt_classification(trained: dict[str, Any], client: Any) -> None:
    run = trained["gbt"]
    result = succeeded(run)
    assert result["classes"] == ["no", "yes"]  # a Spark ML model predicts their index
    assert set(result["metrics"]) == {"areaUnderROC", "accuracy", "f1"}  # no grid: no cv_ metric
    assert result["metrics"]["areaUnderROC"] > 0.7
    assert result["best_params"] == {"maxIter": 5, "maxDepth": 3}
    assert "classes=['no', 'yes']" in run["stdout"]
    assert "estimator=GBTClassifier no grid: one fit" in run["stdout"]
    mlflow_run = finished_run(client, run)
    assert mlflow_run.data.params["param.maxIter"] == "5"
    assert mlflow_run.data.metrics["areaUnderROC"] == pytest.approx(result["metrics"]["areaUnderROC"])


def test_lightgbm_per_group(trained: dict[str, Any], client: Any) -> None:
    run = trained["lightgbm"]
    result = succeeded(run)
    assert sorted(result["groups"]) == ["DE", "FR", "IT"]
    assert result["skipped_groups"] == {"LU": "30 rows, fewer than min_group_rows=50"}
    for country, group in result["groups"].items():
        assert group["rows_train"] + group["rows_holdout"] == COUNTRIES[country]
        assert group["best_params"]["num_leaves"] in (7, 15)
        assert group["best_params"]["num_iterations"] == 30
        assert group["metrics"]["rmse"] > 0
        assert group["cv_rmse"] > 0
    assert result["rows"]["train"] + result["rows"]["holdout"] == TOTAL_ROWS - COUNTRIES["LU"]
    assert set(result["metrics"]) == {"rmse", "mae", "r2", "cv_rmse"}
    assert result["metrics"]["r2"] > 0.2
    # the overall rmse is the holdout rows' rmse over every group
    holdouts = {c: g["rows_holdout"] for c, g in result["groups"].items()}
    pooled = sum(holdouts[c] * g["metrics"]["rmse"] ** 2 for c, g in result["groups"].items()) / sum(holdouts.values())
    assert result["metrics"]["rmse"] == pytest.approx(math.sqrt(pooled))
    assert "warning: group country=LU skipped: 30 rows" in run["stdout"]

    mlflow_run = finished_run(client, run)
    metrics = mlflow_run.data.metrics
    assert metrics["rmse.DE"] == pytest.approx(result["groups"]["DE"]["metrics"]["rmse"])
    assert {"rmse.FR", "mae.IT", "r2.DE"} <= set(metrics)
    assert "rmse.LU" not in metrics
    assert (metrics["groups_trained"], metrics["groups_skipped"]) == (3, 1)
    assert json.loads(mlflow_run.data.tags["airflow_ml_provider.skipped_groups"]) == result["skipped_groups"]
    path = client.download_artifacts(result["run_id"], "groups.json", str(run["workdir"]))
    assert json.loads(Path(path).read_text())["skipped"] == result["skipped_groups"]
    assert logged_models(client, mlflow_run) == ["model"]


LOADER = """
import importlib.abc, json, math, sys

class Block(importlib.abc.MetaPathFinder):  # prove the models need nothing of this repository
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "airflow_ml_provider":
            raise ImportError("blocked: " + name)

sys.meta_path.insert(0, Block())
import mlflow.pyfunc
import numpy as np
from mlflow.models import Model

out = {}
for uri in sys.argv[1:]:
    model = mlflow.pyfunc.load_model(uri)
    local = mlflow.artifacts.download_artifacts(uri)
    example = Model.load(local).load_input_example(local)
    predicted = model.predict(example)
    values = predicted["prediction"] if hasattr(predicted, "columns") else predicted
    schema = model.metadata.get_input_schema()
    out[uri] = {"inputs": [[c.name, c.type.name] for c in schema.inputs], "rows": len(example),
                "predictions": [float(v) for v in np.asarray(values, dtype="float64")],
                "flavors": sorted(model.metadata.flavors)}
    if "country" in example.columns:
        unknown = example.assign(country="XX")
        try:
            model.predict(unknown)
        except Exception as e:
            out[uri]["unknown_group_error"] = str(e)
print(json.dumps(out))
"""


def test_models_load_in_a_plain_process_and_predict_their_input_example(
    trained: dict[str, Any], data: dict[str, Path], mlflow_server: Any
) -> None:
    results = {name: succeeded(run) for name, run in trained.items()}
    script = data["base"] / "load_models.py"
    script.write_text(textwrap.dedent(LOADER))
    uris = [r["model_uri"] for r in results.values()]
    # the Spark flavour starts a local session in the loader: the same JVM settings as the app's
    java_options = " ".join(spark_bed.JVM_FLAGS)
    env = app_env(mlflow_server.url) | {"PYSPARK_SUBMIT_ARGS": f"--driver-java-options '{java_options}' pyspark-shell"}
    proc = subprocess.run(
        [sys.executable, "-I", str(script), *uris],
        cwd=data["base"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    types = {
        "week_of_year": "long",
        "base_price": "double",
        "discount": "double",
        "stock": "long",
        "days_to_season_end": "long",
        "segment": "string",
        "country": "string",
    }
    for name, result in results.items():
        model = loaded[result["model_uri"]]
        inputs = [*result["columns"]["features"], *result["columns"]["categorical"]]
        inputs += [result["columns"]["group"]] if result["columns"]["group"] else []
        assert model["inputs"] == [[c, types[c]] for c in inputs], name  # the raw columns, not the vector
        assert 1 <= model["rows"] <= 5
        assert len(model["predictions"]) == model["rows"]
        assert all(math.isfinite(v) for v in model["predictions"]), name
    assert loaded[results["gbt"]["model_uri"]]["flavors"] == ["python_function", "spark"]
    assert set(loaded[results["gbt"]["model_uri"]]["predictions"]) <= {0.0, 1.0}
    lightgbm_model = loaded[results["lightgbm"]["model_uri"]]
    assert lightgbm_model["flavors"] == ["python_function"]
    assert (
        "no model for country=['XX']: this model knows country ['DE', 'FR', 'IT']"
        in (lightgbm_model["unknown_group_error"])
    )


# --------------------------------------------------------------------------- bad input


def failed_run(client: Any, run: dict[str, Any]) -> Any:
    mlflow_run = finished_run(client, run)
    assert mlflow_run.info.status == "FAILED"
    assert logged_models(client, mlflow_run) == []
    return mlflow_run


def test_missing_column_fails_naming_it(data: dict[str, Path], mlflow_server: Any, client: Any) -> None:
    spec = {
        "input": str(data["dataset"]),
        "label": "units_sold",
        "algorithm": "gbt",
        "features": ["discount", "shelf_space"],
        "mlflow": mlflow_spec(f"missing-{uuid.uuid4().hex[:8]}"),
    }
    run = {"spec": spec, **submit(spec, data["base"], data["zip"], mlflow_server.url)}
    assert run["code"] == 2, run["stderr"][-3000:]
    assert run["result"] is None
    error = [line for line in run["stdout"].splitlines() if line.startswith("spark_train: error: ")]
    assert len(error) == 1
    assert "feature column 'shelf_space' is not in the input" in error[0]
    assert "'discount'" in error[0]  # the columns it has are listed
    mlflow_run = failed_run(client, run)
    assert "shelf_space" in mlflow_run.data.tags["airflow_ml_provider.error"]


def test_empty_dataset_fails_naming_it(data: dict[str, Path], mlflow_server: Any, client: Any) -> None:
    spec = {
        "input": f"file://{data['empty']}",
        "label": "units_sold",
        "algorithm": "linear",
        "mlflow": mlflow_spec(f"empty-{uuid.uuid4().hex[:8]}"),
    }
    run = {"spec": spec, **submit(spec, data["base"], data["zip"], mlflow_server.url)}
    assert run["code"] == 2, run["stderr"][-3000:]
    assert f"spark_train: error: input file://{data['empty']} holds no Parquet data files" in run["stdout"]
    assert "holds no Parquet data" in failed_run(client, run).data.tags["airflow_ml_provider.error"]


def drifted_copy(source: Path, target: Path, change: Any) -> Path:
    """``source``'s partitions rewritten with ``change(frame)`` applied to each file."""
    for part in sorted(source.glob("country=*")):
        frame = pq.read_table(part / "part-0.parquet").to_pandas()
        (target / part.name).mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(change(frame), preserve_index=False), target / part.name / "part-0.parquet")
    return target


def test_an_all_null_feature_fails_naming_it(data: dict[str, Path], mlflow_server: Any, client: Any) -> None:
    """LightGBM would take the column and learn nothing from it: a clear error instead of a silent model."""
    empty_stock = drifted_copy(data["dataset"], data["base"] / "null-stock", lambda f: f.assign(stock=np.nan))
    spec = {"input": str(empty_stock), **SPECS["lightgbm"], "mlflow": mlflow_spec(f"null-{uuid.uuid4().hex[:8]}")}
    run = {"spec": spec, **submit(spec, data["base"], data["zip"], mlflow_server.url)}
    assert run["code"] == 2, run["stderr"][-3000:]
    assert f"feature 'stock' is null in all {TOTAL_ROWS} rows" in run["stdout"]
    assert "list it in exclude" in failed_run(client, run).data.tags["airflow_ml_provider.error"]


def test_schema_drift_since_the_last_run_fails_unless_allowed(
    trained: dict[str, Any], data: dict[str, Path], mlflow_server: Any, client: Any
) -> None:
    """The same spec as the finished lightgbm run, on data that lost ``discount`` and whose ``stock``
    became a float: the run fails listing both changes; with on_schema_change='allow' it trains and
    records them on the run."""
    base_run = succeeded(trained["lightgbm"])
    drifted = drifted_copy(
        data["dataset"], data["base"] / "drifted", lambda f: f.drop(columns=["discount"]).astype({"stock": "float64"})
    )
    spec = {"input": str(drifted), **SPECS["lightgbm"], "mlflow": mlflow_spec(f"drift-{uuid.uuid4().hex[:8]}")}
    run = {"spec": spec, **submit(spec, data["base"], data["zip"], mlflow_server.url)}
    assert run["code"] == 2, run["stderr"][-3000:]
    error = failed_run(client, run).data.tags["airflow_ml_provider.error"]
    assert f"the input's columns changed since run {base_run['run_id']} (same spec)" in error
    assert "'discount' (float) is gone" in error
    assert "'stock' was integer, is float" in error
    assert "on_schema_change='allow'" in error

    spec = {**spec, "on_schema_change": "allow", "mlflow": mlflow_spec(f"drift-ok-{uuid.uuid4().hex[:8]}")}
    run = {"spec": spec, **submit(spec, data["base"], data["zip"], mlflow_server.url)}
    result = succeeded(run)
    assert "discount" not in result["columns"]["features"]
    tags = finished_run(client, run).data.tags
    assert "'discount' (float) is gone" in tags["airflow_ml_provider.schema_change"]
    assert json.loads(tags["airflow_ml_provider.input_schema"])["schema"]["stock"] == "float"
    assert "(allowed by on_schema_change='allow')" in run["stdout"]


def run_python(args: list[str], cwd: Path, mlflow_url: str | None) -> subprocess.CompletedProcess[str]:
    """The application without spark-submit: spec and environment errors exit before Spark starts."""
    env = app_env(mlflow_url) | {"PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(APP), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_bad_spec_exits_2_before_spark_and_mlflow(data: dict[str, Path], mlflow_server: Any, client: Any) -> None:
    tag = f"badspec-{uuid.uuid4().hex[:8]}"
    spec = {
        "input": str(data["dataset"]),
        "label": "units_sold",
        "algorithm": "gbt",
        "folds": 1,
        "mlflow": mlflow_spec(tag),
    }
    result = data["base"] / "bad.json"
    proc = run_python(["--spec", json.dumps(spec), "--result", str(result)], data["base"], mlflow_server.url)
    assert proc.returncode == 2
    assert proc.stdout.strip() == (
        "spark_train: error: spec field 'folds': must be a whole number >= 2, got 1 (default 3)"
    )
    assert not result.exists()
    experiment = client.get_experiment_by_name("spark-train-app")
    if experiment is not None:
        filter_string = f"tags.`airflow_ml_provider.submission` = '{tag}'"
        assert client.search_runs([experiment.experiment_id], filter_string=filter_string) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--spec", "{}"], "the following arguments are required: --result; usage: spark_train.py --spec"),
        (["--spec", "[", "--result", "r.json"], "spec field 'spec': is not valid JSON"),
        (
            [
                "--spec",
                json.dumps({"input": "/x", "label": "y", "algorithm": "linear", "mlflow": {"experiment": "e"}}),
                "--result",
                "/no/such/dir/r.json",
            ],
            "--result /no/such/dir/r.json: its directory does not exist",
        ),
    ],
)
def test_bad_arguments_exit_2(args: list[str], expected: str, tmp_path: Path, mlflow_server: Any) -> None:
    proc = run_python(args, tmp_path, mlflow_server.url)
    assert proc.returncode == 2
    assert expected in proc.stdout


def test_tracking_uri_must_come_from_the_environment(tmp_path: Path) -> None:
    spec = {"input": "/x", "label": "y", "algorithm": "linear", "mlflow": {"experiment": "e"}}
    proc = run_python(["--spec", json.dumps(spec), "--result", str(tmp_path / "r.json")], tmp_path, None)
    assert proc.returncode == 2
    assert "spark_train: error: MLFLOW_TRACKING_URI is not set" in proc.stdout


def test_unreachable_mlflow_exits_1_before_spark(tmp_path: Path) -> None:
    from scripts.testbed.loopback_http import free_port

    spec = {"input": "/x", "label": "y", "algorithm": "linear", "mlflow": {"experiment": "e"}}
    env_url = f"http://bob:s3cret@127.0.0.1:{free_port()}"  # nothing listens there
    proc = subprocess.run(
        [sys.executable, str(APP), "--spec", json.dumps(spec), "--result", str(tmp_path / "r.json")],
        cwd=tmp_path,
        env=app_env(env_url) | {"PYTHONPATH": str(ROOT), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "spark_train: error: starting the MLflow run failed: " in proc.stdout
    assert "s3cret" not in proc.stdout
    assert not (tmp_path / "r.json").exists()
