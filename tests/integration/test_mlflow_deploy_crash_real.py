"""A model endpoint whose containers die after they became healthy, against a real MLflow server and dockerd.

A crash is what an OOM kill looks like: the container's main process gets SIGKILL from the host
(we run as root on the host of the test bed's dockerd). ``docker stop`` is a manual stop instead,
which Docker's ``unless-stopped`` policy leaves stopped. Reuses the deploy tests' fixtures and
helpers (tests/integration/test_mlflow_deploy_real.py).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from airflow_ml_provider.serving.endpoint_docker import LABEL_ADMIN_PORT, LABEL_PORT, LABEL_ROLE, LABEL_VERSION
from airflow_ml_provider.serving.router_client import local_http
from tests.integration.test_mlflow_deploy_real import (
    deploy,
    endpoint,
    endpoint_containers,
    log_linear,
    predict,
    register_and_promote,
)

pytestmark = pytest.mark.integration

__all__ = ["endpoint"]  # a fixture, imported so that pytest finds it here


def one(ep: str, role: str) -> Any:
    """The endpoint's only container of ``role``, freshly inspected."""
    found = [c for c in endpoint_containers(ep) if c.labels[LABEL_ROLE] == role]
    assert len(found) == 1, [c.name for c in found]
    return found[0]


def router_health(ep: str) -> tuple[int, Any]:
    """``GET /health`` on the endpoint's router admin port, without its token."""
    try:
        return local_http("GET", int(one(ep, "router").labels[LABEL_ADMIN_PORT]), "/health", timeout=5)
    except OSError as e:
        return 0, f"{type(e).__name__}: {e}"


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """``check()``'s first truthy value, polled until ``timeout`` s; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(every)
    return value


def crash(container: Any) -> None:
    """SIGKILL the container's main process from the host: an OOM kill or a crash, not a manual stop."""
    container.reload()
    pid = int(container.attrs["State"]["Pid"])
    assert pid > 0, container.attrs["State"]
    os.kill(pid, signal.SIGKILL)


def restarts(container: Any) -> int:
    container.reload()
    return int(container.attrs["RestartCount"])


def test_a_model_that_crashes_is_restarted_and_the_router_health_shows_the_outage(
    endpoint: tuple[str, int],
) -> None:
    ep, port = endpoint
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    v1 = register_and_promote(name, log_linear(2.0))
    first = deploy(name, endpoint)
    assert predict(port) == [2.0, 8.0]
    assert router_health(ep) == (200, "ok")
    model = one(ep, "model")
    model_port = model.labels[LABEL_PORT]

    crash(model)
    # Down until the restarted mlflow server has loaded the model again (seconds): /health says so.
    _, body = wait_until("router /health answering 503", lambda: (h := router_health(ep))[0] == 503 and h, 10)
    assert f"127.0.0.1:{model_port}" in body, body
    wait_until("Docker restarting the crashed model container", lambda: restarts(model) >= 1, 30)
    wait_until("router /health answering 200 again", lambda: router_health(ep) == (200, "ok"), 120, every=0.5)
    assert predict(port) == [2.0, 8.0]
    again = one(ep, "model")
    assert (again.id, again.status, again.labels[LABEL_PORT]) == (first["container"], "running", model_port)

    # Stopped by hand: it stays stopped; a redeploy of the same version starts a fresh container.
    count = restarts(again)
    again.stop(timeout=5)
    time.sleep(1.5)
    assert (one(ep, "model").status, restarts(again)) == ("exited", count)
    redeployed = deploy(name, endpoint)
    assert (redeployed["version"], redeployed["previous_version"], redeployed["changed"]) == (v1, v1, True)
    assert redeployed["container"] != first["container"]
    assert predict(port) == [2.0, 8.0]
    assert one(ep, "model").id == redeployed["container"]  # the stopped one was removed


def test_a_model_stopped_by_hand_fails_the_router_health_and_a_redeploy_reports_it_replaced(
    endpoint: tuple[str, int],
) -> None:
    ep, port = endpoint
    name = f"pricing-{uuid.uuid4().hex[:8]}"
    v1 = register_and_promote(name, log_linear(2.0))
    deploy(name, endpoint)
    model = one(ep, "model")
    assert model.labels[LABEL_VERSION] == v1
    model.stop(timeout=5)

    status, body = router_health(ep)
    assert status == 503, (status, body)
    assert f"127.0.0.1:{model.labels[LABEL_PORT]}" in body, body

    v2 = register_and_promote(name, log_linear(3.0))
    second = deploy(name, endpoint)
    assert (second["version"], second["previous_version"], second["changed"]) == (v2, v1, True)
    assert predict(port) == [3.0, 12.0]
    assert router_health(ep) == (200, "ok")
    assert [c.id for c in endpoint_containers(ep) if c.labels[LABEL_ROLE] == "model"] == [second["container"]]

    # The router crashes too: Docker restarts it, and it comes back on the upstream it was switched
    # to (not the one on its command line, the stopped v1 container's port).
    router = one(ep, "router")
    crash(router)
    wait_until("Docker restarting the crashed router", lambda: restarts(router) >= 1, 30)
    wait_until("the restarted router answering /health", lambda: router_health(ep) == (200, "ok"), 30)
    assert predict(port) == [3.0, 12.0]
