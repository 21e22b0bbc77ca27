"""``dags/ml_pipeline.py`` as the DAG processor parses it and as its tasks render and decide (issue 14).

What the file must be: import-clean in a fresh interpreter with no connection configured (no
mlflow, pyspark, pandas, docker, hdfs; no connection read, no network); scheduled every 150
minutes without catch-up; its params (the embedded defaults) validating and retargeting the run;
the funnel wired as designed: the report non-blocking through ``plan_training``'s trigger rule,
one training per algorithm, deploy only behind ``deploy_gate``, predict after a skipped deploy but
not after a failed one; the failure notifier on every task; the Spark steps in their pool.

Every template field is rendered with the DAG's own (native) Jinja environment and then checked
by the operators' own runtime validation, so a template that renders to something an operator
refuses fails here, not in a run. Runs under ``dag.test()`` with the operators faked are in
tests/unit/test_ml_pipeline_dag_runs.py; the real operators run in
tests/integration/test_ml_pipeline_dag_real.py.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest
from airflow.sdk import DAG, TriggerRule

from airflow_ml_provider.notifications.webhook import WebhookNotifier
from airflow_ml_provider.storage.paths import StoragePath
from tests.conftest import ROOT

DAG_PATH = ROOT / "dags" / "ml_pipeline.py"
HEAVY = ("mlflow", "pyspark", "pandas", "pyarrow", "docker", "hdfs", "requests", "lightgbm", "sklearn", "numpy")


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_ml_pipeline_under_test", DAG_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULE = load()
DAG_: DAG = MODULE.dag


def task(task_id: str) -> Any:
    """The DAG's task (typed loosely: each operator class has its own attributes)."""
    return DAG_.get_task(task_id)


#: task -> its upstream tasks.
UPSTREAM = {
    "ingest": set(),
    "eda": {"ingest"},
    "plan_training": {"ingest", "eda"},
    "train": {"plan_training"},
    "select_model": {"train"},
    "register": {"select_model"},
    "promote": {"register"},
    "deploy_gate": {"promote"},
    "deploy": {"deploy_gate"},
    "predict": {"promote", "deploy"},
    "write_erp": {"predict"},
}


