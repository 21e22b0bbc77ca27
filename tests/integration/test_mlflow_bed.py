"""The MLflow test bed (:mod:`scripts.testbed.mlflow_bed`) against a real ``mlflow server``.

Every call goes through ``MlflowClient(tracking_uri=server.url, registry_uri=server.url)``, never
through ``MLFLOW_TRACKING_URI`` or ``mlflow.set_tracking_uri``: our hook must not write into the
process environment, and these tests check they leave it (and MLflow's global URIs) untouched.

Two places where MLflow 3 has no client-scoped API (documented by the tests below):

* ``mlflow.sklearn.log_model`` (and ``mlflow.start_run``) are fluent: they use MLflow's *global*
  tracking URI. :func:`fluent_tracking_uri` sets it (and the registry URI) for a block and
  restores them exactly after; note that ``mlflow.set_tracking_uri`` itself writes
  ``MLFLOW_TRACKING_URI`` into ``os.environ`` (for subprocesses), so the block restores that
  variable too. A client-only path
  exists: ``create_logged_model`` + ``save_model`` + ``log_model_artifacts`` +
  ``finalize_logged_model``.
* ``models:/name@alias`` URIs are resolved with ``mlflow.get_registry_uri()`` (the global one;
  ``download_artifacts(registry_uri=…)`` is ignored for the name/alias lookup). With a client:
  ``get_model_version_by_alias`` -> ``get_model_version_download_uri(name, version)`` (the logged
  model's ``mlflow-artifacts:/<exp>/models/m-<id>/artifacts``) ->
  ``download_artifacts(that, tracking_uri=url)``.

A registered version of a logged model has ``source="models:/m-<id>"``; the server refuses that
source unless ``create_model_version`` is also given ``model_id=m-<id>``, and the ``model_id``
field of the returned versions is empty over REST (MLflow 3.17).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests

pytestmark = pytest.mark.integration


def _mlflow_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}


@contextlib.contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (``start_run``, ``log_model``, ``models:/`` URIs) at ``uri`` for the block.

    Sets both global URIs: ``models:/`` URIs are resolved with ``mlflow.get_registry_uri()``,
    which prefers a registry URI set globally or in ``MLFLOW_REGISTRY_URI`` over the tracking URI.
    ``mlflow.set_tracking_uri``/``set_registry_uri`` store module globals *and* write
    ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` into ``os.environ`` (for subprocesses); all
    four are put back exactly as they were (``set_tracking_uri(None)`` alone would delete a
    variable that was set before).
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    saved_env = {var: os.environ.get(var) for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved[0])  # type: ignore[arg-type]  # None: back to the default
        registry_utils._registry_uri = saved[1]  # set_registry_uri(None) is not supported
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


@pytest.fixture
def client(mlflow_server: Any) -> Iterator[Any]:
    """A client bound to the bed; asserts the test left the environment and MLflow's globals alone."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    def state() -> tuple[dict[str, str], str | None, str | None]:
        return _mlflow_env(), tracking_utils._tracking_uri, registry_utils._registry_uri

    before = state()
    yield mlflow.MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    assert state() == before


@pytest.fixture(scope="module")
def trained() -> tuple[Any, Any]:
    """A small fitted sklearn model and the rows to predict."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=300).fit(x, y), x[:5]


def _pip_requirements() -> list[str]:
    # Stated explicitly: otherwise log_model infers them by loading the model in a subprocess (slow).
    import sklearn

    return [f"scikit-learn=={sklearn.__version__}"]


def _new_experiment(client: Any) -> str:
    return str(client.create_experiment(f"bed-{uuid.uuid4().hex[:8]}"))


def _load_by_alias(client: Any, url: str, name: str, alias: str, dst: Path) -> Any:
    """Load ``models:/name@alias`` with client calls only (no global registry URI)."""
    import mlflow.sklearn

    mv = client.get_model_version_by_alias(name, alias)
    # mlflow-artifacts:/<exp>/models/m-<id>/artifacts (the logged model's location)
    location = client.get_model_version_download_uri(name, mv.version)
    local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(dst), tracking_uri=url)
    return mlflow.sklearn.load_model(local)


def _point_globals_at_dead_port(monkeypatch: pytest.MonkeyPatch) -> str:
    """MLflow's global and environment URIs -> a dead port (no retries): a fallback to them fails fast."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    dead = "http://127.0.0.1:9"
    for var, value in {
        "MLFLOW_TRACKING_URI": dead,
        "MLFLOW_REGISTRY_URI": dead,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", dead)
    monkeypatch.setattr(registry_utils, "_registry_uri", dead)
    return dead


def test_health_and_process_tree(mlflow_server: Any) -> None:
    r = requests.get(f"{mlflow_server.url}/health", timeout=5)
    assert r.status_code == 200
    assert mlflow_server.url.startswith("http://127.0.0.1:")
    # --workers 1 and no job runner: the mlflow CLI and one uvicorn process
    assert 1 <= len(mlflow_server.pids()) <= 3, mlflow_server.pids()
    assert mlflow_server.rss_bytes() < 1.5 * 2**30
    assert (mlflow_server.base_dir / "mlflow.db").is_file()


def test_run_model_registry_alias_roundtrip(mlflow_server: Any, client: Any, trained: Any, tmp_path: Path) -> None:
    import mlflow.sklearn

    model, rows = trained
    exp_id = _new_experiment(client)
    # proxied artifacts: the experiment's root is served by the server, not a client-side path
    assert client.get_experiment(exp_id).artifact_location == f"mlflow-artifacts:/{exp_id}"

    with fluent_tracking_uri(mlflow_server.url), mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_param("max_iter", 300)
        mlflow.log_metric("accuracy", 0.97)
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=_pip_requirements())
    run_id = run.info.run_id

    # MLflow 3: log_model(name=…) creates a *logged model* linked to the run
    assert info.model_id.startswith("m-")
    assert info.model_uri == f"models:/{info.model_id}"
    assert client.get_run(run_id).data.params == {"max_iter": "300"}
    logged = client.get_logged_model(info.model_id)
    assert logged.source_run_id == run_id
    assert logged.artifact_location == f"mlflow-artifacts:/{exp_id}/models/{info.model_id}/artifacts"

    name = f"bed-model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=info.model_uri, run_id=run_id, model_id=info.model_id)
    assert mv.source == f"models:/{info.model_id}"  # not runs:/… nor a file path
    # the REST answer leaves ModelVersion.model_id empty (3.17): follow ``source`` instead
    assert client.get_model_version(name, mv.version).model_id in (None, info.model_id)
    client.set_registered_model_alias(name, "champion", mv.version)
    assert client.get_model_version_by_alias(name, "champion").version == mv.version

    loaded = _load_by_alias(client, mlflow_server.url, name, "champion", tmp_path)
    assert (loaded.predict(rows) == model.predict(rows)).all()

    # the bytes went through the server into --artifacts-destination
    stored = mlflow_server.artifacts_dir / exp_id / "models" / info.model_id / "artifacts"
    assert (stored / "MLmodel").is_file()
    assert "sklearn" in (stored / "MLmodel").read_text()
    assert not (mlflow_server.base_dir / "mlartifacts").exists()


