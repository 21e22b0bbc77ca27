"""SparkTrainOperator for real: spark-submit of the training application to a Spark standalone master
(the ``spark_standalone`` bed: Master + Worker, 2 cores), logging to the real MLflow server, then the
handoff: MlflowRegisterModelOperator registers the returned ``model_uri`` and MlflowBatchPredictOperator
(pandas) scores next week's data with it. Also: on_kill removes the application from the master and
leaves no process behind, and credentials reach the driver (checked by an authenticating proxy in front
of MLflow) without appearing in the task's log.

Four spark-submit runs (each 15-60 s on 2 cores): linear and lightgbm_per_group on the standalone master,
one killed there, one on ``local[2]`` through the proxy.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_ml_provider.exceptions import MlProviderError
from airflow_ml_provider.hooks.mlflow import SCOPED_VARIABLES, MlflowHook
from airflow_ml_provider.jobs.spark_spec import SUBMISSION_TAG, parse_spec
from airflow_ml_provider.operators import spark_train_result as train_result
from airflow_ml_provider.operators.mlflow_registry import MlflowRegisterModelOperator
from airflow_ml_provider.operators.spark_train import SparkTrainOperator
from scripts.testbed import spark_bed
from scripts.testbed.loopback_http import LoopbackHttpServer, QuietHandler

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]
TOKEN = "tok-3c9e71a0-never-in-a-log"
FEATURES = ["week_of_year", "base_price", "discount", "stock", "days_to_season_end"]
COUNTRIES = ("DE", "FR", "IT")
ROWS = 300  # per country; LU gets 20, below min_group_rows


def ctx(task_id: str) -> Any:
    ti = SimpleNamespace(dag_id="pricing_weekly", run_id=f"manual__{uuid.uuid4().hex[:6]}", task_id=task_id,
                         map_index=-1, try_number=1)  # fmt: skip
    return {"ti": ti}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Training data (DE, FR, IT and a small LU) and next week's data to score (DE, FR, IT)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_ml_provider.jobs.synthetic import make_country_frame, write_week

    root = tmp_path_factory.mktemp("sales")
    train = write_week(str(root), "2026-11-23", COUNTRIES, rows_per_country=ROWS)
    (Path(train) / "country=LU").mkdir()
    small = pa.Table.from_pandas(make_country_frame("LU", "2026-11-23", 20), preserve_index=False)
    pq.write_table(small, f"{train}/country=LU/part-0.parquet")
    score = write_week(str(root), "2026-11-30", COUNTRIES, rows_per_country=100, seed=1)
    return SimpleNamespace(train=train, score=score, rows=len(COUNTRIES) * ROWS + 20, root=root)


@pytest.fixture
def spark_conn(spark_standalone: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``spark`` connection to the bed's master, as a DAG author writes it."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SPARK_BED", json.dumps({"conn_type": "spark", "host": spark_standalone.master_url})
    )
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # the bed listens on loopback only
    return "spark_bed"


def app_ids(ui_url: str, kind: str) -> set[str]:
    return {a["id"] for a in spark_bed.applications(ui_url)[kind]}


def new_apps(ui_url: str, before: set[str]) -> list[dict[str, Any]]:
    return [a for a in spark_bed.applications(ui_url)["completed"] if a["id"] not in before]


def check_run(result: dict[str, Any], experiment: str) -> Any:
    """The MLflow run of a result: finished, tagged with the submission, in the experiment."""
    hook = MlflowHook()
    with hook.scoped():
        client = hook.get_client()
        run = client.get_run(result["run_id"])
        assert client.get_experiment(run.info.experiment_id).name == experiment
    assert run.info.status == "FINISHED"
    assert run.data.tags[SUBMISSION_TAG] == result["submission_tag"]
    assert run.data.tags["team"] == "pricing"
    assert run.data.metrics[result["metric"]] == pytest.approx(result["metrics"][result["metric"]])
    return run


SCORE = """
import json, sys
from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator
out = MlflowBatchPredictOperator(task_id="score", model_uri=sys.argv[1], input_path=sys.argv[2],
                                 output_path=sys.argv[3]).execute({})
