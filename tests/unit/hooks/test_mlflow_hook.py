"""MlflowHook: connection parsing (strict extras) and credentials that never outlive the call."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_ml_provider.exceptions import ConnectionConfigError
from airflow_ml_provider.hooks.mlflow import (
    SCOPED_VARIABLES,
    MlflowHook,
    mlflow_config_from_connection,
    scoped_environment,
)

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
        ({"host": "h", "extra": {"auth": "kerberos"}}, "'auth' is 'kerberos'; use 'none', 'basic' or 'token'"),
        ({"host": "h", "extra": {"auth": "token"}}, "password"),
        ({"host": "h", "extra": {"timeout": "soon"}}, "timeout"),
    ],
)
def test_bad_connections_name_the_field(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConnectionConfigError, match=needle):
        mlflow_config_from_connection(conn(**kw))


@pytest.mark.parametrize(
    ("extra", "key", "accepted"),
    [
        ({"verify": "ture"}, "verify", "true/false"),  # a typo must not turn TLS verification off
        ({"verify": "maybe"}, "verify", "CA bundle"),
        ({"verify": 2}, "verify", "true/false"),
        ({"timeout": "soon"}, "timeout", "a number"),
        ({"timeout": 0}, "timeout", "a positive number"),
        ({"timeout": True}, "timeout", "a number"),
        ({"max_retries": -1}, "max_retries", ">= 0"),
        ({"max_retries": 2.5}, "max_retries", "whole number"),
        ({"max_retries": "many"}, "max_retries", "a number"),
    ],
)
def test_an_unreadable_extra_names_connection_key_and_accepted_values(
    extra: dict[str, Any], key: str, accepted: str
) -> None:
    with pytest.raises(ConnectionConfigError) as err:
        mlflow_config_from_connection(conn(host="h", extra=extra))
    message = str(err.value)
    assert "'m'" in message  # the connection
    assert repr(key) in message
    assert accepted in message


@pytest.mark.parametrize("value", [False, "false", "0", "no", "off", "FALSE"])
def test_verify_off_is_only_an_explicit_false(value: Any) -> None:
    config = mlflow_config_from_connection(conn(host="h", extra={"verify": value}))
    assert config.verify is False
    assert config.env()["MLFLOW_TRACKING_INSECURE_TLS"] == "true"


def test_null_extras_mean_the_defaults() -> None:
    config = mlflow_config_from_connection(
        conn(host="h", extra={"verify": None, "timeout": None, "max_retries": None, "ca_bundle": None})
    )
    assert (config.verify, config.timeout, config.max_retries, config.ca_bundle) == (True, 60.0, 5, "")
    assert config.env()["MLFLOW_TRACKING_INSECURE_TLS"] == "false"
    numbers = mlflow_config_from_connection(conn(host="h", extra={"timeout": "12.5", "max_retries": "3"}))
    assert (numbers.timeout, numbers.max_retries) == (12.5, 3)


def test_verify_given_as_a_ca_file_keeps_verification_on_with_that_ca(tmp_path: Any) -> None:
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = mlflow_config_from_connection(conn(host="h", extra={"verify": str(ca)}))
    assert config.verify is True
    assert config.ca_bundle == str(ca)
    env = config.env()
    assert env["MLFLOW_TRACKING_INSECURE_TLS"] == "false"
    assert env["MLFLOW_TRACKING_SERVER_CERT_PATH"] == str(ca)
    with pytest.raises(ConnectionConfigError, match="does not exist"):
        mlflow_config_from_connection(conn(host="h", extra={"verify": str(tmp_path / "missing.pem")}))
    other = tmp_path / "other.pem"
    other.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ConnectionConfigError, match="different CA files"):
        mlflow_config_from_connection(conn(host="h", extra={"verify": str(ca), "ca_bundle": str(other)}))


def test_hooks_expose_their_default_connection() -> None:
    from airflow_ml_provider.operators.mlflow_common import MlflowOperator

    assert MlflowHook.default_conn_name == "ml_mlflow_default"
    assert MlflowHook().conn_id == MlflowHook.default_conn_name
    assert MlflowOperator(task_id="t").mlflow_conn_id == MlflowHook.default_conn_name


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


def test_connection_failure_tells_no_answer_from_an_answer() -> None:
    """A refused connection or a read timeout under MLflow's INTERNAL_ERROR is "nothing answered";
    a server that answered (even with 500s until MLflow gave up) is not."""
    from mlflow.exceptions import MlflowException

    from airflow_ml_provider.hooks.mlflow import connection_failure

    def chained(outer: Exception, inner: BaseException) -> Exception:
        try:
            try:
                raise inner
            except BaseException as e:
                raise outer from e
        except Exception as e:
            return e

    refused = chained(
        MlflowException("API request to http://h:5000/api/2.0/x failed"),
        ConnectionRefusedError(111, "Connection refused"),
    )
    assert connection_failure(refused) == "[Errno 111] Connection refused"
    text_only = MlflowException(
        "API request to http://h/api failed with exception (Caused by NameResolutionError(...))"
    )
    assert connection_failure(text_only) == "NameResolutionError"
    slow = MlflowException("API request to http://h/api failed with exception Read timed out. (read timeout=5)")
    assert connection_failure(slow) == "no answer within the timeout"
    answered = MlflowException(
        "API request to http://h/api failed with exception Max retries exceeded "
        "(Caused by ResponseError('too many 500 error responses'))"
    )
    assert connection_failure(answered) is None
    assert connection_failure(MlflowException("RESOURCE_DOES_NOT_EXIST: no model")) is None
