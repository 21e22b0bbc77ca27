"""Model containers: their spec and MLflow environment, and the health probe against real local servers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.hooks.mlflow import MlflowConfig
from airflow_ml_provider.serving.endpoint_docker import (
    LABEL_ENDPOINT,
    LABEL_MODEL,
    LABEL_PORT,
    LABEL_ROLE,
    LABEL_VERSION,
    ROLE_MODEL,
    free_port,
)
from airflow_ml_provider.serving.model_server import CA_PATH, mlflow_container_env, model_server_healthy, model_spec
from airflow_ml_provider.utils.resources import ResourceSpec
from tests.unit.serving.conftest import Named

SECRET = "pw-" + "q" * 20


def test_the_container_gets_the_connection_as_secret_env_and_the_ca_mounted(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    config = MlflowConfig(
        tracking_uri="https://mlflow.corp",
        registry_uri="https://registry.corp",
        auth="basic",
        username="u",
        password=SECRET,
        ca_bundle=str(ca),
    )
    env, mounts = mlflow_container_env(config, "ml_mlflow_default")
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.corp"
    assert env["MLFLOW_REGISTRY_URI"] == "https://registry.corp"
    assert env["MLFLOW_TRACKING_PASSWORD"] == SECRET
    assert env["MLFLOW_TRACKING_SERVER_CERT_PATH"] == CA_PATH
    assert [(m.source, m.target, m.read_only) for m in mounts] == [(str(ca), CA_PATH, True)]


@pytest.mark.parametrize("uri", ["sqlite:////srv/mlflow.db", "file:///srv/mlruns"])
def test_a_local_store_cannot_feed_a_model_container(uri: str) -> None:
    with pytest.raises(InvalidSpecError, match="http\\(s\\) tracking server"):
        mlflow_container_env(MlflowConfig(tracking_uri=uri, registry_uri=uri), "local")


def test_the_model_spec_serves_one_version_on_its_own_port_with_secrets_off_the_command_line() -> None:
    spec = model_spec(
        endpoint="pricing",
        name="lin",
        version="3",
        image="serve:1",
        port=41234,
        workers=2,
        resources=ResourceSpec.from_value({"cpus": 1, "memory": "1Gi"}),
        secret_env={"MLFLOW_TRACKING_PASSWORD": SECRET},
        mounts=[],
    )
    assert spec.key.startswith("ml-serve-pricing-v3-")
    assert len(spec.key) == len("ml-serve-pricing-v3-") + 6
    command = list(spec.command or [])
    assert command[:5] == ["mlflow", "models", "serve", "-m", "models:/lin/3"]
    assert command[-6:] == ["-h", "127.0.0.1", "-p", "41234", "--workers", "2"]
    assert SECRET not in " ".join(command)
    assert spec.network == "host"
    labels = dict(spec.labels)
    assert {k: labels[k] for k in (LABEL_ENDPOINT, LABEL_ROLE, LABEL_MODEL, LABEL_VERSION, LABEL_PORT)} == {
        LABEL_ENDPOINT: "pricing",
        LABEL_ROLE: ROLE_MODEL,
        LABEL_MODEL: "lin",
        LABEL_VERSION: "3",
        LABEL_PORT: "41234",
    }
    assert spec.redact(f"failed with {SECRET}") == "failed with ***"


def test_health_is_a_200_on_ping_or_on_health_when_there_is_no_ping() -> None:
    with_ping, without_ping, broken = (
        Named("m"),
        Named("m", missing=("/ping",)),
        Named("m", missing=("/ping", "/health")),
    )
    try:
        assert model_server_healthy(with_ping.port)
        assert model_server_healthy(without_ping.port)
        assert not model_server_healthy(broken.port)
    finally:
        for server in (with_ping, without_ping, broken):
            server.close()


def test_nothing_listening_is_not_healthy_and_free_ports_avoid_the_endpoints_own() -> None:
    port = free_port()
    assert not model_server_healthy(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # it really was free
    taken = {free_port() for _ in range(5)}
    assert free_port(avoid=tuple(taken)) not in taken
