"""``MlflowDeployModelOperator(target_uri=...)``: hand a model version to an ``mlflow.deployments`` plugin.

Instead of Docker, the plugin named by ``target_uri`` (e.g. ``sagemaker:/eu-west-1``) serves the
model: ``update_deployment`` when the deployment exists there, else ``create_deployment``. The
call runs inside :meth:`MlflowHook.scoped <airflow_ml_provider.hooks.mlflow.MlflowHook.scoped>`,
so the plugin sees the connection's tracking URI and credentials, and nothing is left behind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import ModelDeployError
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    from airflow_ml_provider.hooks.mlflow import MlflowHook
    from airflow_ml_provider.serving.endpoint_docker import Log


def deploy_to_target(
    hook: MlflowHook,
    *,
    target_uri: str,
    deployment: str,
    name: str,
    version: str,
    config: Mapping[str, Any],
    log: Log,
) -> dict[str, Any]:
    """Create or update ``deployment`` on ``target_uri`` with ``models:/<name>/<version>``; the XCom result.

    :param hook: the MLflow connection's hook.
    :param target_uri: the plugin's target, e.g. ``sagemaker:/eu-west-1``.
    :param deployment: the deployment's name there (the operator's ``endpoint_name``).
    :param name: the registered model's name.
    :param version: the model version.
    :param config: the plugin's ``config`` (values passed as strings).
    :param log: where the outcome is logged.
    """
    with requires_extra("mlflow"):
        from mlflow.deployments import get_deploy_client

    model_uri = f"models:/{name}/{version}"
    settings = {str(k): str(v) for k, v in config.items()}
    with hook.scoped():
        client = get_deploy_client(target_uri)
        try:
            existing = client.get_deployment(deployment)
        except Exception:  # noqa: BLE001  # plugins signal "no such deployment" in their own ways
            existing = None
        try:
            if existing:
                result = client.update_deployment(deployment, model_uri=model_uri, config=settings)
            else:
                result = client.create_deployment(deployment, model_uri, config=settings)
        except Exception as e:  # noqa: BLE001  # any plugin error: name the target and the model
            raise ModelDeployError(
                f"Deploying {model_uri} as {deployment!r} on {target_uri}: {type(e).__name__}: {e}"
            ) from None
    log.info("%s %s on %s as %r.", "Updated" if existing else "Created", model_uri, target_uri, deployment)
    return {
        "endpoint": f"{target_uri}/{deployment}",
        "name": name,
        "version": version,
        "container": None,
        "previous_version": None,
        "changed": True,
        "deployment": json.loads(json.dumps(result, default=str)) if result is not None else None,
    }
