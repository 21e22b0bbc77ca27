"""ml_webhook connections: strict extras (null or empty = default), the token masked, and the
notifier's contract (keyword-only, template fields a tuple, no I/O in the constructor)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_ml_provider.exceptions import ConnectionConfigError
from airflow_ml_provider.hooks.webhook import WebhookConfig, webhook_config_from_connection
from airflow_ml_provider.provider_info import get_provider_info

URL = "https://alerts.corp/hooks/ml/s3cr3t-path"


def read(extra: dict[str, Any] | None, *, host: str = URL, password: str | None = "tok-1234") -> WebhookConfig:  # noqa: S107
    conn = Connection(
        conn_id="c",
        conn_type="ml_webhook",
        host=host,
        password=password,
        extra=json.dumps(extra) if extra is not None else None,
    )
    return webhook_config_from_connection(conn)


def test_defaults() -> None:
    config = read(None)
    assert config == WebhookConfig(url=URL, token="tok-1234", verify=True, timeout=10.0, retries=3, backoff=0.5)
    assert config.endpoint == "https://alerts.corp"  # messages never show the path (it may be a secret)


def test_no_token_is_none() -> None:
    assert read(None, password="").token is None


@pytest.mark.parametrize("cleared", [None, ""])
def test_every_cleared_form_field_is_its_default(cleared: Any) -> None:
    (ct,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "ml_webhook"]
    assert read(dict.fromkeys(ct["conn-fields"], cleared)) == read(None)


def test_values_are_read() -> None:
    config = read({"verify": "false", "timeout": "2.5", "retries": 0, "backoff": 0})
    assert (config.verify, config.timeout, config.retries, config.backoff) == (False, 2.5, 0, 0.0)


@pytest.mark.parametrize(
    "extra",
    [
        {"verify": "ture"},
        {"timeout": 0},
        {"timeout": "soon"},
        {"retries": 1.5},
        {"retries": -1},
        {"backoff": True},
        {"ca_bundle": "relative.pem"},
    ],
)
def test_a_value_that_cannot_be_read_is_an_error(extra: dict[str, Any]) -> None:
    (key,) = extra
    with pytest.raises(ConnectionConfigError, match=f"'c'.*'{key}'"):
        read(extra)


def test_unknown_extra_is_an_error_naming_the_accepted_ones() -> None:
    with pytest.raises(ConnectionConfigError, match=r"unknown extra 'tiemout'.*timeout"):
        read({"tiemout": 5})


@pytest.mark.parametrize("host", ["", "alerts.corp/hooks", "ftp://alerts.corp/x"])
def test_host_must_be_an_http_url(host: str) -> None:
    with pytest.raises(ConnectionConfigError, match="Host must be the webhook's full http"):
        read(None, host=host)


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConnectionConfigError) as caught:
        read(None, host="https://user:pa55word@alerts.corp/x")
    assert "pa55word" not in str(caught.value)


def test_the_token_is_registered_with_the_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    from airflow_ml_provider.hooks.webhook import WebhookHook

    token = "tok-a81f0c2b9d7e"
    body = {"conn_type": "ml_webhook", "host": URL, "password": token}
    monkeypatch.setenv("AIRFLOW_CONN_ML_WEBHOOK_UNIT", json.dumps(body))
    assert WebhookHook(conn_id="ml_webhook_unit").config.token == token
    assert redact(f"sent {token}") == "sent ***"


def test_notifier_is_keyword_only_templated_and_does_no_io() -> None:
    from airflow_ml_provider.notifications.webhook import WebhookNotifier

    with pytest.raises(TypeError):
        WebhookNotifier("ml_webhook_default")  # type: ignore[call-arg]
    notifier = WebhookNotifier(conn_id="no_such_connection")  # no connection is read here
    assert notifier.template_fields == ("conn_id",)
    assert isinstance(notifier.template_fields, tuple)


def test_smtp_notifier_is_keyword_only() -> None:
    from airflow_ml_provider.notifications.smtp import FailureSmtpNotifier, smtp_failure_notifier

    with pytest.raises(TypeError):
        FailureSmtpNotifier("a@example.com")  # type: ignore[call-arg]
    notifier = smtp_failure_notifier(to="a@example.com", smtp_conn_id="no_such_connection")
    assert isinstance(notifier, FailureSmtpNotifier)
    assert isinstance(notifier.template_fields, tuple)
    assert notifier.smtp_conn_id == "no_such_connection"


def test_importing_the_notification_modules_pulls_in_no_heavy_library() -> None:
    heavy = ("hdfs", "docker", "mlflow", "pyspark", "pandas", "pyarrow", "requests", "sklearn", "urllib3")
    modules = [
        "airflow_ml_provider.notifications",
        "airflow_ml_provider.notifications.message",
        "airflow_ml_provider.notifications.webhook",
        "airflow_ml_provider.notifications.smtp",
        "airflow_ml_provider.hooks.webhook",
    ]
    code = (
        "import sys, json, importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(n for n in {heavy!r} if n in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_provider_info_lists_the_notifiers_and_they_import() -> None:
    import importlib

    listed = get_provider_info()["notifications"]
    assert "airflow_ml_provider.notifications.webhook.WebhookNotifier" in listed
    assert "airflow_ml_provider.notifications.smtp.FailureSmtpNotifier" in listed  # the smtp provider is installed
    for name in listed:
        module, _, cls = name.rpartition(".")
        assert getattr(importlib.import_module(module), cls)


def test_a_missing_connection_is_logged_not_raised_unless_asked(capfd: pytest.CaptureFixture[str]) -> None:
    from airflow_ml_provider.notifications.webhook import WebhookNotifier

    context: Any = {"run_id": "r1", "exception": RuntimeError("boom")}
    WebhookNotifier(conn_id="ml_webhook_missing_unit").notify(context)  # the Task SDK logs through structlog
    out, err = capfd.readouterr()
    assert "The failure alert was not delivered (connection 'ml_webhook_missing_unit')" in out + err
    with pytest.raises(Exception, match="ml_webhook_missing_unit"):
        WebhookNotifier(conn_id="ml_webhook_missing_unit", raise_on_error=True).notify(context)
