"""A faithful DC/OS Metronome v1 + IAM login test server whose job runs really execute.

No real Metronome can run in the test environment, so this server implements the part of the
documented API the backend uses (dcos/metronome ``api/src/main/resources/routes``, the v1 RAML
and ``jobspec.schema.json``) on 127.0.0.1, with the same paths, status codes and JSON shapes:

* ``POST /acs/api/v1/auth/login`` ``{"uid", "password"}`` -> ``{"token"}``; 401 with the IAM's
  ``{"title", "description", "code"}`` body on bad credentials. Every ``/v1`` call needs
  ``Authorization: token=<token>``; a missing, unknown or expired token answers 401 with
  ``WWW-Authenticate: acsjwt`` like DC/OS Admin Router.
* ``GET/POST /v1/jobs``, ``GET/PUT/DELETE /v1/jobs/{id}`` (``?embed=activeRuns|history|
  historySummary``, repeatable; ``DELETE`` answers 409 while runs are active unless
  ``?stopCurrentJobRuns=true``), ``POST/GET /v1/jobs/{id}/runs``, ``GET /v1/jobs/{id}/runs/{runId}``
  (active runs only: a finished run answers 404 and is found in the job's ``history``) and
  ``POST /v1/jobs/{id}/runs/{runId}/actions/stop``.
* Job bodies are validated like the JSON schema (422 ``{"message": "Object is not valid",
  "details": [{"path", "errors"}]}``): id pattern, unknown fields, ``run.cpus/mem/disk`` required
  with their minimums (0.01, 32, 0), ``cmd`` xor ``args``, one of ``cmd``/``args``/``docker``,
  secret env references declared in ``run.secrets``...
* Runs really execute, like Mesos' command executor without a container: ``cmd`` runs as
  ``/bin/sh -c <cmd>``, ``args`` are executed directly; the docker image is ignored. ``env`` goes
  into the process environment (``{"secret": name}`` values are resolved from the ``secrets``
  store given to the server via ``run.secrets[name].source``), the working directory is a fresh
  sandbox (``MESOS_SANDBOX``, holding ``stdout``/``stderr``), or ``docker.parameters``'
  ``workdir`` if given. A run moves INITIAL -> STARTING -> ACTIVE -> SUCCESS/FAILED by exit code;
  finished runs leave the active list and enter the job's history. Stop sends SIGTERM to the
  process group, SIGKILL after ``kill_grace`` seconds; a stopped run ends FAILED.

Test hooks: :meth:`MetronomeTestServer.fail_next` (answer the next n requests with a status),
:meth:`~MetronomeTestServer.drop_next` (close the next n connections without answering),
:meth:`~MetronomeTestServer.expire_tokens`, and :attr:`~MetronomeTestServer.requests`, the log of
every request (method, path with query, whether it carried an Authorization header, body).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets as pysecrets
import shutil
import signal
import ssl
import string
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from scripts.testbed.loopback_http import LoopbackHttpServer, QuietHandler

LOGIN_PATH = "/acs/api/v1/auth/login"
_ID_PATTERN = re.compile(r"^([a-z0-9]+(-[a-z0-9]+)*)(\.([a-z0-9]+(-[a-z0-9]+)*))*$")
_JOB_FIELDS = {"id", "description", "labels", "run", "schedules"}
_RUN_FIELDS = {
    "args",
    "artifacts",
    "cmd",
    "cpus",
    "gpus",
    "disk",
    "networks",
    "ucr",
    "docker",
    "env",
    "maxLaunchDelay",
    "mem",
    "placement",
    "user",
    "taskKillGracePeriodSeconds",
    "restart",
    "volumes",
    "secrets",
}
_DOCKER_FIELDS = {"image", "forcePullImage", "privileged", "parameters"}


class RecordedRequest(NamedTuple):
    """One request as the server saw it."""

    method: str
    path: str
    has_auth: bool
    body: str


def _now() -> str:
    """Metronome's timestamp format, ``yyyy-MM-dd'T'HH:mm:ss.SSSZ``."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


