"""Blue/green model serving against a real MLflow server and the real Docker engine.

The serving image is built locally (``scripts/testbed/serve_image.py``); model containers download the
registered model from the test bed's MLflow server over host networking.
"""

from __future__ import annotations

import http.client
import json
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.exceptions import BackendError, ModelDeployError
from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.operators.mlflow_deploy import DEFAULT_ROUTER_IMAGE, MlflowDeployModelOperator, remove_endpoint
from airflow_ml_provider.operators.mlflow_registry import MlflowRegisterModelOperator
from airflow_ml_provider.serving import lock as endpoint_lock
from airflow_ml_provider.serving.endpoint_docker import (
    LABEL_ADMIN_PORT,
    LABEL_ENDPOINT,
    LABEL_LOCK_OWNER,
    LABEL_ROLE,
    LABEL_VERSION,
)
from airflow_ml_provider.serving.router_client import local_http
from scripts.testbed.request_load import RequestLoad, free_port_pair

pytestmark = pytest.mark.integration


class TI:
    dag_id = "ml_serving"
    task_id = "deploy"
    run_id = "manual__2026-11-23T08:00:00+00:00"
    map_index = -1


def ctx() -> Any:
    return {"ti": TI()}


def endpoint_containers(endpoint: str) -> list[Any]:
    import docker

    client = docker.from_env()
    try:
        return list(client.containers.list(all=True, filters={"label": f"{LABEL_ENDPOINT}={endpoint}"}))
    finally:
        client.close()


@pytest.fixture
def endpoint(serve_image: str, mlflow_conn: str) -> Iterator[tuple[str, int]]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    yield name, free_port_pair()
    removed = remove_endpoint(name)
    assert endpoint_containers(name) == [], f"containers of {name} left after remove_endpoint ({removed})"


def experiment_id() -> str:
    client = MlflowHook().get_client()
    experiment = client.get_experiment_by_name("deploy-tests")
    return experiment.experiment_id if experiment else client.create_experiment("deploy-tests")


def log_linear(slope: float) -> str:
    """Log y = slope * x0 (a LinearRegression on columns a, b); returns the runs:/ URI."""
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    x = pd.DataFrame({"a": [float(i) for i in range(10)], "b": [float(i % 3) for i in range(10)]})
    # never mlflow.set_experiment: it writes os.environ
    with MlflowHook().scoped(), mlflow.start_run(experiment_id=experiment_id()) as run:
        mlflow.sklearn.log_model(LinearRegression().fit(x, x["a"] * slope), name="model", input_example=x.head(2))
    return f"runs:/{run.info.run_id}/model"


BROKEN_MODEL = textwrap.dedent(
    """
    import mlflow
    from mlflow.pyfunc import PythonModel


    class Broken(PythonModel):
        def load_context(self, context):
            raise RuntimeError("this model is broken on purpose")

        def predict(self, context, model_input):
            return model_input


    mlflow.models.set_model(Broken())
    """
)


def log_broken(tmp_path: Path) -> str:
    """A pyfunc model (from code) whose loading raises."""
    import mlflow

    code = tmp_path / "broken_model.py"
    code.write_text(BROKEN_MODEL)
    with MlflowHook().scoped(), mlflow.start_run(experiment_id=experiment_id()) as run:
        mlflow.pyfunc.log_model(name="model", python_model=str(code), pip_requirements=["mlflow"])
    return f"runs:/{run.info.run_id}/model"


def register_and_promote(name: str, uri: str) -> str:
    version = str(MlflowRegisterModelOperator(task_id="register", name=name, model_uri=uri).execute(ctx())["version"])
    with MlflowHook().scoped():
        MlflowHook().get_client().set_registered_model_alias(name, "champion", version)
    return version


def deploy(name: str, endpoint: tuple[str, int], **kw: Any) -> dict[str, Any]:
    kw.setdefault("resources", {"cpus": 1, "memory": "1Gi"})
    kw.setdefault("health_timeout", 120)
    op = MlflowDeployModelOperator(task_id="deploy", name=name, endpoint_name=endpoint[0], port=endpoint[1], **kw)
    return op.execute(ctx())


BODY = json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0], [4.0, 0.0]]}})


def predict(port: int, conn: http.client.HTTPConnection | None = None) -> list[float]:
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", "/invocations", body=BODY, headers={"Content-Type": "application/json"})
        resp = c.getresponse()
        data = resp.read()
        assert resp.status == 200, data
        return [round(float(v), 6) for v in json.loads(data)["predictions"]]
    finally:
        if own:
            c.close()


