"""An endpoint's model containers: their spec, and waiting until one answers its health probe.

A **model** container ``ml-serve-<endpoint>-v<version>-<6 hex>`` runs ``mlflow models serve -m
models:/<name>/<version> --env-manager local`` with host networking on a port of its own (two
containers cannot share one). The tracking URI and credentials are *secret* environment; the
connection's CA bundle is mounted read-only at :data:`CA_PATH`. It is healthy once ``GET /ping``
(:data:`PROBE_PATH`) answers 200 on the worker's 127.0.0.1 (the Docker engine is local to the
worker); the endpoint's router probes the same path for its own ``GET /health``.
"""

from __future__ import annotations

import http.client
import secrets
import time
from typing import TYPE_CHECKING

from airflow_ml_provider.exceptions import InvalidSpecError, ModelDeployError
from airflow_ml_provider.serving.endpoint_docker import (
    LABEL_ENDPOINT,
    LABEL_MODEL,
    LABEL_PORT,
    LABEL_ROLE,
    LABEL_VERSION,
    LOG_TAIL,
    ROLE_MODEL,
    EndpointDocker,
    ServiceContainer,
)
from airflow_ml_provider.serving.router_client import PROBE_PATH, local_http

if TYPE_CHECKING:
    from airflow_ml_provider.backends.base import JobSpec, Mount
    from airflow_ml_provider.hooks.mlflow import MlflowConfig
    from airflow_ml_provider.utils.resources import ResourceSpec

#: Where the MLflow connection's CA bundle is mounted in model containers.
CA_PATH = "/etc/airflow-ml-provider/mlflow-ca.pem"


def mlflow_container_env(config: MlflowConfig, conn_id: str) -> tuple[dict[str, str], list[Mount]]:
    """Secret environment (tracking URI, credentials, TLS) and mounts (the CA bundle) for a model container.

    :param config: the MLflow connection's settings.
    :param conn_id: the connection's id (for messages).
    """
    from airflow_ml_provider.backends.base import Mount

    for uri in (config.tracking_uri, config.registry_uri):
        if not uri.startswith(("http://", "https://")):
            raise InvalidSpecError(
                f"Connection {conn_id!r} points at {uri!r}; the model container must download the model from an "
                "http(s) tracking server (e.g. http://127.0.0.1:5000), not a local store."
            )
    env = config.env()
    env["MLFLOW_TRACKING_URI"] = config.tracking_uri
    env["MLFLOW_REGISTRY_URI"] = config.registry_uri
    mounts = []
    if "MLFLOW_TRACKING_SERVER_CERT_PATH" in env:
        mounts.append(Mount(env["MLFLOW_TRACKING_SERVER_CERT_PATH"], CA_PATH, read_only=True))
        env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = CA_PATH
    return env, mounts


def model_spec(
    *,
    endpoint: str,
    name: str,
    version: str,
    image: str,
    port: int,
    workers: int,
    resources: ResourceSpec,
    secret_env: dict[str, str],
    mounts: list[Mount],
) -> JobSpec:
    """The spec of a model container serving ``models:/<name>/<version>`` on ``127.0.0.1:<port>``.

    :param endpoint: the endpoint's name.
    :param name: the registered model's name.
    :param version: the model version.
    :param image: an image with ``mlflow`` and the model's libraries.
    :param port: the model server's own port.
    :param workers: uvicorn workers.
    :param resources: cpu/memory/gpu limits.
    :param secret_env: from :func:`mlflow_container_env`.
    :param mounts: from :func:`mlflow_container_env`.
    """
    from airflow_ml_provider.backends.base import JobSpec, spec_digest

    command = ["mlflow", "models", "serve", "-m", f"models:/{name}/{version}", "--env-manager", "local"]
    spec = JobSpec(
        key=f"ml-serve-{endpoint}-v{version}-{secrets.token_hex(3)}",
        image=image,
        command=[*command, "-h", "127.0.0.1", "-p", str(port), "--workers", str(workers)],
        env={"PYTHONUNBUFFERED": "1"},
        secret_env=secret_env,
        resources=resources,
        mounts=mounts,
        network="host",
        labels={
            LABEL_ENDPOINT: endpoint,
            LABEL_ROLE: ROLE_MODEL,
            LABEL_MODEL: name,
            LABEL_VERSION: version,
            LABEL_PORT: str(port),
        },
    )
    return spec._replace(spec_hash=spec_digest(spec))


def model_server_healthy(port: int) -> bool:
    """True when the model server on ``port`` answers ``GET /ping`` (or, if it has none, ``/health``) with 200.

    :param port: the model server's port on 127.0.0.1.
    """
    try:
        status, _ = local_http("GET", port, PROBE_PATH, timeout=2.0)
        if status == 404:
            status, _ = local_http("GET", port, "/health", timeout=2.0)
    except (OSError, http.client.HTTPException):
        return False
    return status == 200


def await_healthy(
    docker: EndpointDocker, container: ServiceContainer, spec: JobSpec, port: int, timeout: float
) -> None:
    """Wait until the model container answers on ``port``.

    When it exits or does not answer within ``timeout`` s, raises ModelDeployError naming the
    model version, the container and the image, with its last :data:`LOG_TAIL` log lines (secret
    values redacted). The caller removes the container.

    :param docker: the endpoint's Docker engine.
    :param container: the model container.
    :param spec: its spec (for the message and the redaction).
    :param port: its model server's port.
    :param timeout: seconds to wait at most.
    """
    deadline = time.monotonic() + timeout
    while True:
        status = docker.status(container)
        if status.finished:
            why = f"exited with code {status.exit_code}" + (" (out of memory)" if status.oom_killed else "")
            break
        if model_server_healthy(port):
            return
        if time.monotonic() > deadline:
            why = f"did not answer GET /ping within {timeout:.0f} s"
            break
        time.sleep(0.5)
    try:
        lines = docker.log_tail(container, LOG_TAIL)
    except Exception as e:  # noqa: BLE001  # the failure matters more than its logs
        lines = [f"(could not read its logs: {type(e).__name__}: {e})"]
    tail = "\n".join(lines) or "(no output)"
    raise ModelDeployError(
        spec.redact(
            f"{spec.labels[LABEL_MODEL]} version {spec.labels[LABEL_VERSION]} ({spec.key}, image {spec.image}) {why}; "
            f"it was removed and endpoint {spec.labels[LABEL_ENDPOINT]!r} keeps serving what it served. "
            f"Last {LOG_TAIL} log lines:\n{tail}"
        )
    )