def _run_id() -> str:
    """Like Metronome's: a UTC timestamp and five random characters."""
    suffix = "".join(random.choices(string.ascii_uppercase + string.digits, k=5))  # noqa: S311
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + suffix


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_job(body: Any) -> list[dict[str, Any]]:
    """Validation errors of a job body, in Metronome's ``details`` shape (empty when valid)."""
    errors: list[dict[str, Any]] = []

    def err(path: str, message: str) -> None:
        errors.append({"path": path, "errors": [message]})

    if not isinstance(body, dict):
        err("/", "error.expected.jsobject")
        return errors
    for field in sorted(set(body) - _JOB_FIELDS):
        err(f"/{field}", "Additional properties are not allowed")
    job_id = body.get("id")
    if job_id is None:
        err("/id", "error.path.missing")
    elif not isinstance(job_id, str) or not _ID_PATTERN.match(job_id):
        err(
            "/id",
            "must fully match regular expression '^([a-z0-9]+(\\-[a-z0-9]+)*)(\\.([a-z0-9]+(\\-[a-z0-9]+)*))*$'",
        )
    labels = body.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        err("/labels", "error.expected.jsstring")
    run = body.get("run")
    if run is None:
        err("/run", "error.path.missing")
        return errors
    if not isinstance(run, dict):
        err("/run", "error.expected.jsobject")
        return errors
    for field in sorted(set(run) - _RUN_FIELDS):
        err(f"/run/{field}", "Additional properties are not allowed")
    for field, minimum in (("cpus", 0.01), ("mem", 32), ("disk", 0)):
        value = run.get(field)
        if value is None:
            err(f"/run/{field}", "error.path.missing")
        elif not _is_number(value):
            err(f"/run/{field}", "error.expected.jsnumber")
        elif value < minimum:
            err(f"/run/{field}", f"is less than {minimum}")
    if "gpus" in run and (not isinstance(run["gpus"], int) or isinstance(run["gpus"], bool) or run["gpus"] < 0):
        err("/run/gpus", "must be an integer >= 0")
    cmd, args = run.get("cmd"), run.get("args")
    if cmd is not None and (not isinstance(cmd, str) or not cmd):
        err("/run/cmd", "must be a non-empty string")
    if args is not None and (not isinstance(args, list) or not all(isinstance(a, str) for a in args)):
        err("/run/args", "error.expected.jsarray of strings")
    if cmd is not None and args is not None:
        err("/run", "Only one of cmd or args may be supplied")
    docker = run.get("docker")
    if docker is not None:
        if not isinstance(docker, dict) or not isinstance(docker.get("image"), str) or not docker["image"]:
            err("/run/docker/image", "error.path.missing")
        else:
            for field in sorted(set(docker) - _DOCKER_FIELDS):
                err(f"/run/docker/{field}", "Additional properties are not allowed")
            for i, param in enumerate(docker.get("parameters", [])):
                if not isinstance(param, dict) or set(param) != {"key", "value"}:
                    err(f"/run/docker/parameters({i})", "needs exactly key and value")
    if cmd is None and args is None and docker is None and run.get("ucr") is None:
        err("/run", "A job needs a cmd, args or a container image")
    declared = run.get("secrets", {})
    if not isinstance(declared, dict) or not all(
        isinstance(s, dict) and isinstance(s.get("source"), str) for s in declared.values()
    ):
        err("/run/secrets", "each secret needs a source")
        declared = {}
    env = run.get("env", {})
    if not isinstance(env, dict):
        err("/run/env", "error.expected.jsobject")
    else:
        for name, value in env.items():
            if isinstance(value, str):
                continue
            if isinstance(value, dict) and isinstance(value.get("secret"), str):
                if value["secret"] not in declared:
                    err(f"/run/env/{name}", f"references the undeclared secret {value['secret']!r}")
                continue
            err(f"/run/env/{name}", 'must be a string or {"secret": name}')
    if "maxLaunchDelay" in run and (
        not isinstance(run["maxLaunchDelay"], int)
        or isinstance(run["maxLaunchDelay"], bool)
        or run["maxLaunchDelay"] < 1
    ):
        err("/run/maxLaunchDelay", "is less than 1")
    restart = run.get("restart")
    if restart is not None and (not isinstance(restart, dict) or restart.get("policy") not in ("NEVER", "ON_FAILURE")):
        err("/run/restart/policy", "'NEVER' or 'ON_FAILURE' required")
    for i, volume in enumerate(run.get("volumes", []) or []):
        if not isinstance(volume, dict) or not volume.get("containerPath"):
            err(f"/run/volumes({i})/containerPath", "error.path.missing")
        elif volume.get("mode", "RW") not in ("RO", "RW"):
            err(f"/run/volumes({i})/mode", "must be RO or RW")
    for i, network in enumerate(run.get("networks", []) or []):
        if not isinstance(network, dict) or network.get("mode") not in ("host", "container/bridge", "container"):
            err(f"/run/networks({i})/mode", "must be host, container/bridge or container")
    return errors


