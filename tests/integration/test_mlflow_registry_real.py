"""Register and promote against a real MLflow tracking server (SQLite store, proxied artifacts)."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError, ModelRegistryError
from airflow_ml_provider.hooks.mlflow import SCOPED_VARIABLES, MlflowHook
from airflow_ml_provider.operators.mlflow_registry import (
    TAG_SOURCE,
    MlflowPromoteModelOperator,
    MlflowRegisterModelOperator,
)
from scripts.testbed.loopback_http import free_port

pytestmark = pytest.mark.integration


class TI:
    dag_id = "ml_pipeline"
    task_id = "register"
    run_id = "scheduled__2026-11-23T08:00:00+00:00"
    map_index = -1


def ctx() -> Any:
    return {"ti": TI()}


def train(rmse: float, *, with_model: bool = True) -> tuple[str, str | None]:
    """Log a run (and a tiny sklearn model) on the connection's server; returns (run_id, model_id)."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LinearRegression

    hook = MlflowHook()
    with hook.scoped():
        client = hook.get_client()
        experiment = client.get_experiment_by_name("registry-tests")
        experiment_id = experiment.experiment_id if experiment else client.create_experiment("registry-tests")
        with mlflow.start_run(experiment_id=experiment_id) as run:  # no set_experiment: it writes os.environ
            mlflow.log_metric("rmse", rmse)
            model_id = None
            if with_model:
                x = np.arange(20, dtype=float).reshape(-1, 2)
                info = mlflow.sklearn.log_model(
                    LinearRegression().fit(x, x[:, 0] * 2),
                    name="model",
                    pip_requirements=["scikit-learn"],  # else MLflow infers them in a slow subprocess
                )
                model_id = info.model_id
        return run.info.run_id, model_id


def register(name: str, uri: str) -> dict[str, Any]:
    return MlflowRegisterModelOperator(task_id="register", name=name, model_uri=uri).execute(ctx())


def test_register_from_a_run_is_idempotent_and_tagged(mlflow_conn: str) -> None:
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    run_id, _ = train(1.0)
    first = register(name, f"runs:/{run_id}/model")
    assert first["version"] == "1"
    assert first["model_uri"] == f"models:/{name}/1"
    assert first["created"] is True
    again = register(name, f"runs:/{run_id}/model")  # a retry of the same task
    assert again["version"] == "1"
    assert again["created"] is False
    with MlflowHook().scoped():
        mv = MlflowHook().get_client().get_model_version(name, "1")
    assert mv.status == "READY"
    assert mv.tags[TAG_SOURCE] == f"runs:/{run_id}/model"
    assert mv.tags["airflow.dag_id"] == "ml_pipeline"
    assert mv.tags["airflow.run_id"] == TI.run_id


def test_register_a_logged_model_by_its_models_uri(mlflow_conn: str) -> None:
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    _, model_id = train(1.0)
    result = register(name, f"models:/{model_id}")
    assert result["version"] == "1"
    assert result["source"] == f"models:/{model_id}"


@pytest.mark.parametrize("problem", ["unknown run", "run without a model"])
def test_bad_sources_fail_clearly_and_register_nothing(mlflow_conn: str, problem: str) -> None:
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    if problem == "unknown run":
        uri = f"runs:/{uuid.uuid4().hex}/model"
    else:
        run_id, _ = train(1.0, with_model=False)
        uri = f"runs:/{run_id}/model"
    with pytest.raises(ModelRegistryError) as err:
        register(name, uri)
    assert uri in str(err.value)
    with MlflowHook().scoped():
        assert MlflowHook().get_client().search_registered_models(f"name='{name}'") == []