def params(conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's params for ``conf``, validated as the api-server does when a run is created."""
    resolved = copy.deepcopy(DAG_.params)
    resolved.update(conf or {})
    return resolved.validate()


# -- parsing -------------------------------------------------------------------------------------


def test_importing_the_dag_file_imports_nothing_heavy_and_reads_no_connection() -> None:
    """In a fresh interpreter, as the DAG processor would, with no connection defined and any
    connection lookup or network connection failing loudly."""
    code = (
        "import json, socket, sys, importlib.util\n"
        "from airflow.sdk import BaseHook\n"
        "def refuse(*a, **k): raise AssertionError(f'I/O at parse time: {a!r}')\n"
        "BaseHook.get_connection = classmethod(refuse)\n"
        "socket.socket.connect = refuse\n"
        f"spec = importlib.util.spec_from_file_location('ml_pipeline', {str(DAG_PATH)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "assert m.dag.dag_id == 'ml_pipeline'\n"
        f"print(json.dumps(sorted(n for n in {HEAVY!r} if n in sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def _endpoint_with(environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Parse the DAG file in a fresh interpreter with ``environ``; prints the deploy task's endpoint and port."""
    code = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('ml_pipeline', {str(DAG_PATH)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "d = m.dag.get_task('deploy'); print(d.endpoint_name, d.port)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_PIPELINE_")} | environ
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)


def test_the_endpoint_defaults_to_ml_pipeline_on_8790_and_the_environment_moves_it() -> None:
    assert (task("deploy").endpoint_name, task("deploy").port) == ("ml-pipeline", 8790)
    moved = _endpoint_with({"ML_PIPELINE_ENDPOINT": "staging-units", "ML_PIPELINE_ENDPOINT_PORT": "9100"})
    assert moved.stdout.split() == ["staging-units", "9100"], moved.stderr[-2000:]
    bad = _endpoint_with({"ML_PIPELINE_ENDPOINT_PORT": "80a"})
    assert bad.returncode != 0
    assert "ML_PIPELINE_ENDPOINT_PORT='80a': give the endpoint's TCP port" in bad.stderr


def test_schedule_is_every_150_minutes_without_catchup_one_run_at_a_time() -> None:
    from airflow.sdk import DeltaTriggerTimetable

    assert isinstance(DAG_.timetable, DeltaTriggerTimetable)
    assert DAG_.timetable == DeltaTriggerTimetable(MODULE.SCHEDULE)
    assert MODULE.SCHEDULE.total_seconds() == 150 * 60
    assert DAG_.catchup is False
    assert DAG_.max_active_runs == 1
    assert DAG_.render_template_as_native_obj is True
    assert DAG_.doc_md == MODULE.__doc__


def test_the_defaults_are_the_embedded_ones_and_the_docstring_names_every_connection() -> None:
    defaults = params()
    assert defaults == {
        "source_table": "sales",
        "storage_root": "file:///tmp/ml-pipeline/lake",
        "spark_master": "local[*]",
        "algorithms": ["lightgbm_per_group"],
        "deploy": "auto",
        "predict_input": None,
        "erp_table": "ml_pipeline_predictions",
        "max_drop": 0.10,
        "on_drop": "fail",
    }
    doc = MODULE.__doc__ or ""
    for conn_id in ("ml_pipeline_source", "ml_pipeline_erp", "ml_mlflow_default", "ml_hdfs_default",
                    "spark_default", "ml_docker_default", "ml_webhook_default"):  # fmt: skip
        assert f"`{conn_id}`" in doc, conn_id
    for text in ("`sqlite`", "sqlite:////tmp/ml-pipeline/mlflow.db", "local[*]", "ml_pipeline_spark", "ERP_TABLE_DDL"):
        assert text in doc, text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("algorithms", ["xgboost"]),
        ("algorithms", []),
        ("algorithms", ["gbt", "gbt"]),
        ("storage_root", "s3://bucket/lake"),
        ("storage_root", "relative/lake"),
        ("source_table", "sales; DROP TABLE sales"),
        ("erp_table", "1table"),
        ("spark_master", ""),
        ("max_drop", 1.5),
        ("on_drop", "ignore"),
        ("deploy", True),
        ("deploy", "yes"),
    ],
)
def test_the_trigger_form_refuses_a_bad_param(name: str, value: Any) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        params({name: value})


def test_the_trigger_form_retargets_the_run() -> None:
    conf = {
        "source_table": "shop.sales_eu",
        "storage_root": "hdfs:///lake/ml",
        "spark_master": "spark://spark-master:7077",
        "algorithms": ["gbt", "lightgbm_per_group", "linear", "random_forest"],
        "deploy": "off",
        "erp_table": "erp.predictions",
    }
    assert params(conf) == {**params(), **conf}


# -- the graph ------------------------------------------------------------------------------------


def test_the_task_graph() -> None:
    assert {t.task_id: set(t.upstream_task_ids) for t in DAG_.tasks} == UPSTREAM
    assert [t.task_id for t in DAG_.leaves] == ["write_erp"]
    assert task("deploy_gate").downstream_task_ids == {"deploy"}  # the gate skips the deploy only


def test_trigger_rules_make_the_report_non_blocking_and_predict_follow_a_skipped_deploy() -> None:
    rules = {t.task_id: t.trigger_rule for t in DAG_.tasks}
    assert rules.pop("plan_training") == TriggerRule.ALL_DONE_MIN_ONE_SUCCESS
    assert rules.pop("predict") == TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
    assert set(rules.values()) == {TriggerRule.ALL_SUCCESS}
    gate = task("deploy_gate")
    assert type(gate).__name__ == "_ShortCircuitDecoratedOperator"
    assert gate.ignore_downstream_trigger_rules is False  # else predict and write_erp would be skipped too
    eda = task("eda")
    assert eda.fail_on_gate is False
    assert eda.retries == 0


