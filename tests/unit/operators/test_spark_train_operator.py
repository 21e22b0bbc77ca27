"""SparkTrainOperator: parse-time checks, the spec, and submissions through the real SparkSubmitHook.

``spark-submit`` is a stand-in here (a script given as ``spark_binary``): it records its command line
and the ``MLFLOW_*``/``PYSPARK_*`` part of its environment, prints driver-like output and writes a
result, fails, or starts a "driver" child and sleeps, as the test asks. Everything between the
operator and that process is real: the provider's hook builds, logs and runs the command. Real Spark
(local, standalone) and a real MLflow server: tests/integration/test_spark_train_real.py.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.jobs.spark_spec import ERROR_TAG, SUBMISSION_TAG, parse_spec
from airflow_ml_provider.operators import spark_train_result as train_result
from airflow_ml_provider.operators import spark_train_submit as submit
from airflow_ml_provider.operators.spark_train import SparkTrainOperator

PASSWORD = "pw-7f3a9c-do-not-log"
TOKEN = "tok-51be0d-do-not-log"
TI = SimpleNamespace(dag_id="pricing", run_id="manual__2026-11-23T08:00:00+00:00", task_id="train", map_index=-1,
                     try_number=2)  # fmt: skip
CTX: Any = {"ti": TI}
RESULT = {"run_id": "r1", "experiment_id": "7", "model_uri": "runs:/r1/model", "algorithm": "linear",
          "task": "regression", "metric": "rmse", "metrics": {"rmse": 1.5}, "best_params": {}, "rows": {"train": 8},
          "groups": {}, "skipped_groups": {}}  # fmt: skip

FAKE_SPARK_SUBMIT = """#!{python}
import json, os, subprocess, sys, time, zipfile
args = sys.argv[1:]
env = {{k: v for k, v in os.environ.items() if k.startswith(("MLFLOW_", "PYSPARK_", "HADOOP_"))}}
record = {{"argv": args, "env": env}}
if "--py-files" in args:
    record["py_files"] = zipfile.ZipFile(args[args.index("--py-files") + 1]).namelist()
mode = os.environ.get("FAKE_SPARK_MODE", "ok")
print("26/11/30 04:03:45 INFO SparkContext: Running Spark version 4.2.0", flush=True)
print("26/11/30 04:03:46 INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID "
      "app-20261130040346-0007")
if mode == "sleep":
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    record["driver_pid"] = driver.pid
with open(os.environ["FAKE_SPARK_RECORD"], "w") as f:
    json.dump(record, f)
if mode == "ok" and "--result" in args:
    with open(args[args.index("--result") + 1], "w") as f:
        f.write(os.environ["FAKE_SPARK_RESULT"])
elif mode == "bad":
    print("spark_train: error: label column 'nope' is not in the input (the input's columns are ['a', 'b'])")
    sys.exit(2)
elif mode == "traceback":
    print("Traceback (most recent call last):")
    print('  File "/x/spark_train.py", line 400, in main')
    print("    result = log_and_result(spec, columns, classes, df)")
    print("             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^")
    print('  File "/x/spark_train.py", line 300, in train_spark_ml')
    print("    model = pipeline.fit(train)")
    print("pyspark.errors.exceptions.captured.IllegalArgumentException: maxIter given invalid value -1.")
    print(f"spark_train: error: IllegalArgumentException: maxIter given invalid value -1. https://u:{{os.environ.get('MLFLOW_TRACKING_PASSWORD')}}@mlflow")
    for i in range(30):
        print(f"26/11/30 04:03:5{{i % 10}} INFO ShutdownHookManager: Deleting directory /tmp/spark-{{i}}")
    sys.exit(1)
elif mode == "sleep":
    print("spark_train: start", flush=True)
    time.sleep(600)
