"""The deploy's router client against a real router on 127.0.0.1 (in this process), and the router's spec."""

from __future__ import annotations

import http.client
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_ml_provider.exceptions import ModelDeployError
from airflow_ml_provider.serving.endpoint_docker import (
    LABEL_ADMIN_PORT,
    LABEL_ENDPOINT,
    LABEL_PORT,
    LABEL_ROLE,
    LABEL_ROUTER_CODE,
    ROLE_ROUTER,
    free_port,
)
from airflow_ml_provider.serving.router import TOKEN_ENV, Router
from airflow_ml_provider.serving.router_client import (
    PROBE_PATH,
    ROUTER_SOURCE,
    ROUTER_STATE_FILE,
    RouterClient,
    local_http,
    router_spec,
)
from tests.unit.serving.conftest import Named, get

TOKEN = "router-" + "k" * 24


@pytest.fixture
def router(blue_green: tuple[Named, Named]) -> Iterator[Router]:
    with Router(0, blue_green[0].port, 0, admin_token=TOKEN) as r:
        yield r


def client(r: Router, token: str | None = TOKEN) -> RouterClient:
    return RouterClient("ml-serve-pricing-router", "pricing", r.admin_port, token)


def test_state_switch_and_ready_with_the_token(router: Router, blue_green: tuple[Named, Named]) -> None:
    blue, green = blue_green
    control = client(router)
    assert control.ready()
    assert control.state()["upstream"] == blue.port
    assert control.switch(green.port) == blue.port
    assert control.state()["upstream"] == green.port
    assert get(router.listen_port) == "green"


def test_a_wrong_token_is_an_error_that_never_shows_the_token(router: Router) -> None:
    control = client(router, token="not-" + TOKEN)
    assert not control.ready()
    with pytest.raises(ModelDeployError, match="answered HTTP 401 to GET /state") as err:
        control.state()
    assert TOKEN not in str(err.value)


