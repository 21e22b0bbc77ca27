"""Docker Swarm backend: one job is one ``replicated-job`` service with one task.

* ``submit`` creates the service named after the job key: mode ``replicated-job`` (1 replica,
  runs to completion), restart condition ``none`` (a failed job is reported, not restarted
  behind Airflow's back; Airflow's retries decide), ``Resources`` limits *and* reservations
  (so the scheduler only places the task on a node with room), GPUs as generic resources.
  The image is used as given: Swarm's registry digest lookup is skipped (the SDK does not
  resolve images), so locally built images on the nodes work without a registry.
* ``status`` reads the newest task: ``complete`` → succeeded, ``failed`` → failed with the
  task's exit code and error, ``rejected`` (or failed without a container) → failed with no exit
  code and "it never ran" with Swarm's reason, anything before ``running`` → pending.
* ``logs`` / ``follow`` read the service's logs (``json-file`` on the nodes) by timestamp
  cursor; ``follow`` polls, because a service's log stream does not end when its job does.
* ``result`` copies the result file out of the task's container through the engine the backend
  talks to, which must be the engine of the node that ran the task (true on a one-node swarm or
  when the connection points at that node); otherwise :class:`JobResultError` says so.
* ``cancel`` removes the service, then removes its task containers on this engine (Swarm
  leaves exited ones behind for a long time) and waits until they are gone.

Network: VIPs and published ports are not used (they need IPVS). ``network="host"`` attaches
the task to the host network; ``None`` means no network (``none``) like the Docker backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from airflow_ml_provider.backends.base import (
    FAILED,
    GONE,
    PENDING,
    RUNNING,
    SUCCEEDED,
    JobHandle,
    JobSpec,
    JobStatus,
    poll_follow,
)
from airflow_ml_provider.backends.docker_common import (
    DockerApiBackend,
    DockerConfig,
    lines_after,
    parse_timestamp,
    since_for,
    split_timestamped,
)
from airflow_ml_provider.exceptions import BackendError, JobResultError
from airflow_ml_provider.utils.optional_deps import requires_extra

log = logging.getLogger(__name__)

_PENDING_TASK_STATES = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
#: Seconds ``cancel`` waits for a starting task to run before removing its service anyway.
PLACEMENT_WAIT = 30.0
#: Seconds of that a task may stay ``pending`` (no node has room for it: it may never be placed).
UNPLACED_WAIT = 5.0
#: Seconds after removing a service during which its containers are still looked for.
REMOVAL_SETTLE = 1.0


def newest_task(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """The most recently created task (Swarm trims trailing zeros of stamps: compare as numbers)."""

    def created(task: dict[str, Any]) -> int:
        try:
            return parse_timestamp(str(task.get("CreatedAt", "")))
        except ValueError:
            return -1

    return max(tasks, key=created)


def task_status(tasks: list[dict[str, Any]]) -> JobStatus:
    """Map the service's tasks (newest wins) to a :class:`JobStatus`."""
    if not tasks:
        return JobStatus(PENDING, message="no task scheduled yet")
    task = newest_task(tasks)
    status = task.get("Status") or {}
    state = status.get("State", "")
    container = status.get("ContainerStatus") or {}
    exit_code = container.get("ExitCode")
    message = status.get("Err") or status.get("Message") or ""
    if state in _PENDING_TASK_STATES:
        return JobStatus(PENDING, message=message)
    if state == "running":
        return JobStatus(RUNNING)
    if state == "complete":
        return JobStatus(SUCCEEDED, int(exit_code) if exit_code is not None else 0)
    if state == "rejected" or not container.get("ContainerID"):
        # No container was started (an image that cannot be found or pulled, a bad mount, no node
        # with room): the ExitCode Swarm reports is a placeholder 0, not the job's.
        hint = ""
        if "no such image" in message.lower() or "pull access denied" in message.lower():
            hint = "; check the image name and tag, and that every node has the image or can pull it"
        reason = message or "no reason given"
        what = "Swarm rejected its task" if state == "rejected" else f"its Swarm task ended {state} without a container"
        return JobStatus(FAILED, None, False, f"it never ran: {what} ({reason}){hint}")
    code = int(exit_code) if exit_code is not None else None
    return JobStatus(FAILED, code, False, f"task {state}: {message}".strip(": "))


