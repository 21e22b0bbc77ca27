"""Serve a registered MLflow model behind a stable port, blue/green, on a Docker engine.

An *endpoint* (``endpoint_name``, e.g. ``pricing``) is a stable port on the Docker host plus two
kinds of containers, all with host networking and labelled ``airflow-ml-provider.endpoint=<name>``
(:mod:`airflow_ml_provider.serving.router_client`,
:mod:`airflow_ml_provider.serving.model_server`):

* one **router** (``ml-serve-<endpoint>-router``): :mod:`airflow_ml_provider.serving.router` run
  by ``python3`` of ``router_image``. It listens on ``127.0.0.1:<port>`` and forwards each
  connection to the current model container; its control API on ``127.0.0.1:<admin_port>``
  (default ``port + 1``) switches the upstream and reports open connections per upstream. It
  answers only requests bearing the router's own random token, which the router container gets
  as secret environment and later deploys read back from the container's configuration
  (:mod:`airflow_ml_provider.serving.router_client`).
* one **model** container (``ml-serve-<endpoint>-v<version>-<6 hex>``, two during a deploy):
  ``mlflow models serve -m models:/<name>/<version> --env-manager local`` on a free port of its
  own (with host networking two containers cannot share a port).

A deploy: take the endpoint's lock (:mod:`airflow_ml_provider.serving.lock`: one deploy per
endpoint at a time, whatever DAGs they come from; others wait at most ``lock_timeout`` s), resolve
the version ``alias`` points to (or take ``version``) only then, so a deploy that waited serves
the alias as it is now; if the router's current upstream (a running container) already serves
that model version, do nothing. Otherwise start the new model container (tracking URI and
credentials as *secret* environment, cpu/memory limits from ``resources``), wait until
``GET /ping`` answers 200 (at most ``health_timeout`` s). If it never does, it is removed, the
old one keeps serving and the task fails with its last log lines. Then the router is switched
(or started, the first time), connections still on the old container drain (keep-alive
connections move at their next request; at most ``drain_timeout`` s) and the old container is
removed. Requests in flight during the switch all complete. The lock is released at the end, on failure too.

Crashes: once healthy, model and router containers get Docker's ``unless-stopped`` restart policy;
while a model is down the router's ``GET /health`` answers 503. A deploy replaces the container
the router points to, running or not (its version is ``previous_version``; a dead one is replaced
even when it has the requested version).

Assumptions: the Docker engine is **local to the worker** (``ml_docker_default`` or a
``unix://`` connection): health probes and the router's control API are reached on the worker's
127.0.0.1, and free ports are picked by binding on the worker. The MLflow connection must be an
``http(s)`` tracking server the containers can reach at the same URI (with host networking,
``http://127.0.0.1:<port>`` works). :func:`remove_endpoint` takes an endpoint down. Every Docker
call goes through :class:`~airflow_ml_provider.serving.endpoint_docker.EndpointDocker`.

With ``target_uri`` the version goes to an ``mlflow.deployments`` plugin instead
(:mod:`airflow_ml_provider.operators.mlflow_deploy_target`).

DAG files import this module; it imports neither docker nor mlflow and does no I/O at parse time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import InvalidSpecError, ModelDeployError
from airflow_ml_provider.hooks.container import ContainerJobHook
from airflow_ml_provider.operators.mlflow_common import MlflowOperator, check_name, explain_mlflow_error
from airflow_ml_provider.operators.mlflow_deploy_target import deploy_to_target
from airflow_ml_provider.serving.endpoint_docker import (
    LABEL_ADMIN_PORT,
    LABEL_ENDPOINT,
    LABEL_LOCK_OWNER,
    LABEL_MODEL,
    LABEL_PORT,
    LABEL_ROLE,
    LABEL_ROUTER_CODE,
    LABEL_VERSION,
    LOG_TAIL,
    ROLE_LOCK,
    ROLE_MODEL,
    ROLE_ROUTER,
    EndpointDocker,
    ServiceContainer,
    free_port,
)
from airflow_ml_provider.serving.lock import LOCK_GRACE, endpoint_lock, lock_owner
from airflow_ml_provider.serving.model_server import CA_PATH, await_healthy, mlflow_container_env, model_spec
from airflow_ml_provider.serving.router_client import PROBE_PATH, connect_router, start_router
from airflow_ml_provider.utils.optional_deps import requires_extra
from airflow_ml_provider.utils.resources import ResourceSpec
from airflow_ml_provider.utils.templating import is_templated

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ml_provider.backends.base import JobSpec

__all__ = [
    "CA_PATH",
    "DEFAULT_DOCKER_CONN_ID",
    "DEFAULT_IMAGE",
    "DEFAULT_ROUTER_IMAGE",
    "LABEL_ADMIN_PORT",
    "LABEL_ENDPOINT",
    "LABEL_LOCK_OWNER",
    "LABEL_MODEL",
    "LABEL_PORT",
    "LABEL_ROLE",
    "LABEL_ROUTER_CODE",
    "LABEL_VERSION",
    "LOCK_GRACE",
    "LOG_TAIL",
    "ROLE_LOCK",
    "ROLE_MODEL",
    "ROLE_ROUTER",
    "MlflowDeployModelOperator",
    "ModelDeployError",
    "remove_endpoint",
]

DEFAULT_IMAGE = "airflow-ml-provider/serve:latest"
DEFAULT_ROUTER_IMAGE = "airflow-ml-provider/base:bookworm"
#: The local Docker engine's connection (the hook's own default, not a copy of its id).
DEFAULT_DOCKER_CONN_ID = ContainerJobHook.default_conn_name
_ENDPOINT = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def remove_endpoint(endpoint_name: str, docker_conn_id: str = ContainerJobHook.default_conn_name) -> list[str]:
    """Stop and remove every container of ``endpoint_name`` (router, models, a lock); their names.

    :param endpoint_name: the endpoint to take down.
    :param docker_conn_id: the ``ml_docker`` connection of the engine it runs on.
    """
    docker = EndpointDocker.from_connection(docker_conn_id)
    try:
        containers = docker.containers(endpoint_name)
        for c in containers:
            docker.remove(c)
        return [c.name for c in containers]
    finally:
        docker.close()


class MlflowDeployModelOperator(MlflowOperator):
    """Serve a registered model version behind ``http://127.0.0.1:<port>``, swapping versions blue/green.

    See the module docstring for the containers, the flow and the assumptions.

    Returns (XCom) ``{"endpoint": "http://127.0.0.1:<port>", "name", "version", "container",
    "previous_version", "changed"}``: ``container`` is the serving model container's id,
    ``previous_version`` the version of the container the router pointed to, running or not
    (``None`` on the first deploy), ``changed`` is False when the endpoint already served the
    version (nothing was done).

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
        docker_conn_id: str = ContainerJobHook.default_conn_name,
        target_uri: str | None = None,
        deployment_config: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_name(name, "name")
        check_name(endpoint_name, "endpoint_name")
        check_name(image, "image")
        check_name(router_image, "router_image")
        if not is_templated(endpoint_name) and not _ENDPOINT.match(endpoint_name):
            raise InvalidSpecError(
                f"endpoint_name={endpoint_name!r} must be 1-40 of [a-z0-9-], starting with a letter or digit, "
                "e.g. endpoint_name='pricing'."
            )
        if version is None:
            check_name(alias, "alias")
        elif isinstance(version, int) and not isinstance(version, bool):
            if version < 1:
                raise InvalidSpecError(f"version={version!r} must be a registered version number >= 1.")
        else:
            check_name(version, "version")
        if target_uri is not None:
            check_name(target_uri, "target_uri")
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
        self._starting: tuple[EndpointDocker, ServiceContainer] | None = None

    # --- execute -------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        """Deploy (or keep) the version; see the module docstring."""
        if not _ENDPOINT.match(self.endpoint_name):
            raise InvalidSpecError(f"endpoint_name={self.endpoint_name!r} must be 1-40 of [a-z0-9-].")
        if self.target_uri:
            return deploy_to_target(
                self.hook,
                target_uri=self.target_uri,
                deployment=self.endpoint_name,
                name=self.name,
                version=self._resolve_version(),
                config=self.deployment_config,
                log=self.log,
            )
        docker = EndpointDocker.from_connection(self.docker_conn_id)
        try:
            with endpoint_lock(
                docker,
                self.endpoint_name,
                image=self.router_image,
                owner=lock_owner(context),
                max_deploy_seconds=self.health_timeout + self.drain_timeout,
                timeout=self.lock_timeout,
                log=self.log,
            ):
                return self._deploy(docker, self._resolve_version())
        finally:
            docker.close()

    def on_kill(self) -> None:
        """Remove a model container that was still being started."""
        if self._starting is not None:
            docker, container = self._starting
            try:
                docker.remove(container)
            except Exception as e:  # noqa: BLE001  # the task is being killed: log, never raise
                self.log.warning("Could not remove %s: %s", container.name, e)

    def _resolve_version(self) -> str:
        with requires_extra("mlflow"):
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
                raise explain_mlflow_error(e, f"Resolving {what}") from None
        if mv.status != "READY":
            raise ModelDeployError(f"{what} is version {mv.version} in state {mv.status}, not READY; not deployed.")
        self.log.info("Resolved %s to version %s.", what, mv.version)
        return str(mv.version)

    # --- blue/green ----------------------------------------------------------------------------

    def _deploy(self, docker: EndpointDocker, version: str) -> dict[str, Any]:
        containers = docker.containers(self.endpoint_name)
        models = [c for c in containers if c.role == ROLE_MODEL]
        router = next((c for c in containers if c.role == ROLE_ROUTER), None)
        if router is not None and router.status != "running":
            self.log.warning("Router %s is %s; removing it, a new one is started.", router.name, router.status)
            docker.remove(router)
            router = None
        if router is not None and router.labels.get(LABEL_PORT) != str(self.port):
            raise ModelDeployError(
                f"Endpoint {self.endpoint_name!r} already listens on port {router.labels.get(LABEL_PORT)}, not "
                f"{self.port}; use that port or take the endpoint down first (remove_endpoint)."
            )
        control = None if router is None else connect_router(docker, router, self.endpoint_name, self.admin_port)
        current = None  # the model container the router sends requests to: the one being replaced
        if control is not None:
            upstream = str(control.state()["upstream"])
            current = next((m for m in models if m.labels.get(LABEL_PORT) == upstream), None)
        previous = None if current is None else current.labels.get(LABEL_VERSION)
        if current is not None and current.status != "running":
            self.log.warning(
                "Endpoint %s routes to %s (%s version %s), which is %s (crashed, or stopped by hand); it is replaced.",
                self.endpoint_name, current.name, current.labels.get(LABEL_MODEL), previous, current.status,
            )  # fmt: skip
        elif current is not None and (current.labels.get(LABEL_MODEL), previous) == (self.name, version):
            self.log.info(
                "Endpoint %s already serves %s version %s (%s).", self.endpoint_name, self.name, version, current.name
            )
            self._remove(docker, [m for m in models if m.id != current.id])
            return self._result(version, current.id, version, changed=False)

        spec = self._model_spec(version)
        new_port = int(spec.labels[LABEL_PORT])
        started = docker.start(spec)
        self._starting = (docker, started)
        self.log.info("Started %s for %s version %s on port %s.", started.name, self.name, version, new_port)
        try:
            await_healthy(docker, started, spec, new_port, self.health_timeout)
            docker.keep_running(started)  # only now: a container that never served is not restarted
            if control is None:
                control = start_router(
                    docker,
                    endpoint=self.endpoint_name,
                    image=self.router_image,
                    port=self.port,
                    admin_port=self.admin_port,
                    upstream=new_port,
                    log=self.log,
                    health_path=PROBE_PATH,
                )
            else:
                was = control.switch(new_port)
                self.log.info("Router %s switched from port %s to %s.", control.name, was, new_port)
        except BaseException:
            docker.remove(started)
            self._starting = None
            raise
        self._starting = None
        old = [m for m in models if m.id != started.id]
        ports = [int(m.labels[LABEL_PORT]) for m in old if m.labels.get(LABEL_PORT, "").isdigit()]
        control.wait_drained(ports, self.drain_timeout, self.log)
        self._remove(docker, old)
        self.log.info("Endpoint %s serves %s version %s (was %s).", self.endpoint_name, self.name, version, previous)
        return self._result(version, started.id, previous, changed=True)

    def _result(self, version: str, container: str, previous: str | None, *, changed: bool) -> dict[str, Any]:
        return {
            "endpoint": f"http://127.0.0.1:{self.port}",
            "name": self.name,
            "version": version,
            "container": container,
            "previous_version": previous,
            "changed": changed,
        }

    def _remove(self, docker: EndpointDocker, containers: list[ServiceContainer]) -> None:
        for c in containers:
            self.log.info("Removing %s (version %s).", c.name, c.labels.get(LABEL_VERSION))
            docker.remove(c)

    # --- the model container -------------------------------------------------------------------

    def _model_spec(self, version: str, port: int | None = None) -> JobSpec:
        """The model container's spec for ``version``, on ``port`` (default: a free port)."""
        secret_env, mounts = mlflow_container_env(self.hook.config, self.mlflow_conn_id)
        return model_spec(
            endpoint=self.endpoint_name,
            name=self.name,
            version=version,
            image=self.image,
            port=port or free_port(avoid=(self.port, self.admin_port)),
            workers=self.workers,
            resources=self.model_resources,
            secret_env=secret_env,
            mounts=mounts,
        )
