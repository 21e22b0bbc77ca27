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