class SwarmBackend(DockerApiBackend):
    """Runs each job as a Swarm ``replicated-job`` service (see the module docstring)."""

    name = "swarm"
    kind = "Swarm service"
    engine = "Swarm"
    place = "the swarm"

    def __init__(self, config: DockerConfig, client: Any = None, poll_interval: float = 1.0) -> None:
        super().__init__(config, client)
        self.poll_interval = poll_interval

    def _service(self, handle: JobHandle) -> Any:
        return self._get(self.client.services, handle.job_id)

    def find(self, key: str) -> JobHandle | None:
        service = self._get(self.client.services, key)
        return self._ours(key, service, None if service is None else service.attrs.get("Spec", {}).get("Labels"))

    def submit(self, spec: JobSpec) -> JobHandle:
        with requires_extra("docker"):
            from docker.types import EndpointSpec, Mount, Resources, RestartPolicy, ServiceMode

        spec.check_env()
        limits = spec.resources.to_swarm()
        generic = limits.pop("generic_resources", None)
        resources = Resources(
            cpu_limit=limits.get("cpu_limit"),
            mem_limit=limits.get("mem_limit"),
            cpu_reservation=limits.get("cpu_limit"),
            mem_reservation=limits.get("mem_limit"),
            generic_resources=generic,
        )
        env = spec.all_env()
        env.setdefault("ML_RESULT_PATH", spec.result_path)
        command = list(spec.command) if spec.command is not None else None
        entrypoint = list(spec.entrypoint) if spec.entrypoint is not None else None
        service = self._create(
            spec,
            lambda: self.client.services.create(
                spec.image,
                command=entrypoint,
                args=command,
                name=spec.key,
                env=[f"{k}={v}" for k, v in env.items()],
                labels=spec.all_labels(),
                container_labels=spec.all_labels(),
                resources=resources,
                restart_policy=RestartPolicy(condition="none"),
                mode=ServiceMode("replicated-job", replicas=1, concurrency=1),
                mounts=[Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts],
                networks=[spec.network] if spec.network and spec.network != "none" else [],
                workdir=spec.working_dir,
                endpoint_spec=EndpointSpec(mode="dnsrr"),
                log_driver="json-file",
            ),
        )
        return JobHandle(self.name, spec.key, service.id, spec.spec_hash, spec.namespace)

    def status(self, handle: JobHandle) -> JobStatus:
        service = self._service(handle)
        if service is None:
            return JobStatus(GONE, message=f"service {handle.key} no longer exists")
        tasks = service.tasks()
        status = task_status(tasks)
        if status.state == FAILED and status.exit_code == 137:
            status = status._replace(oom_killed=self._oom_killed(tasks))
        return status

    def _task_container(self, tasks: list[dict[str, Any]]) -> Any:
        if not tasks:
            return None
        task = newest_task(tasks)
        container_id = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        return self._get(self.client.containers, container_id) if container_id else None

    def _oom_killed(self, tasks: list[dict[str, Any]]) -> bool:
        container = self._task_container(tasks)
        return bool(container is not None and (container.attrs.get("State") or {}).get("OOMKilled"))

    def logs(self, handle: JobHandle, cursor: Any = None) -> tuple[list[str], Any]:
        service = self._service(handle)
        if service is None:
            return [], cursor
        kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": True}
        since = since_for(cursor)
        if since is not None:
            kwargs["since"] = since
        raw = b"".join(service.logs(**kwargs))
        return lines_after(split_timestamped(raw), cursor)

    def follow(self, handle: JobHandle) -> Iterator[str]:
        return poll_follow(self, handle, self.poll_interval)

    def result(self, handle: JobHandle, path: str) -> Any:
        service = self._service(handle)
        if service is None:
            raise JobResultError(f"Service {handle.key} is gone; its result file {path} cannot be read.")
        container = self._task_container(service.tasks())
        if container is None:
            raise JobResultError(
                f"The container of service {handle.key} is not on the Docker engine at {self.config.base_url}; "
                "point the connection at the node that ran it, or write results to shared storage."
            )
        return self._read_result(container, path)

    def cancel(self, handle: JobHandle) -> None:
        with requires_extra("docker"):
            import docker.errors

        self._wait_placed(handle, time.monotonic() + PLACEMENT_WAIT)
        try:
            self.client.api.remove_service(handle.job_id)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            raise BackendError(f"Could not remove Swarm service {handle.key}: {e.explanation or e}") from None
        # Swarm leaves exited task containers of a removed service behind for a long time (seen
        # here: > 40 s), so remove the ones on this engine ourselves; "cancelled" means "gone".
        deadline = time.monotonic() + self.config.stop_timeout + 30
        settled = time.monotonic() + REMOVAL_SETTLE  # a container being created as the service went
        label = f"com.docker.swarm.service.id={handle.job_id}"
        while True:
            left = self.client.containers.list(all=True, filters={"label": label})
            if not left and time.monotonic() > settled:
                return
            for container in left:
                try:
                    container.remove(force=True, v=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as e:
                    log.debug("Removing container %s of %s: %s", container.name, handle.key, e)
            if time.monotonic() > deadline:
                log.warning("Containers of service %s are still present after removal: %s", handle.key, left)
                return
            time.sleep(0.2)

    def _wait_placed(self, handle: JobHandle, deadline: float) -> None:
        """Wait (until ``deadline``) while a task of the service is on its way to a container.

        A service removed while its task is being placed or started can still get its task
        container created by the node, which then runs to completion (seen on a one-node Swarm):
        cancelling right after submitting would leave the job running. Once the task runs (or
        ended), removal and the sweep below reach its container. A task still ``pending`` after
        :data:`UNPLACED_WAIT` s has no node with room and is removed as it is.
        """
        with requires_extra("docker"):
            import docker.errors

        unplaced_until = time.monotonic() + UNPLACED_WAIT
        while time.monotonic() < deadline:
            try:
                tasks = self.client.api.tasks(filters={"service": handle.job_id})
            except docker.errors.APIError:
                return  # the service is gone (or the engine cannot say): nothing more to wait for
            states = {t.get("Status", {}).get("State") for t in tasks}
            if tasks and not states & _PENDING_TASK_STATES:
                return
            # No task yet (the orchestrator has not made it: on a busy manager it still will), or
            # only unplaced ones: wait a little, they are normally placed within milliseconds.
            if states <= {"pending"} and time.monotonic() > unplaced_until:
                return
            time.sleep(0.1)
        log.warning("A task of %s was still starting after %.0f s; removing it anyway.", handle.key, PLACEMENT_WAIT)

    def describe(self, handle: JobHandle) -> str:
        return f"swarm service {handle.key} ({handle.job_id[:12]})"
