"""What the MLflow operators share: the hook built on first use, argument checks, MLflow error messages.

DAG files import this module (through the operators); it imports no mlflow and does no I/O.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_ml_provider.exceptions import InvalidSpecError, ModelRegistryError
from airflow_ml_provider.hooks.mlflow import MlflowHook, connection_failure


def check_name(value: Any, field: str) -> None:
    """Refuse anything but a non-empty string for ``field`` (a name, a URI, an image), at parse time.

    :param value: the argument's value.
    :param field: the argument's name, for the message.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidSpecError(f"{field}={value!r} must be a non-empty string, e.g. {field}='markdown_pricing'.")


def explain_mlflow_error(error: Exception, what: str, uri: str = "", conn_id: str = "") -> ModelRegistryError:
    """Turn an MLflow exception into one message that names the object and the fix.

    :param error: what MLflow raised (its ``error_code`` decides the wording).
    :param what: the object and the action, e.g. ``"Alias 'champion' of 'pricing'"``.
    :param uri: the MLflow server asked; without it, the URL MLflow's message names (if any).
    :param conn_id: the ``ml_mlflow`` connection used, named in the hint when given.
    """
    code = getattr(error, "error_code", "") or ""
    text = str(getattr(error, "message", "") or error).strip()
    reason = connection_failure(error)
    if reason is not None:
        asked = re.search(r"API request to (\S+?)/api/", text)
        server = uri or (asked.group(1) if asked else "")
        where = f"the MLflow server at {server}" if server else "the MLflow server"
        conn = f"connection {conn_id!r}" if conn_id else "the ml_mlflow connection"
        return ModelRegistryError(
            f"{what}: {where} was unreachable ({reason}); nothing answered. Check that it is running and "
            f"that {conn} has its host and port."
        )
    if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
        return ModelRegistryError(f"{what}: not found ({text.rstrip('.')}). Check the name, version, alias or run id.")
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

    def explain(self, error: Exception, what: str) -> ModelRegistryError:
        """:func:`explain_mlflow_error` naming this connection's registry as the server asked."""
        return explain_mlflow_error(error, what, self.hook.config.registry_uri, self.mlflow_conn_id)