def test_every_task_sends_the_failure_alert() -> None:
    for t in DAG_.tasks:
        callbacks = t.on_failure_callback
        assert isinstance(callbacks, list), t.task_id
        assert [type(c) for c in callbacks] == [WebhookNotifier], t.task_id
        assert callbacks[0].conn_id == "ml_webhook_default"


def test_the_spark_steps_share_their_pool_and_the_others_the_default_one() -> None:
    pools = {t.task_id: t.pool for t in DAG_.tasks}
    assert {task for task, pool in pools.items() if pool == "ml_pipeline_spark"} == {"train", "predict"}
    assert {pool for task, pool in pools.items() if task not in ("train", "predict")} == {"default_pool"}
    assert MODULE.SPARK_POOL == "ml_pipeline_spark"


def test_the_operators_are_wired_to_the_documented_connections() -> None:
    assert task("ingest").conn_id == "ml_pipeline_source"
    assert task("write_erp").conn_id == "ml_pipeline_erp"
    for task_id in ("ingest", "eda", "predict", "write_erp"):
        assert task(task_id).hdfs_conn_id == "ml_hdfs_default", task_id
    for task_id in ("register", "promote", "deploy", "predict"):
        assert task(task_id).mlflow_conn_id == "ml_mlflow_default", task_id
    assert task("eda").mlflow_conn_id == "ml_mlflow_default"
    train = task("train")
    assert train.partial_kwargs["hdfs_conn_id"] == "ml_hdfs_default"
    assert "mlflow_conn_id" not in train.partial_kwargs  # the operator's default: ml_mlflow_default
    assert task("deploy").docker_conn_id == "ml_docker_default"
    assert task("predict").engine == "spark"


# -- the Python steps -----------------------------------------------------------------------------


def callable_of(task_id: str) -> Any:
    return task(task_id).python_callable


def test_plan_training_gives_one_training_per_algorithm_in_order() -> None:
    plan = callable_of("plan_training")
    kwargs = plan(algorithms=["gbt", "lightgbm_per_group"])
    assert [k["algorithm"] for k in kwargs] == ["gbt", "lightgbm_per_group"]
    assert kwargs[1]["group_column"] == "country"
    assert "group_column" not in kwargs[0]
    with pytest.raises(ValueError, match="xgboost"):
        plan(algorithms=["xgboost"])
    with pytest.raises(ValueError, match="one or more"):
        plan(algorithms=[])


@pytest.mark.parametrize("algorithm", sorted(MODULE.TRAINING))
def test_each_algorithm_makes_a_training_the_operator_accepts(algorithm: str) -> None:
    """``train.unmap`` builds the SparkTrainOperator a mapped task instance gets (its constructor
    checks the spec); after rendering, the operator's runtime checks pass too."""
    [entry] = callable_of("plan_training")(algorithms=[algorithm])
    op = task("train").unmap(entry)
    assert type(op).__name__ == "SparkTrainOperator"
    render(op, {"storage_root": "file:///data/lake", "spark_master": "local[2]"})
    assert op.master == "local[2]"
    assert op.run_name.startswith(f"{algorithm} manual__")
    from airflow_ml_provider.operators import spark_train_checks

    spark_train_checks.check_master_and_conf(op.master, op.spark_conf)  # what execute() checks first
    op._map_input()  # a file:// input: the ml_hdfs connection is not read
    spec = op._spec("dag/run/train/0/1/abcd1234")
    assert spec.input == "file:///data/lake/sales/ingested"
    assert (spec.algorithm, spec.label, spec.metric) == (algorithm, "units_sold", "rmse")
    assert spec.min_group_rows == 50


def test_select_model_keeps_the_lowest_rmse() -> None:
    select = callable_of("select_model")
    results = [
        {"algorithm": "lightgbm_per_group", "run_id": "r1", "model_uri": "runs:/r1/model", "metric": "rmse",
         "metrics": {"rmse": 3.1, "mae": 2.0}},
        {"algorithm": "gbt", "run_id": "r2", "model_uri": "runs:/r2/model", "metric": "rmse",
         "metrics": {"rmse": 2.9, "mae": 2.2}},
    ]  # fmt: skip
    best = select(results)
    assert best == {
        "model_uri": "runs:/r2/model",
        "run_id": "r2",
        "algorithm": "gbt",
        "metric": "rmse",
        "value": 2.9,
        "candidates": {"lightgbm_per_group": 3.1, "gbt": 2.9},
    }
    with pytest.raises(ValueError, match="No training"):
        select([])


