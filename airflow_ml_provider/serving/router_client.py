"""An endpoint's router container: its spec, starting it, and a client of its control API.

The router ``ml-serve-<endpoint>-router`` runs :mod:`airflow_ml_provider.serving.router`'s source
with ``python3 -c`` (any image with a ``python3``), its control token as secret environment and
a label with the hash of that source. Its control API and the model servers' health probe
(:mod:`~airflow_ml_provider.serving.model_server`) are plain HTTP on the worker's 127.0.0.1 (the
Docker engine is local to the worker and the containers use host networking), sent with
:func:`local_http`. That is ``http.client`` on purpose, not requests: these calls must never go
through a proxy from the worker's environment (``HTTP_PROXY`` / ``NO_PROXY``), they carry no
TLS, and the module stays importable without requests.

The router's API (see :mod:`airflow_ml_provider.serving.router`): ``GET /state`` (upstream port
and open connections per upstream), ``PUT /upstream`` (switch), ``GET /health``; the first two
need ``Authorization: Bearer <token>``, the router's own random token. ``/health`` answers 200
only while the router's *upstream* serves (for load balancers and monitors), so whether the
router itself is up is asked with ``GET /state`` (:meth:`RouterClient.ready`), never ``/health``.
Once it answers, the router gets Docker's restart policy
(:meth:`~airflow_ml_provider.serving.endpoint_docker.EndpointDocker.keep_running`) and remembers
each switch in :data:`ROUTER_STATE_FILE`, so after a restart it resumes on its last upstream.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import ModelDeployError
from airflow_ml_provider.serving.endpoint_docker import (
    LABEL_ADMIN_PORT,
    LABEL_ENDPOINT,
    LABEL_PORT,
    LABEL_ROLE,
    LABEL_ROUTER_CODE,
    LOG_TAIL,
    ROLE_ROUTER,
    EndpointDocker,
    Log,
    ServiceContainer,
)
from airflow_ml_provider.serving.router import TOKEN_ENV

if TYPE_CHECKING:
    from airflow_ml_provider.backends.base import JobSpec

#: Seconds a new router may take to answer its control API.
ROUTER_START_TIMEOUT = 30.0
ROUTER_SOURCE = Path(__file__).resolve().parent / "router.py"
#: The model servers' health probe (MLflow's scoring server answers 200 once the model is loaded);
#: the router's ``GET /health`` probes its upstream there too.
PROBE_PATH = "/ping"
#: Where the router container keeps its current upstream port (``--state-file``) across restarts.
ROUTER_STATE_FILE = "/tmp/ml-router-upstream"


def local_http(
    method: str, port: int, path: str, body: Any = None, *, timeout: float = 5.0, token: str | None = None
) -> tuple[int, Any]:
    """One request to ``127.0.0.1:<port>``; returns the status and the body (JSON when it parses, else text).

    :param method: the HTTP method.
    :param port: the port on 127.0.0.1.
    :param path: the request path.
    :param body: a JSON-serialisable body, or None.
    :param timeout: seconds for connecting and for each read.
    :param token: sent as ``Authorization: Bearer <token>`` (the router's control token).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data) if data else None
    except ValueError:
        return resp.status, data.decode(errors="replace")


class RouterClient:
    """The control API of one endpoint's router.

    :param name: the router's container name (for messages).
    :param endpoint: the endpoint's name (for messages).
    :param admin_port: the control API's port on 127.0.0.1.
    :param token: the router's bearer token; None for a router started before tokens existed.
    """

    def __init__(self, name: str, endpoint: str, admin_port: int, token: str | None) -> None:
        self.name = name
        self.endpoint = endpoint
        self.admin_port = admin_port
        self.token = token

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
        return local_http(method, self.admin_port, path, body, timeout=timeout, token=self.token)

    def ready(self) -> bool:
        """True when the API answers ``GET /state`` with 200 (a router that is still starting does not)."""
        try:
            return self._call("GET", "/state", timeout=1.0)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def state(self) -> dict[str, Any]:
        """``{"upstream": port, "connections": {"<port>": n}, ...}``; ModelDeployError if it does not answer."""
        try:
            status, body = self._call("GET", "/state")
        except (OSError, http.client.HTTPException) as e:
            raise ModelDeployError(
                f"Router {self.name} of endpoint {self.endpoint!r} does not answer on 127.0.0.1:{self.admin_port} "
                f"({e}); is the Docker engine local to this worker?"
            ) from None
        if status != 200 or not isinstance(body, dict):
            raise ModelDeployError(f"Router {self.name} answered HTTP {status} to GET /state: {body}")
        return body

    def switch(self, port: int) -> Any:
        """Send new connections to ``port``; returns the previous upstream port.

        :param port: the new upstream (a model server that already answers).
        """
        status, body = self._call("PUT", "/upstream", {"port": port})
        if status != 200 or not isinstance(body, dict):
            raise ModelDeployError(f"Router {self.name} refused to switch to port {port}: HTTP {status}: {body}")
        return body.get("previous")

    def wait_drained(self, ports: Iterable[int], timeout: float, log: Log) -> None:
        """Wait (at most ``timeout`` s) until no connection of the router is bound to ``ports``.

        Gives up with a warning (never an error) when the router stops answering or time runs out:
        the old containers are removed either way.

        :param ports: the old upstream ports.
        :param timeout: seconds to wait at most.
        :param log: where the warnings go.
        """
        ports = list(ports)
        if not ports:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                open_ = self.state().get("connections", {})
            except ModelDeployError as e:
                log.warning("Not waiting for connections to drain: %s", e)
                return
            left = {p: open_.get(str(p), 0) for p in ports if open_.get(str(p), 0)}
            if not left:
                return
            if time.monotonic() > deadline:
                log.warning("Connections still open on old ports after %.0f s: %s; removing anyway.", timeout, left)
                return
            time.sleep(0.2)


def router_spec(
    *, endpoint: str, image: str, port: int, admin_port: int, upstream: int, token: str, health_path: str | None = None
) -> JobSpec:
    """The spec of ``endpoint``'s router: ``port`` forwards to ``upstream``, control API on ``admin_port``.

    :param endpoint: the endpoint's name.
    :param image: any image with ``python3``.
    :param port: the stable port clients call.
    :param admin_port: the control API's port.
    :param upstream: the first model server's port.
    :param token: the control API's bearer token (secret environment, never the command line).
    :param health_path: the router's ``GET /health`` needs a 200 from ``GET <health_path>`` on its
        upstream (``/ping`` for MLflow model servers); None: a TCP connect decides.
    """
    from airflow_ml_provider.backends.base import JobSpec, spec_digest

    source = ROUTER_SOURCE.read_text()
    args = ["--listen-port", str(port), "--upstream-port", str(upstream), "--admin-port", str(admin_port)]
    args += ["--state-file", ROUTER_STATE_FILE, *(["--health-path", health_path] if health_path else [])]
    spec = JobSpec(
        key=f"ml-serve-{endpoint}-router",
        image=image,
        command=["python3", "-c", source, *args],
        env={"PYTHONUNBUFFERED": "1"},
        secret_env={TOKEN_ENV: token},
        network="host",
        labels={
            LABEL_ENDPOINT: endpoint,
            LABEL_ROLE: ROLE_ROUTER,
            LABEL_PORT: str(port),
            LABEL_ADMIN_PORT: str(admin_port),
            LABEL_ROUTER_CODE: hashlib.sha256(source.encode()).hexdigest()[:12],
        },
    )
    return spec._replace(spec_hash=spec_digest(spec))


def connect_router(docker: EndpointDocker, router: ServiceContainer, endpoint: str, admin_port: int) -> RouterClient:
    """The control API of a running router; its token is read back from its environment (and masked).

    :param docker: the endpoint's Docker engine.
    :param router: the router's container.
    :param endpoint: the endpoint's name.
    :param admin_port: the control port to assume when the container has no :data:`LABEL_ADMIN_PORT` label.
    """
    from airflow.sdk.log import mask_secret

    token = docker.env_var(router, TOKEN_ENV) or None  # None: a router started before tokens existed
    if token:
        mask_secret(token)
    return RouterClient(router.name, endpoint, int(router.labels.get(LABEL_ADMIN_PORT) or admin_port), token)


def start_router(
    docker: EndpointDocker,
    *,
    endpoint: str,
    image: str,
    port: int,
    admin_port: int,
    upstream: int,
    log: Log,
    health_path: str | None = None,
) -> RouterClient:
    """Start ``endpoint``'s router with a new random token; its client once the control API answers.

    The router container is removed, and ModelDeployError names the ports and quotes its log, when
    it exits or does not answer within :data:`ROUTER_START_TIMEOUT` (a port in use, say). Once it
    answers it gets Docker's restart policy.

    :param docker: the endpoint's Docker engine.
    :param endpoint: the endpoint's name.
    :param image: any image with ``python3``.
    :param port: the stable port clients call.
    :param admin_port: the control API's port.
    :param upstream: the first model server's port.
    :param log: where the start is logged.
    :param health_path: see :func:`router_spec`.
    """
    from airflow.sdk.log import mask_secret

    token = secrets.token_urlsafe(32)
    mask_secret(token)
    spec = router_spec(
        endpoint=endpoint,
        image=image,
        port=port,
        admin_port=admin_port,
        upstream=upstream,
        token=token,
        health_path=health_path,
    )
    router = docker.start(spec)
    control = RouterClient(router.name, endpoint, admin_port, token)
    deadline = time.monotonic() + ROUTER_START_TIMEOUT
    while True:
        finished = docker.status(router).finished
        if not finished and control.ready():
            break
        if finished or time.monotonic() > deadline:
            lines = docker.log_tail(router, LOG_TAIL)
            docker.remove(router)
            raise ModelDeployError(
                f"The router of endpoint {endpoint!r} did not start on ports {port}/{admin_port} (in use?): "
                + ("\n".join(lines) or "(no output)")
            )
        time.sleep(0.2)
    try:
        docker.keep_running(router)
    except BaseException:
        docker.remove(router)
        raise
    log.info("Started router %s on 127.0.0.1:%s -> %s.", router.name, port, upstream)
    return control
