"""Container jobs as DC/OS Metronome job runs, over Metronome's v1 REST API (``requests`` only).

One task is one Metronome *job* named by the job key (keys from
:func:`~airflow_ml_provider.backends.base.job_key` fit Metronome's id pattern: lowercase letters,
digits, dashes, dot-separated) and one *run* of it. The handle's ``job_id`` is ``"<jobId>/<runId>"``.

Endpoints called (paths relative to :attr:`MetronomeConfig.url`, e.g.
``https://dcos.example.com/service/metronome`` behind DC/OS Admin Router, or Metronome itself):

=================  ==========================================================================
method             requests
=================  ==========================================================================
(login)            ``POST <origin>/acs/api/v1/auth/login`` ``{"uid", "password"}`` -> ``{"token"}``
                   (``<origin>`` is the URL's scheme, host and port; override with
                   :attr:`MetronomeConfig.login_url`). Only when a password is configured.
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

Authentication: with ``uid``/``password`` the backend logs in to the DC/OS IAM on first use and
sends ``Authorization: token=<token>``. A 401 from any call logs in again once and repeats that
call. With only a pre-issued ``token`` (no password), a 401 raises
:class:`~airflow_ml_provider.exceptions.ConnectionConfigError`: the token is expired or wrong.
Neither configured: no ``Authorization`` header (an open Metronome).

Retries: connection errors, timeouts and 5xx answers are retried ``retries`` times with
exponential backoff (``backoff * 2**attempt``, capped at 30 s); 4xx answers are never retried.
Triggering a run is not idempotent, so after an ambiguous failure of ``POST .../runs`` the backend
first looks for an active run of the job (``GET /v1/jobs/{id}?embed=activeRuns``) and adopts it
instead of starting a twin. Exhausted retries raise
:class:`~airflow_ml_provider.backends.base.BackendError` naming the method, the path and the last
status with a short body. A 422 (the job body is invalid) raises :class:`MetronomeValidationError`
(a ``BackendError`` and an ``InvalidSpecError``: retrying cannot help) listing Metronome's
``details``. A TLS verification failure raises ``ConnectionConfigError`` at once.

TLS: verified by default (``verify=True``), or against a CA bundle path; ``verify=False`` only if
configured. The connection's choice wins over ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``.

Secrets: the password and token are only ever sent in the login ``POST`` body and the
``Authorization`` header; they are not in ``repr(config)``, in log lines or in exception text
(every message the backend builds from a server answer is scrubbed of them and of the job's
secret environment values).

How a :class:`~airflow_ml_provider.backends.base.JobSpec` becomes a Metronome job:

* ``run.docker.image`` = ``spec.image`` (``forcePullImage`` from the config).
* Command, ``cmd`` versus ``args``: Metronome has no entrypoint field. With ``entrypoint=None``
  the spec's ``command`` becomes ``run.args``: the Docker containerizer appends them to the
  image's ENTRYPOINT, exactly Docker's semantics, and no shell is involved. With an
  ``entrypoint``, ``run.cmd`` is ``shlex.join(entrypoint + command)``: Mesos runs ``cmd`` as
  ``/bin/sh -c <cmd>`` (replacing the image's entrypoint), so the image needs ``/bin/sh``, and the
  quoting makes the shell see exactly the argument list. Neither: the image's defaults run.
* ``working_dir``: with ``cmd`` it is a ``cd <dir> &&`` prefix; with ``args`` it is the Docker
  parameter ``workdir`` (``run.docker.parameters``; the agents must allow Docker parameters).
* ``env`` and ``secret_env`` go into ``run.env``. Metronome stores ``run.env`` in the job
  definition, which anyone allowed to read the job can see; plain secret values are therefore
  visible to Metronome readers (never to our logs). The production alternative is the DC/OS
  secret store: a ``secret_env`` value of the form ``dcos-secret:/path/in/store`` is sent as
  ``{"secret": "secretN"}`` with ``run.secrets = {"secretN": {"source": "/path/in/store"}}``, so
  the value itself never leaves DC/OS. Any other value is sent as it is.
* Resources: :meth:`~airflow_ml_provider.utils.resources.ResourceSpec.to_metronome` (``cpus``,
  ``mem``/``disk`` in MiB with Metronome's required defaults, ``gpus``).
* ``restart.policy = "NEVER"`` (a failed try is Airflow's to retry); ``maxLaunchDelay`` and
  ``user`` from the config.
* Labels: ``spec.all_labels()`` as they are. Metronome's label keys are free strings (the JSON
  schema only requires string values), so dotted keys like ``airflow-ml-provider.job-key`` are
  kept. :meth:`MetronomeBackend.find` reads the spec hash back from them.
* Mounts: ``run.volumes`` host-path volumes (``RO``/``RW``); named volumes are refused.
* Network: ``host`` -> ``{"mode": "host"}``, ``bridge`` -> ``{"mode": "container/bridge"}``, any
  other name -> ``{"mode": "container", "name": ...}``; ``none`` is refused (Metronome cannot run
  a job without a network).

Upsert and twins: ``submit`` replaces an existing job definition that has no active run (a retry
of a finished try) and raises :class:`~airflow_ml_provider.backends.base.JobExistsError` when the
job has an active run.

Not supported by Metronome, documented no-ops: **logs** live in the Mesos sandbox of the agent
(``stdout``/``stderr``), not behind Metronome's API, so ``logs()`` returns ``([], cursor)`` and
``follow()`` an empty iterator (it does not block; poll ``status()``). **Results**: Metronome has
no way to read a file from a finished task, so ``result()`` returns ``None``; jobs on Metronome
should write their results to shared storage (HDFS, an object store). **Exit codes** are not
reported by Metronome either: ``JobStatus.exit_code`` is ``None``.

Status mapping: run ``INITIAL``/``STARTING`` -> pending, ``ACTIVE`` -> running, ``SUCCESS`` ->
succeeded, ``FAILED`` -> failed (also a stopped run); a run in neither the active list nor the
job's history, or an unknown job -> gone.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlsplit

from airflow_ml_provider.backends.base import (
    FAILED,
    GONE,
    LABEL_SPEC,
    PENDING,
    RUNNING,
    SUCCEEDED,
    BackendError,
    ContainerBackend,
    JobExistsError,
    JobHandle,
    JobSpec,
    JobStatus,
)
from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

LOGIN_PATH = "/acs/api/v1/auth/login"
#: A ``secret_env`` value with this prefix names a DC/OS secret-store path instead of a value.
DCOS_SECRET_PREFIX = "dcos-secret:"  # noqa: S105 - a prefix, not a password
#: Metronome's job id pattern (``jobspec.schema.json``).
JOB_ID_PATTERN = re.compile(r"^([a-z0-9]+(-[a-z0-9]+)*)(\.([a-z0-9]+(-[a-z0-9]+)*))*$")
_BACKOFF_CAP = 30.0
_STOP_POLL = 0.2
_STATES = {"INITIAL": PENDING, "STARTING": PENDING, "ACTIVE": RUNNING, "SUCCESS": SUCCEEDED, "FAILED": FAILED}


class MetronomeValidationError(BackendError, InvalidSpecError):
    """Metronome refused the job definition (HTTP 422); the message lists its details."""


class MetronomeConfig(NamedTuple):
    """How to reach Metronome; built by the hook from an ``ml_metronome`` connection.

    :param url: Metronome's base URL, e.g. ``https://dcos.example.com/service/metronome``.
    :param uid: DC/OS IAM user id for the login (with ``password``).
    :param password: its password (secret; not shown by ``repr``).
    :param token: a pre-issued DC/OS auth token, used until it is rejected (secret).
    :param verify: TLS verification: ``True``, ``False`` or a CA bundle path.
    :param timeout: seconds per HTTP request (connect and read).
    :param retries: extra attempts after a connection error, timeout or 5xx answer.
    :param backoff: first retry delay in seconds; doubles per attempt, capped at 30 s.
    :param stop_timeout: seconds ``cancel`` waits for a stopped run to leave the active list.
    :param login_url: the IAM login URL; default ``<scheme://host:port of url>/acs/api/v1/auth/login``.
    :param max_launch_delay: ``run.maxLaunchDelay``: seconds a run may wait for resources.
    :param force_pull: ``run.docker.forcePullImage``.
    :param user: ``run.user`` (the agent's OS user), or ``None`` for Metronome's default.
    """

    url: str
    uid: str = ""
    password: str = ""
    token: str | None = None
    verify: bool | str = True
    timeout: float = 30.0
    retries: int = 5
    backoff: float = 0.5
    stop_timeout: float = 30.0
    login_url: str | None = None
    max_launch_delay: int = 3600
    force_pull: bool = False
    user: str | None = None

    def __repr__(self) -> str:
        fields = []
        for name, value in zip(self._fields, self, strict=True):
            if name in ("password", "token") and value:
                value = "***"
            fields.append(f"{name}={value!r}")
        return f"MetronomeConfig({', '.join(fields)})"

    def iam_login_url(self) -> str:
        """Where to log in: :attr:`login_url`, or the DC/OS IAM at the URL's origin."""
        if self.login_url:
            return self.login_url
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{LOGIN_PATH}"


def _session(verify: bool | str) -> requests.Session:
    """A session whose TLS verification is the config's, whatever ``REQUESTS_CA_BUNDLE`` says."""
    import requests

    class _ConfigTlsSession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = self.verify
            return settings

    session = _ConfigTlsSession()
    session.verify = verify
    return session


def _split(handle: JobHandle) -> tuple[str, str]:
    job_id, _, run_id = handle.job_id.partition("/")
    return job_id or handle.key, run_id


def _newest(runs: Iterable[Mapping[str, Any]], field: str) -> Mapping[str, Any] | None:
    """The run with the latest ``field`` timestamp (Metronome's format sorts as text)."""
    return max(runs, key=lambda r: str(r.get(field) or r.get("createdAt") or ""), default=None)


class MetronomeBackend(ContainerBackend):
    """Container jobs as DC/OS Metronome job runs; see the module docstring."""

    name = "metronome"

    def __init__(self, config: MetronomeConfig) -> None:
        self.config = config
        self._base = config.url.rstrip("/")
        self._token: str | None = config.token or None
        self._session_obj: requests.Session | None = None
        self._lock = threading.Lock()
        self._extra_secrets: tuple[str, ...] = ()

    # ------------------------------------------------------------------------------ plumbing

    @property
    def _session(self) -> requests.Session:
        if self._session_obj is None:
            self._session_obj = _session(self.config.verify)
        return self._session_obj

    def _scrub(self, text: str) -> str:
        """``text`` without the password, the token or the current job's secret values."""
        for secret in (self.config.password, self.config.token, self._token, *self._extra_secrets):
            if secret and len(secret) >= 3:
                text = text.replace(secret, "***")
        return text

    def _short(self, response: requests.Response) -> str:
        text = " ".join((response.text or "").split())
        if text.startswith("<"):  # Admin Router's HTML error page: the title says it all
            match = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE)
            text = match.group(1) if match else text
        return self._scrub(text[:300])

    def _send(
        self,
        method: str,
        url: str,
        display: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        authorized: bool = True,
        retries: int | None = None,
    ) -> requests.Response:
        """One request with retries on connection errors, timeouts and 5xx; 4xx are returned."""
        import requests

        attempts = 1 + (self.config.retries if retries is None else retries)
        last = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self.config.backoff * 2 ** (attempt - 1), _BACKOFF_CAP))
            headers = {"Accept": "application/json"}
            if authorized and self._token:
                headers["Authorization"] = f"token={self._token}"
            try:
                response = self._session.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=self.config.timeout,
                    verify=self.config.verify,
                )
            except requests.exceptions.SSLError as e:
                raise ConnectionConfigError(
                    f"Metronome {method} {display}: TLS verification failed ({self._scrub(str(e))[:300]}); "
                    "set the connection's ca_bundle to the cluster's CA certificate."
                ) from None
            except (requests.ConnectionError, requests.Timeout) as e:
                last = f"{type(e).__name__}: {self._scrub(str(e))[:300]}"
                log.warning("Metronome %s %s: %s (attempt %d/%d)", method, display, last, attempt + 1, attempts)
                continue
            if response.status_code >= 500:
                last = f"HTTP {response.status_code}: {self._short(response)}"
                log.warning("Metronome %s %s: %s (attempt %d/%d)", method, display, last, attempt + 1, attempts)
                continue
            log.debug("Metronome %s %s -> %s", method, display, response.status_code)
            return response
        raise BackendError(
            f"Metronome {method} {display} failed after {attempts} attempt(s): {last} (at {self._scrub(self._base)})"
        )

    def _login(self) -> None:
        """Log in to the DC/OS IAM with uid and password; stores the token."""
        url = self.config.iam_login_url()
        with self._lock:
            response = self._send(
                "POST",
                url,
                LOGIN_PATH,
                json={"uid": self.config.uid, "password": self.config.password},
                authorized=False,
            )
            if response.status_code in (401, 403):
                raise ConnectionConfigError(
                    f"DC/OS IAM at {url} refused the login of uid {self.config.uid!r} "
                    f"(HTTP {response.status_code}: {self._short(response)}); "
                    "check the connection's login and password."
                )
            if response.status_code != 200:
                raise BackendError(f"DC/OS IAM login at {url}: HTTP {response.status_code}: {self._short(response)}")
            try:
                token = response.json()["token"]
            except (ValueError, KeyError, TypeError):
                raise BackendError(f"DC/OS IAM login at {url} answered without a token.") from None
            self._token = str(token)
            log.info("Logged in to DC/OS IAM at %s as %s", url, self.config.uid)

    def _can_login(self) -> bool:
        return bool(self.config.uid and self.config.password)

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        retries: int | None = None,
    ) -> requests.Response:
        """A Metronome API call, logging in first or again once on a 401."""
        if self._token is None and self._can_login():
            self._login()
        response = self._send(method, self._base + path, path, json=json, params=params, retries=retries)
        if response.status_code == 401 and self._can_login():
            log.info("Metronome %s %s: token rejected (HTTP 401); logging in again.", method, path)
            self._login()
            response = self._send(method, self._base + path, path, json=json, params=params, retries=retries)
        if response.status_code == 401:
            what = "the configured token was rejected (expired or wrong)" if not self._can_login() else "still 401"
            raise ConnectionConfigError(
                f"Metronome {method} {path}: {what}; "
                + (
                    "give the connection a fresh token, or the IAM login and password."
                    if not self._can_login()
                    else "check the IAM user's permissions."
                )
            )
        return response

    def _fail(self, method: str, path: str, response: requests.Response) -> BackendError:
        """The error for an unexpected answer; 422 lists Metronome's validation details."""
        if response.status_code == 422:
            try:
                data = response.json()
                details = "; ".join(
                    f"{d.get('path', '?')}: {', '.join(map(str, d.get('errors', [])))}" for d in data.get("details", [])
                )
                text = f"{data.get('message', 'Object is not valid')}: {details}" if details else str(data)
            except (ValueError, AttributeError, TypeError):
                text = self._short(response)
            return MetronomeValidationError(
                f"Metronome refused the job definition ({method} {path}, HTTP 422): {self._scrub(text)[:1000]}"
            )
        return BackendError(f"Metronome {method} {path}: HTTP {response.status_code}: {self._short(response)}")

    def _get_job(self, job_id: str, *embed: str) -> dict[str, Any] | None:
        path = f"/v1/jobs/{quote(job_id, safe='')}"
        response = self._request("GET", path, params={"embed": list(embed)} if embed else None)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail("GET", path, response)
        data: dict[str, Any] = response.json()
        return data

    # ---------------------------------------------------------------------------- job bodies

    def job_definition(self, spec: JobSpec) -> dict[str, Any]:
        """The Metronome job body for ``spec`` (secret values included: never log it)."""
        if not JOB_ID_PATTERN.match(spec.key):
            raise InvalidSpecError(
                f"Job key {spec.key!r} is not a valid Metronome job id: use lowercase letters, digits and dashes "
                "in dot-separated names, not starting or ending with a dash (e.g. 'ml-train-model-0a1b2c3d4e')."
            )
        run: dict[str, Any] = dict(spec.resources.to_metronome())
        docker: dict[str, Any] = {"image": spec.image, "forcePullImage": bool(self.config.force_pull)}
        run["docker"] = docker
        command = list(spec.command) if spec.command is not None else []
        if spec.entrypoint is not None:
            cmd = shlex.join([*spec.entrypoint, *command])
            if spec.working_dir:
                cmd = f"cd {shlex.quote(spec.working_dir)} && {cmd}"
            run["cmd"] = cmd
        else:
            if spec.command is not None:
                run["args"] = command
            if spec.working_dir:
                docker["parameters"] = [{"key": "workdir", "value": spec.working_dir}]
        env: dict[str, Any] = {k: str(v) for k, v in spec.env.items()}
        store: dict[str, dict[str, str]] = {}
        for name, value in spec.secret_env.items():
            value = str(value)
            if value.startswith(DCOS_SECRET_PREFIX):
                ref = f"secret{len(store)}"
                store[ref] = {"source": value[len(DCOS_SECRET_PREFIX) :]}
                env[name] = {"secret": ref}
            else:
                env[name] = value
        if env:
            run["env"] = env
        if store:
            run["secrets"] = store
        run["restart"] = {"policy": "NEVER"}
        run["maxLaunchDelay"] = int(self.config.max_launch_delay)
        if self.config.user:
            run["user"] = self.config.user
        volumes = []
        for mount in spec.mounts:
            if not mount.source.startswith("/"):
                raise InvalidSpecError(
                    f"Mount source {mount.source!r}: Metronome mounts host paths only; give an absolute path."
                )
            volumes.append(
                {"containerPath": mount.target, "hostPath": mount.source, "mode": "RO" if mount.read_only else "RW"}
            )
        if volumes:
            run["volumes"] = volumes
        if spec.network is not None:
            if spec.network == "none":
                raise InvalidSpecError("network='none' is not supported on Metronome; use 'host', 'bridge' or a name.")
            if spec.network == "host":
                run["networks"] = [{"mode": "host"}]
            elif spec.network == "bridge":
                run["networks"] = [{"mode": "container/bridge"}]
            else:
                run["networks"] = [{"mode": "container", "name": spec.network}]
        return {
            "id": spec.key,
            "description": f"airflow-ml-provider job {spec.key}",
            "labels": spec.all_labels(),
            "run": run,
        }

    # ---------------------------------------------------------------------------- contract

    def find(self, key: str) -> JobHandle | None:
        """The job's active run (newest), else its newest finished run; ``None`` if neither exists."""
        job = self._get_job(key, "activeRuns", "history")
        if job is None:
            return None
        spec_hash = str((job.get("labels") or {}).get(LABEL_SPEC, ""))
        run = _newest(job.get("activeRuns") or [], "createdAt")
        if run is None:
            history = job.get("history") or {}
            finished = [*(history.get("successfulFinishedRuns") or []), *(history.get("failedFinishedRuns") or [])]
            run = _newest(finished, "finishedAt")
        if run is None:
            return None
        return JobHandle(self.name, key, f"{key}/{run['id']}", spec_hash)

    def submit(self, spec: JobSpec) -> JobHandle:
        """Upsert the job definition and trigger one run; :class:`JobExistsError` if a run is active."""
        body = self.job_definition(spec)
        self._extra_secrets = tuple(str(v) for v in spec.secret_env.values() if str(v))
        try:
            return self._submit(spec, body)
        finally:
            self._extra_secrets = ()

    def _submit(self, spec: JobSpec, body: dict[str, Any]) -> JobHandle:
        key = spec.key
        job_path = f"/v1/jobs/{quote(key, safe='')}"
        existing = self._get_job(key, "activeRuns")
        if existing is not None and existing.get("activeRuns"):
            run_ids = ", ".join(str(r.get("id")) for r in existing["activeRuns"])
            raise JobExistsError(f"Metronome job {key} already has an active run ({run_ids}); re-attach to it.")
        if existing is None:
            response = self._request("POST", "/v1/jobs", json=body)
            if response.status_code == 409:  # created concurrently since the GET: update it instead
                existing = {}
            elif response.status_code not in (200, 201):
                raise self._fail("POST", "/v1/jobs", response)
        if existing is not None:
            response = self._request("PUT", job_path, json=body)
            if response.status_code != 200:
                raise self._fail("PUT", job_path, response)
        log.info("Metronome job %s defined (image %s); starting a run.", key, spec.image)
        run = self._trigger(key)
        handle = JobHandle(self.name, key, f"{key}/{run['id']}", spec.spec_hash)
        log.info("Started %s (run %s).", self.describe(handle), run["id"])
        return handle

    def _trigger(self, key: str) -> Mapping[str, Any]:
        """``POST /v1/jobs/{id}/runs`` without blind retries: an ambiguous failure adopts the run it started."""
        path = f"/v1/jobs/{quote(key, safe='')}/runs"
        attempts = 1 + self.config.retries
        error: BackendError | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self.config.backoff * 2 ** (attempt - 1), _BACKOFF_CAP))
                job = self._get_job(key, "activeRuns")
                if job is None:
                    raise BackendError(f"Metronome job {key} disappeared while its run was being started.")
                active = _newest(job.get("activeRuns") or [], "createdAt")
                if active is not None:
                    log.info("Metronome %s: adopting run %s started by the failed attempt.", path, active["id"])
                    return active
            try:
                response = self._request("POST", path, retries=0)
            except BackendError as e:
                error = e
                continue
            if response.status_code in (200, 201):
                run: Mapping[str, Any] = response.json()
                return run
            raise self._fail("POST", path, response)
        raise BackendError(f"Metronome POST {path} failed after {attempts} attempt(s): {error}")

    def status(self, handle: JobHandle) -> JobStatus:
        """The run's state: active runs from ``/runs/{runId}``, finished ones from the job's history."""
        job_id, run_id = _split(handle)
        if not run_id:
            return JobStatus(GONE, message=f"handle {handle.job_id!r} names no Metronome run")
        path = f"/v1/jobs/{quote(job_id, safe='')}/runs/{quote(run_id, safe='')}"
        response = self._request("GET", path)
        if response.status_code == 200:
            run = response.json()
            raw = str(run.get("status", ""))
            state = _STATES.get(raw, PENDING)
            message = f"Metronome run {run_id} is {raw}"
            if state in (SUCCEEDED, FAILED):
                message += f" (completed at {run.get('completedAt')})"
            return JobStatus(state, message=message + self._task_note(run))
        if response.status_code != 404:
            raise self._fail("GET", path, response)
        job = self._get_job(job_id, "history")
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

    @staticmethod
    def _task_note(run: Mapping[str, Any]) -> str:
        tasks = run.get("tasks") or []
        states = ", ".join(str(t.get("status")) for t in tasks if isinstance(t, Mapping) and t.get("status"))
        return f"; task {states}" if states else ""

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
            response = self._request("POST", f"{run_path}/actions/stop")
            if response.status_code in (200, 201, 202):
                self._wait_stopped(run_path)
            elif response.status_code != 404:  # 404: the run (or job) is already finished or gone
                log.warning("Metronome stop of %s: %s", self.describe(handle), self._fail("POST", run_path, response))
        response = self._request("DELETE", job_path, params={"stopCurrentJobRuns": "true"})
        if response.status_code in (200, 204):
            log.info("Deleted Metronome job %s.", job_id)
        elif response.status_code != 404:
            log.warning("Metronome delete of job %s: %s", job_id, self._fail("DELETE", job_path, response))

    def _wait_stopped(self, run_path: str) -> None:
        deadline = time.monotonic() + self.config.stop_timeout
        while time.monotonic() < deadline:
            response = self._request("GET", run_path)
            if response.status_code == 404:
                return
            if response.status_code == 200 and _STATES.get(str(response.json().get("status"))) in (SUCCEEDED, FAILED):
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
        if self._session_obj is not None:
            self._session_obj.close()
            self._session_obj = None
