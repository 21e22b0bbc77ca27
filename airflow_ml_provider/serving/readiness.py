"""Can a Docker endpoint deploy run here? The reasons it cannot, checked before trying.

:class:`~airflow_ml_provider.operators.mlflow_deploy.MlflowDeployModelOperator` fails when the
Docker engine is unreachable, an image is missing or the MLflow connection is not a tracking
server the model containers can reach. A DAG that deploys only "when it can" (the ``ml_pipeline``
example's ``deploy='auto'``, a laptop without Docker) asks :func:`deploy_blockers` first and skips
the deploy with the reasons it returns, instead of letting the deploy fail.

Nothing here is written by hand that a library does: the engine is asked through the docker SDK
(``ping`` and ``images.get``), the MLflow connection is read through :class:`MlflowHook`.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_ml_provider.hooks.container import ContainerJobHook
from airflow_ml_provider.hooks.mlflow import DEFAULT_CONN_ID as MLFLOW_CONN_ID


def deploy_blockers(
    *,
    images: Sequence[str],
    mlflow_conn_id: str = MLFLOW_CONN_ID,
    docker_conn_id: str = ContainerJobHook.default_conn_name,
) -> list[str]:
    """Why a Docker endpoint deploy cannot run on this worker; an empty list when it can.

    Each reason is one sentence naming what is missing and how to provide it.

    :param images: the images the deploy runs (model and router); each must be on the engine.
    :param mlflow_conn_id: the ``ml_mlflow`` connection; its tracking URI must be ``http(s)://``.
    :param docker_conn_id: the ``ml_docker`` connection of the engine (the default: the local engine).
    """
    from airflow_ml_provider.hooks.mlflow import MlflowHook

    reasons = []
    try:
        tracking = MlflowHook(mlflow_conn_id).config.tracking_uri
    except Exception as e:  # noqa: BLE001  # a missing or invalid connection is a reason, not a crash
        reasons.append(
            f"the MLflow connection {mlflow_conn_id!r} cannot be used ({type(e).__name__}: {e}): define it as an "
            "ml_mlflow connection to an http(s) tracking server"
        )
    else:
        if not tracking.startswith(("http://", "https://")):
            reasons.append(
                f"the MLflow connection {mlflow_conn_id!r} is a local store ({tracking.split(':', 1)[0]}), which "
                "model containers cannot read: point it at an http(s) tracking server (e.g. `mlflow server`)"
            )
    reasons.extend(_engine_blockers(images, docker_conn_id))
    return reasons


def _engine_blockers(images: Sequence[str], docker_conn_id: str) -> list[str]:
    """The Docker engine's part of :func:`deploy_blockers`."""
    from airflow_ml_provider.utils.optional_deps import requires_extra

    try:
        with requires_extra("docker"):
            from airflow_ml_provider.serving.endpoint_docker import EndpointDocker

            engine = EndpointDocker.from_connection(docker_conn_id)
    except Exception as e:  # noqa: BLE001  # any failure to reach the engine is a reason, not a crash
        return [f"no Docker engine for {docker_conn_id!r} ({type(e).__name__}: {e}): start one, or set deploy off"]
    try:
        missing = engine.missing_images(images)
    except Exception as e:  # noqa: BLE001  # same as above
        return [f"the Docker engine of {docker_conn_id!r} does not answer ({type(e).__name__}: {e})"]
    finally:
        engine.close()
    if missing:
        return [f"image(s) {', '.join(missing)} are not on the Docker engine: build them (`make images`)"]
    return []
