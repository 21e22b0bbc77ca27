"""MlflowHook: connection parsing and credentials that never outlive the call."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError
from airflow_ml_provider.hooks.mlflow import (
    SCOPED_VARIABLES,
    MlflowHook,
    mlflow_config_from_connection,
    scoped_environment,
)
from airflow_ml_provider.operators.mlflow_registry import MlflowPromoteModelOperator, MlflowRegisterModelOperator

TOKEN = "tok-" + "z" * 16


def conn(**kw: Any) -> Connection:
    extra = kw.pop("extra", None)
    return Connection(conn_id="m", conn_type="ml_mlflow", extra=json.dumps(extra) if extra else None, **kw)


def test_config_from_a_server_connection_with_a_token() -> None:
    config = mlflow_config_from_connection(
        conn(host="mlflow.corp", port=5000, password=TOKEN, extra={"auth": "token", "registry_uri": "http://reg:5001"})
    )
    assert config.tracking_uri == "https://mlflow.corp:5000"
    assert config.registry_uri == "http://reg:5001"
    assert config.env()["MLFLOW_TRACKING_TOKEN"] == TOKEN
    assert config.env()["MLFLOW_TRACKING_INSECURE_TLS"] == "false"
    assert TOKEN not in repr(config)


def test_config_for_the_embedded_local_store() -> None:
    config = mlflow_config_from_connection(conn(host="sqlite:////srv/mlflow/mlflow.db"))
    assert config.tracking_uri == config.registry_uri == "sqlite:////srv/mlflow/mlflow.db"
    assert config.auth == "none"
    assert "MLFLOW_TRACKING_TOKEN" not in config.env()


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({}, "tracking URI"),
        ({"host": "h", "extra": {"auth": "kerberos"}}, "auth="),
        ({"host": "h", "extra": {"auth": "token"}}, "password"),
        ({"host": "h", "extra": {"timeout": "soon"}}, "timeout"),
    ],
)
def test_bad_connections_name_the_field(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConnectionConfigError, match=needle):
        mlflow_config_from_connection(conn(**kw))


def test_scoped_environment_restores_exactly_and_hides_outer_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "worker-wide-token")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    with scoped_environment({"MLFLOW_TRACKING_USERNAME": "u"}):
        assert os.environ["MLFLOW_TRACKING_USERNAME"] == "u"
        assert "MLFLOW_TRACKING_TOKEN" not in os.environ  # another connection's credential is not used
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "worker-wide-token"
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ
    with pytest.raises(RuntimeError), scoped_environment({"MLFLOW_TRACKING_TOKEN": TOKEN}):
        raise RuntimeError("boom")
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "worker-wide-token"


def test_scopes_of_two_threads_never_interleave(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SCOPED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    seen: list[str] = []

    def worker(token: str) -> None:
        for _ in range(200):
            with scoped_environment({"MLFLOW_TRACKING_TOKEN": token}):
                seen.append(f"{token}={os.environ['MLFLOW_TRACKING_TOKEN']}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(seen) == {"a=a", "b=b"}
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ


def test_hook_scope_sets_uris_and_masks_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ML_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "ml_mlflow", "host": "http://127.0.0.1:5000", "login": "u", "password": TOKEN}),
    )
    masked: list[Any] = []
    monkeypatch.setattr("airflow.sdk.log.mask_secret", lambda value, name=None: masked.append(value))
    hook = MlflowHook()
    with hook.scoped():
        assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
        assert os.environ["MLFLOW_TRACKING_PASSWORD"] == TOKEN
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    assert TOKEN in masked


@pytest.mark.parametrize(
    "kw",
    [
        {"name": "", "model_uri": "runs:/x/model"},
        {"name": "m", "model_uri": "model"},
        {"name": "m", "model_uri": "runs:/x/model", "await_ready_timeout": 0},
    ],
)
def test_register_arguments_are_checked_at_parse_time(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidSpecError):
        MlflowRegisterModelOperator(task_id="r", **kw)


@pytest.mark.parametrize(
    "kw",
    [
        {"version": 0},
        {"version": "1", "min_improvement": -1},
        {"version": "1", "alias": "a", "challenger_alias": "a"},
        {"version": "1", "alias": ""},
    ],
)
def test_promote_arguments_are_checked_at_parse_time(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidSpecError):
        MlflowPromoteModelOperator(task_id="p", name="m", **kw)
