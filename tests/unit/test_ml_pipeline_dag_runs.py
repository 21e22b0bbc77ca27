"""``dags/ml_pipeline.py`` under ``dag.test()`` with every operator faked (issue 14).

``dag.test()`` runs the DAG (in a subprocess, on a throwaway SQLite metadata database) with each
operator's ``execute`` replaced by a fake that returns the XCom the real one returns: the trigger
rules and the short-circuit are Airflow's own, so the scenarios prove which tasks run, skip or
fail when the report fails, when nothing is promoted, when the deploy is off, cannot run
(``deploy=auto`` with a local MLflow store and no Docker engine) or fails, and when the ingest
fails. The real operators run in tests/integration/test_ml_pipeline_dag_real.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.integration.dag_test_runs import run_dag_test, task_states
from tests.unit.test_ml_pipeline_dag import DAG_PATH, UPSTREAM

# -- runs: dag.test() with every operator faked --------------------------------------------------------

#: The DAG file dag.test() loads: ml_pipeline itself, every operator's execute replaced by a fake returning
#: the XCom the real operator returns (plus the rendered template fields); a task named in the scenario's
#: "fail" list raises AirflowFailException (no retries) instead.
FAKE_DAG_FILE = r'''
"""ml_pipeline (dag) with faked operators, for tests/unit/test_ml_pipeline_dag.py."""
import importlib.util, json, os
from airflow.sdk.exceptions import AirflowFailException
from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator
from airflow_ml_provider.operators.eda import EdaReportOperator
from airflow_ml_provider.operators.erp_writer import ErpWriteOperator
from airflow_ml_provider.operators.ingest import SqlIngestOperator
from airflow_ml_provider.operators.mlflow_deploy import MlflowDeployModelOperator
from airflow_ml_provider.operators.mlflow_registry import MlflowPromoteModelOperator, MlflowRegisterModelOperator
from airflow_ml_provider.operators.spark_train import SparkTrainOperator

SCENARIO = json.loads(os.environ["ML_PIPELINE_SCENARIO"])
RMSE = {"lightgbm_per_group": 3.0, "gbt": 2.5, "random_forest": 2.8, "linear": 4.0}
PROMOTED = SCENARIO.get("promoted", True)
FAKES = {
    SqlIngestOperator: lambda op: {"path": op.output_path, "rows": 120},
    EdaReportOperator: lambda op: {"report_html": op.input_path + "/_eda/report.html"},
    SparkTrainOperator: lambda op: {"run_id": "run-" + op.algorithm, "algorithm": op.algorithm, "metric": "rmse",
                                    "model_uri": "runs:/run-" + op.algorithm + "/model",
                                    "metrics": {"rmse": RMSE[op.algorithm]}},
    MlflowRegisterModelOperator: lambda op: {"name": op.name, "version": "2", "model_uri": op.model_uri},
    MlflowPromoteModelOperator: lambda op: {"name": op.name, "version": str(op.version), "promoted": PROMOTED,
                                            "previous_version": "1", "reason": "scenario"},
    MlflowDeployModelOperator: lambda op: {"endpoint": "http://127.0.0.1:%d" % op.port, "version": "2"},
    MlflowBatchPredictOperator: lambda op: {"output_path": op.output_path, "rows": 120},
    ErpWriteOperator: lambda op: {"table": op.table, "rows": 120},
}


def _fake(result):
    def execute(self, context):
        if self.task_id in SCENARIO.get("fail", []):
            raise AirflowFailException(self.task_id + " fails in this scenario")
        return {**result(self), "rendered": {f: getattr(self, f) for f in self.template_fields}}
    return execute


for cls, result in FAKES.items():
    cls.execute = _fake(result)

spec = importlib.util.spec_from_file_location("ml_pipeline_dag", os.environ["ML_PIPELINE_DAG"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag = module.dag
'''


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway Airflow home (SQLite metadata database, migrated once) whose DAGs folder holds the faked DAG."""
    home = tmp_path_factory.mktemp("airflow-ml-pipeline")
    (home / "dags").mkdir()
    (home / "dags" / "ml_pipeline_fake.py").write_text(FAKE_DAG_FILE)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "ML_PIPELINE_DAG": str(DAG_PATH),
        "PYTHONPATH": str(ROOT),
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


