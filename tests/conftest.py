"""Shared test settings: where test beds live, and what a missing service means."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from scripts.testbed import ROOT, TESTBED

__all__ = ["IN_CI", "ROOT", "TESTBED", "service_unavailable"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_unavailable(reason: str) -> NoReturn:
    """Under CI=true a missing service fails the test; elsewhere it skips with a one-line reason."""
    if IN_CI:
        pytest.fail(f"service unavailable (CI=true, so this fails rather than skips): {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def local_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Real MLflow models in a local store of the module's (see ``log_local_models``); afterwards
    no ``MLFLOW_*`` variable may differ from before."""
    from scripts.testbed.predict_data import CONN_ENV, log_local_models, mlflow_conn_json, mlflow_env_snapshot

    before = mlflow_env_snapshot()
    store = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CONN_ENV, mlflow_conn_json(store))
        yield log_local_models(store)
    assert mlflow_env_snapshot() == before, "an MLFLOW_* variable was left behind"


@pytest.fixture
def local_models_conn(local_models: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``local_models`` with ``ml_mlflow_default`` pointing at their store for this test; afterwards
    no ``MLFLOW_*`` variable may differ from before (the hook's scope must restore it)."""
    from scripts.testbed.predict_data import CONN_ENV, mlflow_env_snapshot

    monkeypatch.setenv(CONN_ENV, local_models.conn_json)
    before = mlflow_env_snapshot()
    yield local_models
    assert mlflow_env_snapshot() == before, "an MLFLOW_* variable was left behind"