class _Run:
    """One job run and its local process."""

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.id = _run_id()
        self.spec = json.loads(json.dumps(job.spec["run"]))
        self.status = "INITIAL"
        self.created_at = _now()
        self.completed_at: str | None = None
        self.task_id = f"{job.id}_{self.id}.{pysecrets.token_hex(8)}"
        self.task: dict[str, Any] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.stop_requested = False
        self.message = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "jobId": self.job.id,
            "status": self.status,
            "createdAt": self.created_at,
            "completedAt": self.completed_at,
            "tasks": [dict(self.task)] if self.task else [],
        }


class _Job:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.id: str = spec["id"]
        self.spec = spec
        self.active: dict[str, _Run] = {}
        self.successful: list[dict[str, Any]] = []
        self.failed: list[dict[str, Any]] = []
        self.success_count = 0
        self.failure_count = 0
        self.last_success_at: str | None = None
        self.last_failure_at: str | None = None

    def definition(self) -> dict[str, Any]:
        spec = {"id": self.id, "description": self.spec.get("description", ""), "labels": {}}
        spec.update({k: v for k, v in self.spec.items() if k != "schedules"})
        return spec

    def info(self, embed: set[str]) -> dict[str, Any]:
        out = self.definition()
        if "activeRuns" in embed:
            out["activeRuns"] = [r.to_json() for r in self.active.values()]
        if "history" in embed:
            out["history"] = {
                "successCount": self.success_count,
                "failureCount": self.failure_count,
                "lastSuccessAt": self.last_success_at,
                "lastFailureAt": self.last_failure_at,
                "successfulFinishedRuns": list(self.successful),
                "failedFinishedRuns": list(self.failed),
            }
        if "historySummary" in embed:
            out["historySummary"] = {
                "successCount": self.success_count,
                "failureCount": self.failure_count,
                "lastSuccessAt": self.last_success_at,
                "lastFailureAt": self.last_failure_at,
            }
        if "schedules" in embed:
            out["schedules"] = []
        return out


