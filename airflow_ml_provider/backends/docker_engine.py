"""Docker engine backend: one job is one container on one Docker host.

* ``submit`` creates the container named after the job key with the ``json-file`` log driver
  (so every line is kept until the container is removed, whoever reads it and when), a hard CPU
  cap (``nano_cpus``), ``mem_limit`` and GPU ``device_requests``, then starts it. It never uses
  ``auto_remove``: the container stays until :meth:`DockerBackend.cancel` removes it, after its
  logs, exit code, OOM flag and result file were read.
* ``follow`` streams the container's output from its first line (Docker keeps it, so a line
  written before we attached is not lost) and ends when the container's output closes.
* ``logs`` reads the lines after a cursor ``[unix_ns, n]`` (the last line's timestamp and how
  many lines carried it), using Docker's ``since`` with nanosecond timestamps.
* ``result`` copies the result file out of the (stopped) container with ``get_archive``.
* ``cancel`` stops (SIGTERM, then SIGKILL after ``stop_timeout``) and removes the container and
  its anonymous volumes; missing containers are fine.

The docker SDK is imported inside methods only.
"""

from __future__ import annotations

import logging
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
)
from airflow_ml_provider.backends.docker_common import (
    MAX_RESULT_BYTES,
    WATERMARK_LAG_NS,
    DockerApiBackend,
    DockerConfig,
    iter_lines,
    lines_after,
    make_client,
    parse_timestamp,
    read_result_archive,
    since_for,
    split_timestamped,
)
from airflow_ml_provider.exceptions import BackendError, JobResultError
from airflow_ml_provider.utils.optional_deps import requires_extra

# Re-exported: these lived here before the shared module existed and callers import them from here.
__all__ = [
    "MAX_RESULT_BYTES",
    "WATERMARK_LAG_NS",
    "DockerBackend",
    "DockerConfig",
    "docker_device_requests",
    "docker_state",
    "iter_lines",
    "lines_after",
    "make_client",
    "parse_timestamp",
    "read_result_archive",
    "since_for",
    "split_timestamped",
]

log = logging.getLogger(__name__)


def docker_state(attrs: dict[str, Any]) -> JobStatus:
    """Map ``docker inspect``'s State to a :class:`JobStatus`."""
    state = attrs.get("State") or {}
    status = state.get("Status", "")
    exit_code = state.get("ExitCode")
    oom = bool(state.get("OOMKilled"))
    message = state.get("Error") or ""
    if status == "created":
        return JobStatus(PENDING, message=message)
    if status in ("running", "paused", "restarting", "removing"):
        return JobStatus(RUNNING)
    if status in ("exited", "dead"):
        code = int(exit_code) if exit_code is not None else None
        return JobStatus(SUCCEEDED if code == 0 and not oom else FAILED, code, oom, message)
    return JobStatus(PENDING, message=f"unknown container status {status!r}")


def docker_device_requests(raw: list[dict[str, Any]]) -> list[Any]:
    """Turn the Docker-API-shaped GPU requests of ``ResourceSpec.to_docker`` into SDK objects."""
    with requires_extra("docker"):
        from docker.types import DeviceRequest

    return [
        DeviceRequest(driver=r.get("Driver", ""), count=r.get("Count", 0), capabilities=r.get("Capabilities", []))
        for r in raw
    ]


class DockerBackend(DockerApiBackend):
    """Runs each job as one container on a Docker engine (see the module docstring)."""

    name = "docker"

    def _container(self, handle: JobHandle) -> Any:
        return self._get(self.client.containers, handle.job_id)

    def find(self, key: str) -> JobHandle | None:
        container = self._get(self.client.containers, key)
        return self._ours(key, container, None if container is None else container.labels)

    def _ensure_image(self, image: str) -> None:
        with requires_extra("docker"):
            import docker.errors

        policy = self.config.pull
        if policy == "always":
            self._pull(image)
            return
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            if policy == "never":
                raise BackendError(
                    f"Image {image} is not on the Docker host and pull='never'; build or load it first."
                ) from None
            self._pull(image)

    def _pull(self, image: str) -> None:
        with requires_extra("docker"):
            import docker.errors

        try:
            self.client.images.pull(image)
        except docker.errors.APIError as e:
            raise BackendError(
                f"Image {image} is not on the Docker host and could not be pulled: {e.explanation or e}. "
                "Build or load it on the host, or fix the image name."
            ) from None

    def submit(self, spec: JobSpec) -> JobHandle:
        with requires_extra("docker"):
            import docker.errors

        spec.check_env()
        self._ensure_image(spec.image)
        kwargs: dict[str, Any] = spec.resources.to_docker()
        if "device_requests" in kwargs:
            kwargs["device_requests"] = docker_device_requests(kwargs["device_requests"])
        env = spec.all_env()
        env.setdefault("ML_RESULT_PATH", spec.result_path)
        container = self._create(
            spec,
            lambda: self.client.containers.create(
                spec.image,
                command=list(spec.command) if spec.command is not None else None,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                name=spec.key,
                environment=env,
                labels=spec.all_labels(),
                working_dir=spec.working_dir,
                network_mode=spec.network or "none",
                volumes={m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts},
                log_config={"Type": "json-file", "Config": {}},
                init=True,
                detach=True,
                **kwargs,
            ),
        )
        try:
            container.start()
        except docker.errors.APIError as e:
            explanation = spec.redact(str(e.explanation or e))
            self._remove(container.id)
            hint = ""
            if spec.resources.gpus and ("device driver" in explanation or "gpu" in explanation.lower()):
                hint = f" The job asked for gpus={spec.resources.gpus}; this Docker host has no GPU runtime."
            raise BackendError(f"Docker could not start container {spec.key}: {explanation}.{hint}") from None
        return JobHandle(self.name, spec.key, container.id, spec.spec_hash, spec.namespace)

    def status(self, handle: JobHandle) -> JobStatus:
        container = self._container(handle)
        if container is None:
            return JobStatus(GONE, message=f"container {handle.key} no longer exists")
        return docker_state(container.attrs)

    def logs(self, handle: JobHandle, cursor: Any = None) -> tuple[list[str], Any]:
        container = self._container(handle)
        if container is None:
            return [], cursor
        raw = container.logs(stdout=True, stderr=True, timestamps=True, since=since_for(cursor))
        return lines_after(split_timestamped(raw), cursor)

    def follow(self, handle: JobHandle) -> Iterator[str]:
        container = self._container(handle)
        if container is None:
            return iter(())
        return iter_lines(container.logs(stdout=True, stderr=True, stream=True, follow=True))

    def result(self, handle: JobHandle, path: str) -> Any:
        container = self._container(handle)
        if container is None:
            raise JobResultError(f"Container {handle.key} is gone; its result file {path} cannot be read.")
        return self._read_result(container, path)

    def _remove(self, container_id: str) -> None:
        with requires_extra("docker"):
            import docker.errors

        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code == 409 and "already in progress" in str(e.explanation):
                return
            raise

    def cancel(self, handle: JobHandle) -> None:
        with requires_extra("docker"):
            import docker.errors

        try:
            self.client.api.stop(handle.job_id, timeout=self.config.stop_timeout)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:  # stopping an exited container is not an error
            log.warning("Stopping container %s: %s", handle.key, e.explanation or e)
        try:
            self._remove(handle.job_id)
        except docker.errors.APIError as e:
            raise BackendError(f"Could not remove container {handle.key}: {e.explanation or e}") from None

    def describe(self, handle: JobHandle) -> str:
        return f"docker container {handle.key} ({handle.job_id[:12]})"