def promote(name: str, version: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("gate_metric", "rmse")
    kw.setdefault("higher_is_better", False)
    return MlflowPromoteModelOperator(task_id="promote", name=name, version=version, **kw).execute(ctx())


def test_champion_gate_promotes_only_a_better_model_and_records_why(mlflow_conn: str) -> None:
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    versions = [register(name, f"runs:/{train(rmse)[0]}/model")["version"] for rmse in (1.0, 0.8, 0.79, 0.9)]
    first = promote(name, versions[0])
    assert first["promoted"] is True
    assert "first version" in first["reason"]
    better = promote(name, versions[1])
    assert better["promoted"] is True
    assert better["previous_version"] == versions[0]
    assert better["model_uri"] == f"models:/{name}@champion"
    within_margin = promote(name, versions[2], min_improvement=0.05)
    assert within_margin["promoted"] is False
    assert within_margin["alias"] == "challenger"
    worse = promote(name, versions[3])
    assert worse["promoted"] is False
    assert worse["candidate_metric"] == 0.9
    assert worse["champion_metric"] == 0.8
    client = MlflowHook().get_client()
    with MlflowHook().scoped():
        assert client.get_model_version_by_alias(name, "champion").version == versions[1]
        assert client.get_model_version_by_alias(name, "challenger").version == versions[3]
        tags = client.get_model_version(name, versions[3]).tags
    assert tags["airflow.gate.decision"] == "challenger"
    assert tags["airflow.gate.candidate_metric"] == "0.9"
    assert tags["airflow.gate.champion_metric"] == "0.8"


def test_promote_without_gate_moves_the_alias_and_rejects_bad_input(mlflow_conn: str) -> None:
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    version = register(name, f"runs:/{train(1.0)[0]}/model")["version"]
    assert promote(name, version, gate_metric=None, alias="staging")["alias"] == "staging"
    with pytest.raises(ModelRegistryError, match="not found"):
        promote(name, "99")
    with pytest.raises(ModelRegistryError, match="not found"):
        promote(f"no-such-model-{uuid.uuid4().hex[:6]}", "1")
    second = register(name, f"runs:/{train(0.5)[0]}/model")["version"]
    promote(name, version, gate_metric=None)
    with pytest.raises(ModelRegistryError, match="no finite metric 'auc'"):
        promote(name, second, gate_metric="auc")
    with pytest.raises(InvalidSpecError):
        MlflowPromoteModelOperator(task_id="p", name=name, version=1, alias="x", challenger_alias="x")


def test_unreachable_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ML_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "ml_mlflow", "host": "http://127.0.0.1:9", "extra": {"max_retries": 0, "timeout": 2}}),
    )
    with pytest.raises(ModelRegistryError, match=r"127\.0\.0\.1:9|Connection|connect"):
        register(f"pricing-{uuid.uuid4().hex[:8]}", f"runs:/{uuid.uuid4().hex}/model")
    assert [name for name in SCOPED_VARIABLES if name in os.environ] == []


def test_a_server_that_is_down_is_reported_unreachable_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens on the port: MLflow itself says INTERNAL_ERROR after its retries; the
    operators say the server was unreachable, name its URI and the connection, and never print ".."."""
    uri = f"http://127.0.0.1:{free_port()}"
    conn = {"conn_type": "ml_mlflow", "host": uri, "extra": {"max_retries": 1, "timeout": 5}}
    monkeypatch.setenv("AIRFLOW_CONN_ML_MLFLOW_DOWN", json.dumps(conn))
    for name in SCOPED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    operators = [
        MlflowRegisterModelOperator(
            task_id="r", name="m", model_uri="runs:/abc/model", mlflow_conn_id="ml_mlflow_down"
        ),
        MlflowPromoteModelOperator(task_id="p", name="m", version="1", mlflow_conn_id="ml_mlflow_down"),
    ]
    for operator in operators:
        with pytest.raises(ModelRegistryError) as e:
            operator.execute(ctx())
        message = str(e.value)
        assert f"the MLflow server at {uri} was unreachable" in message, message
        assert "Connection refused" in message
        assert "'ml_mlflow_down'" in message
        assert "INTERNAL_ERROR" not in message
        assert ".." not in message
    ok, text = MlflowHook("ml_mlflow_down").test_connection()
    assert not ok
    assert text.startswith(f"The MLflow server at {uri} was unreachable ("), text


def test_a_deleted_champion_is_named_and_can_gate_against_the_best_version(mlflow_conn: str) -> None:
    """Deleting the champion's version removes @champion in MLflow. The next promotion says so
    (not "first version"); with compare_with_best_if_no_champion it must beat the best existing version."""
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    v = {rmse: register(name, f"runs:/{train(rmse)[0]}/model")["version"] for rmse in (1.0, 0.5, 0.9)}
    promote(name, v[1.0])
    assert promote(name, v[0.5])["promoted"] is True
    client = MlflowHook().get_client()
    with MlflowHook().scoped():
        client.delete_model_version(name, v[0.5])

    # default: promoted as before, but the reason says what happened
    plain = promote(name, v[0.9])
    assert plain["promoted"] is True
    assert plain["previous_version"] is None
    assert f"@champion is gone: it pointed at version {v[0.5]}, which no longer exists" in plain["reason"]
    assert "without a comparison" in plain["reason"]
    assert "first version" not in plain["reason"]
    assert ".." not in plain["reason"]

    # gate mode: @champion (now v[0.9]) deleted too; the best left is v[1.0] (rmse 1.0)
    with MlflowHook().scoped():
        client.delete_model_version(name, v[0.9])
    worse = register(name, f"runs:/{train(1.2)[0]}/model")["version"]
    lost = promote(name, worse, compare_with_best_if_no_champion=True)
    assert lost["promoted"] is False
    assert lost["alias"] == "challenger"
    assert (lost["candidate_metric"], lost["champion_metric"]) == (1.2, 1.0)
    assert f"it pointed at version {v[0.9]}, which no longer exists" in lost["reason"]
    assert f"the best existing version v{v[1.0]}" in lost["reason"]
    assert lost["reason"].endswith("does not win")
    better = register(name, f"runs:/{train(0.7)[0]}/model")["version"]
    won = promote(name, better, compare_with_best_if_no_champion=True)
    assert won["promoted"] is True
    assert won["champion_metric"] == 1.0
    with MlflowHook().scoped():
        assert client.get_model_version_by_alias(name, "champion").version == better
        assert client.get_model_version(name, better).tags["airflow.gate.decision"] == "promoted"
