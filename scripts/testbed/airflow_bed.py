"""A real, throwaway Apache Airflow 3 deployment for integration tests.

:class:`AirflowBed` runs the four Airflow 3 components as separate processes -- ``api-server``,
``scheduler`` (LocalExecutor), ``triggerer`` and ``dag-processor`` -- against a SQLite database in
its own ``AIRFLOW_HOME``, on a free port of 127.0.0.1. Tests trigger DAGs through the REST API
(``/api/v2``) and watch task-instance states, e.g. a deferrable sensor going ``deferred`` and then
``success``.

Everything is configured through the environment (:attr:`AirflowBed.env`): inherited ``AIRFLOW*``
variables are dropped, ``AIRFLOW_HOME``/``AIRFLOW_CONFIG`` point into the bed's home, so neither
``~/airflow`` nor any global configuration is read.

Shutdown (:meth:`AirflowBed.stop`) sends SIGINT to each component's main process (each handles it
cleanly and stops its own children in order), then SIGTERM and SIGKILL to its process group, and
finally sweeps any process that still carries this bed's marker variable in its environment, so
nothing is orphaned even when a component forked children into another session.

Measured on a 2-CPU VM: start() ~10-13 s (``db migrate`` ~2.5 s, then ~8 s until all four
components heartbeat); a new DAG file is parsed within ~2-3 s; trigger -> first task ``running``
~1 s once the LocalExecutor is warm (~3-4 s for the very first task: the task process imports);
stop() ~2.5-3.5 s.

Command line (stays up until SIGINT/SIGTERM, prints one JSON line once healthy)::

    python -m scripts.testbed.airflow_bed --dags DIR [--home DIR] [--pool NAME=SLOTS] [--env KEY=VALUE]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from scripts.testbed import pid_alive
from scripts.testbed.loopback_http import free_port

#: The components of an Airflow 3 deployment, in start order, with their CLI arguments.
#: ``--skip-serve-logs``: the log servers would take fixed ports (8793/8794); with a LocalExecutor
#: every log is a local file the api-server reads directly, so they are not needed.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "api-server": ("api-server",),
    "scheduler": ("scheduler", "--skip-serve-logs"),
    "triggerer": ("triggerer", "--skip-serve-logs"),
    "dag-processor": ("dag-processor",),
}
#: Task-instance states after which nothing changes any more (without a clear or a retry).
TERMINAL_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
USERNAME = "admin"
#: Environment variable set only on the bed's component processes (and so inherited by everything
#: they spawn): stop() kills whatever still carries it.
MARKER_VAR = "_AIRFLOW_BED_ID"
STOP_GRACE = 15.0


class AirflowBedError(RuntimeError):
    """The bed failed to start, a REST call failed, or a wait timed out."""


def _airflow_command() -> list[str]:
    """How to run the ``airflow`` CLI of the interpreter running the tests."""
    script = Path(sys.executable).parent / "airflow"
    if script.exists():
        return [str(script)]
    found = shutil.which("airflow")
    return [found] if found else [sys.executable, "-m", "airflow"]


def _tail(path: Path, n: int) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(lines[-n:])


def _pids_with_env(marker: bytes) -> list[int]:
    """PIDs of the processes whose environment contains the ``marker`` entry (Linux /proc)."""
    pids = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, state letter) of the direct children of ``pid`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append((int(entry.name), fields[0]))
    return out


#: Keys of structured task-log entries not repeated on every rendered line (the TI is known).
_LOG_CONTEXT_KEYS = frozenset(
    {
        "timestamp",
        "level",
        "event",
        "logger",
        "ti_id",
        "map_index",
        "try_number",
        "task_id",
        "run_id",
        "dag_id",
        "filename",
        "lineno",
    }
)


def _format_log_content(content: Any) -> str:
    """Render the ``content`` of ``GET .../logs/{try}`` (structured entries or plain text) as text."""
    if isinstance(content, str):
        return content
    lines = []
    for item in content or []:
        if not isinstance(item, dict):
            lines.append(str(item))
            continue
        fields = {k: v for k, v in item.items() if k not in _LOG_CONTEXT_KEYS}
        parts = [str(item.get(k, "")) for k in ("timestamp", "level", "logger") if item.get(k)]
        parts.append(str(item.get("event", "")))
        parts.extend(f"{k}={v}" for k, v in fields.items())
        lines.append(" ".join(parts))
    return "\n".join(lines)


class AirflowBed:
    """A real Airflow 3 deployment (api-server, scheduler, triggerer, dag-processor) in ``home``.

    :param home: the AIRFLOW_HOME to use (created; the database, logs and config live there).
    :param dags_folder: the DAGs folder the dag-processor parses.
    :param env: extra environment for every component and :meth:`cli` (e.g. ``AIRFLOW_CONN_*``,
        ``PYTHONPATH`` or ``AIRFLOW__SECTION__KEY`` overrides); applied last.
    :param pools: pools to create, name -> slots; they exist when :meth:`start` returns.
    :param database: ``"sqlite"`` (a file in ``home``, WAL mode) or ``"postgres"``: a database of
        its own on the local PostgreSQL (127.0.0.1:5432, trust auth), created by :meth:`start` and
        dropped by :meth:`stop`. Use PostgreSQL when many tasks run at once: SQLite's single
        writer then makes API calls and heartbeats fail with "database is locked".
    """

    home: Path
    base_url: str
    env: dict[str, str]

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        *,
        env: dict[str, str] | None = None,
        pools: dict[str, int] | None = None,
        database: str = "sqlite",
    ) -> None:
        if database not in ("sqlite", "postgres"):
            raise ValueError(f"database={database!r}: use 'sqlite' or 'postgres'")
        self.database = database
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.pools = dict(pools or {})
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(16)
        self.log_dir = self.home / "logs"
        self.component_log_dir = self.home / "component-logs"
        self._bed_id = secrets.token_hex(8)
        self.pg_database = f"airflow_bed_{self._bed_id}"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._log_files: list[IO[bytes]] = []
        self._token: str | None = None
        self._lock = threading.Lock()
        self._stopped = False
        #: Seconds after start() began at which each phase ended (``migrate``, ``pools``,
        #: ``healthy``, ``total``).
        self.timings: dict[str, float] = {}
        self._t0 = 0.0
        self.env = self._build_env(env or {})

    @classmethod
    def for_dags(
        cls,
        base: Path,
        dag_files: dict[str, str],
        *,
        env: dict[str, str] | None = None,
        pools: dict[str, int] | None = None,
        database: str = "sqlite",
    ) -> AirflowBed:
        """A bed in a fresh ``base`` (emptied first) whose DAGs folder holds ``dag_files`` (name -> source).

        Not started yet: call :meth:`start` (or use it as a context manager).
        """
        import shutil

        base = Path(base)
        shutil.rmtree(base, ignore_errors=True)
        dags = base / "dags"
        dags.mkdir(parents=True)
        for name, source in dag_files.items():
            (dags / name).write_text(source)
        return cls(base / "home", dags, env=env, pools=pools, database=database)

    # ------------------------------------------------------------------ configuration

    def _build_env(self, extra: dict[str, str]) -> dict[str, str]:
        home = self.home
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
        venv_bin = str(Path(sys.executable).parent)
        inherited["PATH"] = os.pathsep.join([venv_bin, inherited.get("PATH", os.defpath)])
        settings = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
            # core
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.pg_database}"
                if self.database == "postgres"
                else f"sqlite:///{home}/airflow.db"
            ),
            # api-server: loopback only, one worker, per-bed secrets
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__EXPOSE_CONFIG": "True",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # latency: find new DAG files quickly, keep the scheduler loop tight
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            # a task's supervisor can linger one heartbeat interval after its task exits (race in
            # Airflow's select loop); a short interval frees executor slots and shutdown sooner
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
            # no fixed ports besides the api-server's
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.log_dir),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        }
        return {**inherited, **settings, **extra}

    # ------------------------------------------------------------------ lifecycle

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` with this bed's environment; raise with its output if ``check`` fails."""
        done = subprocess.run(
            [*_airflow_command(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            cwd=self.home,
            check=False,
        )
        if check and done.returncode != 0:
            raise AirflowBedError(
                f"`airflow {' '.join(args)}` exited {done.returncode}\n"
                f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
            )
        return done

    def start(self, timeout: float = 120) -> None:
        """Migrate the database, create the pools, start the components and wait until all are healthy."""
        if self._procs:
            raise AirflowBedError("this bed was already started")
        self._t0 = t0 = time.monotonic()
        deadline = t0 + timeout
        for d in (self.home, self.log_dir, self.component_log_dir, self.home / "plugins"):
            d.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({USERNAME: self.password}))
        try:
            if self.database == "postgres":
                self._postgres("CREATE DATABASE {}")
            self.cli("db", "migrate")
            if self.database == "sqlite":
                self._enable_wal()
            self.timings["migrate"] = time.monotonic() - t0
            atexit.register(self.stop)
            self._stopped = False
            for name, args in COMPONENTS.items():
                self._launch(name, args)
            self._wait_healthy(deadline, before=self._create_pools)
            self.timings["healthy"] = self.timings["total"] = time.monotonic() - t0
        except BaseException as e:
            tail = self.logs_tail(40)
            self.stop()
            if isinstance(e, AirflowBedError) or not isinstance(e, Exception):
                raise
            raise AirflowBedError(f"Airflow bed failed to start: {e!r}\n{tail}") from e

    def _postgres(self, statement: str) -> None:
        """Run one statement (``{}`` = this bed's database name) as postgres on the local server."""
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL(statement).format(sql.Identifier(self.pg_database)))
        finally:
            conn.close()

    def dump_database(self) -> str:
        """The whole metadata database as text (``pg_dump`` or SQLite's dump), for "appears nowhere" checks."""
        if self.database == "postgres":
            return subprocess.run(
                ["pg_dump", "--no-owner", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", self.pg_database],
                check=True,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=120,
            ).stdout
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.home / "airflow.db")) as db:
            return "\n".join(db.iterdump())

    def _enable_wal(self) -> None:
        """Put the SQLite database in WAL mode (persistent), a cheap precaution against locking.

        Four components plus the task supervisors share one SQLite file; in WAL mode readers (e.g.
        the api-server answering a polling test) never block the writer. Without it no ``database is
        locked`` was seen in the runs measured here either, but this is the safer setting.
        """
        with contextlib.closing(sqlite3.connect(self.home / "airflow.db")) as db:
            db.execute("PRAGMA journal_mode=WAL")

    def _launch(self, name: str, args: tuple[str, ...]) -> None:
        log = (self.component_log_dir / f"{name}.log").open("ab")
        self._log_files.append(log)
        env = {**self.env, MARKER_VAR: self._bed_id}
        # Own session = own process group: stop() signals the component with all its children.
        self._procs[name] = subprocess.Popen(
            [*_airflow_command(), *args],
            env=env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def component_pids(self) -> dict[str, int]:
        """The pid of each started component (``scheduler``, ``triggerer``, ...), for measurements."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def check_alive(self) -> None:
        """Raise :class:`AirflowBedError` with the logs' tail if a component has exited."""
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise AirflowBedError(f"component {name} exited with {proc.returncode}\n{self.logs_tail(60)}")

    def health(self) -> dict[str, Any]:
        """``GET /api/v2/monitor/health`` (no authentication needed)."""
        status, body = self._request("GET", "/api/v2/monitor/health", auth=False)
        if status != 200:
            raise AirflowBedError(f"health: HTTP {status}: {body}")
        result: dict[str, Any] = body
        return result

    def _create_pools(self) -> None:
        """Create (or resize) the pools through the REST API; an ``airflow pools`` CLI call costs ~2 s more."""
        for name, slots in self.pools.items():
            body = {"name": name, "slots": slots, "description": f"test pool {name}", "include_deferred": False}
            status, answer = self._request("POST", "/api/v2/pools", body)
            if status == 409:  # already there (a retried start-up step)
                self.api("PATCH", f"/api/v2/pools/{self._q(name)}", body)
            elif not 200 <= status < 300:
                raise AirflowBedError(f"POST /api/v2/pools {name}: HTTP {status}: {answer}")
        self.timings["pools"] = time.monotonic() - self._t0

    def _wait_healthy(self, deadline: float, before: Callable[[], None] | None = None) -> None:
        """Wait for all components to report healthy; run ``before`` once the api-server answers."""
        last: object = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                last = self.health()
                if before is not None:
                    before()
                    before = None
                parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                if all((last.get(p) or {}).get("status") == "healthy" for p in parts):
                    return
            except (OSError, AirflowBedError) as e:
                last = e
            time.sleep(0.25)
        raise AirflowBedError(f"Airflow did not become healthy in time; last health: {last}\n{self.logs_tail()}")

    def stop(self) -> None:
        """Stop every component and everything it spawned; idempotent.

        SIGINT to each component's main process, SIGTERM to its process group after half the grace
        period, SIGKILL after the full one; then SIGKILL for any process still carrying this bed's
        marker variable, and a short wait until init has reaped the orphans.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            procs = dict(self._procs)
            marker = f"{MARKER_VAR}={self._bed_id}".encode()
            # every process started by the bed, recorded now: a component may exit before its children
            members = set(_pids_with_env(marker))
            for proc in procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
            deadline = time.monotonic() + STOP_GRACE
            escalated = False
            runner_gone_since: float | None = None
            while (now := time.monotonic()) < deadline:
                live = [pid for pid in members | set(_pids_with_env(marker)) if pid_alive(pid)]
                if all(p.poll() is not None for p in procs.values()) and not live:
                    break
                if not escalated and now > deadline - STOP_GRACE / 2:
                    escalated = True
                    self._signal_groups(procs, signal.SIGTERM)
                # Airflow 3.3 race: the triggerer's supervisor may miss that its trigger runner already
                # exited (its sockets closed first) and sit out a 10 s escalation timer on an empty
                # selector. Once the runner is gone there is nothing left for the triggerer to do.
                triggerer = procs.get("triggerer")
                kids = _children(triggerer.pid) if triggerer and triggerer.poll() is None else []
                if kids and all(state == "Z" for _, state in kids):
                    runner_gone_since = runner_gone_since or now
                    if now - runner_gone_since > 1.0 and triggerer:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(triggerer.pid, signal.SIGKILL)
                else:
                    runner_gone_since = None
                time.sleep(0.1)
            self._signal_groups(procs, signal.SIGKILL)
            for pid in _pids_with_env(marker):  # escaped the process groups (setsid) or not done in time
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            for proc in procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            # Orphans of exited components are reaped by init, which may take a moment: wait for them
            # to vanish so that `ps`/`pgrep` right after stop() shows nothing of this bed.
            reap_deadline = time.monotonic() + 3
            while any(Path(f"/proc/{pid}").exists() for pid in members) and time.monotonic() < reap_deadline:
                time.sleep(0.05)
            for f in self._log_files:
                f.close()
            self._log_files.clear()
            if self.database == "postgres":
                with contextlib.suppress(Exception):
                    self._postgres("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            self._procs.clear()
            self._token = None
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)

    def pids(self) -> list[int]:
        """PIDs of the live processes this bed started: the components and everything they spawned."""
        return [pid for pid in _pids_with_env(f"{MARKER_VAR}={self._bed_id}".encode()) if pid_alive(pid)]

    @staticmethod
    def _signal_groups(procs: dict[str, subprocess.Popen[bytes]], sig: signal.Signals) -> None:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)  # pgid == pid (start_new_session)

    def __enter__(self) -> AirflowBed:
        """Start the bed (default timeout) and return it."""
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the bed."""
        self.stop()

    # ------------------------------------------------------------------ REST

    def _get_token(self) -> str:
        status, body = self._request(
            "POST", "/auth/token", {"username": USERNAME, "password": self.password}, auth=False
        )
        if status not in (200, 201) or not isinstance(body, dict) or "access_token" not in body:
            raise AirflowBedError(f"POST /auth/token: HTTP {status}: {body}")
        token: str = body["access_token"]
        return token

    def _request(
        self,
        method: str,
        path: str,
        json_body: object | None = None,
        *,
        auth: bool = True,
        timeout: float = 30,
    ) -> tuple[int, Any]:
        """One HTTP call; returns (status, decoded JSON or text). Renews the token once on 401."""
        for attempt in (1, 2):
            headers = {"Accept": "application/json"}
            data = None
            if json_body is not None:
                data = json.dumps(json_body).encode()
                headers["Content-Type"] = "application/json"
            if auth:
                if self._token is None or attempt == 2:
                    self._token = self._get_token()
                headers["Authorization"] = f"Bearer {self._token}"
            req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    status, raw = resp.status, resp.read()
            except urllib.error.HTTPError as e:
                status, raw = e.code, e.read()
            if status == 401 and auth and attempt == 1:
                continue
            text = raw.decode(errors="replace")
            try:
                return status, json.loads(text) if text else None
            except ValueError:
                return status, text
        raise AssertionError("unreachable")

    def api(self, method: str, path: str, json: object | None = None) -> Any:
        """Authenticated REST call (``path`` like ``/api/v2/...``); raises with the body on non-2xx."""
        status, body = self._request(method, path, json)
        if not 200 <= status < 300:
            raise AirflowBedError(f"{method} {path}: HTTP {status}: {body}")
        return body

    @staticmethod
    def _q(value: str) -> str:
        return urllib.parse.quote(value, safe="")

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        """Wait until the dag-processor has parsed ``dag_id``; fail with the import errors otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            status, body = self._request("GET", f"/api/v2/dags/{self._q(dag_id)}")
            if status == 200:
                return
            if status != 404:
                raise AirflowBedError(f"GET /api/v2/dags/{dag_id}: HTTP {status}: {body}")
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        errors = self.api("GET", "/api/v2/importErrors").get("import_errors", [])
        rendered = "\n".join(f"{e.get('filename')}:\n{e.get('stack_trace')}" for e in errors) or "(none)"
        raise AirflowBedError(
            f"DAG {dag_id!r} was not parsed within {timeout}s; import errors:\n{rendered}\n{self.logs_tail(40)}"
        )

    def wait_unpaused(self, dag_id: str, timeout: float = 10) -> None:
        """Wait until ``dag_id`` is unpaused, e.g. by the Trigger form's "unpause" request.

        That request is the form's own, apart from the trigger's, and may land after the trigger's
        answer (CI saw both); a page left at once can cancel it. Raises AssertionError after ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while self.api("GET", f"/api/v2/dags/{self._q(dag_id)}")["is_paused"] is not False:
            assert time.monotonic() < deadline, f"{dag_id} is still paused after {timeout:.0f} s"
            time.sleep(0.2)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Unpause ``dag_id`` and create a manual run (``logical_date`` null); return its run_id."""
        q = self._q(dag_id)
        self.api("PATCH", f"/api/v2/dags/{q}", {"is_paused": False})
        run = self.api("POST", f"/api/v2/dags/{q}/dagRuns", {"logical_date": None, "conf": conf or {}})
        run_id: str = run["dag_run_id"]
        return run_id

    def _ti_path(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
        path = f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}/taskInstances/{self._q(task_id)}"
        return path if map_index < 0 else f"{path}/{map_index}"

    def task_state(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str | None:
        """The task instance's state; None while it has none (or does not exist yet)."""
        status, body = self._request("GET", self._ti_path(dag_id, run_id, task_id, map_index))
        if status == 404:
            return None
        if status != 200:
            raise AirflowBedError(f"task instance {dag_id}/{run_id}/{task_id}: HTTP {status}: {body}")
        state: str | None = body.get("state")
        return state

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """All task instances of a run: ``task_id`` (``task_id[i]`` when mapped) -> state."""
        body = self.api("GET", f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}/taskInstances?limit=100")
        out: dict[str, str | None] = {}
        for ti in body.get("task_instances", []):
            key = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            out[key] = ti.get("state")
        return out

    def wait_deferred(self, dag_id: str, run_id: str, task_id: str, timeout: float = 120, map_index: int = -1) -> None:
        """Wait until the task is deferred *and* the scheduler has processed the deferral.

        Airflow 3.3.2 fails a deferred task whose trigger fires before the scheduler has handled
        the executor's "success" of the worker process that deferred (apache/airflow#67287,
        #72716: "finished with state success, but the task instance's state attribute is
        queued"). Tests that make a trigger fire (write a marker) call this first, so they test
        the provider and not that race; the scheduler logs ``TaskInstance Finished: … state=deferred``
        once it has handled that event.
        """
        self.wait_for_task_state(dag_id, run_id, task_id, {"deferred"}, timeout, map_index)
        wanted = f"TaskInstance Finished: dag_id={dag_id}, task_id={task_id}, run_id={run_id}, map_index={map_index},"
        log = self.component_log_dir / "scheduler.log"
        deadline = time.monotonic() + timeout
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            if any(wanted in line and "state=deferred" in line for line in text.splitlines()):
                return
            if time.monotonic() > deadline:
                raise AirflowBedError(f"the scheduler never recorded {dag_id}/{run_id}/{task_id} as deferred")
            time.sleep(0.2)

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: set[str],
        timeout: float,
        map_index: int = -1,
    ) -> str:
        """Poll until the task instance is in one of ``states``; return that state.

        Fails early when the task reaches a terminal state that is not wanted, and on timeout; the
        error carries the observed state history (seconds since the call) and the component logs.
        """
        start = time.monotonic()
        history: list[tuple[float, str | None]] = []
        while True:
            state = self.task_state(dag_id, run_id, task_id, map_index)
            if not history or history[-1][1] != state:
                history.append((round(time.monotonic() - start, 2), state))
            if state in states:
                return state
            elapsed = time.monotonic() - start
            if (state in TERMINAL_TASK_STATES and not states & TERMINAL_TASK_STATES) or elapsed > timeout:
                why = f"reached terminal state {state!r}" if elapsed <= timeout else f"timed out after {timeout}s"
                raise AirflowBedError(
                    f"{dag_id}/{run_id}/{task_id}: waiting for {sorted(states)}, {why}; "
                    f"history (s, state): {history}\n{self.logs_tail()}"
                )
            self.check_alive()
            time.sleep(0.25)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Poll until the DAG run is ``success`` or ``failed``; return that state."""
        start = time.monotonic()
        path = f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}"
        history: list[tuple[float, str | None]] = []
        while True:
            state = self.api("GET", path).get("state")
            if not history or history[-1][1] != state:
                history.append((round(time.monotonic() - start, 2), state))
            if state in TERMINAL_RUN_STATES:
                return str(state)
            if time.monotonic() - start > timeout:
                raise AirflowBedError(
                    f"run {dag_id}/{run_id} not finished after {timeout}s; history: {history}; "
                    f"tasks: {self.task_states(dag_id, run_id)}\n{self.logs_tail()}"
                )
            self.check_alive()
            time.sleep(0.25)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """Text of a task try's log: from the REST API, else straight from the log files."""
        path = (
            f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}/taskInstances/{self._q(task_id)}"
            f"/logs/{try_number}?full_content=true&map_index={map_index}"
        )
        status, body = self._request("GET", path)
        if status == 200 and isinstance(body, dict) and body.get("content"):
            return _format_log_content(body["content"])
        pattern = f"dag_id={dag_id}/run_id={run_id}/task_id={task_id}/"
        pattern += f"attempt={try_number}.log" if map_index < 0 else f"map_index={map_index}/attempt={try_number}.log"
        files = sorted(self.log_dir.glob(pattern))
        if not files:
            raise AirflowBedError(f"no log for {dag_id}/{run_id}/{task_id} try {try_number} (HTTP {status}: {body})")
        return "\n".join(f.read_text(errors="replace") for f in files)

    def logs_tail(self, n: int = 80) -> str:
        """The last ``n`` lines of each component's log."""
        parts = []
        for name in COMPONENTS:
            path = self.component_log_dir / f"{name}.log"
            if path.exists():
                parts.append(f"----- {name} ({path}) -----\n{_tail(path, n)}")
        return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Start a bed for ``--dags DIR``, print one JSON line, and stay up until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m scripts.testbed.airflow_bed", description=main.__doc__)
    parser.add_argument("--dags", required=True, type=Path, help="DAGs folder")
    parser.add_argument("--home", type=Path, help="AIRFLOW_HOME (default: a new temporary directory)")
    parser.add_argument("--pool", action="append", default=[], metavar="NAME=SLOTS", help="pool to create")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment")
    parser.add_argument("--timeout", type=float, default=120, help="start-up timeout in seconds")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="airflow-bed-"))
    pools = {name: int(slots) for name, _, slots in (p.partition("=") for p in args.pool)}
    env = dict(e.split("=", 1) for e in args.env)
    bed = AirflowBed(home, args.dags, env=env, pools=pools)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    bed.start(timeout=args.timeout)
    try:
        print(
            json.dumps(
                {
                    "base_url": bed.base_url,
                    "home": str(bed.home),
                    "username": USERNAME,
                    "password": bed.password,
                    "airflow_config": bed.env["AIRFLOW_CONFIG"],
                    "startup_seconds": round(bed.timings["total"], 1),
                }
            ),
            flush=True,
        )
        while not stop.wait(1):
            try:
                bed.check_alive()
            except AirflowBedError as e:  # a component exited: its name, exit code and the logs' tail
                print(e, file=sys.stderr)
                return 1
    finally:
        bed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
