"""Loading a model for scoring: what a worker without the model's own library is told."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.scoring.model import load_model


def test_a_missing_model_library_names_the_module_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.pyfunc

    monkeypatch.setenv(
        "AIRFLOW_CONN_ML_MLFLOW_T", json.dumps({"conn_type": "ml_mlflow", "host": f"sqlite:///{tmp_path}/m.db"})
    )

    def no_sklearn(*args: Any, **kwargs: Any) -> None:
        raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")

    monkeypatch.setattr(mlflow.pyfunc, "load_model", no_sklearn)
    with pytest.raises(InvalidSpecError) as info:
        load_model("models:/churn/1", "ml_mlflow_t", str(tmp_path / "model"))
    message = str(info.value)
    assert "'sklearn'" in message
    assert "requirements.txt" in message
    assert not info.value.retryable  # another try on the same worker cannot find it either