print("SCORED " + json.dumps(out, default=str))
"""


def register_and_score(result: dict[str, Any], data: Any, tmp_path: Path) -> Any:
    """The handoff: register the returned model_uri, score next week's data with the registered version."""
    import pandas as pd

    name = f"pricing-{uuid.uuid4().hex[:8]}"
    registered = MlflowRegisterModelOperator(task_id="register", name=name, model_uri=result["model_uri"]).execute(
        ctx("register")
    )
    assert registered["version"] == "1"
    assert registered["model_uri"] == f"models:/{name}/1"
    out = tmp_path / "scores"
    # In a process of its own: for a Spark ML model MLflow starts a local SparkSession to load it, and in
    # this pytest process that session could meet the PySpark gateway state other modules left behind
    # (seen in CI: 'Connection refused'). A task's process starts clean, as this one does.
    done = subprocess.run(
        [sys.executable, "-c", SCORE, registered["model_uri"], data.score, str(out)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("SCORED ")]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert lines, done.stdout[-3000:]
    scored = json.loads(lines[-1].removeprefix("SCORED "))
    assert scored["rows"] == 300
    frame = pd.read_parquet(out)
    assert len(frame) == 300
    assert frame["prediction"].notna().all()
    assert frame["prediction"].corr(frame["units_sold"]) > 0.3  # it learnt something
    return frame


def test_linear_on_the_standalone_master_then_register_and_score(
    spark_standalone: Any, spark_conn: str, mlflow_conn: str, data: Any, tmp_path: Path
) -> None:
    ui = spark_standalone.ui_url
    before = app_ids(ui, "completed")
    experiment = f"spark-train-linear-{uuid.uuid4().hex[:8]}"
    task = SparkTrainOperator(
        task_id="train", input_path=data.train, label_column="units_sold", algorithm="linear", exclude=["sku"],
        categorical=["country"], param_grid={"regParam": [0.01, 0.5]}, folds=2, experiment_name=experiment,
        mlflow_tags={"team": "pricing"}, spark_conn_id=spark_conn, executor_memory="512m",
    )  # fmt: skip
    started = time.monotonic()
    result = task.execute(ctx("train"))
    took = time.monotonic() - started

    assert json.loads(json.dumps(result)) == result  # the XCom
    assert (result["algorithm"], result["task"], result["metric"]) == ("linear", "regression", "rmse")
    assert (result["master"], result["deploy_mode"]) == (spark_standalone.master_url, "client")
    assert result["model_uri"] == f"runs:/{result['run_id']}/model"
    assert sum(result["rows"].values()) == data.rows
    assert result["best_params"]["regParam"] in (0.01, 0.5)
    assert set(result["metrics"]) >= {"rmse", "mae", "r2", "cv_rmse"}
    assert all(math.isfinite(v) for v in result["metrics"].values())
    assert result["columns"]["categorical"] == ["country"]
    assert result["columns"]["features"] == FEATURES
    run = check_run(result, experiment)
    assert json.loads(run.data.params["best.regParam"]) == result["best_params"]["regParam"]

    ran = new_apps(ui, before)  # it ran on the standalone master, and finished there
    assert len(ran) == 1, ran
    assert ran[0]["state"] == "FINISHED"
    assert experiment in ran[0]["name"]
    assert not [a for a in spark_bed.applications(ui)["active"] if experiment in a["name"]]

    # cluster deploy mode finds the run by the submission tag: the same query, on the real server
    spec = parse_spec(task.spec_dict(result["submission_tag"]))
    found = train_result.result_from_mlflow(MlflowHook(), spec, result["submission_tag"])
    assert found["run_id"] == result["run_id"]
    assert found["metrics"] == pytest.approx(result["metrics"])
    assert found["best_params"] == result["best_params"]
    assert found["rows"] == result["rows"]
    if "model_id" in result:
        assert found["model_id"] == result["model_id"]

    frame = register_and_score(result, data, tmp_path)
    assert list(frame.columns)[-1] == "prediction"
    print(f"linear training on the standalone master: {took:.1f} s")


def test_lightgbm_per_group_with_a_master_override_then_register_and_score(
    spark_standalone: Any, mlflow_conn: str, data: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    ui = spark_standalone.ui_url
    before = app_ids(ui, "completed")
    experiment = f"spark-train-lgbm-{uuid.uuid4().hex[:8]}"
    task = SparkTrainOperator(
        task_id="train", input_path=data.train, label_column="units_sold", algorithm="lightgbm_per_group",
        group_column="country", exclude=["sku"], estimator_params={"num_iterations": 40},
        param_grid={"num_leaves": [7, 15]}, folds=2, experiment_name=experiment, mlflow_tags={"team": "pricing"},
        spark_conn_id="no_such_spark_connection", master=spark_standalone.master_url, executor_memory="512m",
    )  # fmt: skip
    started = time.monotonic()
    result = task.execute(ctx("train"))
    took = time.monotonic() - started

    assert json.loads(json.dumps(result)) == result
    assert result["master"] == spark_standalone.master_url
    assert sorted(result["groups"]) == sorted(COUNTRIES)
    assert list(result["skipped_groups"]) == ["LU"]
    assert "20" in result["skipped_groups"]["LU"]
    assert set(result["best_params"]) == set(COUNTRIES)
    assert all(p["num_leaves"] in (7, 15) and p["num_iterations"] == 40 for p in result["best_params"].values())
    assert result["rows"]["train"] + result["rows"]["holdout"] == len(COUNTRIES) * ROWS
    run = check_run(result, experiment)
    assert {f"rmse.{c}" for c in COUNTRIES} <= set(run.data.metrics)
    ran = new_apps(ui, before)
    assert len(ran) == 1, ran
    assert ran[0]["state"] == "FINISHED"

    register_and_score(result, data, tmp_path)
    print(f"lightgbm_per_group training on the standalone master: {took:.1f} s")


def _processes_mentioning(text: str) -> list[str]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if text in cmdline and proc.pid != os.getpid():
            with_status = proc.status() if proc.is_running() else "gone"
            if with_status != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.pid} {cmdline[:160]}")
    return found


def test_on_kill_removes_the_application_from_the_master_and_leaves_no_process(
    spark_standalone: Any, spark_conn: str, mlflow_conn: str, data: Any
) -> None:
    ui = spark_standalone.ui_url
    experiment = f"spark-train-kill-{uuid.uuid4().hex[:8]}"
    task = SparkTrainOperator(
        task_id="train", input_path=data.train, label_column="units_sold", algorithm="gbt", exclude=["sku"],
        param_grid={"maxDepth": [2, 3, 4], "maxIter": [10, 20]}, folds=3, experiment_name=experiment,
        spark_conn_id=spark_conn, executor_memory="512m",
    )  # fmt: skip
    errors: list[BaseException] = []

    def execute() -> None:
        try:
            task.execute(ctx("train"))
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=execute, name="spark-train")
    thread.start()
    deadline = time.monotonic() + 120
    active: list[dict[str, Any]] = []
    while not active:
        assert thread.is_alive(), f"the training ended before it was killed: {errors}"
        assert time.monotonic() < deadline, "the application never became active on the master"
        active = [a for a in spark_bed.applications(ui)["active"] if experiment in a["name"]]
        time.sleep(0.5)
    assert _processes_mentioning(experiment)  # spark-submit's JVM and the Python driver
    killed_at = time.monotonic()
    task.on_kill()
    thread.join(60)
    assert not thread.is_alive()
    assert len(errors) == 1, errors
    assert isinstance(errors[0], MlProviderError), errors
    assert "was killed by signal 9" in str(errors[0])

    app_id = active[0]["id"]
    while app_id in app_ids(ui, "active"):
        assert time.monotonic() - killed_at < 60, "the application is still active on the master"
        time.sleep(0.5)
    gone_in = time.monotonic() - killed_at
    done = [a for a in spark_bed.applications(ui)["completed"] if a["id"] == app_id]
    assert len(done) == 1, done
    assert done[0]["state"] in ("FINISHED", "KILLED")
    assert _processes_mentioning(experiment) == []  # (other sessions' trainings may run meanwhile)
    print(f"application {app_id} left the master's active list {gone_in:.1f} s after on_kill ({done[0]['state']})")


