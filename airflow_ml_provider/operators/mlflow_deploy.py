"""Serve a registered MLflow model behind a stable port, blue/green, on a Docker engine.

An *endpoint* (``endpoint_name``, e.g. ``pricing``) is a stable port on the Docker host plus two
kinds of containers, all with host networking and labelled ``airflow-ml-provider.endpoint=<name>``:

* one **router** (``ml-serve-<endpoint>-router``): :mod:`airflow_ml_provider.serving.router` run
  by ``python3`` of ``router_image``. It listens on ``127.0.0.1:<port>`` and forwards each
  connection to the current model container; its control API on ``127.0.0.1:<admin_port>``
  (default ``port + 1``) switches the upstream and reports open connections per upstream. It
  answers only requests bearing the router's own random token, which the router container gets
  as secret environment and later deploys read back from the container's configuration.
* one **model** container (``ml-serve-<endpoint>-v<version>-<6 hex>``, two during a deploy):
  ``mlflow models serve -m models:/<name>/<version> --env-manager local`` on a free port of its
  own (with host networking two containers cannot share a port).

A deploy: resolve the version ``alias`` points to (or take ``version``); if the router's current
upstream already serves that model version, do nothing. Otherwise start the new model container
(tracking URI and credentials as *secret* environment, cpu/memory limits from ``resources``), wait
until ``GET /ping`` answers 200 (at most ``health_timeout`` s). If it never does, it is removed,
the old one keeps serving and the task fails with its last log lines. Then the router is switched
(or started, the first time), connections still on the old container drain (keep-alive
connections move at their next request; at most ``drain_timeout`` s) and the old container is
removed. Requests in flight during the switch all complete.

Assumptions: the Docker engine is **local to the worker** (``ml_docker_default`` or a
``unix://`` connection): health probes and the router's control API are reached on the worker's
127.0.0.1, and free ports are picked by binding on the worker. The MLflow connection must be an
``http(s)`` tracking server the containers can reach at the same URI (with host networking,
``http://127.0.0.1:<port>`` works). :func:`remove_endpoint` takes an endpoint down.

One deploy per endpoint at a time, whatever DAGs they come from: a deploy first takes the
endpoint's lock, a created-but-never-started container named ``ml-serve-<endpoint>-deploy-lock``
(the engine refuses a second container of the same name, so this is atomic), resolves the
version only then (a deploy that waited serves the alias as it is now), and removes the lock at
the end, on failure too. Others wait for it at most ``lock_timeout`` s and then fail naming the
holder. A lock older than any deploy can take (``health_timeout + drain_timeout + 120`` s: its
holder was killed hard) is taken over.

DAG files import this module; it imports neither docker nor mlflow and does no I/O at parse time.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.operators.mlflow_registry import _check_name, _explain, _is_templated, _MlflowOperator
from airflow_ml_provider.utils.resources import ResourceSpec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ml_provider.backends.base import JobHandle, JobSpec
    from airflow_ml_provider.backends.docker_engine import DockerBackend

DEFAULT_IMAGE = "airflow-ml-provider/serve:latest"
DEFAULT_ROUTER_IMAGE = "airflow-ml-provider/base:bookworm"
DEFAULT_DOCKER_CONN_ID = "ml_docker_default"

LABEL_ENDPOINT = "airflow-ml-provider.endpoint"
LABEL_ROLE = "airflow-ml-provider.role"
LABEL_MODEL = "airflow-ml-provider.model"
LABEL_VERSION = "airflow-ml-provider.model-version"
LABEL_PORT = "airflow-ml-provider.port"
LABEL_ADMIN_PORT = "airflow-ml-provider.admin-port"
LABEL_ROUTER_CODE = "airflow-ml-provider.router-code"
LABEL_LOCK_OWNER = "airflow-ml-provider.lock-owner"
ROLE_ROUTER = "router"
ROLE_MODEL = "model"
ROLE_LOCK = "deploy-lock"
#: Seconds a deploy's lock may be older than health_timeout + drain_timeout before it counts as abandoned.
LOCK_GRACE = 120.0

#: Where the MLflow connection's CA bundle is mounted in model containers.
CA_PATH = "/etc/airflow-ml-provider/mlflow-ca.pem"
LOG_TAIL = 30
_ENDPOINT = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_ROUTER_SOURCE = Path(__file__).resolve().parent.parent / "serving" / "router.py"


class ModelDeployError(MlProviderError):
    """The new model version could not be put behind the endpoint; the old one still serves."""


def _free_port(avoid: Sequence[int] = ()) -> int:
    """A port nothing listens on now, on the worker's 127.0.0.1 (= the Docker host's, see the module doc)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port
    raise ModelDeployError("Could not find a free port on 127.0.0.1.")