class RecordingTI:
    """The ``ti`` a task callable gets: records ``xcom_push``."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.mark.parametrize(
    ("promoted", "mode", "blockers", "expected", "decision"),
    [
        (True, "on", ["ignored: on never asks"], True, "deploying version 2"),
        (True, "auto", [], True, "deploying version 2"),
        (True, "auto", ["no Docker engine for 'ml_docker_default' (...)"], False,
         "skipped: deploy=auto and no Docker engine for 'ml_docker_default' (...)"),
        (True, "off", [], False, "skipped: the deploy param is off (version 2 is @champion)"),
        (False, "on", [], False, "skipped: version 2 did not become @champion (rmse 3.3 vs 3.1: does not win); "
                                 "the endpoint keeps serving version 1"),
        (False, "auto", [], False, "skipped: version 2 did not become @champion"),
        (False, "off", [], False, "skipped: version 2 did not become @champion"),
    ],
)  # fmt: skip
def test_deploy_gate_opens_only_for_a_new_champion_the_deploy_param_allows(
    promoted: bool,
    mode: str,
    blockers: list[str],
    expected: bool,
    decision: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``deploy_blockers`` (the engine and MLflow checks, tested in tests/unit/serving/test_readiness.py
    and against the real dockerd) is replaced by its answer; it is asked only for ``auto``."""
    from airflow_ml_provider.serving import readiness

    asked: list[list[str]] = []

    def blockers_of(*, images: list[str]) -> list[str]:
        asked.append(list(images))
        return blockers

    monkeypatch.setattr(readiness, "deploy_blockers", blockers_of)
    caplog.set_level("INFO")
    reason = "rmse 2.9 vs 3.1: wins" if promoted else "rmse 3.3 vs 3.1: does not win"
    promotion = {"version": "2", "promoted": promoted, "previous_version": "1", "reason": reason}
    ti = RecordingTI()
    assert callable_of("deploy_gate")(promotion, mode, ti=ti) is expected
    assert ti.pushed["decision"].startswith(decision), ti.pushed
    assert asked == ([["airflow-ml-provider/serve:latest", "airflow-ml-provider/base:bookworm"]]
                     if promoted and mode == "auto" else [])  # fmt: skip
    if not expected:
        assert "Deploy skipped" in caplog.text


# -- rendering ------------------------------------------------------------------------------------


class FakeTI:
    """``ti.xcom_pull`` of the templates, answering with the upstream tasks' XComs."""

    def __init__(self, xcoms: dict[str, Any]) -> None:
        self.xcoms = xcoms

    def xcom_pull(self, task_ids: str, key: str = "return_value", **_: Any) -> Any:
        assert key == "return_value"
        return self.xcoms[task_ids]


XCOMS: dict[str, dict[str, Any]] = {
    "select_model": {"model_uri": "runs:/r2/model", "run_id": "r2", "algorithm": "gbt", "metric": "rmse"},
    "register": {"name": "ml_pipeline_units", "version": "2"},
    "promote": {"name": "ml_pipeline_units", "version": "2", "promoted": True, "previous_version": "1"},
}


def render(op: Any, conf: dict[str, Any] | None = None, xcoms: dict[str, Any] | None = None) -> None:
    """Render ``op``'s template fields in place, as a task instance of a triggered run would."""
    context = {
        "params": params(conf),
        "run_id": "manual__2026-11-30T08:00:00+00:00",
        "ds": "2026-11-30",
        "ti": FakeTI(xcoms or XCOMS),
        "task": op,
    }
    op.render_template_fields(context, jinja_env=DAG_.get_template_env())


