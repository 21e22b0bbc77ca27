"""The contract every container-job backend (Docker engine, Docker Swarm, DC/OS Metronome) keeps.

A backend turns one :class:`JobSpec` into one remote job and answers questions about it. It never
reads Airflow Connections (its hook builds it from one) and never decides task semantics (the
operator does): it only talks to its scheduler.

Methods (``handle`` is the value returned by :meth:`ContainerBackend.submit` or
:meth:`ContainerBackend.find`; it is JSON-native so it can cross a deferral):

``find(key) -> JobHandle | None``
    The job named ``key`` if the scheduler still has one (running or finished), else ``None``.
    Blocks for one API round trip. Used by a retry to find the previous try's job. The handle
    carries the job's namespace label (``""`` for a job started before namespaces existed), so
    the operator can refuse to touch another installation's job.

``submit(spec) -> JobHandle``
    Create the job named ``spec.key`` and start it. Blocks until the scheduler accepted it, not
    until it runs. If a live job with the same key exists the backend raises
    :class:`JobExistsError` rather than start a twin (the operator calls ``find`` first and
    ``cancel`` on what it will not adopt). Schedulers that keep finished job *definitions*
    (Metronome) update the definition and start a new run.

``status(handle) -> JobStatus``
    One round trip; never blocks on the job. ``JobStatus.state`` is one of :data:`PENDING`,
    :data:`RUNNING`, :data:`SUCCEEDED`, :data:`FAILED` or :data:`GONE` (the scheduler no longer
    knows the job: removed by someone else).

``logs(handle, cursor) -> (lines, cursor)``
    Log lines written since ``cursor`` (``None`` = from the first line) and the cursor to pass
    next time. Never blocks on the job; never loses or repeats a line across calls. Cursors are
    JSON-native. A backend whose scheduler keeps no logs returns ``([], cursor)``.

``follow(handle) -> Iterator[str]``
    Every line from the first one, live, until the job ends. Blocks while the job runs; the
    iterator ends when the job's output is closed. Call it after ``submit`` returned: lines
    written before the call are not lost (the schedulers keep them). A backend without logs
    returns an empty iterator at once, so callers wait on ``status``, not on ``follow``.

``result(handle, path) -> object | None``
    The JSON document the job wrote at ``path`` inside its container, parsed; ``None`` if it
    wrote none. Only valid once the job finished. Raises :class:`JobResultError` if the file is
    not valid JSON (stdout is never parsed for results).

``cancel(handle) -> None``
    Stop the job and remove it and everything it left on the scheduler (containers, services,
    runs). Idempotent: cancelling a finished, removed or unknown job is a no-op. Blocks until the
    scheduler confirmed the stop (bounded by the backend's stop timeout).

``describe(handle) -> str``
    A short human-readable name for logs (``docker container ml-…``).

No method may put a secret environment value (``JobSpec.secret_env``) into a log line, an
exception message or the handle.

Namespaces: two Airflow installations may share one engine, Swarm or Metronome. Each has an
installation namespace (see :class:`~airflow_ml_provider.hooks.container.ContainerJobHook`) that is
part of every job key (:func:`job_key`) and a label on every job (:data:`LABEL_NAMESPACE`), so one
installation never finds, re-attaches to or removes another's jobs.
"""

from __future__ import annotations

import abc
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

# The errors of this contract live in exceptions.py; re-exported here for existing imports.
from airflow_ml_provider.exceptions import BackendError, InvalidSpecError, JobExistsError, JobResultError
from airflow_ml_provider.utils.resources import ResourceSpec

__all__ = [
    "DEFAULT_RESULT_PATH",
    "FAILED",
    "GONE",
    "LABEL_KEY",
    "LABEL_MANAGED",
    "LABEL_NAMESPACE",
    "LABEL_SPEC",
    "NAMESPACE_PATTERN",
    "PENDING",
    "RUNNING",
    "SUCCEEDED",
    "TERMINAL_STATES",
    "BackendError",
    "ContainerBackend",
    "JobExistsError",
    "JobHandle",
    "JobResultError",
    "JobSpec",
    "JobStatus",
    "Mount",
    "is_namespace",
    "job_key",
    "poll_follow",
    "redact",
    "spec_digest",
]

PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
GONE = "gone"
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, GONE})

#: Where a job writes the JSON document that becomes the task's XCom (see :class:`JobSpec`).
DEFAULT_RESULT_PATH = "/airflow/xcom/result.json"

#: Labels every job carries, so operators and cleanup scripts can find them.
LABEL_KEY = "airflow-ml-provider.job-key"
LABEL_SPEC = "airflow-ml-provider.spec-hash"
LABEL_MANAGED = "airflow-ml-provider.managed"
#: The installation namespace of the Airflow that started the job (see :func:`job_key`).
LABEL_NAMESPACE = "airflow-ml-provider.namespace"

#: An installation namespace: 1-20 characters of ``a-z``, ``0-9`` and ``-``, starting with a letter or digit.
NAMESPACE_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,19}")


class Mount(NamedTuple):
    """A host directory (or Docker volume) made visible inside the job.

    :param source: absolute host path (Docker/Swarm bind mount) or a named volume.
    :param target: absolute path inside the container.
    :param read_only: mount read-only.
    """

    source: str
    target: str
    read_only: bool = False


class JobSpec(NamedTuple):
    """Everything a backend needs to run one job.

    :param key: the job's unique name on the scheduler (see :func:`job_key`).
    :param image: container image reference.
    :param command: arguments (appended to the entrypoint), or ``None`` for the image's default.
    :param entrypoint: overrides the image's entrypoint, or ``None``.
    :param env: plain environment variables (may appear in logs and the rendered template).
    :param secret_env: secret environment variables, resolved at execute time; never logged.
    :param resources: validated cpu/memory/gpu/disk limits.
    :param mounts: bind mounts.
    :param network: ``"host"``, ``"none"`` or a network name; ``None`` lets the backend choose.
    :param labels: extra labels/tags on the job.
    :param working_dir: working directory inside the container.
    :param result_path: where the job may write its JSON result.
    :param spec_hash: a digest of the non-secret parts, so a retry can tell "same job" from
        "the DAG changed in between" (see :func:`spec_digest`).
    :param namespace: the installation namespace of the Airflow that runs the job (part of
        ``key``; a label on the job); ``""`` = none.
    """

    key: str
    image: str
    command: Sequence[str] | None = None
    entrypoint: Sequence[str] | None = None
    env: Mapping[str, str] = {}
    secret_env: Mapping[str, str] = {}
    resources: ResourceSpec = ResourceSpec()
    mounts: Sequence[Mount] = ()
    network: str | None = None
    labels: Mapping[str, str] = {}
    working_dir: str | None = None
    result_path: str = DEFAULT_RESULT_PATH
    spec_hash: str = ""
    namespace: str = ""

    def all_labels(self) -> dict[str, str]:
        """User labels plus the ones the provider uses to find its jobs again (and whose they are)."""
        labels = dict(self.labels)
        labels.update({LABEL_MANAGED: "true", LABEL_KEY: self.key, LABEL_SPEC: self.spec_hash})
        if self.namespace:
            labels[LABEL_NAMESPACE] = self.namespace
        return labels

    def check_env(self) -> None:
        """Refuse names and values no process environment can hold (before the scheduler echoes them).

        Errors name the variable, never the value.
        """
        for kind, env in (("env", self.env), ("secret_env", self.secret_env)):
            for name, value in env.items():
                if not name or "=" in name or "\x00" in name:
                    raise InvalidSpecError(f"{kind} name {name!r} is not a valid environment variable name.")
                if "\x00" in str(value):
                    raise InvalidSpecError(f"{kind}[{name!r}] contains a NUL byte, which no environment can hold.")

    def redact(self, text: str) -> str:
        """``text`` with every secret value (and its escaped forms) replaced by ``***``."""
        return redact(text, self.secret_env.values())

    def all_env(self) -> dict[str, str]:
        """Plain and secret environment together, as the container sees it."""
        env = {k: str(v) for k, v in self.env.items()}
        env.update({k: str(v) for k, v in self.secret_env.items()})
        return env