def _http(
    method: str, port: int, path: str, body: Any = None, timeout: float = 5.0, token: str | None = None
) -> tuple[int, Any]:
    """One request to 127.0.0.1:port (no proxy settings involved); (status, JSON or text).

    ``token``: sent as ``Authorization: Bearer <token>`` (the router's control token).
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


def _owner(context: Context) -> str:
    """Who holds a deploy lock, for the waiting task's log: ``dag/run/task[map]``."""
    ti = context.get("ti")
    if ti is None:  # run outside Airflow (a script, a benchmark)
        return f"a deploy outside Airflow (pid {os.getpid()})"
    map_index = getattr(ti, "map_index", -1)
    suffix = f"[{map_index}]" if map_index not in (None, -1) else ""
    return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}{suffix}"


def _handle(container: Any) -> JobHandle:
    from airflow_ml_provider.backends.base import LABEL_SPEC, JobHandle

    return JobHandle("docker", container.name, container.id, (container.labels or {}).get(LABEL_SPEC, ""))


def _endpoint_containers(backend: DockerBackend, endpoint: str) -> list[Any]:
    return list(backend.client.containers.list(all=True, filters={"label": f"{LABEL_ENDPOINT}={endpoint}"}))


def _docker_backend(conn_id: str) -> DockerBackend:
    from airflow_ml_provider.backends.docker_engine import DockerBackend
    from airflow_ml_provider.hooks.container import ContainerJobHook

    backend = ContainerJobHook(conn_id).get_backend()
    if not isinstance(backend, DockerBackend):
        backend.close()
        raise InvalidSpecError(
            f"docker_conn_id={conn_id!r} is a {backend.name} connection; model endpoints need an ml_docker "
            "connection to the worker's local Docker engine."
        )
    return backend


def remove_endpoint(endpoint_name: str, docker_conn_id: str = DEFAULT_DOCKER_CONN_ID) -> list[str]:
    """Stop and remove every container of ``endpoint_name`` (router and models); their names."""
    backend = _docker_backend(docker_conn_id)
    try:
        containers = _endpoint_containers(backend, endpoint_name)
        for c in containers:
            backend.cancel(_handle(c))
        return [c.name for c in containers]
    finally:
        backend.close()