def test_switching_to_a_port_nobody_listens_on_fails_and_changes_nothing(
    router: Router, blue_green: tuple[Named, Named]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with pytest.raises(ModelDeployError, match=f"refused to switch to port {dead}: HTTP 409"):
        client(router).switch(dead)
    assert router.upstream == blue_green[0].port


def test_a_router_that_does_not_answer_names_the_endpoint_and_the_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    control = RouterClient("ml-serve-pricing-router", "pricing", dead, TOKEN)
    assert not control.ready()
    with pytest.raises(ModelDeployError, match=f"'pricing' does not answer on 127.0.0.1:{dead}"):
        control.state()


def test_wait_drained_returns_once_the_old_upstream_has_no_connection(
    router: Router, blue_green: tuple[Named, Named], caplog: pytest.LogCaptureFixture
) -> None:
    blue, green = blue_green
    control = client(router)
    log = logging.getLogger("test.drain")
    slow = threading.Thread(target=get, args=(router.listen_port, "/slow"))
    slow.start()  # a request in flight on blue
    deadline = time.monotonic() + 5
    while not control.state()["connections"].get(str(blue.port)) and time.monotonic() < deadline:
        time.sleep(0.01)
    control.switch(green.port)
    t0 = time.monotonic()
    control.wait_drained([blue.port], timeout=10, log=log)
    assert time.monotonic() - t0 < 5  # returned when the slow request ended, not at the timeout
    slow.join()
    assert control.state()["connections"].get(str(blue.port), 0) == 0
    assert not caplog.records


def test_wait_drained_gives_up_with_a_warning_at_the_timeout(
    router: Router, blue_green: tuple[Named, Named], caplog: pytest.LogCaptureFixture
) -> None:
    blue, green = blue_green
    control = client(router)
    conn = http.client.HTTPConnection("127.0.0.1", router.listen_port, timeout=5)  # a keep-alive client
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"blue"
    control.switch(green.port)
    with caplog.at_level(logging.WARNING, logger="test.drain"):
        control.wait_drained([blue.port], timeout=0.3, log=logging.getLogger("test.drain"))
    conn.close()
    assert "still open on old ports" in caplog.text
    assert str(blue.port) in caplog.text


def test_local_http_sends_the_bearer_token_and_parses_json_or_text(router: Router) -> None:
    assert local_http("GET", router.admin_port, "/health") == (200, "ok")
    assert local_http("GET", router.admin_port, "/state")[0] == 401
    status, body = local_http("GET", router.admin_port, "/state", token=TOKEN)
    assert status == 200
    assert isinstance(body, dict)
    assert set(body) >= {"upstream", "connections"}


def test_the_router_spec_keeps_its_token_off_the_command_line() -> None:
    spec = router_spec(
        endpoint="pricing", image="base:1", port=8080, admin_port=8081, upstream=41234, token=TOKEN, health_path="/ping"
    )
    assert spec.key == "ml-serve-pricing-router"
    assert spec.network == "host"
    assert dict(spec.secret_env) == {TOKEN_ENV: TOKEN}
    command = list(spec.command or [])
    assert TOKEN not in " ".join(command)
    assert command[:2] == ["python3", "-c"]
    assert command[2] == ROUTER_SOURCE.read_text()
    assert command[3:] == [
        *("--listen-port", "8080", "--upstream-port", "41234", "--admin-port", "8081"),
        *("--state-file", ROUTER_STATE_FILE, "--health-path", "/ping"),
    ]
    labels = dict(spec.labels)
    assert {k: labels[k] for k in (LABEL_ENDPOINT, LABEL_ROLE, LABEL_PORT, LABEL_ADMIN_PORT)} == {
        LABEL_ENDPOINT: "pricing",
        LABEL_ROLE: ROLE_ROUTER,
        LABEL_PORT: "8080",
        LABEL_ADMIN_PORT: "8081",
    }
    assert len(labels[LABEL_ROUTER_CODE]) == 12
    assert spec.spec_hash


def test_ready_asks_the_router_not_its_upstream_whose_health_is_for_load_balancers(
    router: Router, blue_green: tuple[Named, Named]
) -> None:
    """A deploy must reach the router of an endpoint whose model died: ``ready`` does not follow ``/health``."""
    blue, _green = blue_green
    blue.close()
    assert local_http("GET", router.admin_port, "/health")[0] == 503
    control = client(router)
    assert control.ready()
    assert control.state()["upstream"] == blue.port


def test_the_router_command_runs_as_a_script_with_the_health_path_and_the_state_file(tmp_path: Path) -> None:
    """The spec's command line, run for real (``python3 -c <source> ...``): /health follows the upstream's /ping."""
    model, no_ping = Named("m"), Named("m", missing=(PROBE_PATH,))
    port, admin = free_port(), free_port()
    spec = router_spec(
        endpoint="pricing",
        image="-",
        port=port,
        admin_port=admin,
        upstream=model.port,
        token=TOKEN,
        health_path="/ping",
    )
    command = [sys.executable, *list(spec.command or [])[1:]]
    command[command.index(ROUTER_STATE_FILE)] = str(tmp_path / "upstream")
    proc = subprocess.Popen(command, env={**os.environ, **spec.secret_env})
    try:
        control = RouterClient("router", "pricing", admin, TOKEN)
        deadline = time.monotonic() + 30
        while not control.ready():
            assert proc.poll() is None, "the router exited"
            assert time.monotonic() < deadline, "the router did not answer within 30 s"
            time.sleep(0.1)
        assert local_http("GET", admin, "/health") == (200, "ok")
        control.switch(no_ping.port)
        assert local_http("GET", admin, "/health") == (
            503,
            f"upstream 127.0.0.1:{no_ping.port} answered HTTP 404 to GET /ping",
        )
        assert (tmp_path / "upstream").read_text() == str(no_ping.port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        model.close()
        no_ping.close()
