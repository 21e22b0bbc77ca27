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

import io
import json
import logging
import tarfile
from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

from airflow_ml_provider.backends.base import (
    FAILED,
    GONE,
    LABEL_KEY,
    LABEL_SPEC,
    PENDING,
    RUNNING,
    SUCCEEDED,
    BackendError,
    ContainerBackend,
    JobExistsError,
    JobHandle,
    JobResultError,
    JobSpec,
    JobStatus,
)

log = logging.getLogger(__name__)

#: A result file larger than this is refused (XCom is for small JSON documents, not data).
MAX_RESULT_BYTES = 1024 * 1024


class DockerConfig(NamedTuple):
    """How to reach a Docker engine.

    :param base_url: ``unix:///var/run/docker.sock`` or ``tcp://host:2376``.
    :param tls_ca: CA certificate path for a TLS engine (``tcp://``), or ``None``.
    :param tls_cert: client certificate path, or ``None``.
    :param tls_key: client key path, or ``None``.
    :param tls_verify: verify the engine's certificate (default True when TLS is used).
    :param timeout: seconds per API call.
    :param stop_timeout: seconds between SIGTERM and SIGKILL when a job is cancelled.
    :param pull: ``"missing"`` (pull only an absent image), ``"always"`` or ``"never"``.
    """

    base_url: str = "unix:///var/run/docker.sock"
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_verify: bool = True
    timeout: float = 60.0
    stop_timeout: int = 10
    pull: str = "missing"


def make_client(config: DockerConfig) -> Any:
    """A ``docker.DockerClient`` for ``config`` (TLS when any TLS field is set)."""
    import docker

    tls: Any = False
    if config.tls_ca or config.tls_cert:
        client_cert = (config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
        tls = docker.tls.TLSConfig(client_cert=client_cert, ca_cert=config.tls_ca, verify=config.tls_verify)
    return docker.DockerClient(base_url=config.base_url, tls=tls, timeout=int(config.timeout), version="auto")


def parse_timestamp(stamp: str) -> int:
    """Docker's RFC 3339 timestamp with up to nanoseconds -> integer nanoseconds since the epoch."""
    main, _, frac = stamp.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(main + "+00:00").timestamp())
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9])


def split_timestamped(raw: bytes) -> list[tuple[int, str]]:
    """Split Docker's ``timestamps=True`` output into ``(unix_ns, line)`` pairs."""
    out = []
    for chunk in raw.decode("utf-8", errors="replace").splitlines():
        stamp, _, line = chunk.partition(" ")
        try:
            out.append((parse_timestamp(stamp), line))
        except ValueError:  # a continuation without a timestamp; keep it with the previous stamp
            out.append((out[-1][0] if out else 0, chunk))
    return out


#: How far behind the newest line a log cursor's watermark stays (see :func:`lines_after`).
WATERMARK_LAG_NS = 1_000_000_000


def lines_after(entries: list[tuple[int, str]], cursor: Any) -> tuple[list[str], list[int]]:
    """The lines not yet seen and the next cursor ``[watermark_ns, k]``.

    ``entries`` is what Docker returned for ``since`` at or before the watermark, in file order.
    Docker stamps stdout and stderr separately, so file order is not quite timestamp order
    (lines a few ms apart can be swapped). The cursor therefore does not remember "the last
    stamp" but a watermark one second behind the newest line and how many lines at or after it
    were already returned: the lines with a stamp at or after the watermark, in file order,
    only ever grow at the end, so skipping the first ``k`` of them never skips a new line.
    """
    watermark, k = (int(cursor[0]), int(cursor[1])) if cursor else (-1, 0)
    eligible = [(ns, line) for ns, line in entries if ns >= watermark]
    lines = [line for _, line in eligible[k:]]
    if not eligible:
        return lines, [watermark, k]
    new_watermark = max(watermark, max(ns for ns, _ in eligible) - WATERMARK_LAG_NS)
    return lines, [new_watermark, sum(1 for ns, _ in eligible if ns >= new_watermark)]


def since_for(cursor: Any) -> float | None:
    """Docker's ``since`` (seconds) for a cursor: a millisecond before its watermark, or None."""
    if not cursor or int(cursor[0]) <= 0:
        return None
    return max((int(cursor[0]) - 1_000_000) / 1e9, 0.000001)