def redact(text: str, secrets: Iterable[Any]) -> str:
    """``text`` with every secret (and its ``repr``/``unicode_escape`` forms) replaced by ``***``.

    Longer secrets go first, so a secret containing another is replaced whole. Used on log lines,
    failure messages and trigger events, which may leave the process that knows the secrets.
    """
    for value in sorted({str(v) for v in secrets if v}, key=len, reverse=True):
        for form in {value, repr(value)[1:-1], value.encode("unicode_escape").decode("ascii")}:
            if form:
                text = text.replace(form, "***")
    return text


class JobHandle(NamedTuple):
    """How to find a submitted job again; JSON-native via :meth:`to_dict` / :meth:`from_dict`.

    :param backend: the backend's name (``docker``, ``swarm``, ``metronome``).
    :param key: the job key.
    :param job_id: the scheduler's id (container id, service id, ``jobId/runId``).
    :param spec_hash: the spec digest the job was started with.
    :param namespace: the job's namespace label (the installation that started it); ``""`` when
        it has none (started by a release without namespaces).
    """

    backend: str
    key: str
    job_id: str
    spec_hash: str = ""
    namespace: str = ""

    def to_dict(self) -> dict[str, str]:
        """A JSON-native dict for XCom and trigger kwargs."""
        return dict(self._asdict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobHandle:
        """Inverse of :meth:`to_dict`; also reads handles stored before ``namespace`` existed."""
        return cls(
            str(data["backend"]),
            str(data["key"]),
            str(data["job_id"]),
            str(data.get("spec_hash") or ""),
            str(data.get("namespace") or ""),
        )


class JobStatus(NamedTuple):
    """A job's state as the scheduler reports it.

    :param state: one of PENDING, RUNNING, SUCCEEDED, FAILED, GONE.
    :param exit_code: the main process's exit code, once known.
    :param oom_killed: the kernel killed the job for exceeding its memory limit.
    :param message: the scheduler's own words about why it ended (or is stuck).
    """

    state: str
    exit_code: int | None = None
    oom_killed: bool = False
    message: str = ""

    @property
    def finished(self) -> bool:
        """True once the job can no longer change state."""
        return self.state in TERMINAL_STATES


class ContainerBackend(abc.ABC):
    """One container scheduler; see the module docstring for each method's contract."""

    #: short name stored in handles
    name: str = ""

    @abc.abstractmethod
    def find(self, key: str) -> JobHandle | None:
        """The existing job named ``key``, or ``None``."""

    @abc.abstractmethod
    def submit(self, spec: JobSpec) -> JobHandle:
        """Create and start the job; :class:`JobExistsError` if ``spec.key`` exists."""

    @abc.abstractmethod
    def status(self, handle: JobHandle) -> JobStatus:
        """The job's current state (one round trip)."""

    @abc.abstractmethod
    def logs(self, handle: JobHandle, cursor: Any = None) -> tuple[list[str], Any]:
        """Lines since ``cursor`` and the next cursor (JSON-native)."""

    @abc.abstractmethod
    def follow(self, handle: JobHandle) -> Iterator[str]:
        """Every line from the first, live, until the job's output closes."""

    @abc.abstractmethod
    def result(self, handle: JobHandle, path: str) -> Any:
        """The parsed JSON result at ``path``, or ``None`` if absent."""

    @abc.abstractmethod
    def cancel(self, handle: JobHandle) -> None:
        """Stop and remove the job; idempotent."""

    def describe(self, handle: JobHandle) -> str:
        """Short human-readable name of the job."""
        return f"{self.name} job {handle.key}"

    def close(self) -> None:  # noqa: B027 - optional hook for backends holding sessions
        """Release client resources (HTTP sessions); the backend is unusable afterwards."""


_KEY_UNSAFE = re.compile(r"[^a-z0-9]+")
#: Docker container names have no limit, but Swarm service names and Metronome ids are DNS labels.
MAX_KEY_LENGTH = 63


def is_namespace(value: object) -> bool:
    """True for a valid installation namespace (:data:`NAMESPACE_PATTERN`)."""
    return isinstance(value, str) and NAMESPACE_PATTERN.fullmatch(value) is not None


def _fold(text: str, limit: int) -> str:
    """``text`` in ``[a-z0-9]`` words joined by single dashes, at most ``limit`` characters."""
    return _KEY_UNSAFE.sub("-", text.lower()).strip("-")[:limit].strip("-")


def job_key(
    dag_id: str, task_id: str, run_id: str, map_index: int = -1, *, namespace: str = "", prefix: str = "ml"
) -> str:
    """A deterministic job name for one task instance of one Airflow installation, valid on every backend.

    Docker container names, Swarm service names (63 chars, DNS label) and Metronome job ids
    (lower-case, dot-separated DNS labels, no ``--``) all accept single dashes between
    ``[a-z0-9]`` words, so the readable part is folded into that alphabet and a digest of the
    exact inputs (the namespace included) keeps keys unique:
    ``ml-<namespace≤8>-<dag≤16>-<task≤14>-<map>-<10 hex chars>``, at most 63 characters (the dag
    and task parts are shortened further when a long map index needs the room). The namespace's
    first characters are shown so ``docker ps`` tells whose job it is; two installations running
    the same DAG run get different keys. The try number is deliberately not part of it: a retry
    must find its predecessor.

    :param dag_id: the DAG id.
    :param task_id: the task id.
    :param run_id: the DAG run id.
    :param map_index: the mapped task's index (-1 when not mapped).
    :param namespace: the installation namespace (:func:`is_namespace`); ``""`` = none.
    :param prefix: leading label, letters only.
    :raises InvalidSpecError: ``namespace`` is not a valid namespace.
    """
    if namespace and not is_namespace(namespace):
        raise InvalidSpecError(
            f"Namespace {namespace!r} is not valid: use 1-20 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit (e.g. 'staging')."
        )
    digest = hashlib.sha256(json.dumps([dag_id, task_id, run_id, map_index, namespace]).encode()).hexdigest()[:10]
    head = [prefix, _fold(namespace, 8)]
    tail = [str(map_index) if map_index >= 0 else "", digest]
    fixed = sum(len(part) + 1 for part in head + tail if part)
    room = MAX_KEY_LENGTH - fixed  # for "<dag>-<task>", dashes included
    dag = _fold(dag_id, max(0, min(16, max(room // 2, room - 15))))
    task = _fold(task_id, max(0, min(14, room - len(dag) - 1)))
    return "-".join(part for part in (*head, dag, task, *tail) if part)


def spec_digest(spec: JobSpec) -> str:
    """A digest of what defines the job (image, command, env names and plain values, resources).

    Secret *values* are not part of it (only their names), so a rotated password does not make
    a running job look foreign, and the digest reveals nothing about them.
    """
    payload = {
        "image": spec.image,
        "command": list(spec.command) if spec.command is not None else None,
        "entrypoint": list(spec.entrypoint) if spec.entrypoint is not None else None,
        "env": dict(sorted(spec.env.items())),
        "secret_names": sorted(spec.secret_env),
        "resources": list(spec.resources),
        "mounts": [list(m) for m in spec.mounts],
        "network": spec.network,
        "working_dir": spec.working_dir,
        "result_path": spec.result_path,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def poll_follow(backend: ContainerBackend, handle: JobHandle, interval: float = 1.0) -> Iterator[str]:
    """``follow`` for schedulers without a closing log stream: poll ``logs`` until the job ends.

    After the job is seen finished, logs are read once more so the last lines are not lost.
    """
    import time

    cursor: Any = None
    while True:
        finished = backend.status(handle).finished
        lines, cursor = backend.logs(handle, cursor)
        yield from lines
        if finished:
            return
        time.sleep(interval)
