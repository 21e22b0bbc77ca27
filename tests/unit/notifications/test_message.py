"""The failure alert's text: names the DAG, task, run, try, error line, failing keys and log URL; no secrets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_ml_provider.notifications.message import (
    FAILING_KEYS_XCOM,
    MAX_ERROR_CHARS,
    NO_KEYS,
    build_failure_alert,
    error_line,
)

LOG_URL = "http://airflow.corp/dags/erp_write/runs/manual__2026-11-29/tasks/write?try_number=2"


class DropGuardError(RuntimeError):
    def __init__(self, message: str, keys: list[str]) -> None:
        super().__init__(message)
        self.keys = keys


class FakeTI:
    def __init__(self, xcom: Any = None, xcom_error: Exception | None = None) -> None:
        self.dag_id = "erp_write"
        self.task_id = "write"
        self.run_id = "manual__2026-11-29"
        self.try_number = 2
        self.map_index = -1
        self.log_url = LOG_URL
        self._xcom = xcom
        self._xcom_error = xcom_error
        self.pulled: list[dict[str, Any]] = []

    def xcom_pull(self, **kwargs: Any) -> Any:
        self.pulled.append(kwargs)
        if self._xcom_error is not None:
            raise self._xcom_error
        return self._xcom


def context(exception: object, ti: FakeTI | None = None) -> dict[str, Any]:
    ti = ti or FakeTI()
    return {"ti": ti, "dag": SimpleNamespace(dag_id=ti.dag_id), "run_id": ti.run_id, "exception": exception}


def test_the_alert_names_dag_task_run_try_keys_error_and_log_url() -> None:
    error = DropGuardError("Prediction count dropped more than 10%\nDE: 100 -> 80\nFR: 50 -> 40", ["DE", "FR"])
    alert = build_failure_alert(context(error))
    assert alert.keys == ("DE", "FR")
    for body in (alert.text, alert.html, alert.subject):
        for expected in ("erp_write", "write", "manual__2026-11-29", "DE, FR"):
            assert expected in body, (expected, body)
    for body in (alert.text, alert.html):
        assert "DropGuardError: Prediction count dropped more than 10%" in body
        assert "Try: 2" in body or "<th align='left'>Try</th><td>2</td>" in body
    assert LOG_URL in alert.text
    assert 'href="http://airflow.corp/dags/erp_write/runs/manual__2026-11-29/tasks/write?try_number=2"' in alert.html
    assert "DE: 100 -> 80" not in alert.text  # only the first line
    document = alert.as_json()
    assert document["failing_keys"] == ["DE", "FR"]
    assert (document["dag_id"], document["task_id"], document["run_id"]) == ("erp_write", "write", "manual__2026-11-29")
    assert document["log_url"] == LOG_URL
    assert document["try_number"] == 2


def test_failing_keys_attribute_is_accepted_too() -> None:
    error = RuntimeError("drop")
    error.failing_keys = {"FR", "DE"}  # type: ignore[attr-defined]
    assert build_failure_alert(context(error)).keys == ("DE", "FR")


def test_keys_from_the_documented_xcom_when_the_exception_has_none() -> None:
    ti = FakeTI(xcom=["PL"])
    alert = build_failure_alert(context(ValueError("boom"), ti))
    assert alert.keys == ("PL",)
    assert ti.pulled == [{"task_ids": "write", "key": FAILING_KEYS_XCOM, "map_indexes": -1}]


@pytest.mark.parametrize("ti", [FakeTI(), FakeTI(xcom_error=RuntimeError("api down"))])
def test_no_keys_reported(ti: FakeTI) -> None:
    alert = build_failure_alert(context(ValueError("boom"), ti))
    assert alert.keys == ()
    assert f"Failing keys: {NO_KEYS}" in alert.text
    assert NO_KEYS in alert.subject
    assert alert.as_json()["failing_keys"] == []


def test_a_method_named_keys_is_not_taken_for_keys() -> None:
    class MappingError(Exception):
        def keys(self) -> list[str]:
            return ["x"]

    assert build_failure_alert(context(MappingError("m"))).keys == ()


def test_secrets_known_to_the_masker_never_reach_the_alert() -> None:
    from airflow.sdk.log import mask_secret

    secret = "tok-7f3a9c0e55d1"
    mask_secret(secret)
    error = DropGuardError(f"login with {secret} refused", [f"DE-{secret}"])
    alert = build_failure_alert(context(error))
    for body in (alert.text, alert.html, alert.subject, str(alert.as_json())):
        assert secret not in body
    assert "***" in alert.error


def test_html_escapes_values() -> None:
    alert = build_failure_alert(context(DropGuardError("<script>x</script>", ["<b>DE</b>"])))
    assert "<script>" not in alert.html
    assert "&lt;b&gt;DE&lt;/b&gt;" in alert.html


def test_error_line_is_the_first_non_empty_line_and_bounded() -> None:
    assert error_line(ValueError("\n\nfirst\nsecond")) == "ValueError: first"
    assert error_line(ValueError()) == "ValueError"
    assert error_line("Task failed\ntraceback") == "Task failed"
    assert error_line(None) == "no exception in the context"
    assert len(error_line(ValueError("x" * 5000))) == MAX_ERROR_CHARS


def test_a_bare_context_still_gives_an_alert() -> None:
    alert = build_failure_alert({"exception": None})
    assert alert.dag_id == "unknown DAG"
    assert alert.keys == ()
    assert alert.try_number is None
    assert "no task instance" in alert.log_url


def test_mapped_task_names_its_index() -> None:
    ti = FakeTI()
    ti.map_index = 3
    assert "write [map index 3]" in build_failure_alert(context(ValueError("x"), ti)).text