"""


class FakeSpark(SimpleNamespace):
    binary: str
    record_path: Path

    def record(self) -> dict[str, Any]:
        return json.loads(self.record_path.read_text())


@pytest.fixture
def fake_spark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSpark:
    binary = tmp_path / "spark-submit"
    binary.write_text(FAKE_SPARK_SUBMIT.format(python=sys.executable))
    binary.chmod(0o755)
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_SPARK_RECORD", str(record))
    monkeypatch.setenv("FAKE_SPARK_RESULT", json.dumps(RESULT))
    monkeypatch.setenv(
        "AIRFLOW_CONN_ML_MLFLOW_DEFAULT",
        json.dumps(
            {"conn_type": "ml_mlflow", "host": "http://mlflow.invalid:5000", "login": "alice", "password": PASSWORD}
        ),
    )
    monkeypatch.delenv("AIRFLOW_CONN_SPARK_DEFAULT", raising=False)
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
        monkeypatch.delenv(name, raising=False)
    return FakeSpark(binary=str(binary), record_path=record)


def spark_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, host: str, **extra: Any) -> None:
    conn = {"conn_type": "spark", "host": host, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def op(**kw: Any) -> SparkTrainOperator:
    kw.setdefault("input_path", "/data/sales")
    kw.setdefault("label_column", "units_sold")
    kw.setdefault("algorithm", "linear")
    kw.setdefault("experiment_name", "pricing")
    return SparkTrainOperator(task_id="train", **kw)


def run(fake: FakeSpark, **kw: Any) -> dict[str, Any]:
    return op(spark_binary=fake.binary, **kw).execute(CTX)


def arg(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# -- parse time --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"algorithm": "xgboost"}, ["algorithm", "'xgboost'", "lightgbm_per_group"]),
        ({"param_grid": {"maxIter": []}}, ["param_grid.maxIter", "non-empty list"]),
        ({"param_grid": {"maxIter": ["ten"]}}, ["param_grid.maxIter", "whole number"]),
        ({"estimator_params": {"n_trees": 5}}, ["estimator_params.n_trees", "no parameter 'n_trees'"]),
        ({"input_path": "data/sales"}, ["input_path", "absolute local path"]),
        ({"label_column": ""}, ["label_column", "non-empty string"]),
        ({"experiment_name": ""}, ["experiment_name"]),
        ({"folds": 1}, ["folds", ">= 2"]),
        ({"algorithm": "lightgbm_per_group"}, ["group_column", "is required for lightgbm_per_group"]),
        ({"features": ["units_sold"]}, ["features", "'units_sold'", "one role"]),
        ({"metric": "auc"}, ["metric", "rmse"]),
        ({"driver_memory": "2 GB"}, ["driver_memory='2 GB'", "'2g'"]),
        ({"executor_cores": 0}, ["executor_cores=0", ">= 1"]),
        ({"num_executors": True}, ["num_executors=True"]),
        ({"spark_conf": ["spark.x=1"]}, ["spark_conf=", "dict of Spark properties"]),
        ({"spark_conf": {"spark.x": [1]}}, ["spark_conf values", "spark.x"]),
        ({"spark_conn_id": ""}, ["spark_conn_id=''", "'spark_default'"]),
        ({"mlflow_conn_id": None}, ["mlflow_conn_id=None", "'ml_mlflow_default'"]),
        ({"master": " "}, ["master=' '", "local[4]"]),
        ({"spark_log_level": "LOUD"}, ["spark_log_level='LOUD'", "WARN"]),
    ],
)
def test_static_arguments_are_checked_when_the_dag_is_parsed(kwargs: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(InvalidSpecError) as e:
        op(**kwargs)
    for name in names:
        assert name in str(e.value)


def test_templated_arguments_are_checked_after_rendering(fake_spark: FakeSpark) -> None:
    t = op(
        input_path="/data/{{ ds }}/sales",
        experiment_name="{{ dag_run.conf['experiment'] }}",
        param_grid={"regParam": "{{ params.grid }}"},  # Jinja renders text, not a list
        master="{{ params.master }}",
        spark_binary=fake_spark.binary,
    )
    assert isinstance(t.template_fields, tuple)
    assert {"input_path", "experiment_name", "estimator_params", "param_grid", "master"} <= set(t.template_fields)
    context: Any = {"ds": "2026-11-23", "dag_run": SimpleNamespace(conf={"experiment": "pricing"}),
               "params": {"grid": [0.1, 0.5], "master": "local[2]"}}  # fmt: skip
    t.render_template_fields(context)
    assert (t.input_path, t.experiment_name, t.master) == ("/data/2026-11-23/sales", "pricing", "local[2]")
    with pytest.raises(InvalidSpecError, match=r"param_grid\.regParam: must be a non-empty list.*'\[0\.1, 0\.5\]'"):
        t.execute(CTX)
    assert not fake_spark.record_path.exists()  # nothing was submitted


def test_the_spec_holds_what_is_given_and_the_spec_defaults_for_the_rest() -> None:
    t = op(algorithm="gbt", categorical=["country"], exclude=["sku"], param_grid={"maxDepth": [3, 5]},
           run_name="weekly", mlflow_tags={"team": "pricing"})  # fmt: skip
    spec = parse_spec(t.spec_dict("tag-1"))
    assert (spec.algorithm, spec.task, spec.label, spec.input) == ("gbt", "regression", "units_sold", "/data/sales")
    assert spec.categorical == ("country",)
    assert spec.exclude == ("sku",)
    assert spec.features is None
    assert spec.param_grid == {"maxDepth": (3, 5)}
    assert spec.params == {}
    assert (spec.folds, spec.holdout_fraction, spec.seed, spec.metric) == (3, 0.2, 42, "rmse")  # the spec's defaults
    assert spec.mlflow.experiment == "pricing"
    assert spec.mlflow.run_name == "weekly"
    assert spec.mlflow.tags == {"team": "pricing"}
    assert spec.mlflow.submission_tag == "tag-1"


def test_importing_and_building_the_operator_imports_nothing_heavy() -> None:
    """In a fresh interpreter, as the DAG processor would: the spec check is standard library only."""
    heavy = ("pyspark", "mlflow", "pandas", "pyarrow", "numpy", "docker", "hdfs", "requests", "lightgbm")
    code = (
        "import sys, json\n"
        "from airflow_ml_provider.operators.spark_train import SparkTrainOperator\n"
        "SparkTrainOperator(task_id='t', input_path='/in', label_column='y', algorithm='lightgbm_per_group',"
        " group_column='country', experiment_name='e', param_grid={'num_leaves': [7, 15]})\n"
        f"heavy = {heavy!r} + ('airflow.providers.apache.spark.hooks.spark_submit',)\n"
        "print(json.dumps(sorted(n for n in heavy if n in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


# -- client mode ------------------------------------------------------------------------------------------


def test_client_mode_without_a_spark_connection_runs_on_local_and_returns_the_result(
    fake_spark: FakeSpark, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "stray-token-of-the-worker")  # must not reach the driver
    result = run(fake_spark, exclude=["sku"], driver_memory="1g", spark_conf={"spark.sql.shuffle.partitions": 4})
    assert json.loads(json.dumps(result)) == result  # an XCom
    assert {k: result[k] for k in RESULT} == RESULT
    assert result["master"] == "local[*]"
    assert result["deploy_mode"] == "client"
    assert result["application_id"] == "app-20261130040346-0007"
    tag = result["submission_tag"]
    assert tag.startswith("pricing/manual__2026-11-23T08:00:00+00:00/train/-1/2/")
    assert len(tag.rsplit("/")[-1]) == 8
    odd = SimpleNamespace(dag_id="d", run_id="it's a run", task_id="t", map_index=3, try_number=1)
    assert submit.submission_tag(odd).startswith("d/it_s_a_run/t/3/1/")  # nothing MLflow's filter must quote

    record = fake_spark.record()
    argv = record["argv"]
    assert arg(argv, "--master") == "local[*]"
    assert "--deploy-mode" not in argv
    assert arg(argv, "--driver-memory") == "1g"
    confs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    assert confs == ["spark.sql.shuffle.partitions=4", "spark.log.level=WARN"]
    assert submit.APPLICATION in argv
    assert submit.APPLICATION.endswith("airflow_ml_provider/jobs/spark_train.py")
    spec = parse_spec(arg(argv, "--spec"))
    assert spec.mlflow.submission_tag == tag
    assert spec.exclude == ("sku",)
    assert arg(argv, "--result").endswith("result.json")
    assert "airflow_ml_provider/jobs/spark_spec.py" in record["py_files"]

    env = record["env"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.invalid:5000"
    assert env["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert env["MLFLOW_TRACKING_PASSWORD"] == PASSWORD
    assert "MLFLOW_TRACKING_TOKEN" not in env  # the worker's stray token stayed behind
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "stray-token-of-the-worker"  # and is back in place
    assert env["PYSPARK_DRIVER_PYTHON"] == sys.executable
    assert env["PYSPARK_PYTHON"] == sys.executable

    logged = capsys.readouterr().out + caplog.text
    assert "Spark-Submit cmd" in logged
    assert "spark_train.py" in logged
    assert PASSWORD not in logged  # client mode: the credentials travel in the environment only
    assert not Path(arg(argv, "--result")).parent.exists()  # the scratch directory is gone


def test_the_py_files_zip_holds_the_jobs_package(tmp_path: Path) -> None:
    with zipfile.ZipFile(submit.write_py_files(str(tmp_path))) as zf:
        names = set(zf.namelist())
        assert zf.read("airflow_ml_provider/__init__.py") == b""
    assert {"airflow_ml_provider/jobs/spark_train.py", "airflow_ml_provider/jobs/spark_spec.py",
            "airflow_ml_provider/jobs/spark_lightgbm.py", "airflow_ml_provider/jobs/common.py"} <= names  # fmt: skip
    assert all(n.startswith("airflow_ml_provider/jobs/") for n in names - {"airflow_ml_provider/__init__.py"})


def test_the_connection_gives_master_and_binary_and_master_overrides_it(
    fake_spark: FakeSpark, monkeypatch: pytest.MonkeyPatch
) -> None:
    spark_conn(monkeypatch, "spark_bed", "spark://127.0.0.1:7077")
    result = run(fake_spark, spark_conn_id="spark_bed", spark_log_level=None)
    argv, env = fake_spark.record()["argv"], fake_spark.record()["env"]
    assert arg(argv, "--master") == "spark://127.0.0.1:7077" == result["master"]
    assert "--conf" not in argv
    assert env["PYSPARK_DRIVER_PYTHON"] == sys.executable
    assert "PYSPARK_PYTHON" not in env
    run(fake_spark, spark_conn_id="spark_bed", master="local[3]", spark_conf={"spark.pyspark.python": "/opt/py"})
    argv, env = fake_spark.record()["argv"], fake_spark.record()["env"]
    assert arg(argv, "--master") == "local[3]"
    assert "PYSPARK_PYTHON" not in env
    assert "PYSPARK_DRIVER_PYTHON" not in env

    hook_class = submit.submit_hook_class()
    spark_conn(monkeypatch, "spark_named", "local[2]", **{"spark-binary": "spark3-submit"})
    assert hook_class(conn_id="spark_named").binary == "spark3-submit"  # the connection's choice
    expected = submit.venv_spark_submit() or "spark-submit"
    assert hook_class(conn_id="spark_bed").binary == expected  # next to this Python
    missing = hook_class(conn_id="no_such_spark_connection")
    assert (missing.master, missing.connection_missing, missing.deploy_mode) == ("local[*]", True, "client")


# -- failures ----------------------------------------------------------------------------------------------


def test_bad_input_fails_without_retries_naming_the_problem(
    fake_spark: FakeSpark, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SPARK_MODE", "bad")
    with pytest.raises(InvalidSpecError) as e:
        run(fake_spark)
    text = str(e.value)
    assert "spark_train.py on local[*] (client mode) exited with code 2" in text
    assert "label column 'nope' is not in the input" in text
    assert "Running Spark version" not in text


def test_a_failure_quotes_the_exception_not_the_shutdown_noise_and_no_secret(
    fake_spark: FakeSpark, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SPARK_MODE", "traceback")
    with pytest.raises(MlProviderError) as e:
        run(fake_spark)
    assert not isinstance(e.value, InvalidSpecError)  # exit 1: a retry may help
    text = str(e.value)
    assert "exited with code 1" in text
    assert 'File "/x/spark_train.py", line 300, in train_spark_ml' in text
    assert "IllegalArgumentException: maxIter given invalid value -1." in text
    assert "spark_train: error:" in text
    assert "ShutdownHookManager" not in text
    assert "log_and_result" not in text
    assert PASSWORD not in text
    assert "u:***@mlflow" in text
    assert "Spark-Submit cmd" not in text
    assert "--spec" not in text


def test_a_missing_result_file_or_binary_fails_clearly(fake_spark: FakeSpark, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SPARK_MODE", "noresult")
    with pytest.raises(MlProviderError, match="exited 0 but the application wrote no result file"):
        run(fake_spark)
    with pytest.raises(
        MlProviderError, match=r"Could not start '/nonexistent/spark-submit'.*airflow-ml-provider\[spark\]"
    ):
        op(spark_binary="/nonexistent/spark-submit").execute(CTX)


def test_explain_picks_the_traceback_and_the_verdict() -> None:
    lines = ["26/11/30 04:03:45 INFO SparkContext: Running", "Traceback (most recent call last):",
             'File "/a.py", line 1, in <module>', "main()", 'File "/b.py", line 9, in main', "x = 1 / 0", "~~^~~",
             "ZeroDivisionError: division by zero", "26/11/30 04:03:46 INFO ShutdownHookManager: Shutdown hook called",
             "spark_train: error: ZeroDivisionError: division by zero"]  # fmt: skip
    assert submit.explain(lines) == [
        'File "/b.py", line 9, in main',
        "ZeroDivisionError: division by zero",
        "spark_train: error: ZeroDivisionError: division by zero",
    ]
    jvm = ["26/11/30 04:03:45 INFO A: ok", "26/11/30 04:03:46 ERROR B: lost executor", "26/11/30 04:03:47 INFO C: bye"]
    assert submit.explain(jvm) == ["26/11/30 04:03:46 ERROR B: lost executor"]
    assert submit.explain(["one", "", "two"], limit=1) == ["two"]


# -- cluster mode --------------------------------------------------------------------------------------------


class FakeRun(SimpleNamespace):
    pass


class FakeMlflowClient:
    """The MlflowClient calls result_from_mlflow makes, answering from one run."""

    def __init__(self, runs: list[Any], tmp: Path, experiment: bool = True) -> None:
        self.runs = runs
        self.tmp = tmp
        self.experiment = experiment
        self.filters: list[str] = []

    def get_experiment_by_name(self, name: str) -> Any:
        return SimpleNamespace(experiment_id="7", name=name) if self.experiment else None

    def search_runs(self, experiment_ids: list[str], filter_string: str = "", max_results: int = 1000) -> list[Any]:
        self.filters.append(filter_string)
        return self.runs

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        if path != "columns.json":
            raise OSError(f"no artifact {path}")
        target = Path(dst_path or self.tmp) / path
        target.write_text(json.dumps({"label": "units_sold", "features": ["a"], "classes": None}))
        return str(target)


def finished_run(status: str = "FINISHED") -> Any:
    return FakeRun(
        info=SimpleNamespace(run_id="c1", experiment_id="7", status=status),
        data=SimpleNamespace(
            metrics={
                "rmse": 2.0,
                "mae": 1.0,
                "r2": 0.5,
                "cv_rmse": 2.1,
                "rows_train": 80,
                "rows_holdout": 20,
                "rmse.DE": 3.0,
            },
            params={"param.maxIter": "50", "best.regParam": "0.1", "algorithm": "linear"},
            tags={ERROR_TAG: "IllegalArgumentException: boom"},
        ),
        outputs=SimpleNamespace(model_outputs=[SimpleNamespace(model_id="m-1", step=0)]),
    )


def test_cluster_mode_finds_the_run_by_its_submission_tag(
    fake_spark: FakeSpark, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    conn = {"conn_type": "ml_mlflow", "host": "https://mlflow.corp", "password": TOKEN, "extra": {"auth": "token"}}
    monkeypatch.setenv("AIRFLOW_CONN_ML_MLFLOW_DEFAULT", json.dumps(conn))
    spark_conn(monkeypatch, "spark_yarn", "yarn", **{"deploy-mode": "cluster"})
    client = FakeMlflowClient([finished_run()], tmp_path)
    monkeypatch.setattr(MlflowHook, "get_client", lambda self: client)
    result = run(fake_spark, spark_conn_id="spark_yarn", spark_log_level=None)

    argv = fake_spark.record()["argv"]
    assert arg(argv, "--master") == "yarn"
    assert arg(argv, "--deploy-mode") == "cluster"
    confs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    assert "spark.yarn.appMasterEnv.MLFLOW_TRACKING_URI=https://mlflow.corp" in confs
    assert f"spark.yarn.appMasterEnv.MLFLOW_TRACKING_TOKEN={TOKEN}" in confs  # the hook's way in YARN cluster mode
    assert not any("PYSPARK_" in c for c in confs)
    logged = capsys.readouterr().out
    assert "spark.yarn.appMasterEnv.MLFLOW_TRACKING_URI" in logged  # the hook's "Spark-Submit cmd" line
    # The hook masks only keys naming secret/password; the operator registered the token with Airflow's
    # masker, which redacts the task log (this test runs outside a task runner, where nothing redacts).
    assert TOKEN in logged
    assert TOKEN not in str(redact(logged))

    tag = result["submission_tag"]
    assert client.filters == [f"tags.`{SUBMISSION_TAG}` = '{tag}'"]
    assert result["run_id"] == "c1"
    assert result["model_uri"] == "runs:/c1/model"
    assert result["model_id"] == "m-1"
    assert result["metrics"] == {"rmse": 2.0, "mae": 1.0, "r2": 0.5, "cv_rmse": 2.1}
    assert result["best_params"] == {"maxIter": 50, "regParam": 0.1}
    assert result["rows"] == {"train": 80, "holdout": 20}
    assert result["columns"]["label"] == "units_sold"
    assert result["groups"] == {}
    assert result["skipped_groups"] == {}
    assert (result["master"], result["deploy_mode"]) == ("yarn", "cluster")


def test_finding_the_run_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(MlProviderError, match="experiment 'e' does not exist"):
        train_result.find_run(FakeMlflowClient([], tmp_path, experiment=False), "e", "t")
    with pytest.raises(MlProviderError, match="has no run tagged"):
        train_result.find_run(FakeMlflowClient([], tmp_path), "e", "t")
    with pytest.raises(MlProviderError, match="has 2 runs tagged"):
        train_result.find_run(FakeMlflowClient([finished_run(), finished_run()], tmp_path), "e", "t")
    with pytest.raises(MlProviderError, match="run c1 ended FAILED: IllegalArgumentException: boom"):
        train_result.find_run(FakeMlflowClient([finished_run("FAILED")], tmp_path), "e", "t")


def test_standalone_and_local_masters_refuse_cluster_mode_before_submitting(
    fake_spark: FakeSpark, monkeypatch: pytest.MonkeyPatch
) -> None:
    spark_conn(monkeypatch, "spark_sa", "spark://10.0.0.1:7077", **{"deploy-mode": "cluster"})
    for master in (None, "local[2]"):
        with pytest.raises(InvalidSpecError, match=r"deploy-mode 'cluster'.*set its deploy-mode extra to 'client'"):
            run(fake_spark, spark_conn_id="spark_sa", master=master)
    assert not fake_spark.record_path.exists()


# -- on_kill -----------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_on_kill_ends_spark_submit_and_the_driver_it_started(
    fake_spark: FakeSpark, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SPARK_MODE", "sleep")
    task = op(spark_binary=fake_spark.binary)
    task.on_kill()  # nothing submitted yet: nothing to do
    errors: list[BaseException] = []

    def execute() -> None:
        try:
            task.execute(CTX)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=execute)
    thread.start()
    deadline = time.monotonic() + 30
    while not (fake_spark.record_path.exists() and fake_spark.record_path.stat().st_size):
        assert time.monotonic() < deadline, "the stand-in spark-submit did not start"
        time.sleep(0.05)
    driver = fake_spark.record()["driver_pid"]
    assert _alive(driver)
    started = time.monotonic()
    task.on_kill()
    thread.join(30)
    assert not thread.is_alive()
    assert time.monotonic() - started < 15
    assert not _alive(driver)
    assert len(errors) == 1
    assert isinstance(errors[0], MlProviderError)
    assert "was killed by signal 9" in str(errors[0])


# -- input on an ml_hdfs connection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "extra", "url", "confs"),
    [
        ("nn1.example:9870", {"rpc_port": "8021"}, "hdfs://nn1.example:8021/lake/sales", set()),
        (
            "nn1.example:9870,nn2.example:9870",
            {},
            "hdfs://lake-conn/lake/sales",
            {"spark.hadoop.dfs.nameservices=lake-conn"},
        ),
    ],
)
def test_an_input_on_an_hdfs_connection_is_read_over_rpc_as_its_user(
    fake_spark: FakeSpark, monkeypatch: pytest.MonkeyPatch, host: str, extra: dict[str, str], url: str, confs: set[str]
) -> None:
    conn = {"conn_type": "ml_hdfs", "host": host, "login": "etl", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_LAKE_CONN", json.dumps(conn))
    monkeypatch.delenv("HADOOP_USER_NAME", raising=False)
    run(fake_spark, input_path="hdfs:///lake/sales", hdfs_conn_id="lake_conn")
    record = fake_spark.record()
    assert parse_spec(arg(record["argv"], "--spec")).input == url
    assert record["env"]["HADOOP_USER_NAME"] == "etl"
    given = {record["argv"][i + 1] for i, a in enumerate(record["argv"]) if a == "--conf"}
    assert confs <= given


def test_an_hdfs_connection_input_is_checked_as_a_storage_path_at_parse_time() -> None:
    assert op(input_path="hdfs:///lake/sales", hdfs_conn_id="lake").hdfs_conn_id == "lake"  # no host needed
    assert op(input_path="{{ params.path }}", hdfs_conn_id="lake").input_path == "{{ params.path }}"
    with pytest.raises(InvalidSpecError, match="input_path='lake/sales' is not absolute"):
        op(input_path="lake/sales", hdfs_conn_id="lake")
