"""What the MLflow operators share: the hook built on first use, argument checks, MLflow error messages.

DAG files import this module (through the operators); it imports no mlflow and does no I/O.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_ml_provider.exceptions import InvalidSpecError, ModelRegistryError
from airflow_ml_provider.hooks.mlflow import MlflowHook


def check_name(value: Any, field: str) -> None:
    """Refuse anything but a non-empty string for ``field`` (a name, a URI, an image), at parse time.

    :param value: the argument's value.
    :param field: the argument's name, for the message.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidSpecError(f"{field}={value!r} must be a non-empty string, e.g. {field}='markdown_pricing'.")


def explain_mlflow_error(error: Exception, what: str) -> ModelRegistryError:
    """Turn an MLflow exception into one message that names the object and the fix.

    :param error: what MLflow raised (its ``error_code`` decides the wording).
    :param what: the object and the action, e.g. ``"Alias 'champion' of 'pricing'"``.
    """
    code = getattr(error, "error_code", "") or ""
    text = str(getattr(error, "message", "") or error)
    if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
        return ModelRegistryError(f"{what}: not found ({text}). Check the name, version, alias or run id.")
    return ModelRegistryError(f"{what}: MLflow answered {code or type(error).__name__}: {text}")


class MlflowOperator(BaseOperator):
    """Base of the MLflow operators: the ``ml_mlflow`` connection's hook, built on first use.

    :param mlflow_conn_id: the ``ml_mlflow`` connection.
    """

    def __init__(self, *, mlflow_conn_id: str = MlflowHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        """The MLflow hook (reads the connection when first used)."""
        return MlflowHook(conn_id=self.mlflow_conn_id)
