"""What the Docker engine and Swarm backends share: the engine connection, log cursors, results.

* :class:`DockerConfig` and :func:`make_client`: how to reach an engine (TLS for every ``tcp://``
  engine unless the connection says ``tls=false``, with a CA or the system CAs, a client
  certificate, verification on unless configured off; an unreachable engine is one line naming it).
* Log lines by cursor: Docker's ``timestamps=True`` output is split into ``(unix_ns, line)``
  pairs (:func:`split_timestamped`), read after a cursor (:func:`lines_after`, :func:`since_for`)
  and re-split from a byte stream (:func:`iter_lines`). The docker SDK returns raw bytes and
  has no cursor of its own, hence these helpers.
* :func:`read_result_archive`: the job's JSON result from a ``get_archive`` tar stream, read as a
  stream so a too-large file is refused from its header.
* :class:`DockerApiBackend`: the SDK client created on first use, finding our objects by name,
  and the one handling of "the engine refused to create the job" (409 = the key exists).

The docker SDK is imported inside functions only.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, NamedTuple

from airflow_ml_provider.backends.base import (
    LABEL_KEY,
    LABEL_NAMESPACE,
    LABEL_SPEC,
    ContainerBackend,
    JobHandle,
    JobSpec,
)
from airflow_ml_provider.exceptions import BackendError, JobExistsError, JobResultError
from airflow_ml_provider.utils.optional_deps import requires_extra

#: A result file larger than this is refused (XCom is for small JSON documents, not data).
MAX_RESULT_BYTES = 1024 * 1024
#: How far behind the newest line a log cursor's watermark stays (see :func:`lines_after`).
WATERMARK_LAG_NS = 1_000_000_000


class DockerConfig(NamedTuple):
    """How to reach a Docker engine.

    :param base_url: ``unix:///var/run/docker.sock`` or ``tcp://host:2376``.
    :param tls_ca: CA certificate path for a TLS engine (``tcp://``), or ``None`` (the system CAs).
    :param tls_cert: client certificate path, or ``None``.
    :param tls_key: client key path, or ``None``.
    :param tls_verify: verify the engine's certificate (against ``tls_ca`` when set); default True.
    :param timeout: seconds per API call.
    :param stop_timeout: seconds between SIGTERM and SIGKILL when a job is cancelled.
    :param pull: ``"missing"`` (pull only an absent image), ``"always"`` or ``"never"``.
    :param tls: ``False`` speaks plain HTTP to a ``tcp://`` engine (only ever when asked: anyone on
        the network can then run containers on it); ``None`` (default) means TLS for ``tcp://``
        and ``https://`` engines, plain HTTP for an ``http://`` URL.
    """

    base_url: str = "unix:///var/run/docker.sock"
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_verify: bool = True
    timeout: float = 60.0
    stop_timeout: int = 10
    pull: str = "missing"
    tls: bool | None = None

    def scheme(self) -> str:
        """The URL scheme of ``base_url`` (``tcp`` when it has none, as the SDK reads it)."""
        return self.base_url.partition("://")[0].lower() if "://" in self.base_url else "tcp"

    def uses_tls(self) -> bool:
        """True when the engine is reached over TLS: a ``tcp://`` or ``https://`` engine unless ``tls`` is False.

        A local socket (``unix://``, ``npipe://``) or ``ssh://`` never uses it; an ``http://`` URL
        says plain HTTP itself.
        """
        scheme = self.scheme()
        if scheme in ("unix", "http+unix", "npipe", "ssh"):
            return False
        if self.tls is not None:
            return self.tls
        return scheme != "http"


def docker_tls(config: DockerConfig) -> Any:
    """The ``docker.tls.TLSConfig`` for ``config``, or ``False`` when the engine is not reached over TLS.

    Verification stays on unless ``tls_verify`` is False: against ``tls_ca`` only when it is set
    (the SDK then sets the session's ``verify`` to the CA path), against the system CAs otherwise.
    """
    with requires_extra("docker"):
        import docker

    if not config.uses_tls():
        return False
    client_cert = (config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
    return docker.tls.TLSConfig(client_cert=client_cert, ca_cert=config.tls_ca, verify=bool(config.tls_verify))


def engine_url(config: DockerConfig) -> str:
    """The engine as the client reaches it, for messages (``https://host:2376``, ``unix:///…``)."""
    if config.scheme() == "tcp":
        return ("https" if config.uses_tls() else "http") + config.base_url[len("tcp") :]
    return config.base_url


def unreachable_message(config: DockerConfig, error: BaseException) -> str:
    """One line: which engine could not be reached, the deepest reason, and what to check."""
    reason: BaseException = error
    while reason.__cause__ is not None or reason.__context__ is not None:
        reason = reason.__cause__ or reason.__context__  # type: ignore[assignment]
    text = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    hint = "check that the engine runs there and the connection's host and port"
    if "WRONG_VERSION_NUMBER" in str(error) or "WRONG_VERSION_NUMBER" in text:
        hint = (
            "the engine answers plain HTTP, not TLS: give it a TLS certificate, or set the connection extra "
            "tls=false to send its traffic unencrypted"
        )
    elif "CERTIFICATE_VERIFY_FAILED" in str(error) or "CERTIFICATE_VERIFY_FAILED" in text:
        hint = "its certificate is not trusted: set the connection extra tls_ca to the CA that signed it"
    return f"Could not reach the Docker engine at {engine_url(config)} ({type(reason).__name__}: {text}); {hint}."


def make_client(config: DockerConfig) -> Any:
    """A ``docker.DockerClient`` for ``config`` (TLS as :func:`docker_tls` says).

    The client asks the engine for its API version at once; an engine that cannot be reached is
    a :class:`BackendError` of one line naming it (not the SDK's chained tracebacks).
    """
    with requires_extra("docker"):
        import docker
        import docker.errors
    import requests

    try:
        return docker.DockerClient(
            base_url=config.base_url, tls=docker_tls(config), timeout=int(config.timeout), version="auto"
        )
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise BackendError(unreachable_message(config, e)) from None


# ------------------------------------------------------------------------------------ log lines


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


# ---------------------------------------------------------------------------------- result file


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

    The archive is read as a stream: a too-large file is refused from its header, unread. The
    caller closes ``stream`` (:func:`close_stream`), read to the end or not.
    """
    with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(stream)), mode="r|") as tar:
        member = tar.next()
        if member is None or not member.isfile():
            what = "a directory, not a regular file" if member is not None and member.isdir() else "not a regular file"
            raise JobResultError(f"The job's result path {path} is {what}; write a JSON file there.")
        if member.size > MAX_RESULT_BYTES:
            raise JobResultError(
                f"The job's result file {path} is {member.size} bytes, over the limit of {MAX_RESULT_BYTES} "
                f"bytes ({MAX_RESULT_BYTES // 1024 // 1024} MiB); write large outputs to storage and return "
                "their URI instead."
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


def close_stream(stream: Any) -> None:
    """Close a ``get_archive`` stream we may have stopped reading (a refused or a directory result).

    An unread archive stream keeps its HTTP response open, and the engine keeps the container busy
    while it does: ``stop`` then blocks until the client's read timeout and removal fails, leaving
    the job's container behind. Closing the generator closes its response (and its connection).
    """
    close = getattr(stream, "close", None)
    if callable(close):
        close()


# ------------------------------------------------------------------------------- shared backend


class DockerApiBackend(ContainerBackend):
    """What the Docker and Swarm backends share: the SDK client and finding our objects by name.

    :param config: how to reach the engine.
    :param client: a ready ``docker.DockerClient`` (tests); by default one is made on first use.
    """

    #: what the scheduler calls one job, for messages ("container", "Swarm service")
    kind = "container"
    #: who refuses or answers, for messages ("Docker", "Swarm")
    engine = "Docker"
    #: where the jobs live, for messages ("the Docker host", "the swarm")
    place = "the Docker host"

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
        with requires_extra("docker"):
            import docker.errors

        try:
            return collection.get(ident)
        except docker.errors.NotFound:
            return None

    def _ours(self, key: str, obj: Any, labels: dict[str, str] | None) -> JobHandle | None:
        """The handle of ``obj`` found under ``key`` (with its namespace label); refuse an object of
        that name we did not start."""
        if obj is None:
            return None
        labels = labels or {}
        if labels.get(LABEL_KEY) != key:
            raise BackendError(
                f"A {self.kind} named {key} exists but was not started by airflow-ml-provider; rename or remove it."
            )
        return JobHandle(self.name, key, obj.id, labels.get(LABEL_SPEC, ""), labels.get(LABEL_NAMESPACE, ""))

    def _create(self, spec: JobSpec, create: Callable[[], Any]) -> Any:
        """Run ``create()`` (the SDK call that creates the job's object) and map the engine's refusal.

        409 (the name exists) is :class:`JobExistsError`; anything else is :class:`BackendError`
        with the engine's explanation, scrubbed of the job's secret values.
        """
        with requires_extra("docker"):
            import docker.errors

        try:
            return create()
        except docker.errors.APIError as e:
            if e.status_code == 409:
                raise JobExistsError(f"A {self.kind} named {spec.key} already exists on {self.place}.") from None
            raise BackendError(
                spec.redact(f"{self.engine} refused to create {self.kind} {spec.key}: {e.explanation or e}")
            ) from None

    def _read_result(self, container: Any, path: str) -> Any:
        """The JSON file at ``path`` in ``container``, or ``None`` if the job wrote none."""
        with requires_extra("docker"):
            import docker.errors

        try:
            stream, _ = container.get_archive(path)
        except docker.errors.NotFound:
            return None
        try:
            return read_result_archive(stream, path)
        finally:
            close_stream(stream)

    def close(self) -> None:
        if self._client_obj is not None:
            self._client_obj.close()
            self._client_obj = None
