"""``deploy_blockers``: why a Docker endpoint deploy cannot run here, with its boundaries faked.

The MLflow side is only the connection (defined through ``AIRFLOW_CONN_*``, nothing is called).
The Docker side is a small HTTP server on 127.0.0.1 speaking the three calls of the Engine API the
check makes (``GET /version``, ``GET /_ping``, ``GET /images/<ref>/json``) through the real docker
SDK, or a socket nothing listens on. The same check against the real dockerd is in
tests/integration/test_ml_pipeline_dag_real.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_ml_provider.serving.readiness import deploy_blockers
from scripts.testbed.loopback_http import LoopbackHttpServer, QuietHandler

SERVE, ROUTER = "airflow-ml-provider/serve:latest", "airflow-ml-provider/base:bookworm"
SERVER = {"conn_type": "ml_mlflow", "host": "http://127.0.0.1:5999"}


class FakeEngine:
    """The Engine API as ``deploy_blockers`` reads it: ``images`` are present; ``ping_status`` is ``/_ping``'s."""

    def __init__(self, images: set[str], ping_status: int = 200) -> None:
        self.requests: list[str] = []
        engine = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # http.server's name
                engine.requests.append(self.path)
                path = self.path.split("?")[0]
                path = path.split("/", 2)[2] if path.startswith("/v1.") else path.lstrip("/")
                if path == "version":
                    self._send(200, {"ApiVersion": "1.41", "Version": "20.10.24", "MinAPIVersion": "1.12"})
                elif path == "_ping":
                    self._send(ping_status, "OK" if ping_status == 200 else {"message": "engine is shutting down"})
                elif path.startswith("images/") and path.endswith("/json"):
                    ref = path[len("images/") : -len("/json")]
                    if ref in images:
                        self._send(200, {"Id": "sha256:" + "0" * 64, "RepoTags": [ref]})
                    else:
                        self._send(404, {"message": f"No such image: {ref}"})
                else:
                    self._send(404, {"message": "page not found"})

            def _send(self, status: int, body: Any) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = LoopbackHttpServer(Handler, name="fake-docker-engine")
        self.url = self._http.url.replace("http://", "tcp://")

    def __enter__(self) -> FakeEngine:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()


@pytest.fixture
def conns(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``set(conn_id, body)`` defines a connection for this test."""

    def define(conn_id: str, body: dict[str, Any]) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))

    return define


def docker_conn(url: str, **extra: Any) -> dict[str, Any]:
    return {"conn_type": "ml_docker", "host": url, "extra": {"tls": False, "timeout": 5, **extra}}


def test_nothing_blocks_with_a_tracking_server_and_an_engine_holding_both_images(conns: Any) -> None:
    conns("ml_mlflow_default", SERVER)
    with FakeEngine({SERVE, ROUTER}) as engine:
        conns("ml_docker_default", docker_conn(engine.url))
        assert deploy_blockers(images=[SERVE, ROUTER, SERVE]) == []
    asked = [p.split("/", 2)[-1] for p in engine.requests if "/images/" in p]
    assert asked == [f"images/{SERVE}/json", f"images/{ROUTER}/json"]  # each image once
    assert any(p.endswith("/_ping") for p in engine.requests)


def test_a_missing_image_is_named_with_how_to_build_it(conns: Any) -> None:
    conns("ml_mlflow_default", SERVER)
    with FakeEngine({ROUTER}) as engine:
        conns("engine_b", docker_conn(engine.url))
        reasons = deploy_blockers(images=[SERVE, ROUTER], docker_conn_id="engine_b")
    assert reasons == [f"image(s) {SERVE} are not on the Docker engine: build them (`make images`)"]


def test_a_local_store_and_an_unreachable_engine_are_both_reasons(conns: Any, tmp_path: Any) -> None:
    conns("store", {"conn_type": "ml_mlflow", "host": f"sqlite:///{tmp_path}/mlflow.db"})
    conns("ml_docker_default", docker_conn(f"unix://{tmp_path}/nothing-listens.sock"))
    reasons = deploy_blockers(images=[SERVE], mlflow_conn_id="store")
    assert len(reasons) == 2, reasons
    assert reasons[0].startswith("the MLflow connection 'store' is a local store (sqlite), which model containers")
    assert "http(s) tracking server" in reasons[0]
    assert reasons[1].startswith("no Docker engine for 'ml_docker_default' (")
    assert reasons[1].endswith("start one, or set deploy off")


def test_an_engine_that_fails_its_ping_does_not_answer(conns: Any) -> None:
    conns("ml_mlflow_default", SERVER)
    with FakeEngine({SERVE}, ping_status=500) as engine:
        conns("ml_docker_default", docker_conn(engine.url))
        reasons = deploy_blockers(images=[SERVE])
    assert len(reasons) == 1, reasons
    assert reasons[0].startswith("the Docker engine of 'ml_docker_default' does not answer (")
    assert "shutting down" in reasons[0]


def test_a_missing_mlflow_connection_and_a_swarm_connection_are_reasons_not_crashes(conns: Any) -> None:
    conns("swarm_engine", {"conn_type": "ml_swarm", "host": "unix:///var/run/docker.sock"})
    reasons = deploy_blockers(images=[SERVE], mlflow_conn_id="no_such_mlflow", docker_conn_id="swarm_engine")
    assert len(reasons) == 2, reasons
    assert reasons[0].startswith("the MLflow connection 'no_such_mlflow' cannot be used (")
    assert "define it as an ml_mlflow connection" in reasons[0]
    assert reasons[1].startswith("no Docker engine for 'swarm_engine' (InvalidSpecError: ")
    assert "ml_docker" in reasons[1]


def test_a_password_in_the_mlflow_connection_shows_in_no_reason(conns: Any, tmp_path: Any) -> None:
    conns("ml_mlflow_default", {**SERVER, "login": "u", "password": "Readiness-Pw-9931"})
    conns("ml_docker_default", docker_conn(f"unix://{tmp_path}/nothing-listens.sock"))
    reasons = deploy_blockers(images=[SERVE])
    assert len(reasons) == 1
    assert "Readiness-Pw-9931" not in " ".join(reasons)
