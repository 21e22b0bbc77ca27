"""One operator that runs a containerized job on Docker, Docker Swarm or DC/OS Metronome.

DAG files import this module; it imports no SDK (docker, requests) and does no I/O: the
backend is built from the connection when the task runs. The argument checks and failure
messages are in :mod:`~airflow_ml_provider.operators.container_args`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from airflow_ml_provider import exceptions
from airflow_ml_provider.exceptions import ContainerJobFailed, InvalidSpecError, MlProviderError, PermanentError
from airflow_ml_provider.hooks.container import ContainerJobHook
from airflow_ml_provider.operators.container_args import (
    exit_codes,
    failure_message,
    foreign_job_message,
    parse_mounts,
    resources_text,
)
from airflow_ml_provider.utils.compat import default_deferrable
from airflow_ml_provider.utils.resources import ResourceSpec
from airflow_ml_provider.utils.secret_refs import parse_secret_env
from airflow_ml_provider.utils.templating import is_templated

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ml_provider.backends.base import ContainerBackend, JobHandle, JobSpec, JobStatus

# ContainerJobFailed and parse_mounts were defined here; re-exported for existing imports.
__all__ = ["ContainerJobFailed", "ContainerJobOperator", "parse_mounts"]

#: Same as ``backends.base.DEFAULT_RESULT_PATH`` (a literal: DAG files must not import the backends).
DEFAULT_RESULT_PATH = "/airflow/xcom/result.json"


class ContainerJobOperator(BaseOperator):
    """Run a container job on the scheduler that ``conn_id`` names and map its outcome to the task.

    What happens when the task runs:

    1. The job key (from this installation's namespace, dag_id, task_id, run_id and map_index,
       not the try number) names the job. If the scheduler still has a job with that key:

       * **labelled with another installation's namespace** → fail at once (no retries), leaving
         it alone (:class:`~airflow_ml_provider.exceptions.ForeignJobError`);
       * **still running, same definition** → re-attach and wait for it (no second job);
       * **finished successfully, same definition** → take its result (the earlier try died
         after the job's work was done);
       * **anything else** (failed, removed, or the DAG changed its definition) → remove it and
         start anew.
    2. The job's output reaches the task log live, from its first line.
    3. Exit 0 → success; the JSON file the job wrote at ``result_path`` (optional) becomes the
       XCom return value. Exit code in ``skip_on_exit_code`` → skipped. Anything else → the task
       fails with the exit code, an OOM verdict and the last ``tail_lines`` log lines.
    4. The job is always removed at the end: on success, failure, ``on_kill`` (task marked failed
       or cleared), ``execution_timeout`` and SIGTERM.

    :param image: container image (templated).
    :param command: arguments, a list (templated); ``None`` uses the image's default.
    :param entrypoint: overrides the image's entrypoint, a list (templated).
    :param environment: plain environment variables (templated; visible in the rendered template).
    :param secret_env: ``{NAME: reference}`` resolved at execute time from Airflow Connections or
        Variables: ``"conn://erp_db/password"``, ``"conn://erp_db/extra/key"``, ``"var://key"``.
        Not a template field; values are masked and never reach logs, XCom or errors.
    :param resources: ``{"cpus": 2, "memory": "4Gi", "gpus": 1, "disk": "10Gi"}`` or a
        :class:`~airflow_ml_provider.utils.resources.ResourceSpec`; validated at DAG parse time.
    :param mounts: bind mounts (templated): ``"/host/path:/in/container[:ro]"`` or
        ``{"source", "target", "read_only"}`` dicts; static values are validated at parse time.
    :param network: ``"host"``, ``"none"`` (default) or a network name.
    :param labels: extra labels on the job.
    :param working_dir: working directory inside the container.
    :param result_path: where the job may write its JSON result (env ``ML_RESULT_PATH`` tells it).
    :param skip_on_exit_code: exit code(s) that mean "skip this task".
    :param conn_id: ``ml_docker`` / ``ml_swarm`` / ``ml_metronome`` connection selecting the backend;
        its extra ``namespace`` (else the Airflow Variable ``ml_provider_namespace``) names this
        installation's jobs (see :meth:`ContainerJobHook.job_namespace`).
    :param startup_timeout: seconds the job may stay pending (image missing, no room) before the
        task fails; ``None`` waits (the task's ``execution_timeout`` still applies).
    :param poll_interval: seconds between status polls (deferrable mode and Swarm/Metronome).
    :param tail_lines: log lines quoted in a failure message.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    """

    template_fields: Sequence[str] = (
        "image",
        "command",
        "entrypoint",
        "environment",
        "mounts",
        "labels",
        "working_dir",
    )
    template_fields_renderers = {"environment": "json", "command": "json", "labels": "json"}
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        image: str,
        command: Sequence[str] | None = None,
        entrypoint: Sequence[str] | None = None,
        environment: Mapping[str, Any] | None = None,
        secret_env: Mapping[str, str] | None = None,
        resources: ResourceSpec | Mapping[str, Any] | None = None,
        mounts: Sequence[Any] | None = None,
        network: str | None = None,
        labels: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        result_path: str = DEFAULT_RESULT_PATH,
        skip_on_exit_code: int | Sequence[int] | None = None,
        conn_id: str = ContainerJobHook.default_conn_name,
        startup_timeout: float | None = 600.0,
        poll_interval: float = 5.0,
        tail_lines: int = 20,
        deferrable: bool = default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(command, str) or isinstance(entrypoint, str):
            raise InvalidSpecError(
                "command and entrypoint must be lists, e.g. command=['python', '-m', 'job'] "
                "(a string would need a shell to split it)."
            )
        if not result_path.startswith("/"):
            raise InvalidSpecError(f"result_path={result_path!r} must be an absolute path inside the container.")
        self.image = image
        self.command = list(command) if command is not None else None
        self.entrypoint = list(entrypoint) if entrypoint is not None else None
        self.environment = dict(environment or {})
        self.secret_refs = parse_secret_env(secret_env)
        overlap = set(self.secret_refs) & set(self.environment)
        if overlap:
            raise InvalidSpecError(f"{sorted(overlap)} are in both environment and secret_env; keep each in one.")
        if isinstance(resources, Mapping) and not isinstance(resources, dict):
            resources = dict(resources)
        self.job_resources = ResourceSpec.from_value(resources)
        self.mounts = list(mounts or [])
        if not is_templated(self.mounts):
            parse_mounts(self.mounts)  # fail at DAG parse time when the value is static
        self.network = network
        self.labels = dict(labels or {})
        self.working_dir = working_dir
        self.result_path = result_path
        self.skip_on_exit_code = exit_codes(skip_on_exit_code)
        self.conn_id = conn_id
        self.startup_timeout = startup_timeout
        self.poll_interval = poll_interval
        self.tail_lines = tail_lines
        self.deferrable = deferrable
        self._handle: JobHandle | None = None
        self._secret_values: list[str] = []
        self._killed = False

    # -- building blocks ------------------------------------------------------------------

    @cached_property
    def hook(self) -> ContainerJobHook:
        """The container hook; built on first use, never at DAG parse time."""
        return ContainerJobHook(conn_id=self.conn_id)

    @cached_property
    def backend(self) -> ContainerBackend:
        """The backend the connection selects."""
        return self.hook.get_backend()

    def _job_key(self, context: Context, namespace: str) -> str:
        from airflow_ml_provider.backends.base import job_key

        ti = context["ti"]
        index = getattr(ti, "map_index", -1)
        return job_key(ti.dag_id, ti.task_id, ti.run_id, -1 if index is None else int(index), namespace=namespace)

    def build_spec(self, key: str, namespace: str = "") -> JobSpec:
        """The job's spec under ``key``, labelled with ``namespace``, secrets resolved (execute time only)."""
        from airflow_ml_provider.backends.base import JobSpec, spec_digest

        secret_env = self.hook.resolve_secret_env(self.secret_refs)
        self._secret_values = [v for v in secret_env.values() if v]
        spec = JobSpec(
            key=key,
            image=str(self.image),
            command=[str(c) for c in self.command] if self.command is not None else None,
            entrypoint=[str(c) for c in self.entrypoint] if self.entrypoint is not None else None,
            env={str(k): str(v) for k, v in self.environment.items()},
            secret_env=secret_env,
            resources=self.job_resources,
            mounts=parse_mounts(self.mounts),
            network=self.network,
            labels={str(k): str(v) for k, v in self.labels.items()},
            working_dir=self.working_dir,
            result_path=self.result_path,
            namespace=namespace,
        )
        spec.check_env()
        return spec._replace(spec_hash=spec_digest(spec))

    def _redact(self, text: str) -> str:
        from airflow_ml_provider.backends.base import redact

        return redact(text, self._secret_values)

    def _attach_or_submit(self, spec: JobSpec) -> tuple[JobHandle, JobStatus | None]:
        """Apply the retry policy of the class docstring; returns the handle and, if adopted, its status."""
        from airflow_ml_provider.backends.base import RUNNING, SUCCEEDED

        backend = self.backend
        previous = backend.find(spec.key)
        if previous is not None:
            where = backend.describe(previous)
            if previous.namespace and previous.namespace != spec.namespace:  # never touch another's job
                raise exceptions.ForeignJobError(foreign_job_message(where, previous.namespace, spec.namespace))
            status = backend.status(previous)
            same = previous.spec_hash == spec.spec_hash
            if same and status.state == SUCCEEDED:
                self.log.info("%s from an earlier try already succeeded; taking its result.", where)
                return previous, status
            if same and not status.finished:
                verb = "running" if status.state == RUNNING else "pending"
                self.log.info(
                    "%s from an earlier try is still %s; re-attaching instead of starting another.", where, verb
                )
                return previous, None
            reason = "its definition changed" if not same else f"it ended {status.state}"
            self.log.info("Removing %s from an earlier try (%s) and starting anew.", where, reason)
            backend.cancel(previous)
        handle = backend.submit(spec)
        self.log.info(
            "Started %s (image %s, resources %s).", backend.describe(handle), spec.image, resources_text(spec.resources)
        )
        return handle, None

    # -- execution ------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        """Submit (or re-attach), wait, map the outcome; see the class docstring."""
        namespace = self.hook.job_namespace()
        spec = self.build_spec(self._job_key(context, namespace), namespace)
        try:
            handle, adopted = self._attach_or_submit(spec)
            self._handle = handle
            context["ti"].xcom_push(key="job", value=handle.to_dict())
            if adopted is not None:
                return self._finish(handle, adopted, [])
            if self.deferrable:
                status = self.backend.status(handle)
                if not status.finished:
                    self._defer(handle)
            tail = self._stream_logs(handle)
            status = self._wait(handle)
            return self._finish(handle, status, tail)
        except TaskDeferred:
            raise
        except BaseException:
            # execution_timeout, SIGTERM, an error of ours: never leave the job behind.
            self._cleanup()
            raise

    def _defer(self, handle: JobHandle) -> None:
        from datetime import timedelta

        from airflow_ml_provider.triggers.container import ContainerJobTrigger

        self.log.info(
            "Deferring while %s runs; its log lines follow from the triggerer.", self.backend.describe(handle)
        )
        self.backend.close()
        self.defer(
            trigger=ContainerJobTrigger(
                conn_id=self.conn_id,
                handle=handle.to_dict(),
                secret_env={name: str(ref) for name, ref in self.secret_refs.items()},
                poll_interval=self.poll_interval,
                tail_lines=self.tail_lines,
                startup_timeout=self.startup_timeout,
            ),
            method_name="execute_complete",
            timeout=self.execution_timeout if isinstance(self.execution_timeout, timedelta) else None,
        )

    def _stream_logs(self, handle: JobHandle) -> list[str]:
        tail: deque[str] = deque(maxlen=self.tail_lines)
        self._wait_started(handle)
        for raw in self.backend.follow(handle):
            line = self._redact(raw)  # the masker also knows the values; this catches escaped forms too
            self.log.info("%s", line)
            tail.append(line)
        return list(tail)

    def _wait_started(self, handle: JobHandle) -> None:
        from airflow_ml_provider.backends.base import PENDING

        started = time.monotonic()
        while True:
            status = self.backend.status(handle)
            if status.state != PENDING:
                return
            waited = time.monotonic() - started
            if self.startup_timeout is not None and waited > self.startup_timeout:
                raise ContainerJobFailed(
                    f"{self.backend.describe(handle)} was still pending after {waited:.0f} s "
                    f"(startup_timeout={self.startup_timeout}): {status.message or 'no reason given'}. "
                    "Check that the image exists on the nodes and the cluster has room for the resources."
                )
            time.sleep(min(self.poll_interval, 1.0))

    def _wait(self, handle: JobHandle) -> JobStatus:
        while True:
            status = self.backend.status(handle)
            if status.finished:
                return status
            time.sleep(min(self.poll_interval, 0.5))

    def _finish(self, handle: JobHandle, status: JobStatus, tail: list[str]) -> Any:
        from airflow_ml_provider.backends.base import SUCCEEDED

        where = self.backend.describe(handle)
        try:
            if status.state == SUCCEEDED:
                result = self.backend.result(handle, self.result_path)
                self.log.info("%s succeeded%s.", where, "" if result is None else " and wrote a result")
                return result
            if status.exit_code is not None and status.exit_code in self.skip_on_exit_code:
                raise AirflowSkipException(f"{where} exited with {status.exit_code} (skip_on_exit_code).")
            raise self._failure(where, status, tail)
        finally:
            self._cleanup()

    def _failure(self, where: str, status: JobStatus, tail: list[str]) -> ContainerJobFailed:
        message = failure_message(where, status, tail, self.job_resources.memory)
        return ContainerJobFailed(self._redact(message), exit_code=status.exit_code, oom_killed=status.oom_killed)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: validate its event, fetch the result, remove the job."""
        from airflow_ml_provider.backends.base import TERMINAL_STATES, JobHandle, JobStatus

        if not isinstance(event, dict) or "status" not in event or not isinstance(event.get("handle"), dict):
            raise MlProviderError(f"Container trigger sent a malformed event: {event!r}")
        handle = JobHandle.from_dict(event["handle"])
        self._handle = handle
        try:
            self._secret_values = list(self.hook.resolve_secret_env(self.secret_refs).values())
        except Exception:
            self._cleanup()  # the task fails here: do not leave its job behind
            raise
        tail = [str(line) for line in event.get("tail") or []]
        if event["status"] == "finished" and event.get("state") in TERMINAL_STATES:
            code = event.get("exit_code")
            status = JobStatus(
                str(event["state"]),
                None if code is None else int(code),
                bool(event.get("oom_killed")),
                str(event.get("message") or ""),
            )
            return self._finish(handle, status, tail)
        self._cleanup()
        where = f"{handle.backend} job {handle.key}"
        if event["status"] == "startup_timeout":
            raise ContainerJobFailed(
                f"{where} {event.get('message')} (startup_timeout={self.startup_timeout}). "
                "Check that the image exists on the nodes and the cluster has room for the resources."
            )
        message = self._redact(f"Lost track of {where}: {event.get('message')}")
        error = getattr(exceptions, str(event.get("error_type") or ""), None)
        if isinstance(error, type) and issubclass(error, PermanentError):
            raise error(message)  # the trigger met an error no retry can fix (a bad connection, say)
        raise ContainerJobFailed(message)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Also clean up when the deferral timed out (Airflow resumes with ``__fail__``, not our method)."""
        if next_method == "__fail__" and self._handle is None:
            from airflow_ml_provider.backends.base import JobHandle

            ti = context["ti"]
            stored = ti.xcom_pull(task_ids=ti.task_id, key="job", map_indexes=getattr(ti, "map_index", None))
            if isinstance(stored, dict) and "key" in stored:
                self._handle = JobHandle.from_dict(stored)
                self.log.info("Deferral ended with a failure; removing %s.", self._handle.key)
                self._cleanup()
        return super().resume_execution(next_method, next_kwargs, context)

    def _cleanup(self) -> None:
        """Stop and remove the job once; failures are logged, not raised."""
        handle = self._handle
        if handle is None or self._killed:
            return
        self._killed = True
        try:
            self.backend.cancel(handle)
            self.log.info("Removed %s.", self.backend.describe(handle))
        except Exception as e:  # noqa: BLE001  # cleanup logs its failure, it never masks the real outcome
            self.log.error("Could not remove %s: %s", handle.key, self._redact(str(e)))
        finally:
            self.backend.close()

    def on_kill(self) -> None:
        """The task is being killed: stop and remove the job (idempotent)."""
        self._cleanup()