def iter_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Re-split a byte stream (chunks cut anywhere) into text lines."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", errors="replace").rstrip("\r")
    if buffer:
        yield buffer.decode("utf-8", errors="replace").rstrip("\r")


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (for streaming tar reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def read_result_archive(stream: Iterator[bytes], path: str) -> Any:
    """Parse the JSON file of a ``get_archive`` tar stream, refusing directories and large files.

    The archive is read as a stream: a too-large file is refused from its header, unread.
    """
    with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(stream)), mode="r|") as tar:
        member = tar.next()
        if member is None or not member.isfile():
            raise JobResultError(f"The job's result path {path} is not a regular file; write a JSON file there.")
        if member.size > MAX_RESULT_BYTES:
            raise JobResultError(
                f"The job's result file {path} is {member.size} bytes (limit {MAX_RESULT_BYTES}); "
                "write large outputs to storage and return their URI instead."
            )
        handle = tar.extractfile(member)
        assert handle is not None
        text = handle.read().decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError as e:
        raise JobResultError(
            f"The job's result file {path} is not valid JSON ({e}); first bytes: {text[:80]!r}"
        ) from None


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
    from docker.types import DeviceRequest

    return [
        DeviceRequest(driver=r.get("Driver", ""), count=r.get("Count", 0), capabilities=r.get("Capabilities", []))
        for r in raw
    ]


class DockerApiBackend(ContainerBackend):
    """What the Docker and Swarm backends share: the SDK client and finding our objects by name."""

    #: what the scheduler calls one job, for messages ("container", "Swarm service")
    kind = "container"

    def __init__(self, config: DockerConfig, client: Any = None) -> None:
        self.config = config
        self._client_obj = client

    @property
    def client(self) -> Any:
        """The docker SDK client, created on first use."""
        if self._client_obj is None:
            self._client_obj = make_client(self.config)
        return self._client_obj

    def _get(self, collection: Any, ident: str) -> Any:
        """``collection.get(ident)``, or None if the engine does not know it."""
        import docker.errors

        try:
            return collection.get(ident)
        except docker.errors.NotFound:
            return None

    def _ours(self, key: str, obj: Any, labels: dict[str, str] | None) -> JobHandle | None:
        """The handle of ``obj`` found under ``key``; refuse an object of that name we did not start."""
        if obj is None:
            return None
        labels = labels or {}
        if labels.get(LABEL_KEY) != key:
            raise BackendError(
                f"A {self.kind} named {key} exists but was not started by airflow-ml-provider; rename or remove it."
            )
        return JobHandle(self.name, key, obj.id, labels.get(LABEL_SPEC, ""))

    def close(self) -> None:
        if self._client_obj is not None:
            self._client_obj.close()
            self._client_obj = None


class DockerBackend(DockerApiBackend):
    """Runs each job as one container on a Docker engine (see the module docstring)."""

    name = "docker"

    def _container(self, handle: JobHandle) -> Any:
        return self._get(self.client.containers, handle.job_id)

    def find(self, key: str) -> JobHandle | None:
        container = self._get(self.client.containers, key)
        return self._ours(key, container, None if container is None else container.labels)

    def _ensure_image(self, image: str) -> None:
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
        import docker.errors

        try:
            self.client.images.pull(image)
        except docker.errors.APIError as e:
            raise BackendError(
                f"Image {image} is not on the Docker host and could not be pulled: {e.explanation or e}. "
                "Build or load it on the host, or fix the image name."
            ) from None

    def submit(self, spec: JobSpec) -> JobHandle:
        import docker.errors

        spec.check_env()
        self._ensure_image(spec.image)
        kwargs: dict[str, Any] = spec.resources.to_docker()
        if "device_requests" in kwargs:
            kwargs["device_requests"] = docker_device_requests(kwargs["device_requests"])
        env = spec.all_env()
        env.setdefault("ML_RESULT_PATH", spec.result_path)
        try:
            container = self.client.containers.create(
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
            )
        except docker.errors.APIError as e:
            if e.status_code == 409:
                raise JobExistsError(f"A container named {spec.key} already exists on the Docker host.") from None
            raise BackendError(
                spec.redact(f"Docker refused to create container {spec.key}: {e.explanation or e}")
            ) from None
        try:
            container.start()
        except docker.errors.APIError as e:
            explanation = spec.redact(str(e.explanation or e))
            self._remove(container.id)
            hint = ""
            if spec.resources.gpus and ("device driver" in explanation or "gpu" in explanation.lower()):
                hint = f" The job asked for gpus={spec.resources.gpus}; this Docker host has no GPU runtime."
            raise BackendError(f"Docker could not start container {spec.key}: {explanation}.{hint}") from None
        return JobHandle(self.name, spec.key, container.id, spec.spec_hash)

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
        import docker.errors

        container = self._container(handle)
        if container is None:
            raise JobResultError(f"Container {handle.key} is gone; its result file {path} cannot be read.")
        try:
            stream, _ = container.get_archive(path)
        except docker.errors.NotFound:
            return None
        return read_result_archive(stream, path)

    def _remove(self, container_id: str) -> None:
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
