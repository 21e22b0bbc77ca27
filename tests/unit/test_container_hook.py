"""Container hooks: connection parsing per backend, secret references, secret resolution."""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_ml_provider.backends.docker_engine import DockerBackend
from airflow_ml_provider.backends.metronome import MetronomeBackend
from airflow_ml_provider.backends.swarm import SwarmBackend
from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError
from airflow_ml_provider.hooks.container import (
    ContainerJobHook,
    backend_from_connection,
    docker_config_from_connection,
    metronome_config_from_connection,
)
from airflow_ml_provider.utils.secret_refs import SecretRef, parse_secret_env

SECRET = "pw-" + "x" * 12


def conn(conn_type: str, **kw: Any) -> Connection:
    extra = kw.pop("extra", None)
    return Connection(conn_id="c", conn_type=conn_type, extra=json.dumps(extra) if extra else None, **kw)


def test_docker_config_defaults_to_the_local_socket() -> None:
    config = docker_config_from_connection(conn("ml_docker"))
    assert config.base_url == "unix:///var/run/docker.sock"
    assert config.tls_verify is True
    assert config.pull == "missing"


def test_docker_config_from_host_port_and_extras() -> None:
    config = docker_config_from_connection(
        conn("ml_docker", host="docker1.corp", port=2376, extra={"tls_ca": "/ca.pem", "timeout": 5, "pull": "never"})
    )
    assert config.base_url == "tcp://docker1.corp:2376"
    assert config.tls_ca == "/ca.pem"
    assert config.timeout == 5
    assert config.pull == "never"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [({"pull": "sometimes"}, "pull"), ({"timeout": "soon"}, "timeout"), ({"stop_timeout": -1}, "stop_timeout")],
)
def test_bad_docker_extras_name_the_field(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConnectionConfigError, match=needle):
        docker_config_from_connection(conn("ml_docker", extra=extra))


def test_metronome_config_needs_credentials_and_keeps_tls_on() -> None:
    with pytest.raises(ConnectionConfigError, match="login"):
        metronome_config_from_connection(conn("ml_metronome", host="https://dcos.corp"))
    config = metronome_config_from_connection(
        conn("ml_metronome", host="https://dcos.corp/service/metronome", login="svc", password=SECRET)
    )
    assert config.verify is True
    assert config.url == "https://dcos.corp/service/metronome"
    assert SECRET not in repr(config)
    bundle = metronome_config_from_connection(
        conn("ml_metronome", host="dcos.corp", extra={"token": "t0k", "ca_bundle": "/ca.pem"})
    )
    assert bundle.verify == "/ca.pem"
    assert bundle.url == "https://dcos.corp"


def test_the_connection_type_selects_the_backend() -> None:
    assert isinstance(backend_from_connection(conn("ml_docker")), DockerBackend)
    assert isinstance(backend_from_connection(conn("ml_swarm")), SwarmBackend)
    metronome = conn("ml_metronome", host="https://m", login="u", password=SECRET)
    assert isinstance(backend_from_connection(metronome), MetronomeBackend)
    with pytest.raises(ConnectionConfigError, match="ml_docker, ml_swarm, ml_metronome"):
        backend_from_connection(conn("docker"))


def test_secret_refs_parse_and_print_back() -> None:
    refs = parse_secret_env({"A": "conn://erp/password", "B": "conn://erp/extra/api_key", "C": "var://tok"})
    assert refs == {
        "A": SecretRef("conn", "erp", "password"),
        "B": SecretRef("conn", "erp", "extra/api_key"),
        "C": SecretRef("var", "tok"),
    }
    assert [str(r) for r in refs.values()] == ["conn://erp/password", "conn://erp/extra/api_key", "var://tok"]


@pytest.mark.parametrize("value", ["conn://erp", "conn://erp/secret", "var://", "var://a/b", "plain", 42, None])
def test_bad_secret_refs_are_refused(value: Any) -> None:
    with pytest.raises(InvalidSpecError, match="secret_env"):
        parse_secret_env({"A": value})


def test_resolve_reads_connections_and_variables_and_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ERP_DB",
        json.dumps({"conn_type": "postgres", "host": "erp", "login": "w", "password": SECRET, "extra": {"k": "ex-1"}}),
    )
    monkeypatch.setenv("AIRFLOW_VAR_PRICING_TOKEN", "var-secret-1")
    masked: list[str] = []
    monkeypatch.setattr("airflow.sdk.log.mask_secret", lambda value, name=None: masked.append(value))
    refs = parse_secret_env({"P": "conn://erp_db/password", "K": "conn://erp_db/extra/k", "T": "var://pricing_token"})
    values = ContainerJobHook().resolve_secret_env(refs)
    assert values == {"P": SECRET, "K": "ex-1", "T": "var-secret-1"}
    assert set(values.values()) <= {m for m in masked if isinstance(m, str)}


def test_resolve_errors_name_the_reference_not_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DB", json.dumps({"conn_type": "postgres", "password": SECRET}))
    hook = ContainerJobHook()
    with pytest.raises(ConnectionConfigError, match="conn://missing_db/password"):
        hook.resolve_secret_env(parse_secret_env({"P": "conn://missing_db/password"}))
    with pytest.raises(ConnectionConfigError, match="no extra key") as err:
        hook.resolve_secret_env(parse_secret_env({"P": "conn://erp_db/extra/nope"}))
    assert SECRET not in str(err.value)
    with pytest.raises(ConnectionConfigError, match="is empty"):
        hook.resolve_secret_env(parse_secret_env({"P": "conn://erp_db/login"}))