def run_fake(
    env: dict[str, str], conf: dict[str, Any], scenario: dict[str, Any], extra_env: dict[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    """``dag.test()`` of the faked DAG with ``conf``, the fakes following ``scenario``."""
    scenario_env = {**env, **(extra_env or {}), "ML_PIPELINE_SCENARIO": json.dumps(scenario)}
    return run_dag_test(scenario_env, "ml_pipeline_fake", conf=conf)


def test_a_run_trains_every_algorithm_registers_the_best_and_deploys_the_new_champion(
    airflow_env: dict[str, str],
) -> None:
    conf = {
        "algorithms": ["lightgbm_per_group", "gbt"],
        "storage_root": "file:///data/lake",
        "spark_master": "local[2]",
        "deploy": "on",
    }
    result, output = run_fake(airflow_env, conf, {})
    assert result["state"].endswith("success"), (result["states"], output[-6000:])
    assert set(task_states(result).values()) == {"success"}
    assert sorted(task_states(result)) == sorted([*(t for t in UPSTREAM if t != "train"), "train[0]", "train[1]"])
    xcoms = result["xcoms"]
    assert xcoms["ingest"]["rendered"]["output_path"] == "file:///data/lake/sales/ingested"
    assert [xcoms[f"train[{i}]"]["algorithm"] for i in (0, 1)] == ["lightgbm_per_group", "gbt"]
    assert {xcoms[f"train[{i}]"]["rendered"]["master"] for i in (0, 1)} == {"local[2]"}
    assert xcoms["select_model"]["algorithm"] == "gbt"  # the lower RMSE
    assert xcoms["register"]["rendered"]["model_uri"] == "runs:/run-gbt/model"
    assert xcoms["promote"]["rendered"]["gate_metric"] == "rmse"
    assert xcoms["deploy_gate"] is True
    assert result["other_xcoms"]["deploy_gate:decision"] == "deploying version 2"
    assert xcoms["deploy"]["endpoint"] == "http://127.0.0.1:8790"
    assert xcoms["predict"]["rendered"]["input_path"] == "file:///data/lake/sales/ingested"
    assert xcoms["write_erp"]["rendered"]["constants"]["model_uri"] == "models:/ml_pipeline_units/2"
    assert "The failure alert was not delivered" not in output


#: deploy=auto where a deploy cannot run: a local MLflow store, and a Docker socket nothing listens on.
CANNOT_DEPLOY = {
    "AIRFLOW_CONN_ML_MLFLOW_DEFAULT": json.dumps({"conn_type": "ml_mlflow", "host": "sqlite:////nonexistent/m.db"}),
    "AIRFLOW_CONN_ML_DOCKER_DEFAULT": json.dumps({"conn_type": "ml_docker", "host": "unix:///nonexistent/docker.sock"}),
}


@pytest.mark.parametrize(
    ("scenario", "conf", "extra_env", "expected", "decision"),
    [
        pytest.param(
            {"fail": ["eda"], "promoted": False},
            {},
            {},
            {"eda": "failed", "deploy": "skipped", "run": "success"},
            "skipped: version 2 did not become @champion (scenario); the endpoint keeps serving version 1",
            id="report-fails-and-nothing-promoted:-training-predict-and-write-still-run",
        ),
        pytest.param(
            {},
            {"deploy": "off"},
            {},
            {"deploy": "skipped", "run": "success"},
            "skipped: the deploy param is off (version 2 is @champion)",
            id="deploy-off:-skipped-the-rest-runs",
        ),
        pytest.param(
            {},
            {},
            CANNOT_DEPLOY,
            {"deploy": "skipped", "run": "success"},
            "skipped: deploy=auto and the MLflow connection 'ml_mlflow_default' is a local store (sqlite)",
            id="deploy-auto-without-a-server-or-engine:-skipped-saying-why",
        ),
        pytest.param(
            {"fail": ["deploy"]},
            {"deploy": "on"},
            {},
            {"deploy": "failed", "predict": "upstream_failed", "write_erp": "upstream_failed", "run": "failed"},
            "deploying version 2",
            id="deploy-fails:-no-predictions-no-erp-write",
        ),
        pytest.param(
            {"fail": ["ingest"]},
            {},
            {},
            {
                "ingest": "failed",
                **{t: "upstream_failed" for t in UPSTREAM if t not in ("ingest", "train")},
                "train": "upstream_failed",
                "run": "failed",
            },
            None,
            id="ingest-fails:-nothing-else-runs",
        ),
    ],
)
def test_trigger_rules_and_the_deploy_gate_in_a_run(
    airflow_env: dict[str, str],
    scenario: dict[str, Any],
    conf: dict[str, Any],
    extra_env: dict[str, str],
    expected: dict[str, str],
    decision: str | None,
) -> None:
    result, output = run_fake(airflow_env, conf, scenario, extra_env)
    run_state = expected.pop("run")
    assert result["state"].endswith(run_state), (result["states"], output[-6000:])
    want = {t: "success" for t in UPSTREAM if t != "train"} | {"train[0]": "success"}
    if "train" in expected:  # never expanded: one unmapped task instance
        want.pop("train[0]")
        want["train"] = expected.pop("train")
    want |= expected
    assert task_states(result) == want, output[-6000:]
    failed = [t for t, s in want.items() if s == "failed"]
    for task_id in failed:  # the notifier ran for the failed task (no ml_webhook_default here)
        assert f"{task_id} fails in this scenario" in output
    assert output.count("The failure alert was not delivered (connection 'ml_webhook_default')") >= len(failed)
    if decision is None:
        assert "deploy_gate:decision" not in result["other_xcoms"]
    else:
        assert result["other_xcoms"]["deploy_gate:decision"].startswith(decision), result["other_xcoms"]
    if extra_env:  # and the engine's reason after the store's
        assert "Docker engine" in result["other_xcoms"]["deploy_gate:decision"]
        assert "'ml_docker_default'" in result["other_xcoms"]["deploy_gate:decision"]
    if scenario.get("promoted") is False:
        assert result["xcoms"]["write_erp"]["rendered"]["constants"]["model_uri"] == "models:/ml_pipeline_units/1"
