"""``dags/ml_pipeline.py`` end to end against the real services: ``dag.test()``, then the real scheduler.

Every system the DAG talks to is real: a MariaDB source database of this module's own
(127.0.0.1:3306) seeded with the project's generator; the lake on the real HDFS; training and
scoring on the real Spark standalone master (``spark-submit``, so no PySpark session lives in the
pytest process); the real MLflow server; the endpoint on the real dockerd (serving image of
``scripts/testbed/serve_image.py``); the ERP in a fresh PostgreSQL database (127.0.0.1:5432)
holding the DAG's ``ERP_TABLE_DDL`` table.

1. Run 1, under ``dag.test()`` (tests/integration/dag_test_runs.py), ``deploy=on``: ingest, report,
   per-country LightGBM, version 1 registered and made ``@champion`` (the first version ever),
   served behind the endpoint, every country's predictions in the ERP naming version 1.
2. Run 2, through the real scheduler (``AirflowBed``: api-server, scheduler with LocalExecutor,
   triggerer, dag-processor, PostgreSQL metadata), ``algorithms=["linear"]``: its holdout RMSE is
   shown to be worse than run 1's from both runs' XComs, so ``promote`` keeps version 1 as
   ``@champion`` (version 2 becomes ``@challenger``), ``deploy_gate`` skips the deploy saying why,
   the endpoint keeps the same containers serving version 1, and the ERP rows are replaced with
   predictions of the champion, still naming version 1.

The endpoint gets a name and port pair of this module's own through the DAG's
``ML_PIPELINE_ENDPOINT`` / ``ML_PIPELINE_ENDPOINT_PORT`` variables, so it never meets another
``ml-pipeline`` endpoint on the same engine. Nothing is left behind: the endpoint's containers,
both databases, the HDFS directory, the registered model and the Airflow bed's metadata database
are removed. The source password appears in no output, log, XCom or metadata.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import importlib.util
import io
import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, TESTBED
from tests.integration import databases
from tests.integration.conftest import admin_client, running_airflow
from tests.integration.dag_test_runs import airflow_home, run_dag_test, task_states

pytestmark = pytest.mark.integration

DAG_PATH = ROOT / "dags" / "ml_pipeline.py"
DAG_ID = "ml_pipeline"


def _dag_module() -> ModuleType:
    """The DAG file as a module, for its constants (importing it is cheap and does no I/O)."""
    spec = importlib.util.spec_from_file_location("_ml_pipeline_constants", DAG_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PIPELINE = _dag_module()
SECRET = "Src-Pw-ml-pipe-4417"
COUNTRIES = ["DE", "FR", "IT"]
WEEKS, SKUS = 10, 12
PER_COUNTRY = WEEKS * SKUS
ROWS = PER_COUNTRY * len(COUNTRIES)
MODEL = PIPELINE.MODEL_NAME
ERP_TABLE = PIPELINE.DEFAULT_ERP_TABLE
TASKS = ("ingest", "eda", "plan_training", "train[0]", "select_model", "register", "promote", "deploy_gate",
         "deploy", "predict", "write_erp")  # fmt: skip


@dataclass
class Stack:
    """The services of this module and what the runs need to reach them."""

    source_db: str
    erp_db: str
    lake_dir: str
    endpoint: str
    port: int
    conns: dict[str, str]
    spark_master: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def storage_root(self) -> str:
        return f"hdfs://{self.lake_dir}"

    def conf(self, **overrides: Any) -> dict[str, Any]:
        return {"storage_root": self.storage_root, "spark_master": self.spark_master, **overrides}


def endpoint_state(endpoint: str) -> list[tuple[str, str, str]]:
    """(container id, role, model version) of the endpoint's containers."""
    import docker

    from airflow_ml_provider.serving.endpoint_docker import LABEL_ENDPOINT, LABEL_ROLE, LABEL_VERSION

    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"{LABEL_ENDPOINT}={endpoint}"})
        return sorted((c.id, c.labels.get(LABEL_ROLE, ""), c.labels.get(LABEL_VERSION, "")) for c in found)
    finally:
        client.close()


