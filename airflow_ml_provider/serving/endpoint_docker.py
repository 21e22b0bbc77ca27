"""The Docker calls a model endpoint needs: its long-running containers on the worker's local engine.

Why this is not the :class:`~airflow_ml_provider.backends.base.ContainerBackend` contract: that
contract is for *run-to-completion jobs* (submit, poll until finished, read logs and a result
file, remove), and Swarm and Metronome implement it too. An endpoint's containers are
*long-running services* with host networking and ports of their own, that the next deploy (in
another task, another DAG) must find again by label, read back (a router's control token, a
lock's age) and replace; and the deploy lock is a container that is created and never started.
None of that belongs in a job contract, so it lives here, in one small class that
:mod:`~airflow_ml_provider.operators.mlflow_deploy` and the serving modules use and that nothing
else reaches past.

* Starting a container goes through :meth:`DockerBackend.submit
  <airflow_ml_provider.backends.docker_engine.DockerBackend.submit>` (the public job contract),
  so the image pull policy, resource limits, secret environment and error messages are the
  jobs' own: one copy. Its status, logs and graceful removal go through the same contract.
* Listing an endpoint's containers, reading a container's environment and creation time, and
  the create-never-start lock container use the docker SDK directly, through the one client
  built from the ``ml_docker`` connection (``ContainerJobHook`` -> ``DockerConfig`` ->
  ``make_client``), shared with that backend.

Every container of an endpoint carries the label :data:`LABEL_ENDPOINT` ``=<endpoint>`` and a
:data:`LABEL_ROLE`. The docker SDK is imported inside methods only.

Restarts: a model or router container gets Docker's restart policy :data:`RESTART_POLICY`
(:meth:`EndpointDocker.keep_running`) once it serves, i.e. once it answered its health probe: it
then comes back after a crash (an OOM kill, say; with Docker's backoff) and after a dockerd
restart, while a stop (the deploy's own removal, or ``docker stop`` by hand) ends it. Not at
start: a container that fails while it starts (a model that does not load) would be restarted
over and over, look ``running`` to the health wait, and fail the deploy only at its timeout,
without its exit code. Job containers (the backends) and the lock never get a restart policy.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from airflow_ml_provider.exceptions import BackendError, InvalidSpecError, ModelDeployError
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    from airflow_ml_provider.backends.base import JobHandle, JobSpec, JobStatus
    from airflow_ml_provider.backends.docker_engine import DockerBackend, DockerConfig

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
#: Log lines of a failed container quoted in a task's error.
LOG_TAIL = 30
#: Docker's restart policy of a serving model or router container (see the module docstring).
RESTART_POLICY = "unless-stopped"


class Log(Protocol):
    """Where the serving modules log: a task's ``self.log`` or a ``logging.Logger``."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...
    def warning(self, msg: Any, /, *args: Any) -> Any: ...
    def error(self, msg: Any, /, *args: Any) -> Any: ...


class ServiceContainer(NamedTuple):
    """One container of an endpoint, as read from the engine.

    :param id: the container id.
    :param name: the container name.
    :param status: Docker's status word (``created``, ``running``, ``exited``, ...).
    :param labels: its labels (:data:`LABEL_ROLE`, :data:`LABEL_PORT`, ...).
    :param created_ns: when it was created, in nanoseconds since the epoch.
    """

    id: str
    name: str
    status: str
    labels: dict[str, str]
    created_ns: int

    @property
    def role(self) -> str:
        """Its :data:`LABEL_ROLE` (``router``, ``model``, ``deploy-lock``), or ``""``."""
        return self.labels.get(LABEL_ROLE, "")


def free_port(avoid: Sequence[int] = ()) -> int:
    """A port nothing listens on now, on the worker's 127.0.0.1 (= the Docker host's: the engine is local).

    :param avoid: ports not to return (the endpoint's own, which may be free between deploys).
    """
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port
    raise ModelDeployError("Could not find a free port on 127.0.0.1.")