# -- credentials: to the driver, never into the log --------------------------------------------------------------


class BearerProxy:
    """Forwards to MLflow only requests carrying ``Authorization: Bearer <token>``; answers 401 to others."""

    def __init__(self, upstream: str, token: str) -> None:
        up = urlsplit(upstream)
        self.authorized = 0
        self.refused: list[str] = []
        proxy = self

        class Handler(QuietHandler):
            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # requests sends an empty file so
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline().strip():  # trailers, up to the blank line
                        pass
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _forward(self) -> None:
                body = self._body()
                if self.headers.get("Authorization") != f"Bearer {token}":
                    proxy.refused.append(f"{self.command} {self.path}")
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                proxy.authorized += 1
                dropped = ("host", "connection", "transfer-encoding", "content-length")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
                conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers={**headers, "Host": up.netloc})
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status, resp.reason)
                for key, value in resp.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _forward

        self._http = LoopbackHttpServer(Handler, name="bearer-proxy")
        self.url = self._http.url

    def __enter__(self) -> BearerProxy:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()


@pytest.fixture
def token_conn(mlflow_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[BearerProxy]:
    """``ml_mlflow_token``: the MLflow server behind a proxy that wants a bearer token."""
    for name in SCOPED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with BearerProxy(mlflow_server.url, TOKEN) as proxy:
        conn = {"conn_type": "ml_mlflow", "host": proxy.url, "password": TOKEN,
                "extra": {"auth": "token", "max_retries": 1, "timeout": 20}}  # fmt: skip
        monkeypatch.setenv("AIRFLOW_CONN_ML_MLFLOW_TOKEN", json.dumps(conn))
        yield proxy
    assert [n for n in SCOPED_VARIABLES if n in os.environ] == []


def test_the_token_reaches_the_driver_and_never_the_log(
    token_conn: BearerProxy, data: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    experiment = f"spark-train-token-{uuid.uuid4().hex[:8]}"
    result = SparkTrainOperator(
        task_id="train", input_path=data.train, label_column="units_sold", algorithm="linear", exclude=["sku"],
        experiment_name=experiment, mlflow_tags={"team": "pricing"}, mlflow_conn_id="ml_mlflow_token",
        master="local[2]", spark_log_level="INFO",  # every line Spark has, in the log
    ).execute(ctx("train"))  # fmt: skip
    assert token_conn.authorized > 5
    assert token_conn.refused == []
    hook = MlflowHook("ml_mlflow_token")
    with hook.scoped():
        run = hook.get_client().get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags[SUBMISSION_TAG] == result["submission_tag"]
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    assert "Spark-Submit cmd" in logged
    assert "spark_train: result" in logged
    assert len(logged.splitlines()) > 200
    assert TOKEN not in logged
    assert TOKEN not in json.dumps(result)