def endpoint_port() -> int:
    """A port p with p and p + 1 (the router's control port) free, below the ephemeral range: a port the
    kernel hands out for outgoing connections (Spark's, HDFS's) was taken between picking and the
    deploy in one run here (``Address already in use``)."""
    import socket

    from scripts.compose_env import free_ports

    for _ in range(50):
        [port] = free_ports(1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair below the ephemeral range on 127.0.0.1")


def delete_model() -> None:
    """Remove the registered model from this session's MLflow server (a leftover, or at the end)."""
    from mlflow.exceptions import MlflowException

    from airflow_ml_provider.hooks.mlflow import MlflowHook

    hook = MlflowHook()
    with hook.scoped(), contextlib.suppress(MlflowException):
        hook.get_client().delete_registered_model(MODEL)


@pytest.fixture(scope="module")
def stack(hdfs: Any, mlflow_server: Any, spark_standalone: Any, serve_image: str) -> Iterator[Stack]:
    """The source (seeded), the ERP table, a lake directory owned by the lake's user, an endpoint name."""
    from airflow_ml_provider.jobs.synthetic_seed import seed_database
    from airflow_ml_provider.operators.mlflow_deploy import remove_endpoint

    with (
        databases.mariadb_database("ml_pipe", password=SECRET, grant="ALL") as source_db,
        databases.postgres_database("ml_pipe_erp") as erp_db,
        pytest.MonkeyPatch.context() as mp,
    ):
        source = {"conn_type": "mysql", "host": databases.MARIADB_HOST, "port": databases.MARIADB_PORT,
                  "login": source_db, "password": SECRET, "schema": source_db}  # fmt: skip
        erp = {"conn_type": "postgres", "host": databases.PG_HOST, "port": databases.PG_PORT,
               "login": databases.PG_USER, "schema": erp_db}  # fmt: skip
        lake = {"conn_type": "ml_hdfs", "host": ",".join(u.removeprefix("http://") for u in hdfs.namenode_urls),
                "login": "etl", "extra": {"timeout": 30, "rpc_port": str(urlsplit(hdfs.rpc_url).port)}}  # fmt: skip
        conns = {
            "AIRFLOW_CONN_ML_PIPELINE_SOURCE": json.dumps(source),
            "AIRFLOW_CONN_ML_PIPELINE_ERP": json.dumps(erp),
            "AIRFLOW_CONN_ML_HDFS_DEFAULT": json.dumps(lake),
            "AIRFLOW_CONN_ML_MLFLOW_DEFAULT": json.dumps(
                {"conn_type": "ml_mlflow", "host": mlflow_server.url, "extra": {"max_retries": 2, "timeout": 60}}
            ),
        }
        for key, value in conns.items():
            mp.setenv(key, value)
        t0 = time.monotonic()
        seeded = seed_database("ml_pipeline_source", skus_per_country=SKUS, weeks=WEEKS, countries=COUNTRIES, seed=1)
        assert seeded["rows"] == ROWS
        erp_query(erp_db, PIPELINE.ERP_TABLE_DDL.format(table=ERP_TABLE))
        lake_dir = f"/t/ml-pipeline-{uuid.uuid4().hex[:10]}"
        admin = admin_client(hdfs)
        admin.makedirs(lake_dir, permission="755")
        admin.set_owner(lake_dir, owner="etl")  # the lake connection's user writes the datasets
        delete_model()
        port = endpoint_port()
        bed = Stack(source_db, erp_db, lake_dir, f"t-mlpipe-{uuid.uuid4().hex[:8]}", port, conns,
                    spark_standalone.master_url)  # fmt: skip
        bed.timings["setup"] = time.monotonic() - t0
        try:
            yield bed
        finally:
            remove_endpoint(bed.endpoint)
            delete_model()
            admin.delete(lake_dir, recursive=True)
    assert endpoint_state(bed.endpoint) == [], "containers of the endpoint left after remove_endpoint"
    assert admin.status(lake_dir, strict=False) is None


def run_env(stack: Stack) -> dict[str, str]:
    """What both runs' processes need besides Airflow's own settings: the connections, spark-submit's
    environment and the endpoint's name and port."""
    from scripts.testbed.spark_bed import submit_env

    return {
        # PYSPARK_*: the operators choose the driver's and executors' Python themselves
        **{k: v for k, v in submit_env().items() if not k.startswith(("MLFLOW_", "HADOOP_", "PYSPARK_"))},
        **stack.conns,
        "ML_PIPELINE_ENDPOINT": stack.endpoint,
        "ML_PIPELINE_ENDPOINT_PORT": str(stack.port),
    }


# -- reading what the runs left ---------------------------------------------------------------------------


def erp_query(database: str, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement in the ERP database (committed); its rows, if it returns any."""
    import psycopg2

    db = psycopg2.connect(host=databases.PG_HOST, port=databases.PG_PORT, user=databases.PG_USER, dbname=database)
    try:
        with db, db.cursor() as cur:
            cur.execute(statement, args)
            return list(cur.fetchall()) if cur.description else []
    finally:
        db.close()


def erp_rows(stack: Stack) -> dict[str, tuple[int, str, bool]]:
    """country -> (rows, the one model_uri they name, every prediction finite) in the ERP table."""
    got = erp_query(
        stack.erp_db,
        f"SELECT country, COUNT(*), MIN(model_uri), MAX(model_uri), "  # noqa: S608  # our constant
        f"BOOL_AND(predicted_units > '-Infinity' AND predicted_units < 'Infinity') "  # false for NaN too
        f"FROM {ERP_TABLE} GROUP BY country ORDER BY country",
    )
    for country, _, low, high, _ in got:
        assert low == high, f"{country}: rows of two models ({low}, {high})"
    return {country: (n, low, finite) for country, n, low, _, finite in got}


def erp_prediction(stack: Stack, country: str, sku: str, week: Any) -> float:
    """The ERP's prediction for one (country, sku, week)."""
    [(value,)] = erp_query(
        stack.erp_db,
        f"SELECT predicted_units FROM {ERP_TABLE} WHERE country = %s AND sku = %s AND week = %s",  # noqa: S608
        (country, sku, week),
    )
    return float(value)


def sample_rows(hdfs: Any, stack: Stack, n: int = 3) -> Any:
    """``n`` ingested rows of DE (a pandas DataFrame, the country column restored from the partition)."""
    import pyarrow.parquet as pq

    admin = admin_client(hdfs)
    folder = f"{stack.lake_dir}/sales/ingested/country=DE"
    part = sorted(p for p in admin.list(folder) if p.endswith(".parquet"))[0]
    with admin.read(f"{folder}/{part}") as f:
        frame = pq.read_table(io.BytesIO(f.read())).to_pandas().head(n)
    frame["country"] = "DE"
    return frame


def invoke(port: int, frame: Any) -> list[float]:
    """POST the model's inputs of ``frame`` to the endpoint (MLflow's scoring protocol); its predictions."""
    inputs = frame.drop(columns=[c for c in ("id", "week", "units_sold") if c in frame.columns])
    body = json.dumps({"dataframe_split": json.loads(inputs.to_json(orient="split", index=False, date_format="iso"))})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        resp = c.getresponse()
        data = resp.read()
        assert resp.status == 200, data[:2000]
        answer = json.loads(data)["predictions"]
        return [float(v["prediction"] if isinstance(v, dict) else v) for v in answer]
    finally:
        c.close()


def champion_version() -> str:
    from airflow_ml_provider.hooks.mlflow import MlflowHook

    hook = MlflowHook()
    with hook.scoped():
        return str(hook.get_client().get_model_version_by_alias(MODEL, "champion").version)


def bed_xcom(bed: Any, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}?map_index={map_index}"
    value = bed.api("GET", path)["value"]
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def bed_durations(bed: Any, run_id: str) -> dict[str, float | None]:
    body = bed.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")
    out = {}
    for ti in body["task_instances"]:
        key = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
        out[key] = ti.get("duration")
    return out


def bed_text(bed: Any) -> str:
    """Every task and component log of the bed."""
    chunks = []
    for folder in (bed.log_dir, bed.component_log_dir):
        for path in folder.rglob("*"):
            if path.is_file():
                chunks.append(path.read_text(errors="replace"))
    return "\n".join(chunks)


def report(name: str, wall: float, durations: dict[str, Any]) -> None:
    parts = ", ".join(f"{k} {v:.1f}" for k, v in durations.items() if isinstance(v, (int, float)))
    print(f"\n{name}: {wall:.1f} s wall; task seconds: {parts}")


# -- the test ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(2400)  # two full runs on a shared 2-core machine; measured times are printed
def test_first_run_serves_a_champion_and_a_worse_run_through_the_scheduler_changes_nothing(
    stack: Stack, hdfs: Any, spark_standalone: Any
) -> None:
    env = run_env(stack)

    # ---- run 1: dag.test(), deploy on -------------------------------------------------------------------
    home = airflow_home("airflow-ml-pipeline", DAG_ID, DAG_PATH.read_text(), env)
    t0 = time.monotonic()
    first, output = run_dag_test(home, DAG_ID, timeout=1500, conf=stack.conf(deploy="on"))
    (TESTBED / "airflow-ml-pipeline" / "run-1.out").write_text(output)  # the whole run's output, to read
    report("run 1 (dag.test)", time.monotonic() - t0, first["durations"])
    assert task_states(first) == dict.fromkeys(TASKS, "success"), (first["states"], output[-10000:])
    assert first["state"] == "success"
    x = first["xcoms"]
    assert x["ingest"]["rows"] == ROWS
    assert sorted(x["ingest"]["partitions"]) == [f"country={c}" for c in COUNTRIES]
    admin = admin_client(hdfs)
    eda_dir = f"{stack.lake_dir}/sales/ingested/_eda"
    assert x["eda"]["report_html"].endswith(f"{eda_dir}/report.html"), x["eda"]
    assert admin.status(f"{eda_dir}/report.html")["length"] > 1000
    assert admin.status(f"{eda_dir}/summary.json")["length"] > 100
    assert x["eda"]["rows"] == ROWS
    train1 = x["train[0]"]
    assert train1["algorithm"] == "lightgbm_per_group"
    assert train1["master"] == stack.spark_master  # on the standalone cluster
    assert sorted(train1["groups"]) == COUNTRIES
    assert x["select_model"]["model_uri"] == train1["model_uri"]
    assert str(x["register"]["version"]) == "1"
    promote1 = x["promote"]
    assert (promote1["promoted"], promote1["alias"], promote1["previous_version"]) == (True, "champion", None)
    assert x["deploy_gate"] is True
    assert first["other_xcoms"]["deploy_gate:decision"] == "deploying version 1"
    deployed = x["deploy"]
    assert (deployed["endpoint"], str(deployed["version"])) == (f"http://127.0.0.1:{stack.port}", "1")
    assert x["predict"]["rows"] == ROWS
    assert "_SUCCESS" in admin.list(f"{stack.lake_dir}/sales/predictions")
    assert sorted(x["write_erp"]["keys"]) == COUNTRIES
    assert erp_rows(stack) == {c: (PER_COUNTRY, f"models:/{MODEL}/1", True) for c in COUNTRIES}
    assert champion_version() == "1"
    served = endpoint_state(stack.endpoint)
    assert [(role, version) for _, role, version in served if role != "router"] == [("model", "1")]
    assert deployed["container"] in {cid for cid, _, _ in served}
    # the endpoint answers a real request, with what the batch scoring wrote to the ERP for those rows
    rows = sample_rows(hdfs, stack)
    answers = invoke(stack.port, rows)
    assert len(answers) == len(rows)
    assert all(math.isfinite(a) for a in answers)
    for (_, row), answer in zip(rows.iterrows(), answers, strict=True):
        assert erp_prediction(stack, "DE", row["sku"], row["week"]) == pytest.approx(answer, rel=1e-6, abs=1e-6)
    assert SECRET not in output
    assert SECRET not in json.dumps(first)

    # ---- run 2: the real scheduler, a worse model -----------------------------------------------------------
    # Airflow 3.3.2 (checked in airflow/timetables/trigger.py): a DeltaTriggerTimetable DAG with no
    # start_date and catchup=False has its first scheduled run due at the moment it is parsed
    # (`_calc_first_run` = now), so unpausing it makes the scheduler create a scheduled run at once,
    # with the DAG's embedded defaults (file:///tmp/ml-pipeline, local[*]): it would train and
    # register a third version, writing under the machine's /tmp/ml-pipeline (the demo's). The bed's scheduler
    # therefore runs with [scheduler] use_job_schedule = False (it still runs every triggered run;
    # it only creates no timetable runs); the test then shows from the API that a scheduled run is
    # due already, and that the only run of the DAG is the one it triggered.
    bed_env = {
        **{k: v for k, v in env.items() if k.startswith(("AIRFLOW_CONN_", "ML_PIPELINE_", "SPARK_")) or k == "PATH"},
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
    }
    t0 = time.monotonic()
    with running_airflow(
        "airflow-ml-pipeline-bed",
        {"ml_pipeline.py": DAG_PATH.read_text()},
        env=bed_env,
        pools={PIPELINE.SPARK_POOL: 1},
        database="postgres",
    ) as bed:
        started = time.monotonic() - t0
        bed.wait_for_dag(DAG_ID)
        run_id = bed.trigger(DAG_ID, stack.conf(algorithms=["linear"], deploy="on"))
        t1 = time.monotonic()
        state = bed.wait_for_run(DAG_ID, run_id, timeout=1500)
        run_seconds = time.monotonic() - t1
        states2 = bed.task_states(DAG_ID, run_id)
        durations2 = bed_durations(bed, run_id)
        report(f"run 2 (scheduler; bed start {started:.1f} s)", run_seconds, durations2)
        assert state == "success", (states2, bed.logs_tail(60))
        assert states2 == {**dict.fromkeys(TASKS, "success"), "deploy": "skipped"}, states2
        train2 = bed_xcom(bed, run_id, "train", map_index=0)
        select2 = bed_xcom(bed, run_id, "select_model")
        promote2 = bed_xcom(bed, run_id, "promote")
        decision = bed_xcom(bed, run_id, "deploy_gate", key="decision")
        write2 = bed_xcom(bed, run_id, "write_erp")
        read_at = time.time()
        dag = bed.api("GET", f"/api/v2/dags/{DAG_ID}")
        runs = bed.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]
        text = bed_text(bed) + json.dumps([train2, select2, promote2, decision, write2])
        metadata = bed.dump_database()
    print(f"run 2 bed: start {started:.1f} s, total with stop {time.monotonic() - t0:.1f} s")

    # A scheduled run is due already, not in 150 minutes (see above: the dag-processor sets it to the
    # time of each parse while the DAG has no scheduled run); the only run is ours.
    due = dag["next_dagrun_run_after"]
    assert due is not None
    assert dt.datetime.fromisoformat(due.replace("Z", "+00:00")).timestamp() <= read_at, dag
    assert [r["dag_run_id"] for r in runs] == [run_id]

    # The linear model is worse, shown by both runs' holdout RMSE, and by the gate's own comparison.
    assert train2["algorithm"] == "linear"
    rmse1, rmse2 = float(train1["metrics"]["rmse"]), float(train2["metrics"]["rmse"])
    print(f"holdout rmse: run 1 lightgbm_per_group {rmse1:.4f}, run 2 linear {rmse2:.4f}")
    assert rmse2 > rmse1, (rmse1, rmse2)
    assert select2["value"] == pytest.approx(rmse2)
    assert (promote2["candidate_metric"], promote2["champion_metric"]) == pytest.approx((rmse2, rmse1))
    assert (promote2["promoted"], promote2["alias"], str(promote2["version"]), promote2["previous_version"]) == (
        False, "challenger", "2", "1",
    )  # fmt: skip
    assert champion_version() == "1"
    assert decision.startswith("skipped: version 2 did not become @champion ("), decision
    assert decision.endswith("the endpoint keeps serving version 1"), decision
    assert endpoint_state(stack.endpoint) == served  # the same containers, still version 1
    assert invoke(stack.port, rows) == answers
    # predict scored with the champion again; the ERP rows were replaced, the same counts, naming version 1
    assert {c: (k["old"], k["new"]) for c, k in write2["keys"].items()} == dict.fromkeys(
        COUNTRIES, (PER_COUNTRY, PER_COUNTRY)
    )
    assert erp_rows(stack) == {c: (PER_COUNTRY, f"models:/{MODEL}/1", True) for c in COUNTRIES}
    assert SECRET not in text
    assert SECRET not in metadata


def test_deploy_blockers_on_the_real_dockerd(serve_image: str, mlflow_conn: str, monkeypatch: Any) -> None:
    """The gate's check on the local engine: nothing blocks with the images there and a tracking server;
    a missing image and a local store are named."""
    from airflow_ml_provider.operators.mlflow_deploy import DEFAULT_IMAGE, DEFAULT_ROUTER_IMAGE
    from airflow_ml_provider.serving.readiness import deploy_blockers

    assert deploy_blockers(images=[DEFAULT_IMAGE, DEFAULT_ROUTER_IMAGE]) == []
    absent = f"airflow-ml-provider/absent-{uuid.uuid4().hex[:8]}:never"
    assert deploy_blockers(images=[DEFAULT_IMAGE, absent]) == [
        f"image(s) {absent} are not on the Docker engine: build them (`make images`)"
    ]
    monkeypatch.setenv("AIRFLOW_CONN_LOCAL_STORE", json.dumps({"conn_type": "ml_mlflow", "host": "sqlite:///x.db"}))
    [reason] = deploy_blockers(images=[DEFAULT_IMAGE], mlflow_conn_id="local_store")
    assert reason.startswith("the MLflow connection 'local_store' is a local store (sqlite)")
