"""Connection forms save a cleared field as null (a cleared text field may save ""): every hook reads
that as the field's default, for every extra its form offers. A value that is there but cannot be
read is still an error, and TLS verification stays on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_ml_provider.exceptions import ConnectionConfigError
from airflow_ml_provider.hooks.container import docker_config_from_connection, metronome_config_from_connection
from airflow_ml_provider.hooks.mlflow import mlflow_config_from_connection
from airflow_ml_provider.hooks.webhdfs import HdfsConfig
from airflow_ml_provider.provider_info import get_provider_info

#: Required fields of each type (not extras), and how to read its config.
BASE: dict[str, dict[str, Any]] = {
    "ml_hdfs": {"host": "nn1.corp", "login": "etl"},
    "ml_docker": {"host": "tcp://docker1.corp:2376"},
    "ml_swarm": {"host": "tcp://swarm1.corp:2376"},
    "ml_metronome": {"host": "https://dcos.corp", "login": "svc", "password": "pw-secret-1234"},
    "ml_mlflow": {"host": "https://mlflow.corp", "login": "svc", "password": "pw-secret-1234"},
}
READ = {
    "ml_hdfs": HdfsConfig.from_connection,
    "ml_docker": docker_config_from_connection,
    "ml_swarm": docker_config_from_connection,
    "ml_metronome": metronome_config_from_connection,
    "ml_mlflow": mlflow_config_from_connection,
}
#: Extras the hooks read that the forms do not offer (set through the extra's JSON).
EXTRA_KEYS = {"ml_docker": ["tls"], "ml_swarm": ["tls"]}


def form_fields(conn_type: str) -> list[str]:
    (ct,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type]
    return [*ct["conn-fields"], *EXTRA_KEYS.get(conn_type, [])]


def config(conn_type: str, extra: dict[str, Any] | None) -> Any:
    conn = Connection(
        conn_id="c", conn_type=conn_type, extra=json.dumps(extra) if extra is not None else None, **BASE[conn_type]
    )
    return READ[conn_type](conn)


@pytest.mark.parametrize("cleared", [None, ""])
@pytest.mark.parametrize("conn_type", sorted(BASE))
def test_a_connection_whose_extras_are_all_cleared_gets_every_default(conn_type: str, cleared: Any) -> None:
    """The form saved with every extra field cleared: the same config as with no extra at all."""
    keys = form_fields(conn_type)
    assert keys
    assert config(conn_type, dict.fromkeys(keys, cleared)) == config(conn_type, None)


@pytest.mark.parametrize("cleared", [None, ""])
@pytest.mark.parametrize(
    ("conn_type", "key", "field", "default"),
    [
        ("ml_docker", "pull", "pull", "missing"),
        ("ml_docker", "timeout", "timeout", 60),
        ("ml_docker", "stop_timeout", "stop_timeout", 10),
        ("ml_docker", "tls_verify", "tls_verify", True),
        ("ml_swarm", "pull", "pull", "missing"),
        ("ml_swarm", "stop_timeout", "stop_timeout", 10),
        ("ml_metronome", "timeout", "timeout", 30),
        ("ml_metronome", "retries", "retries", 5),
        ("ml_metronome", "backoff", "backoff", 0.5),
        ("ml_metronome", "verify", "verify", True),
        ("ml_hdfs", "timeout", "timeout", 30.0),
        ("ml_hdfs", "auth", "auth", "simple"),
        ("ml_hdfs", "verify", "verify", True),
        ("ml_mlflow", "timeout", "timeout", 60.0),
        ("ml_mlflow", "max_retries", "max_retries", 5),
        ("ml_mlflow", "verify", "verify", True),
        ("ml_mlflow", "auth", "auth", "basic"),
        ("ml_mlflow", "registry_uri", "registry_uri", "https://mlflow.corp"),
    ],
)
def test_each_cleared_extra_means_its_default(conn_type: str, key: str, field: str, default: Any, cleared: Any) -> None:
    assert getattr(config(conn_type, {key: cleared}), field) == default


@pytest.mark.parametrize(
    ("conn_type", "extra"),
    [
        ("ml_docker", {"tls_verify": "ture"}),
        ("ml_docker", {"pull": "sometimes"}),
        ("ml_docker", {"stop_timeout": 2.5}),
        ("ml_docker", {"tls_cert": True}),
        ("ml_metronome", {"verify": "maybe"}),
        ("ml_metronome", {"retries": "many"}),
        ("ml_hdfs", {"verify": "nope"}),
        ("ml_hdfs", {"proxy_user": 7}),
        ("ml_mlflow", {"verify": "ture"}),
        ("ml_mlflow", {"max_retries": 1.5}),
    ],
)
def test_a_value_that_cannot_be_read_is_still_an_error(conn_type: str, extra: dict[str, Any]) -> None:
    (key,) = extra
    with pytest.raises(ConnectionConfigError, match=f"'c'.*'{key}'"):
        config(conn_type, extra)