def test_client_only_logged_model_and_run_artifact(
    mlflow_server: Any, client: Any, trained: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same without any fluent call: what a hook can do with just its client.

    MLflow's global and environment URIs point at a dead port meanwhile, so any call that fell
    back to them (instead of the client's ``tracking_uri``) would fail.
    """
    import mlflow.sklearn

    _point_globals_at_dead_port(monkeypatch)

    model, rows = trained
    exp_id = _new_experiment(client)
    run_id = client.create_run(exp_id).info.run_id
    client.log_text(run_id, "hello\n", "notes/hello.txt")

    lm = client.create_logged_model(exp_id, name="model", source_run_id=run_id)
    local = tmp_path / "model"
    mlflow.sklearn.save_model(model, str(local), pip_requirements=_pip_requirements())
    client.log_model_artifacts(lm.model_id, str(local))
    client.finalize_logged_model(lm.model_id, "READY")
    client.set_terminated(run_id)

    name = f"bed-client-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"models:/{lm.model_id}", run_id=run_id, model_id=lm.model_id)
    client.set_registered_model_alias(name, "prod", mv.version)

    loaded = _load_by_alias(client, mlflow_server.url, name, "prod", tmp_path / "dl")
    assert (loaded.predict(rows) == model.predict(rows)).all()
    run_file = mlflow_server.artifacts_dir / exp_id / run_id / "artifacts" / "notes" / "hello.txt"
    assert run_file.read_text() == "hello\n"
    assert (mlflow_server.artifacts_dir / exp_id / "models" / lm.model_id / "artifacts" / "MLmodel").is_file()


def test_models_uri_needs_the_global_uri(
    mlflow_server: Any, client: Any, trained: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``models:/name@alias`` is resolved through MLflow's *global* URIs, not the ones passed in.

    ``download_artifacts(uri, tracking_uri=…, registry_uri=…)`` still asks the global registry
    for the alias (MLflow 3.17); ``mlflow.sklearn.load_model("models:/name@alias")`` works once the
    global URI points at the bed.
    """
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    model, rows = trained
    exp_id = _new_experiment(client)
    name = f"bed-alias-{uuid.uuid4().hex[:8]}"
    with fluent_tracking_uri(mlflow_server.url), mlflow.start_run(experiment_id=exp_id):
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=_pip_requirements())
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=info.model_uri, model_id=info.model_id)
    client.set_registered_model_alias(name, "champion", mv.version)

    dead = _point_globals_at_dead_port(monkeypatch)
    with pytest.raises(MlflowException, match=dead):
        mlflow.artifacts.download_artifacts(
            f"models:/{name}@champion", tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url
        )
    with fluent_tracking_uri(mlflow_server.url):
        loaded = mlflow.sklearn.load_model(f"models:/{name}@champion", dst_path=str(tmp_path))
    assert (loaded.predict(rows) == model.predict(rows)).all()


@pytest.mark.parametrize("host", ["host.docker.internal", "host.docker.internal:5000", "example.com"])
def test_foreign_host_header_is_refused(mlflow_server: Any, host: str) -> None:
    """MLflow 3's security middleware: 403 for a Host header not in --allowed-hosts (health is exempt)."""
    api = f"{mlflow_server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    with requests.Session() as http:
        http.trust_env = False
        refused = http.get(api, headers={"Host": host}, timeout=5)
        assert refused.status_code == 403
        assert "Invalid Host header" in refused.text
        assert http.get(f"{mlflow_server.url}/health", headers={"Host": host}, timeout=5).status_code == 200
        for ok in ("localhost", f"localhost:{mlflow_server.port}", f"127.0.0.1:{mlflow_server.port}"):
            assert http.get(api, headers={"Host": ok}, timeout=5).status_code == 200, ok
