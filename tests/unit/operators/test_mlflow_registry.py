"""MLflow register/promote operators: arguments checked at DAG parse time, MLflow errors explained.

Their behaviour against a real tracking server is in tests/integration/test_mlflow_registry_real.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError, ModelRegistryError
from airflow_ml_provider.operators.mlflow_common import check_name, explain_mlflow_error
from airflow_ml_provider.operators.mlflow_registry import MlflowPromoteModelOperator, MlflowRegisterModelOperator


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
        {"version": "1", "compare_with_best_if_no_champion": True},
        {"version": "1", "gate_metric": "rmse", "compare_with_best_if_no_champion": "yes"},
    ],
)
def test_promote_arguments_are_checked_at_parse_time(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidSpecError):
        MlflowPromoteModelOperator(task_id="p", name="m", **kw)


def test_a_templated_model_uri_is_checked_only_after_rendering() -> None:
    op = MlflowRegisterModelOperator(task_id="r", name="m", model_uri="{{ ti.xcom_pull('train') }}")
    assert op.model_uri == "{{ ti.xcom_pull('train') }}"


@pytest.mark.parametrize("value", ["", "  ", None, 3])
def test_check_name_refuses_anything_but_a_non_empty_string(value: Any) -> None:
    with pytest.raises(InvalidSpecError, match=r"name=.*non-empty string"):
        check_name(value, "name")


class FakeMlflowError(Exception):
    """Shaped like ``mlflow.exceptions.MlflowException``: ``error_code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.error_code, self.message = code, message


def test_mlflow_errors_name_the_object_and_say_not_found_plainly() -> None:
    missing = explain_mlflow_error(FakeMlflowError("RESOURCE_DOES_NOT_EXIST", "no model x"), "Alias 'a' of 'x'")
    assert isinstance(missing, ModelRegistryError)
    assert str(missing).startswith("Alias 'a' of 'x': not found (no model x)")
    other = explain_mlflow_error(FakeMlflowError("PERMISSION_DENIED", "nope"), "Registering y")
    assert str(other) == "Registering y: MLflow answered PERMISSION_DENIED: nope"
    assert str(explain_mlflow_error(ValueError("boom"), "X")) == "X: MLflow answered ValueError: boom"
