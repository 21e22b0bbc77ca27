"""MlflowDeployModelOperator with ``target_uri``: delegation to an ``mlflow.deployments`` plugin.

No real deployment target (SageMaker, …) runs here, so the plugin's client is a recording fake;
the model registry is a real local MLflow store.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.operators.mlflow_deploy import MlflowDeployModelOperator, ModelDeployError
from scripts.testbed.predict_data import mlflow_env_snapshot


class RecordingDeployClient:
    def __init__(self, target: str, existing: set[str], fail: bool = False) -> None:
        self.target = target
        self.existing = existing
        self.fail = fail
        self.calls: list[tuple[str, str, str, dict[str, str]]] = []
        self.tracking_uri_seen = ""

    def get_deployment(self, name: str) -> dict[str, Any]:
        if name not in self.existing:
            raise KeyError(name)
        return {"name": name}

    def create_deployment(self, name: str, model_uri: str, config: dict[str, str]) -> dict[str, Any]:
        import os

        self.tracking_uri_seen = os.environ.get("MLFLOW_TRACKING_URI", "")
        if self.fail:
            raise RuntimeError("quota exceeded")
        self.calls.append(("create", name, model_uri, config))
        self.existing.add(name)
        return {"name": name, "status": "Creating"}

    def update_deployment(self, name: str, model_uri: str, config: dict[str, str]) -> dict[str, Any]:
        self.calls.append(("update", name, model_uri, config))
        return {"name": name, "status": "Updating"}


def test_target_uri_creates_then_updates_and_scopes_the_credentials(
    local_models_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = RecordingDeployClient("sagemaker:/eu-west-1", set())
    targets: list[str] = []

    def get_deploy_client(target: str) -> RecordingDeployClient:
        targets.append(target)
        return client

    monkeypatch.setattr("mlflow.deployments.get_deploy_client", get_deploy_client)
    before = mlflow_env_snapshot()
    op = MlflowDeployModelOperator(
        task_id="deploy",
        name="lin",
        endpoint_name="pricing",
        target_uri="sagemaker:/eu-west-1",
        deployment_config={"instance_type": "ml.m5.large", "instance_count": 2},
    )
    first = op.execute({})
    second = op.execute({})
    assert targets == ["sagemaker:/eu-west-1", "sagemaker:/eu-west-1"]
    assert client.calls == [
        ("create", "pricing", "models:/lin/1", {"instance_type": "ml.m5.large", "instance_count": "2"}),
        ("update", "pricing", "models:/lin/1", {"instance_type": "ml.m5.large", "instance_count": "2"}),
    ]
    assert first["version"] == "1"
    assert first["deployment"] == {"name": "pricing", "status": "Creating"}
    assert second["deployment"]["status"] == "Updating"
    assert client.tracking_uri_seen.startswith("sqlite:///")  # the connection's URI during the call...
    assert mlflow_env_snapshot() == before  # ...and nothing left behind


def test_target_errors_name_the_target_and_the_model(local_models_conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "mlflow.deployments.get_deploy_client", lambda target: RecordingDeployClient(target, set(), fail=True)
    )
    op = MlflowDeployModelOperator(task_id="deploy", name="lin", endpoint_name="pricing", target_uri="sagemaker:/x")
    with pytest.raises(ModelDeployError, match=r"models:/lin/1.*sagemaker:/x.*quota exceeded"):
        op.execute({})


def test_port_is_required_without_a_target() -> None:
    with pytest.raises(InvalidSpecError, match="port is required"):
        MlflowDeployModelOperator(task_id="deploy", name="lin", endpoint_name="pricing")
    MlflowDeployModelOperator(task_id="deploy", name="lin", endpoint_name="pricing", target_uri="sagemaker:/x")