def test_deploy_invoke_noop_and_blue_green_under_load(endpoint: tuple[str, int]) -> None:
    ep, port = endpoint
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    v1 = register_and_promote(name, log_linear(2.0))

    t0 = time.monotonic()
    first = deploy(name, endpoint)
    first_s = time.monotonic() - t0
    assert first["endpoint"] == f"http://127.0.0.1:{port}"
    assert (first["name"], first["version"], first["previous_version"], first["changed"]) == (name, v1, None, True)
    assert predict(port) == [2.0, 8.0]
    roles = sorted(c.labels[LABEL_ROLE] for c in endpoint_containers(ep))
    assert roles == ["model", "router"]
    # The router's control API is locked with its own token: a stranger on the host cannot switch.
    router = next(c for c in endpoint_containers(ep) if c.labels[LABEL_ROLE] == "router")
    admin_port = int(router.labels[LABEL_ADMIN_PORT])
    assert local_http("GET", admin_port, "/state")[0] == 401
    assert local_http("PUT", admin_port, "/upstream", {"port": port})[0] == 401
    assert local_http("GET", admin_port, "/health") == (200, "ok")

    again = deploy(name, endpoint)  # the alias did not move: nothing to do
    assert again["changed"] is False
    assert again["container"] == first["container"]
    assert predict(port) == [2.0, 8.0]

    v2 = register_and_promote(name, log_linear(3.0))
    with RequestLoad(port, lambda conn: predict(port, conn)) as load:
        time.sleep(1.0)
        t0 = time.monotonic()
        second = deploy(name, endpoint)
        switch_s = time.monotonic() - t0
        time.sleep(1.0)
    answers = [p for _, p in load.ok]
    print(
        f"\nblue/green v{v1}->v{v2}: first deploy {first_s:.1f} s, redeploy {switch_s:.1f} s, "
        f"{len(load.ok)} requests ok, {len(load.failed)} failed, longest gap between successes "
        f"{load.longest_gap * 1000:.0f} ms"
    )
    assert load.failed == []
    assert (second["version"], second["previous_version"], second["changed"]) == (v2, v1, True)
    assert second["container"] != first["container"]
    assert set(map(tuple, answers)) == {(2.0, 8.0), (3.0, 12.0)}
    assert answers[-1] == [3.0, 12.0]
    models = [c for c in endpoint_containers(ep) if c.labels[LABEL_ROLE] == "model"]
    assert [c.id for c in models] == [second["container"]]  # the old one was removed
    assert load.longest_gap < 5.0  # reported above; generous: a 2-CPU VM starts the new container meanwhile


def test_a_version_that_does_not_load_leaves_the_old_one_serving(endpoint: tuple[str, int], tmp_path: Path) -> None:
    ep, port = endpoint
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    v1 = register_and_promote(name, log_linear(2.0))
    first = deploy(name, endpoint)
    broken = register_and_promote(name, log_broken(tmp_path))

    with pytest.raises(ModelDeployError) as err:
        deploy(name, endpoint, health_timeout=90)
    message = str(err.value)
    assert f"version {broken}" in message
    assert "broken on purpose" in message  # the container's log tail
    assert predict(port) == [2.0, 8.0]
    models = [c for c in endpoint_containers(ep) if c.labels[LABEL_ROLE] == "model"]
    assert [(c.id, c.labels[LABEL_VERSION]) for c in models] == [(first["container"], v1)]

    with pytest.raises(BackendError, match="no-such-tag"):  # an image that does not exist
        deploy(name, endpoint, image="airflow-ml-provider/serve:no-such-tag")
    assert predict(port) == [2.0, 8.0]
    assert len(endpoint_containers(ep)) == 2


def test_concurrent_deploys_of_one_endpoint_take_turns(endpoint: tuple[str, int]) -> None:
    """Two deploys of one endpoint at once (two DAGs, say): the second waits for the first's lock."""
    ep, port = endpoint
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    uri1, uri2 = log_linear(2.0), log_linear(3.0)
    register = MlflowRegisterModelOperator
    v1 = str(register(task_id="register", name=name, model_uri=uri1).execute(ctx())["version"])
    v2 = str(register(task_id="register", name=name, model_uri=uri2).execute(ctx())["version"])
    results: dict[str, Any] = {}
    errors: list[str] = []

    def run(version: str) -> None:
        try:
            results[version] = deploy(name, endpoint, version=version)
        except Exception as e:  # collected for the assertion below
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(v,)) for v in (v1, v2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    first, last = sorted(results.values(), key=lambda r: r["previous_version"] is not None)
    assert first["previous_version"] is None  # one deployed onto the empty endpoint ...
    assert last["previous_version"] == first["version"]  # ... the other waited, then replaced it
    assert predict(port) == {v1: [2.0, 8.0], v2: [3.0, 12.0]}[last["version"]]
    containers = endpoint_containers(ep)
    assert sorted(c.labels[LABEL_ROLE] for c in containers) == ["model", "router"]  # no lock left
    assert [c.id for c in containers if c.labels[LABEL_ROLE] == "model"] == [last["container"]]


def test_a_held_lock_fails_the_deploy_naming_its_holder_and_a_stale_one_is_taken_over(
    endpoint: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import docker

    ep, port = endpoint
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    register_and_promote(name, log_linear(2.0))
    client = docker.from_env()
    try:
        lock = client.containers.create(
            DEFAULT_ROUTER_IMAGE,
            command=["true"],
            name=endpoint_lock.lock_name(ep),
            labels={LABEL_ENDPOINT: ep, LABEL_LOCK_OWNER: "weekly_pricing/scheduled__x/deploy"},
        )
        with pytest.raises(ModelDeployError, match="being deployed by weekly_pricing/scheduled__x/deploy"):
            deploy(name, endpoint, lock_timeout=2)
        assert [c.id for c in endpoint_containers(ep)] == [lock.id]  # nothing started, the lock untouched

        # Its holder died: once older than health_timeout + drain_timeout + grace, it is taken over.
        monkeypatch.setattr(endpoint_lock, "LOCK_GRACE", 1.0 - (120 + 30))
        time.sleep(1.5)
        assert deploy(name, endpoint, health_timeout=120, drain_timeout=30)["changed"] is True
        assert predict(port) == [2.0, 8.0]
        assert sorted(c.labels[LABEL_ROLE] for c in endpoint_containers(ep)) == ["model", "router"]
    finally:
        client.close()
