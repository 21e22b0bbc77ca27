"""Container jobs as DC/OS Metronome job runs, over Metronome's v1 REST API.

One task is one Metronome *job* named by the job key (keys from
:func:`~airflow_ml_provider.backends.base.job_key` fit Metronome's id pattern: lowercase letters,
digits, dashes, dot-separated) and one *run* of it. The handle's ``job_id`` is ``"<jobId>/<runId>"``.
The HTTP client (IAM login, TLS, retries) is :mod:`~airflow_ml_provider.backends.metronome_client`;
the job JSON is :mod:`~airflow_ml_provider.backends.metronome_jobs`.

Endpoints called (paths relative to :attr:`MetronomeConfig.url`, e.g.
``https://dcos.example.com/service/metronome`` behind DC/OS Admin Router, or Metronome itself):

=================  ==========================================================================
method             requests
=================  ==========================================================================
``submit``         ``GET /v1/jobs/{id}?embed=activeRuns``; then ``PUT /v1/jobs/{id}`` if the job
                   exists (an *upsert*: the definition is replaced) or ``POST /v1/jobs``; then
                   ``POST /v1/jobs/{id}/runs``.
``find``           ``GET /v1/jobs/{id}?embed=activeRuns&embed=history``
``status``         ``GET /v1/jobs/{id}/runs/{runId}``; on 404 (Metronome only serves *active*
                   runs there) ``GET /v1/jobs/{id}?embed=history``.
``cancel``         ``POST /v1/jobs/{id}/runs/{runId}/actions/stop``, polls
                   ``GET /v1/jobs/{id}/runs/{runId}`` until the run left the active list (bounded
                   by :attr:`MetronomeConfig.stop_timeout`), then
                   ``DELETE /v1/jobs/{id}?stopCurrentJobRuns=true``.
``logs/result``    none (see below)
=================  ==========================================================================

Triggering a run is not idempotent, so the client never resends ``POST .../runs`` by itself;
after an ambiguous failure (a 5xx or a lost answer) the backend first looks for an active run
of the job (``GET /v1/jobs/{id}?embed=activeRuns``) and adopts it instead of starting a twin, and
only posts again (up to ``retries`` times) when there is none. A 422 (the job body is invalid)
raises :class:`~airflow_ml_provider.exceptions.MetronomeValidationError` (permanent) listing
Metronome's ``details``.

Upsert and twins: ``submit`` replaces an existing job definition that has no active run (a retry
of a finished try) and raises :class:`~airflow_ml_provider.exceptions.JobExistsError` when the
job has an active run.

Not supported by Metronome, documented no-ops: **logs** live in the Mesos sandbox of the agent
(``stdout``/``stderr``), not behind Metronome's API, so ``logs()`` returns ``([], cursor)`` and
``follow()`` an empty iterator (it does not block; poll ``status()``). **Results**: Metronome has
no way to read a file from a finished task, so ``result()`` returns ``None``; jobs on Metronome
should write their results to shared storage (HDFS, an object store). **Exit codes** are not
reported by Metronome either: ``JobStatus.exit_code`` is ``None``.

Status: see :data:`~airflow_ml_provider.backends.metronome_jobs.RUN_STATES`; a run in neither the
active list nor the job's history, or an unknown job -> gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from airflow_ml_provider.backends.base import (
    FAILED,
    GONE,
    LABEL_NAMESPACE,
    LABEL_SPEC,
    PENDING,
    SUCCEEDED,
    ContainerBackend,
    JobHandle,
    JobSpec,
    JobStatus,
)
from airflow_ml_provider.backends.metronome_client import BACKOFF_CAP, MetronomeClient, MetronomeConfig
from airflow_ml_provider.backends.metronome_jobs import (
    RUN_STATES,
    finished_runs,
    job_definition,
    newest_run,
    task_note,
)
from airflow_ml_provider.exceptions import BackendError, JobExistsError, MetronomeValidationError

# MetronomeConfig and MetronomeValidationError were defined here; re-exported for existing imports.
__all__ = ["MetronomeBackend", "MetronomeConfig", "MetronomeValidationError"]

log = logging.getLogger(__name__)

_STOP_POLL = 0.2


def _split(handle: JobHandle) -> tuple[str, str]:
    job_id, _, run_id = handle.job_id.partition("/")
    return job_id or handle.key, run_id


class MetronomeBackend(ContainerBackend):
    """Container jobs as DC/OS Metronome job runs; see the module docstring.

    :param config: where Metronome is, how to log in, and the job defaults.
    """

    name = "metronome"

    def __init__(self, config: MetronomeConfig) -> None:
        self.config = config
        self.client = MetronomeClient(config)

    def job_definition(self, spec: JobSpec) -> dict[str, Any]:
        """The Metronome job body for ``spec`` (secret values included: never log it)."""
        return job_definition(spec, self.config)

    # ---------------------------------------------------------------------------- contract

    def find(self, key: str) -> JobHandle | None:
        """The job's active run (newest), else its newest finished run; ``None`` if neither exists.

        The handle carries the job's spec hash and namespace from its labels.
        """
        job = self.client.get_job(key, "activeRuns", "history")
        if job is None:
            return None
        labels = job.get("labels") or {}
        spec_hash, namespace = str(labels.get(LABEL_SPEC, "")), str(labels.get(LABEL_NAMESPACE, ""))
        run = newest_run(job.get("activeRuns") or [], "createdAt")
        if run is None:
            run = newest_run(finished_runs(job), "finishedAt")
        if run is None:
            return None
        return JobHandle(self.name, key, f"{key}/{run['id']}", spec_hash, namespace)

    def submit(self, spec: JobSpec) -> JobHandle:
        """Upsert the job definition and trigger one run; :class:`JobExistsError` if a run is active."""
        body = self.job_definition(spec)
        self.client.secrets = tuple(str(v) for v in spec.secret_env.values() if str(v))
        try:
            return self._submit(spec, body)
        finally:
            self.client.secrets = ()

    def _submit(self, spec: JobSpec, body: dict[str, Any]) -> JobHandle:
        key = spec.key
        job_path = f"/v1/jobs/{quote(key, safe='')}"
        existing = self.client.get_job(key, "activeRuns")
        if existing is not None and existing.get("activeRuns"):
            run_ids = ", ".join(str(r.get("id")) for r in existing["activeRuns"])
            raise JobExistsError(f"Metronome job {key} already has an active run ({run_ids}); re-attach to it.")
        if existing is None:
            response = self.client.request("POST", "/v1/jobs", json=body)
            if response.status_code == 409:  # created concurrently since the GET: update it instead
                existing = {}
            elif response.status_code not in (200, 201):
                raise self.client.error("POST", "/v1/jobs", response)
        if existing is not None:
            response = self.client.request("PUT", job_path, json=body)
            if response.status_code != 200:
                raise self.client.error("PUT", job_path, response)
        log.info("Metronome job %s defined (image %s); starting a run.", key, spec.image)
        run = self._trigger(key)
        handle = JobHandle(self.name, key, f"{key}/{run['id']}", spec.spec_hash, spec.namespace)
        log.info("Started %s (run %s).", self.describe(handle), run["id"])
        return handle

    def _trigger(self, key: str) -> Mapping[str, Any]:
        """``POST /v1/jobs/{id}/runs`` without blind retries: an ambiguous failure adopts the run it started.

        The client does not resend a POST after a 5xx or a lost answer (it may have started a run),
        so this loop does, by hand: it first looks for an active run and adopts it.
        """
        path = f"/v1/jobs/{quote(key, safe='')}/runs"
        attempts = 1 + self.config.retries
        error: BackendError | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self.config.backoff * 2 ** (attempt - 1), BACKOFF_CAP))
                job = self.client.get_job(key, "activeRuns")
                if job is None:
                    raise BackendError(f"Metronome job {key} disappeared while its run was being started.")
                active = newest_run(job.get("activeRuns") or [], "createdAt")
                if active is not None:
                    log.info("Metronome %s: adopting run %s started by the failed attempt.", path, active["id"])
                    return active
            try:
                response = self.client.request("POST", path)
            except BackendError as e:
                if not e.retryable:
                    raise
                error = e
                continue
            if response.status_code in (200, 201):
                run: Mapping[str, Any] = response.json()
                return run
            raise self.client.error("POST", path, response)
        raise BackendError(f"Metronome POST {path} failed after {attempts} attempt(s): {error}")

    def status(self, handle: JobHandle) -> JobStatus:
        """The run's state: active runs from ``/runs/{runId}``, finished ones from the job's history."""
        job_id, run_id = _split(handle)
        if not run_id:
            return JobStatus(GONE, message=f"handle {handle.job_id!r} names no Metronome run")
        path = f"/v1/jobs/{quote(job_id, safe='')}/runs/{quote(run_id, safe='')}"
        response = self.client.request("GET", path)
        if response.status_code == 200:
            run = response.json()
            raw = str(run.get("status", ""))
            state = RUN_STATES.get(raw, PENDING)
            message = f"Metronome run {run_id} is {raw}"
            if state in (SUCCEEDED, FAILED):
                message += f" (completed at {run.get('completedAt')})"
            return JobStatus(state, message=message + task_note(run))
        if response.status_code != 404:
            raise self.client.error("GET", path, response)
        job = self.client.get_job(job_id, "history")
        if job is None:
            return JobStatus(GONE, message=f"Metronome job {job_id} no longer exists")
        history = job.get("history") or {}
        for field, state, word in (
            ("successfulFinishedRuns", SUCCEEDED, "succeeded"),
            ("failedFinishedRuns", FAILED, "failed"),
        ):
            for run in history.get(field) or []:
                if run.get("id") == run_id:
                    return JobStatus(state, message=f"Metronome run {run_id} {word} at {run.get('finishedAt')}")
        return JobStatus(GONE, message=f"Metronome run {run_id} of job {job_id} is neither active nor in its history")

    def logs(self, handle: JobHandle, cursor: Any = None) -> tuple[list[str], Any]:
        """Metronome keeps no logs behind its API (they are in the Mesos sandbox): always ``([], cursor)``."""
        return [], cursor

    def follow(self, handle: JobHandle) -> Iterator[str]:
        """No log stream on Metronome: an empty iterator that returns at once."""
        return iter(())

    def result(self, handle: JobHandle, path: str) -> Any:
        """Metronome cannot read files from a task: always ``None`` (write results to shared storage)."""
        return None

    def cancel(self, handle: JobHandle) -> None:
        """Stop the run, wait for it to end (up to ``stop_timeout``) and delete the job; idempotent."""
        job_id, run_id = _split(handle)
        job_path = f"/v1/jobs/{quote(job_id, safe='')}"
        if run_id:
            run_path = f"{job_path}/runs/{quote(run_id, safe='')}"
            response = self.client.request("POST", f"{run_path}/actions/stop")
            if response.status_code in (200, 201, 202):
                self._wait_stopped(run_path)
            elif response.status_code != 404:  # 404: the run (or job) is already finished or gone
                log.warning(
                    "Metronome stop of %s: %s", self.describe(handle), self.client.error("POST", run_path, response)
                )
        response = self.client.request("DELETE", job_path, params={"stopCurrentJobRuns": "true"})
        if response.status_code in (200, 204):
            log.info("Deleted Metronome job %s.", job_id)
        elif response.status_code != 404:
            log.warning("Metronome delete of job %s: %s", job_id, self.client.error("DELETE", job_path, response))

    def _wait_stopped(self, run_path: str) -> None:
        deadline = time.monotonic() + self.config.stop_timeout
        while time.monotonic() < deadline:
            response = self.client.request("GET", run_path)
            if response.status_code == 404:
                return
            if response.status_code == 200 and RUN_STATES.get(str(response.json().get("status"))) in (
                SUCCEEDED,
                FAILED,
            ):
                return
            time.sleep(_STOP_POLL)
        log.warning(
            "Metronome run %s still active %.0f s after the stop; deleting its job.", run_path, self.config.stop_timeout
        )

    def describe(self, handle: JobHandle) -> str:
        """``metronome job <id> run <runId>``."""
        job_id, run_id = _split(handle)
        return f"metronome job {job_id} run {run_id}" if run_id else f"metronome job {job_id}"

    def close(self) -> None:
        """Close the HTTP session."""
        self.client.close()