class EndpointDocker:
    """The local Docker engine, as a model endpoint uses it (see the module docstring).

    :param config: how to reach the engine (from an ``ml_docker`` connection).
    """

    def __init__(self, config: DockerConfig) -> None:
        from airflow_ml_provider.backends.docker_engine import DockerBackend, make_client

        self.config = config
        self._client = make_client(config)
        self._jobs: DockerBackend = DockerBackend(config, client=self._client)

    @classmethod
    def from_connection(cls, conn_id: str) -> EndpointDocker:
        """The engine of the ``ml_docker`` connection ``conn_id`` (the default means the local engine).

        :param conn_id: an ``ml_docker`` connection; Swarm and Metronome connections are refused.
        """
        from airflow_ml_provider.hooks.container import ContainerJobHook, docker_config_from_connection

        conn = ContainerJobHook(conn_id).get_conn()
        if conn.conn_type != "ml_docker":
            raise InvalidSpecError(
                f"docker_conn_id={conn_id!r} is a {conn.conn_type} connection; model endpoints need an ml_docker "
                "connection to the worker's local Docker engine."
            )
        return cls(docker_config_from_connection(conn))

    def close(self) -> None:
        """Close the engine connection."""
        self._jobs.close()

    # --- reading ---------------------------------------------------------------------------------

    def missing_images(self, images: Sequence[str]) -> list[str]:
        """Those of ``images`` the engine does not have (it is pinged first: an unreachable engine raises).

        :param images: image references, e.g. ``airflow-ml-provider/serve:latest``.
        """
        with requires_extra("docker"):
            import docker.errors

        self._client.ping()
        missing = []
        for image in dict.fromkeys(images):
            try:
                self._client.images.get(image)
            except docker.errors.ImageNotFound:
                missing.append(image)
        return missing

    @staticmethod
    def _describe(container: Any) -> ServiceContainer:
        from airflow_ml_provider.backends.docker_engine import parse_timestamp

        created = str(container.attrs.get("Created") or "")
        return ServiceContainer(
            id=container.id,
            name=container.name,
            status=container.status,
            labels=dict(container.labels or {}),
            created_ns=parse_timestamp(created) if created else 0,
        )

    def containers(self, endpoint: str) -> list[ServiceContainer]:
        """Every container of ``endpoint`` (any role, any state).

        :param endpoint: the endpoint's name.
        """
        found = self._client.containers.list(all=True, filters={"label": f"{LABEL_ENDPOINT}={endpoint}"})
        return [self._describe(c) for c in found]

    def get(self, ident: str) -> ServiceContainer | None:
        """The container with this name or id, or None when the engine has none.

        :param ident: a container name or id.
        """
        with requires_extra("docker"):
            import docker.errors

        try:
            return self._describe(self._client.containers.get(ident))
        except docker.errors.NotFound:
            return None

    def env_var(self, container: ServiceContainer, name: str) -> str | None:
        """The value of environment variable ``name`` in ``container``'s configuration, or None.

        :param container: the container.
        :param name: the variable's name.
        """
        with requires_extra("docker"):
            import docker.errors

        try:
            attrs = self._client.containers.get(container.id).attrs
        except docker.errors.NotFound:
            return None
        for entry in (attrs.get("Config") or {}).get("Env") or []:
            key, _, value = str(entry).partition("=")
            if key == name:
                return value
        return None

    # --- running services (through the job contract) --------------------------------------------

    @staticmethod
    def _handle(container: ServiceContainer) -> JobHandle:
        from airflow_ml_provider.backends.base import LABEL_SPEC, JobHandle

        return JobHandle("docker", container.name, container.id, container.labels.get(LABEL_SPEC, ""))

    def start(self, spec: JobSpec) -> ServiceContainer:
        """Create and start a container for ``spec`` (``spec.key`` is its name); BackendError if refused.

        :param spec: the container's image, command, environment, labels, network and limits.
        """
        handle = self._jobs.submit(spec)
        started = self.get(handle.job_id)
        if started is None:
            raise BackendError(f"Container {spec.key} disappeared right after it was started.")
        return started

    def keep_running(self, container: ServiceContainer) -> None:
        """Give ``container``, which now serves, the restart policy :data:`RESTART_POLICY`; BackendError if refused.

        :param container: a model or router container that answered its health probe.
        """
        with requires_extra("docker"):
            import docker.errors

        try:
            self._client.api.update_container(container.id, restart_policy={"Name": RESTART_POLICY})
        except docker.errors.APIError as e:
            raise BackendError(
                f"Docker refused the restart policy {RESTART_POLICY!r} for container {container.name}: "
                f"{e.explanation or e}"
            ) from None

    def status(self, container: ServiceContainer) -> JobStatus:
        """Whether ``container`` still runs, or how it ended (``finished``, ``exit_code``, ``oom_killed``).

        :param container: the container.
        """
        return self._jobs.status(self._handle(container))

    def log_tail(self, container: ServiceContainer, lines: int) -> list[str]:
        """The last ``lines`` lines of ``container``'s output (stdout and stderr).

        :param container: the container.
        :param lines: how many lines at most.
        """
        out, _ = self._jobs.logs(self._handle(container))
        return out[-lines:]

    def remove(self, container: ServiceContainer) -> None:
        """Stop ``container`` (SIGTERM, then SIGKILL after the connection's ``stop_timeout``) and remove it.

        :param container: the container; one that is already gone is fine.
        """
        self._jobs.cancel(self._handle(container))

    # --- never-started containers (the deploy lock) ---------------------------------------------

    def create_unstarted(self, name: str, image: str, labels: dict[str, str]) -> ServiceContainer | None:
        """Create (never start) a container named ``name``; None when that name is taken.

        The engine refuses a second container of one name, so this is an atomic test-and-set.

        :param name: the container's name.
        :param image: any image on the host (nothing runs).
        :param labels: its labels.
        """
        with requires_extra("docker"):
            import docker.errors

        try:
            created = self._client.containers.create(
                image, command=["true"], name=name, network_mode="none", labels=labels
            )
        except docker.errors.APIError as e:
            if e.status_code == 409:  # name in use
                return None
            raise BackendError(
                f"Docker refused to create container {name} (image {image}): {e.explanation or e}"
            ) from None
        return self._describe(created)

    def discard(self, container: ServiceContainer) -> bool:
        """Remove ``container`` at once, by id (a container created since under its name stays).

        :param container: the container.
        :returns: False when it was already gone.
        """
        with requires_extra("docker"):
            import docker.errors

        try:
            self._client.api.remove_container(container.id, force=True, v=True)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as e:
            raise BackendError(f"Could not remove container {container.name}: {e.explanation or e}") from None
        return True