class MetronomeTestServer:
    """Metronome v1 and DC/OS IAM login on 127.0.0.1 (random port); a context manager.

    :param uid: the IAM user allowed to log in.
    :param password: its password.
    :param token_ttl: seconds a token stays valid (``None``: until :meth:`expire_tokens`).
    :param tls: serve HTTPS with this server context.
    :param secrets: the DC/OS secret store (``{"/path": "value"}``) for ``{"secret": ...}`` env.
    :param launch_delay: seconds a run stays INITIAL and then STARTING.
    :param kill_grace: seconds between SIGTERM and SIGKILL when a run is stopped.
    :param history_limit: finished runs kept per job and outcome (Metronome keeps a bounded history).
    """

    def __init__(
        self,
        uid: str = "admin",
        password: str = "metronome-test-password",  # noqa: S107 - a test server's own password
        *,
        token_ttl: float | None = None,
        tls: ssl.SSLContext | None = None,
        secrets: dict[str, str] | None = None,
        launch_delay: float = 0.1,
        kill_grace: float = 1.0,
        history_limit: int = 10,
    ) -> None:
        self.uid = uid
        self.password = password
        self.token_ttl = token_ttl
        self.secret_store = dict(secrets or {})
        self.launch_delay = launch_delay
        self.kill_grace = kill_grace
        self.history_limit = history_limit
        self.requests: list[RecordedRequest] = []
        self.logins = 0
        self._tokens: dict[str, float] = {}
        self._jobs: dict[str, _Job] = {}
        self._runs: list[_Run] = []
        self._faults: list[int] = []
        self._drops = 0
        self._lock = threading.RLock()
        self._closed = False
        self._sandbox_root = tempfile.mkdtemp(prefix="metronome-test-")
        server = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                auth = self.headers.get("Authorization")
                with server._lock:
                    server.requests.append(
                        RecordedRequest(self.command, self.path, auth is not None, raw.decode("utf-8", "replace"))
                    )
                    drop = server._drops > 0
                    if drop:
                        server._drops -= 1
                    fault = server._faults.pop(0) if server._faults and not drop else None
                if drop:
                    self.close_connection = True
                    return
                if fault is not None:
                    self._send(fault, _html(fault, "Service Unavailable"), "text/html")
                    return
                status, body = server._dispatch(self.command, self.path, auth, raw)
                headers = {"WWW-Authenticate": "acsjwt"} if status == 401 and isinstance(body, str) else {}
                if isinstance(body, str):
                    self._send(status, body, "text/html", headers)
                else:
                    self._send(status, json.dumps(body), "application/json", headers)

            def _send(self, status: int, text: str, ctype: str, headers: dict[str, str] | None = None) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

        self._http = LoopbackHttpServer(Handler, name="metronome-test", tls=tls, poll_interval=0.05)
        self.url = self._http.url

    # ----------------------------------------------------------------- life cycle and test hooks

    def start(self) -> MetronomeTestServer:
        """Serve in a background thread."""
        self._http.start()
        return self

    def close(self) -> None:
        """Stop serving and kill every run's process group."""
        with self._lock:
            self._closed = True
            runs = list(self._runs)
        for run in runs:
            self._kill(run, signal.SIGKILL)
        for run in runs:
            if run.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.process.wait(timeout=5)
        self._http.stop()
        shutil.rmtree(self._sandbox_root, ignore_errors=True)

    def __enter__(self) -> MetronomeTestServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests (any path) with ``status`` and an Admin Router HTML page."""
        with self._lock:
            self._faults.extend([status] * n)

    def drop_next(self, n: int) -> None:
        """Close the next ``n`` connections without answering (a connection error for the client)."""
        with self._lock:
            self._drops += n

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far (the next call with one answers 401)."""
        with self._lock:
            self._tokens.clear()

    def reset_log(self) -> None:
        """Forget the requests recorded so far."""
        with self._lock:
            self.requests.clear()

    def process(self, job_id: str, run_id: str) -> subprocess.Popen[bytes] | None:
        """The local process of a run (active or finished), if it was started."""
        with self._lock:
            for run in self._runs:
                if run.job.id == job_id and run.id == run_id:
                    return run.process
        return None

    def job_ids(self) -> list[str]:
        """Ids of the jobs currently defined."""
        with self._lock:
            return sorted(self._jobs)

    # ----------------------------------------------------------------------------- HTTP routes

    def _dispatch(self, method: str, target: str, auth: str | None, raw: bytes) -> tuple[int, Any]:
        split = urlsplit(target)
        path, query = split.path.rstrip("/") or "/", parse_qs(split.query)
        if path == LOGIN_PATH:
            if method != "POST":
                return 405, {"message": "Method not allowed"}
            return self._login(raw)
        if not path.startswith("/v1/"):
            return 404, _html(404, "Not Found")
        if not self._authorized(auth):
            return 401, _html(401, "Authorization Required")
        parts = path.split("/")[2:]  # after "/v1"
        embed = set(query.get("embed", []))
        body: Any = None
        if method in ("POST", "PUT") and raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return 400, {"message": "Invalid JSON", "details": [{"path": "/", "errors": ["error.invalid.json"]}]}
        with self._lock:
            if parts == ["jobs"]:
                if method == "GET":
                    return 200, [job.info(embed) for job in self._jobs.values()]
                if method == "POST":
                    return self._create(body)
            elif len(parts) == 2 and parts[0] == "jobs":
                job = self._jobs.get(parts[1])
                if method in ("GET", "PUT", "DELETE") and job is None:
                    return 404, {"id": parts[1], "message": "Job not found"}
                assert job is not None or method not in ("GET", "PUT", "DELETE")
                if method == "GET" and job is not None:
                    return 200, job.info(embed)
                if method == "PUT" and job is not None:
                    return self._update(job, body)
                if method == "DELETE" and job is not None:
                    stop = (query.get("stopCurrentJobRuns") or ["false"])[0].lower() == "true"
                    return self._delete(job, stop)
            elif len(parts) >= 3 and parts[0] == "jobs" and parts[2] == "runs":
                job = self._jobs.get(parts[1])
                if job is None:
                    return 404, {"id": parts[1], "message": "Job not found"}
                if len(parts) == 3 and method == "POST":
                    return 201, self._trigger(job).to_json()
                if len(parts) == 3 and method == "GET":
                    return 200, [r.to_json() for r in job.active.values()]
                if len(parts) in (4, 6):
                    run = job.active.get(parts[3])
                    if run is None:
                        return 404, {"jobSpec": job.id, "id": parts[3], "message": "Job Run not found"}
                    if len(parts) == 4 and method == "GET":
                        return 200, run.to_json()
                    if parts[4:] == ["actions", "stop"] and method == "POST":
                        self._stop(run)
                        return 200, run.to_json()
        return 404, _html(404, "Not Found")

    def _login(self, raw: bytes) -> tuple[int, Any]:
        try:
            creds = json.loads(raw or b"{}")
        except ValueError:
            return 400, {
                "title": "Bad Request",
                "description": "Request body is not valid JSON",
                "code": "ERR_INVALID_DATA",
            }
        if not isinstance(creds, dict) or creds.get("uid") != self.uid or creds.get("password") != self.password:
            return 401, {
                "title": "Bad credentials",
                "description": "The provided credentials were not accepted",
                "code": "ERR_INVALID_CREDENTIALS",
            }
        token = pysecrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl if self.token_ttl is not None else float("inf")
            self.logins += 1
        return 200, {"token": token}

    def _authorized(self, auth: str | None) -> bool:
        if not auth or not auth.startswith("token="):
            return False
        with self._lock:
            expiry = self._tokens.get(auth[len("token=") :])
        return expiry is not None and time.monotonic() < expiry

    def _create(self, body: Any) -> tuple[int, Any]:
        details = validate_job(body)
        if details:
            return 422, {"message": "Object is not valid", "details": details}
        if body["id"] in self._jobs:
            return 409, {"message": "Job with this id already exists"}
        job = _Job(body)
        self._jobs[job.id] = job
        return 201, job.definition()

    def _update(self, job: _Job, body: Any) -> tuple[int, Any]:
        details = validate_job(body)
        if details:
            return 422, {"message": "Object is not valid", "details": details}
        job.spec = dict(body, id=job.id)  # Metronome takes the id from the path
        return 200, job.definition()

    def _delete(self, job: _Job, stop: bool) -> tuple[int, Any]:
        if job.active and not stop:
            return 409, {"message": "There are active job runs. Override with stopCurrentJobRuns=true"}
        for run in list(job.active.values()):
            self._stop(run)
        del self._jobs[job.id]
        return 200, job.definition()

    # ---------------------------------------------------------------------------------- runs

    def _trigger(self, job: _Job) -> _Run:
        run = _Run(job)
        job.active[run.id] = run
        self._runs.append(run)
        threading.Thread(target=self._execute, args=(run,), name=f"run-{run.id}", daemon=True).start()
        return run

    def _stop(self, run: _Run) -> None:
        run.stop_requested = True
        if run.process is None:
            return  # the launcher sees stop_requested and never starts it
        self._kill(run, signal.SIGTERM)
        process = run.process

        def escalate() -> None:
            try:
                process.wait(timeout=self.kill_grace)
            except subprocess.TimeoutExpired:
                self._kill(run, signal.SIGKILL)

        threading.Thread(target=escalate, daemon=True).start()

    @staticmethod
    def _kill(run: _Run, sig: signal.Signals) -> None:
        if run.process is not None and run.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.process.pid, sig)

    def _environment(self, run: _Run, sandbox: str) -> dict[str, str] | None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": sandbox,
            "MESOS_SANDBOX": sandbox,
            "MESOS_TASK_ID": run.task_id,
        }
        declared = run.spec.get("secrets", {})
        for name, value in (run.spec.get("env") or {}).items():
            if isinstance(value, str):
                env[name] = value
                continue
            source = declared[value["secret"]]["source"]
            if source not in self.secret_store:
                run.message = f"secret {source} not found in the secret store"
                return None
            env[name] = self.secret_store[source]
        return env

    def _execute(self, run: _Run) -> None:
        time.sleep(self.launch_delay)
        sandbox = tempfile.mkdtemp(prefix=f"{run.id}-", dir=self._sandbox_root)
        with self._lock:
            if run.stop_requested or self._closed:
                self._finish(run, "TASK_KILLED")
                return
            run.status = "STARTING"
            run.task = {"id": run.task_id, "status": "TASK_STAGING", "startedAt": _now(), "completedAt": None}
            env = self._environment(run, sandbox)
            if env is None:
                self._finish(run, "TASK_FAILED")
                return
            cwd = sandbox
            for param in (run.spec.get("docker") or {}).get("parameters", []):
                if param["key"] == "workdir":
                    cwd = param["value"]
            command: list[str] = (
                ["/bin/sh", "-c", run.spec["cmd"]]
                if run.spec.get("cmd") is not None
                else list(run.spec.get("args", []))
            )
            if not command:
                run.message = "no cmd or args: the image's default command cannot run without a container"
                self._finish(run, "TASK_FAILED")
                return
            try:
                with (
                    open(os.path.join(sandbox, "stdout"), "wb") as out,
                    open(os.path.join(sandbox, "stderr"), "wb") as err,
                ):
                    run.process = subprocess.Popen(
                        command,
                        env=env,
                        cwd=cwd,
                        stdout=out,
                        stderr=err,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
            except OSError as e:
                run.message = f"could not launch the task: {e}"
                self._finish(run, "TASK_FAILED")
                return
        time.sleep(self.launch_delay / 2)
        with self._lock:
            if run.process.poll() is None and not run.stop_requested:
                run.status = "ACTIVE"
                if run.task is not None:
                    run.task["status"] = "TASK_RUNNING"
        code = run.process.wait()
        with self._lock:
            if run.stop_requested:
                self._finish(run, "TASK_KILLED")
            else:
                self._finish(run, "TASK_FINISHED" if code == 0 else "TASK_FAILED")

    def _finish(self, run: _Run, task_state: str) -> None:
        """Called with the lock held: the run leaves the active list and enters the history."""
        run.completed_at = _now()
        run.status = "SUCCESS" if task_state == "TASK_FINISHED" else "FAILED"
        if run.task is not None:
            run.task.update(status=task_state, completedAt=run.completed_at)
        job = run.job
        job.active.pop(run.id, None)
        if self._jobs.get(job.id) is not job:
            return  # the job was deleted meanwhile: its history went with it
        entry = {"id": run.id, "createdAt": run.created_at, "finishedAt": run.completed_at, "tasks": [run.task_id]}
        if run.status == "SUCCESS":
            job.successful = ([entry, *job.successful])[: self.history_limit]
            job.success_count += 1
            job.last_success_at = run.completed_at
        else:
            job.failed = ([entry, *job.failed])[: self.history_limit]
            job.failure_count += 1
            job.last_failure_at = run.completed_at


def _html(status: int, reason: str) -> str:
    """The kind of page DC/OS Admin Router (nginx) answers with."""
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
    )