def rendered(task_id: str, conf: dict[str, Any] | None = None, xcoms: dict[str, Any] | None = None) -> Any:
    op = copy.deepcopy(task(task_id))
    render(op, conf, xcoms)
    return op


def test_ingest_report_predict_and_write_render_to_paths_the_operators_accept() -> None:
    conf = {"storage_root": "file:///data/lake/", "source_table": "shop.sales_eu"}
    ingest = rendered("ingest", conf)
    spec = ingest._validate()
    assert spec.dst == StoragePath(True, "/data/lake/shop.sales_eu/ingested")
    assert str(spec.table) in ("shop.sales_eu", '"shop"."sales_eu"')
    assert spec.partition_by == ["country"]

    eda = rendered("eda", conf)
    assert eda._validate() == (StoragePath(True, "/data/lake/shop.sales_eu/ingested"), None)
    assert eda.title == "ml_pipeline: shop.sales_eu, run manual__2026-11-30T08:00:00+00:00"

    predict = rendered("predict", conf)
    assert predict._validate() == (
        StoragePath(True, "/data/lake/shop.sales_eu/ingested"),
        StoragePath(True, "/data/lake/shop.sales_eu/predictions"),
    )
    assert predict.model_uri == "models:/ml_pipeline_units@champion"
    assert predict.spark_master == "local[*]"
    other = rendered("predict", {**conf, "predict_input": "hdfs:///lake/next_week"})
    assert other._validate()[0] == StoragePath(False, "/lake/next_week")

    write = rendered("write_erp", {**conf, "erp_table": "erp.predictions", "max_drop": 0.25, "on_drop": "warn"})
    table, key_columns, keys = write._validate()
    assert (str(table).replace('"', ""), key_columns, keys) == ("erp.predictions", ["country"], None)
    assert write._paths() == {None: StoragePath(True, "/data/lake/shop.sales_eu/predictions")}
    from airflow_ml_provider.erp import drop_guard

    assert drop_guard.check_max_drop(write.max_drop, write.on_drop) == 0.25
    assert write.constants == {
        "model_uri": "models:/ml_pipeline_units/2",
        "run_id": "manual__2026-11-30T08:00:00+00:00",
    }
    # a column_map is the complete mapping: with the constants it fills every NOT NULL column the
    # ERP table has no default for (the predictions dataset has country, sku, week and prediction)
    required = {
        line.split()[0] for line in MODULE.ERP_TABLE_DDL.splitlines() if "NOT NULL" in line and "DEFAULT" not in line
    }
    assert set(write.column_map.values()) | set(write.constants) == required
    assert set(write.column_map) == {"country", "sku", "week", "prediction"}


def test_on_hdfs_the_paths_go_to_the_storage_connection() -> None:
    conf = {"storage_root": "hdfs:///lake/ml"}
    assert rendered("ingest", conf)._validate().dst == StoragePath(False, "/lake/ml/sales/ingested")
    assert rendered("predict", conf)._validate()[1] == StoragePath(False, "/lake/ml/sales/predictions")


def test_the_registry_steps_render_from_the_upstream_xcoms() -> None:
    register = rendered("register")
    assert register.model_uri == "runs:/r2/model"
    assert register.tags == {"algorithm": "gbt", "source_table": "sales"}
    assert register.description == "gbt on sales, run manual__2026-11-30T08:00:00+00:00"
    promote = rendered("promote")
    assert str(promote.version) == "2"
    assert promote.gate_metric == "rmse"
    assert promote.higher_is_better is False
    assert promote.alias == "champion"
    deploy = rendered("deploy")
    assert (deploy.name, deploy.alias, deploy.endpoint_name, deploy.port) == (
        "ml_pipeline_units",
        "champion",
        "ml-pipeline",
        8790,
    )


def test_the_erp_rows_name_the_champion_predict_used_when_this_run_lost() -> None:
    lost = {**XCOMS, "promote": {**XCOMS["promote"], "promoted": False}}
    assert rendered("write_erp", xcoms=lost).constants["model_uri"] == "models:/ml_pipeline_units/1"
