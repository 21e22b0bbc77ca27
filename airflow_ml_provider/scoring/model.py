"""Model URIs and loading an MLflow model for scoring."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.utils.messages import first_line
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

MODEL_URI_EXAMPLE = "'models:/churn@champion', 'models:/churn/3' or 'runs:/<run_id>/model'"


def check_model_uri(value: Any) -> str:
    """Accept ``models:/name@alias``, ``models:/name/<version>``, ``runs:/<id>/<path>`` or a URL."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidSpecError(f"model_uri={value!r} is empty; give e.g. {MODEL_URI_EXAMPLE}.")
    text = value.strip()
    if text.startswith("models:/"):
        rest = text.removeprefix("models:/").strip("/")
        name, at, alias = rest.partition("@")
        if at:
            ok = bool(name) and bool(alias) and "/" not in name
        else:
            ok = len(rest.split("/")) == 2 and all(rest.split("/"))
        if not ok:
            raise InvalidSpecError(
                f"model_uri={value!r} is not a registry URI; use 'models:/<name>@<alias>' or "
                "'models:/<name>/<version>', e.g. 'models:/churn@champion'."
            )
    elif text.startswith("runs:/"):
        parts = text.removeprefix("runs:/").strip("/").split("/")
        if len(parts) < 2 or not all(parts):
            raise InvalidSpecError(f"model_uri={value!r} lacks the artifact path; use 'runs:/<run_id>/model'.")
    elif "://" not in text and not text.startswith("/"):
        raise InvalidSpecError(f"model_uri={value!r} is not a model URI; give e.g. {MODEL_URI_EXAMPLE}.")
    return text


def load_model(model_uri: str, mlflow_conn_id: str, model_dir: str) -> PyFuncModel:
    """Download and load ``model_uri`` into ``model_dir`` with the connection's credentials.

    The credentials reach MLflow for this call only (:meth:`MlflowHook.scoped`): the model's own
    code never sees them. An unknown model is an :class:`InvalidSpecError` naming the fix.
    """
    with requires_extra("mlflow"):
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException

    from airflow_ml_provider.hooks.mlflow import MlflowHook, connection_failure

    hook = MlflowHook(mlflow_conn_id)
    os.makedirs(model_dir, exist_ok=True)
    with hook.scoped(), _quiet_deprecated_airflow_imports():
        try:
            model = mlflow.pyfunc.load_model(model_uri, dst_path=model_dir)
        except MlflowException as e:
            where = f"the MLflow registry at {hook.config.registry_uri}"
            not_found = e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or (
                e.error_code == "INVALID_PARAMETER_VALUE" and "not found" in e.message.lower()
            )
            if not_found:
                raise InvalidSpecError(
                    f"model_uri={model_uri!r} was not found in {where}: {first_line(e.message, 500).rstrip('.')}. "
                    "Check the model name and the alias or version in the MLflow UI (or set the alias, "
                    "e.g. MlflowClient().set_registered_model_alias(name, 'champion', version))."
                ) from None
            unreachable = connection_failure(e)
            if unreachable is not None:
                raise MlProviderError(
                    f"Loading model_uri={model_uri!r}: {where} was unreachable ({unreachable}); nothing "
                    f"answered. Check that it is running and that connection {mlflow_conn_id!r} points at it."
                ) from e
            raise MlProviderError(
                f"Loading model_uri={model_uri!r} from {where} failed: {e.error_code}: {first_line(e.message, 500)}"
            ) from e
        except ModuleNotFoundError as e:  # the model's own library (its flavour) is not on this worker
            raise InvalidSpecError(
                f"Loading model_uri={model_uri!r} failed: the model needs the Python module {e.name!r}, which is "
                "not installed on this worker. Install the model's own requirements (requirements.txt among its "
                f"artifacts; e.g. scikit-learn and skops for a scikit-learn model) next to the provider's extra."
            ) from e
        except Exception as e:  # an unreadable artifact, a pickling error, a version mismatch
            raise MlProviderError(
                f"Loading model_uri={model_uri!r} failed: {type(e).__name__}: {first_line(str(e), 500)}"
            ) from e
    return model


@contextlib.contextmanager
def _quiet_deprecated_airflow_imports() -> Iterator[None]:
    """Ignore Airflow's ``DeprecatedImportWarning`` (and only it) for the block.

    skops, which loads MLflow 3's scikit-learn models, looks objects up by scanning every module
    in ``sys.modules``; each of Airflow's deprecated shim modules (``airflow.utils.timezone``, …)
    answers with a warning, about a thousand lines per model load in a task log.
    """
    with warnings.catch_warnings():
        try:
            from airflow.utils.deprecation_tools import DeprecatedImportWarning
        except ImportError:  # an Airflow without the shims: nothing to silence
            pass
        else:
            warnings.filterwarnings("ignore", category=DeprecatedImportWarning)
        yield


def model_root(model_dir: str) -> str:
    """The directory holding ``MLmodel`` under where :func:`load_model` downloaded the model."""
    for dirpath, dirnames, filenames in os.walk(model_dir):
        dirnames.sort()
        if "MLmodel" in filenames:
            return dirpath
    raise MlProviderError(f"The downloaded model in {model_dir} has no MLmodel file.")