class MlflowDeployModelOperator(_MlflowOperator):
    """Serve a registered model version behind ``http://127.0.0.1:<port>``, swapping versions blue/green.

    See the module docstring for the containers, the flow and the assumptions.

    Returns (XCom) ``{"endpoint": "http://127.0.0.1:<port>", "name", "version", "container",
    "previous_version", "changed"}``: ``container`` is the serving model container's id,
    ``previous_version`` the version served before (``None`` on the first deploy), ``changed`` is
    False when the endpoint already served the version (nothing was done).

    :param name: registered model name (templated).
    :param endpoint_name: the endpoint's stable name, ``[a-z0-9-]``, at most 40 characters (templated).
    :param port: the stable port clients call (the router's).
    :param alias: serve the version this alias points to (templated; ignored when ``version`` is set).
    :param version: serve this version instead of an alias's (templated).
    :param image: the model containers' image: ``mlflow`` and the model's libraries on its PATH.
    :param router_image: the router's image: any image with ``python3``.
    :param resources: cpu/memory (gpus) of each model container, e.g. ``{"cpus": 1, "memory": "1Gi"}``.
    :param workers: uvicorn workers per model container.
    :param health_timeout: seconds for a new model container to answer ``/ping``.
    :param drain_timeout: seconds to wait for connections to leave the old container before removing it.
    :param admin_port: the router's control port on 127.0.0.1 (default ``port + 1``).
    :param lock_timeout: seconds to wait while another deploy of the same endpoint runs before failing.
    :param mlflow_conn_id: the ``ml_mlflow`` connection (an http(s) tracking server).
    :param docker_conn_id: the ``ml_docker`` connection (default: the local engine).
    :param target_uri: instead of Docker, hand the version to an ``mlflow.deployments`` plugin
        (e.g. ``sagemaker:/eu-west-1``) through ``get_deploy_client``: ``update_deployment`` when
        ``endpoint_name`` exists there, else ``create_deployment``. ``port`` is then not needed.
    :param deployment_config: the plugin's ``config`` (values passed as strings).
    """

    template_fields: Sequence[str] = ("name", "endpoint_name", "alias", "version", "image", "router_image")
    ui_color = "#d5e8f7"

    def __init__(
        self,
        *,
        name: str,
        endpoint_name: str,
        port: int | None = None,
        alias: str = "champion",
        version: str | int | None = None,
        image: str = DEFAULT_IMAGE,
        router_image: str = DEFAULT_ROUTER_IMAGE,
        resources: ResourceSpec | Mapping[str, Any] | None = None,
        workers: int = 1,
        health_timeout: float = 180.0,
        drain_timeout: float = 30.0,
        admin_port: int | None = None,
        lock_timeout: float = 900.0,
        docker_conn_id: str = DEFAULT_DOCKER_CONN_ID,
        target_uri: str | None = None,
        deployment_config: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_name(name, "name")
        _check_name(endpoint_name, "endpoint_name")
        _check_name(image, "image")
        _check_name(router_image, "router_image")
        if not _is_templated(endpoint_name) and not _ENDPOINT.match(endpoint_name):
            raise InvalidSpecError(
                f"endpoint_name={endpoint_name!r} must be 1-40 of [a-z0-9-], starting with a letter or digit, "
                "e.g. endpoint_name='pricing'."
            )
        if version is None:
            _check_name(alias, "alias")
        elif isinstance(version, int) and not isinstance(version, bool):
            if version < 1:
                raise InvalidSpecError(f"version={version!r} must be a registered version number >= 1.")
        else:
            _check_name(version, "version")
        if target_uri is not None:
            _check_name(target_uri, "target_uri")
            port = port or 0  # not used: the plugin's target serves the model
        elif port is None:
            raise InvalidSpecError("port is required (the stable port clients call), e.g. port=8080.")
        admin = port + 1 if admin_port is None and isinstance(port, int) else admin_port
        for field, value in () if target_uri else (("port", port), ("admin_port", admin)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise InvalidSpecError(f"{field}={value!r} must be a TCP port number (1-65535), e.g. {field}=8080.")
        if admin == port:
            raise InvalidSpecError(f"admin_port={admin_port!r} must differ from port={port!r}.")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidSpecError(f"workers={workers!r} must be a whole number >= 1.")
        timeouts = (
            ("health_timeout", health_timeout),
            ("drain_timeout", drain_timeout),
            ("lock_timeout", lock_timeout),
        )
        for field, seconds in timeouts:
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
                raise InvalidSpecError(f"{field}={seconds!r} must be > 0 seconds.")
        if isinstance(resources, Mapping) and not isinstance(resources, dict):
            resources = dict(resources)
        self.name = name
        self.endpoint_name = endpoint_name
        self.port = port
        self.admin_port: int = admin  # an int: checked above
        self.alias = alias
        self.version = str(version) if isinstance(version, int) else version
        self.image = image
        self.router_image = router_image
        self.model_resources = ResourceSpec.from_value(resources)
        self.workers = workers
        self.health_timeout = float(health_timeout)
        self.drain_timeout = float(drain_timeout)
        self.lock_timeout = float(lock_timeout)
        self.docker_conn_id = docker_conn_id
        self.target_uri = target_uri
        self.deployment_config = dict(deployment_config or {})
        self._starting: tuple[DockerBackend, JobHandle] | None = None

    # --- execute -------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        """Deploy (or keep) the version; see the module docstring."""
        if not _ENDPOINT.match(self.endpoint_name):
            raise InvalidSpecError(f"endpoint_name={self.endpoint_name!r} must be 1-40 of [a-z0-9-].")
        if self.target_uri:
            return self._deploy_to_target(self._resolve_version())
        backend = _docker_backend(self.docker_conn_id)
        try:
            lock = self._acquire_lock(backend, _owner(context))
            try:
                return self._deploy(backend, self._resolve_version())
            finally:
                self._release_lock(lock)
        finally:
            backend.close()

    # --- the endpoint's deploy lock ------------------------------------------------------------

    def _acquire_lock(self, backend: DockerBackend, owner: str) -> Any:
        """Create the endpoint's lock container (see the module docstring); waits for another holder."""
        import docker.errors

        from airflow_ml_provider.backends.docker_engine import parse_timestamp

        name = f"ml-serve-{self.endpoint_name}-deploy-lock"
        stale_after = self.health_timeout + self.drain_timeout + LOCK_GRACE
        deadline = time.monotonic() + self.lock_timeout
        waiting = False
        while True:
            try:
                return backend.client.containers.create(
                    self.router_image,
                    command=["true"],
                    name=name,
                    network_mode="none",
                    labels={LABEL_ENDPOINT: self.endpoint_name, LABEL_ROLE: ROLE_LOCK, LABEL_LOCK_OWNER: owner},
                )
            except docker.errors.APIError as e:
                if e.status_code != 409:  # not "name in use"
                    raise ModelDeployError(
                        f"Could not take the deploy lock of endpoint {self.endpoint_name!r} "
                        f"(a container of image {self.router_image!r}): {e.explanation or e}"
                    ) from None
            try:
                held = backend.client.containers.get(name)
            except docker.errors.NotFound:
                continue  # released meanwhile: try again at once
            age = (time.time_ns() - parse_timestamp(held.attrs["Created"])) / 1e9
            holder = (held.labels or {}).get(LABEL_LOCK_OWNER, "an unknown deploy")
            if age > stale_after:
                self.log.warning(
                    "Taking over the deploy lock of endpoint %s: held by %s for %.0f s, longer than a deploy takes.",
                    self.endpoint_name, holder, age,
                )  # fmt: skip
                with contextlib.suppress(docker.errors.NotFound):
                    held.remove(force=True)  # by id: a lock someone else took meanwhile stays
                continue
            if time.monotonic() > deadline:
                raise ModelDeployError(
                    f"Endpoint {self.endpoint_name!r} is being deployed by {holder} (for {age:.0f} s); gave up "
                    f"after lock_timeout={self.lock_timeout:g} s. Retry later, or remove the container {name} "
                    "if no deploy runs."
                )
            if not waiting:
                self.log.info("Endpoint %s is being deployed by %s; waiting for it.", self.endpoint_name, holder)
                waiting = True
            time.sleep(1.0)

    def _release_lock(self, lock: Any) -> None:
        import docker.errors

        try:
            lock.remove(force=True)
        except docker.errors.NotFound:
            self.log.warning("The deploy lock of endpoint %s was already gone (taken over?).", self.endpoint_name)
        except docker.errors.APIError as e:
            self.log.error("Could not remove the deploy lock %s: %s", lock.name, e)

    def _deploy_to_target(self, version: str) -> dict[str, Any]:
        """Hand the version to an ``mlflow.deployments`` plugin (SageMaker, …): update or create."""
        from mlflow.deployments import get_deploy_client

        model_uri = f"models:/{self.name}/{version}"
        config = {str(k): str(v) for k, v in self.deployment_config.items()}
        with self.hook.scoped():
            client = get_deploy_client(self.target_uri)
            try:
                existing = client.get_deployment(self.endpoint_name)
            except Exception:  # noqa: BLE001  # plugins signal "no such deployment" in their own ways
                existing = None
            try:
                if existing:
                    result = client.update_deployment(self.endpoint_name, model_uri=model_uri, config=config)
                else:
                    result = client.create_deployment(self.endpoint_name, model_uri, config=config)
            except Exception as e:  # noqa: BLE001  # any plugin error: name the target and the model
                raise ModelDeployError(
                    f"Deploying {model_uri} as {self.endpoint_name!r} on {self.target_uri}: {type(e).__name__}: {e}"
                ) from None
        self.log.info("%s %s on %s as %r.", "Updated" if existing else "Created", model_uri, self.target_uri,
                      self.endpoint_name)  # fmt: skip
        return {
            "endpoint": f"{self.target_uri}/{self.endpoint_name}",
            "name": self.name,
            "version": version,
            "container": None,
            "previous_version": None,
            "changed": True,
            "deployment": json.loads(json.dumps(result, default=str)) if result is not None else None,
        }

    def on_kill(self) -> None:
        """Remove a model container that was still being started."""
        if self._starting is not None:
            backend, handle = self._starting
            with contextlib.suppress(Exception):
                backend.cancel(handle)

    def _resolve_version(self) -> str:
        from mlflow.exceptions import MlflowException

        what = f"version {self.version} of {self.name!r}" if self.version else f"@{self.alias} of {self.name!r}"
        with self.hook.scoped():
            client = self.hook.get_client()
            try:
                if self.version:
                    mv = client.get_model_version(self.name, str(self.version).strip())
                else:
                    mv = client.get_model_version_by_alias(self.name, self.alias)
            except MlflowException as e:
                raise _explain(e, f"Resolving {what}") from None
        if mv.status != "READY":
            raise ModelDeployError(f"{what} is version {mv.version} in state {mv.status}, not READY; not deployed.")
        self.log.info("Resolved %s to version %s.", what, mv.version)
        return str(mv.version)

    def _deploy(self, backend: DockerBackend, version: str) -> dict[str, Any]:
        containers = _endpoint_containers(backend, self.endpoint_name)
        routers = [c for c in containers if c.labels.get(LABEL_ROLE) == ROLE_ROUTER]
        models = [c for c in containers if c.labels.get(LABEL_ROLE) == ROLE_MODEL]
        router = routers[0] if routers else None
        if router is not None and router.status != "running":
            self.log.warning("Router %s is %s; removing it, a new one is started.", router.name, router.status)
            backend.cancel(_handle(router))
            router = None
        if router is not None and router.labels.get(LABEL_PORT) != str(self.port):
            raise ModelDeployError(
                f"Endpoint {self.endpoint_name!r} already listens on port {router.labels.get(LABEL_PORT)}, not "
                f"{self.port}; use that port or take the endpoint down first (remove_endpoint)."
            )
        current = None
        if router is not None:
            upstream = self._router_state(router)["upstream"]
            current = next(
                (m for m in models if m.labels.get(LABEL_PORT) == str(upstream) and m.status == "running"), None
            )
        if (
            current is not None
            and current.labels.get(LABEL_MODEL) == self.name
            and current.labels.get(LABEL_VERSION) == version
        ):
            self.log.info(
                "Endpoint %s already serves %s version %s (%s).", self.endpoint_name, self.name, version, current.name
            )
            self._remove(backend, [m for m in models if m.id != current.id])
            return self._result(version, current.id, version, changed=False)
        previous = current.labels.get(LABEL_VERSION) if current is not None else None

        spec = self._model_spec(version)
        handle = backend.submit(spec)
        self._starting = (backend, handle)
        new_port = int(spec.labels[LABEL_PORT])
        self.log.info(
            "Started %s for %s version %s on port %s.", backend.describe(handle), self.name, version, new_port
        )
        try:
            self._await_healthy(backend, handle, spec, new_port)
            if router is None:
                router = self._start_router(backend, new_port)
            else:
                self._switch(router, new_port)
        except BaseException:
            backend.cancel(handle)
            self._starting = None
            raise
        self._starting = None
        old = [m for m in models if m.id != handle.job_id]
        self._drain(router, [int(m.labels[LABEL_PORT]) for m in old if m.labels.get(LABEL_PORT, "").isdigit()])
        self._remove(backend, old)
        self.log.info("Endpoint %s serves %s version %s (was %s).", self.endpoint_name, self.name, version, previous)
        return self._result(version, handle.job_id, previous, changed=True)

    def _result(self, version: str, container: str, previous: str | None, *, changed: bool) -> dict[str, Any]:
        return {
            "endpoint": f"http://127.0.0.1:{self.port}",
            "name": self.name,
            "version": version,
            "container": container,
            "previous_version": previous,
            "changed": changed,
        }

    def _remove(self, backend: DockerBackend, containers: list[Any]) -> None:
        for c in containers:
            self.log.info("Removing %s (version %s).", c.name, c.labels.get(LABEL_VERSION))
            backend.cancel(_handle(c))

    # --- the model container -------------------------------------------------------------------

    def _model_env(self) -> tuple[dict[str, str], list[Any]]:
        """Secret environment (tracking URI, credentials) and mounts (the CA bundle) of a model container."""
        from airflow_ml_provider.backends.base import Mount

        config = self.hook.config
        for uri in (config.tracking_uri, config.registry_uri):
            if not uri.startswith(("http://", "https://")):
                raise InvalidSpecError(
                    f"Connection {self.mlflow_conn_id!r} points at {uri!r}; the model container must download the "
                    "model from an http(s) tracking server (e.g. http://127.0.0.1:5000), not a local store."
                )
        env = config.env()
        env["MLFLOW_TRACKING_URI"] = config.tracking_uri
        env["MLFLOW_REGISTRY_URI"] = config.registry_uri
        mounts = []
        if "MLFLOW_TRACKING_SERVER_CERT_PATH" in env:
            mounts.append(Mount(env["MLFLOW_TRACKING_SERVER_CERT_PATH"], CA_PATH, read_only=True))
            env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = CA_PATH
        return env, mounts

    def _model_spec(self, version: str) -> JobSpec:
        from airflow_ml_provider.backends.base import JobSpec, spec_digest

        secret_env, mounts = self._model_env()
        port = _free_port(avoid=(self.port, self.admin_port))
        spec = JobSpec(
            key=f"ml-serve-{self.endpoint_name}-v{version}-{secrets.token_hex(3)}",
            image=self.image,
            command=[
                "mlflow",
                "models",
                "serve",
                "-m",
                f"models:/{self.name}/{version}",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--workers",
                str(self.workers),
            ],
            env={"PYTHONUNBUFFERED": "1"},
            secret_env=secret_env,
            resources=self.model_resources,
            mounts=mounts,
            network="host",
            labels={
                LABEL_ENDPOINT: self.endpoint_name,
                LABEL_ROLE: ROLE_MODEL,
                LABEL_MODEL: self.name,
                LABEL_VERSION: version,
                LABEL_PORT: str(port),
            },
        )
        return spec._replace(spec_hash=spec_digest(spec))

    def _await_healthy(self, backend: DockerBackend, handle: JobHandle, spec: JobSpec, port: int) -> None:
        deadline = time.monotonic() + self.health_timeout
        while True:
            status = backend.status(handle)
            if status.finished:
                why = f"exited with code {status.exit_code}" + (" (out of memory)" if status.oom_killed else "")
                raise ModelDeployError(self._failure(backend, handle, spec, why))
            if self._healthy(port):
                return
            if time.monotonic() > deadline:
                raise ModelDeployError(
                    self._failure(backend, handle, spec, f"did not answer GET /ping within {self.health_timeout:.0f} s")
                )
            time.sleep(0.5)

    @staticmethod
    def _healthy(port: int) -> bool:
        try:
            status, _ = _http("GET", port, "/ping", timeout=2.0)
            if status == 404:
                status, _ = _http("GET", port, "/health", timeout=2.0)
        except (OSError, http.client.HTTPException):
            return False
        return status == 200

    def _failure(self, backend: DockerBackend, handle: JobHandle, spec: JobSpec, why: str) -> str:
        try:
            lines, _ = backend.logs(handle)
        except Exception as e:  # noqa: BLE001  # the failure matters more than its logs
            lines = [f"(could not read its logs: {type(e).__name__}: {e})"]
        tail = "\n".join(lines[-LOG_TAIL:]) or "(no output)"
        return spec.redact(
            f"{spec.labels[LABEL_MODEL]} version {spec.labels[LABEL_VERSION]} ({spec.key}, image {spec.image}) {why}; "
            f"it was removed and endpoint {self.endpoint_name!r} keeps serving what it served. "
            f"Last {LOG_TAIL} log lines:\n{tail}"
        )

    # --- the router ----------------------------------------------------------------------------

    def _admin_port(self, router: Any) -> int:
        return int(router.labels.get(LABEL_ADMIN_PORT) or self.admin_port)

    @staticmethod
    def _router_token(router: Any) -> str | None:
        """The router's control token, read back from its container's environment (masked)."""
        from airflow.sdk.log import mask_secret

        from airflow_ml_provider.serving.router import TOKEN_ENV

        for entry in (router.attrs.get("Config") or {}).get("Env") or []:
            name, _, value = str(entry).partition("=")
            if name == TOKEN_ENV and value:
                mask_secret(value)
                return value
        return None  # a router started before tokens existed: its API takes none

    def _router_state(self, router: Any) -> dict[str, Any]:
        port = self._admin_port(router)
        try:
            status, body = _http("GET", port, "/state", token=self._router_token(router))
        except (OSError, http.client.HTTPException) as e:
            raise ModelDeployError(
                f"Router {router.name} of endpoint {self.endpoint_name!r} does not answer on 127.0.0.1:{port} ({e}); "
                "is the Docker engine local to this worker?"
            ) from None
        if status != 200 or not isinstance(body, dict):
            raise ModelDeployError(f"Router {router.name} answered HTTP {status} to GET /state: {body}")
        return body

    def _switch(self, router: Any, port: int) -> None:
        status, body = _http(
            "PUT", self._admin_port(router), "/upstream", {"port": port}, token=self._router_token(router)
        )
        if status != 200:
            raise ModelDeployError(f"Router {router.name} refused to switch to port {port}: HTTP {status}: {body}")
        self.log.info("Router %s switched from port %s to %s.", router.name, body.get("previous"), port)

    def _start_router(self, backend: DockerBackend, upstream: int) -> Any:
        from airflow.sdk.log import mask_secret

        from airflow_ml_provider.backends.base import JobSpec, spec_digest
        from airflow_ml_provider.serving.router import TOKEN_ENV

        source = _ROUTER_SOURCE.read_text()
        token = secrets.token_urlsafe(32)
        mask_secret(token)
        spec = JobSpec(
            key=f"ml-serve-{self.endpoint_name}-router",
            image=self.router_image,
            command=[
                "python3",
                "-c",
                source,
                "--listen-port",
                str(self.port),
                "--upstream-port",
                str(upstream),
                "--admin-port",
                str(self.admin_port),
            ],
            env={"PYTHONUNBUFFERED": "1"},
            secret_env={TOKEN_ENV: token},
            network="host",
            labels={
                LABEL_ENDPOINT: self.endpoint_name,
                LABEL_ROLE: ROLE_ROUTER,
                LABEL_PORT: str(self.port),
                LABEL_ADMIN_PORT: str(self.admin_port),
                LABEL_ROUTER_CODE: hashlib.sha256(source.encode()).hexdigest()[:12],
            },
        )
        spec = spec._replace(spec_hash=spec_digest(spec))
        handle = backend.submit(spec)
        deadline = time.monotonic() + 30
        while True:
            status = backend.status(handle)
            ready = False
            if not status.finished:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    ready = _http("GET", self.admin_port, "/state", timeout=1.0, token=token)[0] == 200
            if ready:
                break
            if status.finished or time.monotonic() > deadline:
                lines, _ = backend.logs(handle)
                backend.cancel(handle)
                raise ModelDeployError(
                    f"The router of endpoint {self.endpoint_name!r} did not start on ports {self.port}/"
                    f"{self.admin_port} (in use?): " + ("\n".join(lines[-LOG_TAIL:]) or "(no output)")
                )
            time.sleep(0.2)
        self.log.info("Started router %s on 127.0.0.1:%s -> %s.", spec.key, self.port, upstream)
        return backend.client.containers.get(handle.job_id)

    def _drain(self, router: Any, ports: list[int]) -> None:
        """Wait (at most ``drain_timeout``) until no connection of the router is bound to ``ports``."""
        if not ports:
            return
        deadline = time.monotonic() + self.drain_timeout
        while True:
            try:
                open_ = self._router_state(router).get("connections", {})
            except ModelDeployError as e:
                self.log.warning("Not waiting for connections to drain: %s", e)
                return
            left = {p: open_.get(str(p), 0) for p in ports if open_.get(str(p), 0)}
            if not left:
                return
            if time.monotonic() > deadline:
                self.log.warning(
                    "Connections still open on old ports after %.0f s: %s; removing anyway.", self.drain_timeout, left
                )
                return
            time.sleep(0.2)
