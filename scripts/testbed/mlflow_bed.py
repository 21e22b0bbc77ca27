"""A real MLflow tracking server (``mlflow server``) for integration tests and local runs.

:func:`start_mlflow` starts the venv's ``mlflow server`` on 127.0.0.1 with a free port:

* backend and registry store ``sqlite:///<base>/mlflow.db``;
* proxied artifacts (``--serve-artifacts``, the default since MLflow 2, stated explicitly)
  stored under ``--artifacts-destination <base>/artifacts``: new experiments get the artifact
  root ``mlflow-artifacts:/<id>`` and clients upload through the server's HTTP API, which is
  what a job inside a container needs (``--default-artifact-root <dir>`` would make clients
  write straight into ``<dir>`` on their own file system);
* ``--workers 1`` and ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: two processes (the
  ``mlflow`` CLI and one ``uvicorn`` worker), about 0.5 GB RSS, ready in about 8-12 s. With the
  defaults MLflow 3 runs 4 workers plus a huey job runner (15 processes, about 2.5 GB);
* ``--allowed-hosts``: MLflow 3's security middleware answers 403 ``Invalid Host header -
  possible DNS rebinding attack detected`` to a Host header it does not allow. Entries are
  matched against the whole header *including the port* (exactly, or with ``fnmatch`` when they
  hold a ``*``), so each host is listed bare and as ``host:<port>``. The default list (when the
  option is absent) is localhost/127.0.0.1/[::1]/0.0.0.0 on any port plus the private IP ranges,
  but not names like ``host.docker.internal``: a container reaches the bed over host networking
  (``http://127.0.0.1:<port>``), or pass ``extra_allowed_hosts=["host.docker.internal"]`` (and
  ``bind_host="0.0.0.0"``, since 127.0.0.1 is not reachable from a bridge network). ``/health``
  and ``/version`` are exempt from the check.

The server runs in its own session under ``setpriv --pdeathsig TERM`` where available (the CLI
forwards SIGTERM to uvicorn), an ``atexit`` hook stops it, and :meth:`MlflowServer.stop` signals
the whole session, so no uvicorn worker outlives the bed. Its pid goes to ``<base>/server.pid``
with the starter's pid, so that :func:`kill_stale` (called by :func:`start_mlflow`) can kill a
leftover of a run that is gone, and never the server of another live test session
(:func:`in_use`); :func:`clean_sessions` clears the per-session directories of dead sessions.

CLI: ``python -m scripts.testbed.mlflow_bed --dir DIR`` prints one JSON line (url, command, start
time, pids, RSS) and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import requests

from scripts.testbed import pid_alive
from scripts.testbed.loopback_http import free_port

LOG_TAIL_LINES = 60
_STOP_GRACE = 10.0
_PID_FILE = "server.pid"


class MlflowStartError(RuntimeError):
    """The MLflow server did not start (the message carries the log's tail)."""


# --------------------------------------------------------------------------- helpers


def mlflow_executable() -> str:
    """The ``mlflow`` script next to the running interpreter (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "mlflow"
    if here.is_file():
        return str(here)
    found = shutil.which("mlflow")
    if not found:
        raise MlflowStartError(f"no mlflow executable next to {sys.executable} nor on PATH (pip install mlflow)")
    return found


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # never send 127.0.0.1 traffic through an HTTP(S)_PROXY
    return s


def _server_env() -> dict[str, str]:
    """The caller's environment without any ``MLFLOW_*`` setting, plus the lean-server switches."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _pdeathsig_prefix() -> list[str]:
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits: only use it from the main thread.
    if threading.current_thread() is threading.main_thread() and shutil.which("setpriv"):
        return ["setpriv", "--pdeathsig", "TERM", "--"]
    return []


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state is [0], session id is [3])."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``: the server and every worker it forked."""
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and fields[3] == str(sid) and fields[0] != "Z":
                pids.append(int(entry))
    return sorted(pids)


def rss_bytes(pids: Iterable[int]) -> int:
    """Total resident set size of ``pids`` (from ``/proc/<pid>/status``)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def _signal_session(sid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, sig)
    for pid in session_pids(sid):  # anything that left the process group but not the session
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _terminate_session(sid: int, grace: float = _STOP_GRACE) -> None:
    """SIGTERM the session, SIGKILL whatever is left after ``grace`` seconds; wait until it is empty."""
    _signal_session(sid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if session_pids(sid):
        _signal_session(sid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _read_pid_file(base_dir: Path) -> tuple[int, int | None] | None:
    """``(server pid, starter pid)`` from ``<base>/server.pid`` if that server still runs from ``base_dir``."""
    try:
        parts = [int(p) for p in (base_dir / _PID_FILE).read_text().split()]
        cmdline = Path(f"/proc/{parts[0]}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    if str(base_dir.resolve()).encode() not in cmdline or not session_pids(parts[0]):
        return None  # gone, or the pid was reused by something else
    return parts[0], (parts[1] if len(parts) > 1 else None)


def in_use(base_dir: Path) -> bool:
    """A server runs from ``base_dir`` and the process that started it (another test session) is alive."""
    found = _read_pid_file(base_dir)
    return found is not None and (found[1] is None or pid_alive(found[1]))


def kill_stale(base_dir: Path) -> bool:
    """Stop a server left running from ``base_dir`` by a run that is gone (``<base>/server.pid``).

    Only kills when the pid's command line still mentions ``base_dir`` (pids get reused) and the
    process that started it is dead: a server of a live test session is left alone.
    """
    found = _read_pid_file(base_dir)
    if found is None:
        (base_dir / _PID_FILE).unlink(missing_ok=True)
        return False
    if in_use(base_dir):
        return False
    _terminate_session(found[0])
    (base_dir / _PID_FILE).unlink(missing_ok=True)
    return True


def clean_sessions(root: Path) -> None:
    """Kill leftovers and remove every ``root/session-<pid>`` directory no live test session uses.

    A directory is kept while process ``<pid>`` lives (it may be starting its server) or while a
    server started by a live process runs from it.
    """
    if not root.is_dir():
        return
    for d in root.glob("session-*"):
        owner = d.name.removeprefix("session-")
        if owner.isdigit() and pid_alive(int(owner)):
            continue
        if d.is_dir() and not in_use(d):
            kill_stale(d)
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- the server


class MlflowServer:
    """A running ``mlflow server``; see :func:`start_mlflow`.

    :ivar url: ``http://127.0.0.1:<port>``, the tracking (and registry) URI.
    :ivar command: the exact command line that was started.
    :ivar started_in: seconds from spawning to ``/health`` answering 200.
    """

    def __init__(self, base_dir: Path, port: int, command: list[str], proc: subprocess.Popen[bytes]) -> None:
        self.base_dir = base_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.command = command
        self.backend_store_uri = f"sqlite:///{base_dir / 'mlflow.db'}"
        self.artifacts_dir = base_dir / "artifacts"
        self.log_path = base_dir / "server.log"
        self.started_in: float | None = None
        self._proc = proc
        self._lock = threading.Lock()
        self._stopped = False
        atexit.register(self.stop)

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def pids(self) -> list[int]:
        """The server's process tree (the ``mlflow`` CLI and its uvicorn processes)."""
        return session_pids(self._proc.pid)

    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree."""
        return rss_bytes(self.pids())

    def logs(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of ``server.log``."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_path})"
        return f"----- {self.log_path} (last {lines} lines)\n" + "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM the server's session, SIGKILL after 10 s; wait until no process is left. Idempotent."""
        with self._lock:
            if not self._stopped:
                _terminate_session(self._proc.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(5)
                (self.base_dir / _PID_FILE).unlink(missing_ok=True)
                self._stopped = True
        atexit.unregister(self.stop)

    def wait_ready(self, timeout: float) -> None:
        """Poll ``GET /health`` until it answers 200; raise :class:`MlflowStartError` otherwise."""
        started = time.monotonic()
        deadline = started + timeout
        last = "no answer yet"
        with _session() as http:
            while True:
                if self._proc.poll() is not None:
                    raise MlflowStartError(f"mlflow server exited with {self._proc.returncode}")
                try:
                    r = http.get(f"{self.url}/health", timeout=2)
                    if r.status_code == 200:
                        return
                    last = f"HTTP {r.status_code}"
                except requests.RequestException as e:
                    last = f"{type(e).__name__}"
                if time.monotonic() > deadline:
                    raise MlflowStartError(f"/health did not answer 200 within {timeout:.0f} s (last: {last})")
                time.sleep(0.2)

    def __enter__(self) -> MlflowServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, base_dir={str(self.base_dir)!r})"


def allowed_hosts(port: int, extra: Iterable[str] = ()) -> str:
    """The ``--allowed-hosts`` value: each host bare and with ``:<port>`` (matching includes the port)."""
    hosts: list[str] = []
    for host in ("localhost", "127.0.0.1", *extra):
        has_port = re.search(r":(\d+|\*)$", host) is not None and not host.endswith("]")
        for entry in (host,) if has_port else (host, f"{host}:{port}"):
            if entry not in hosts:
                hosts.append(entry)
    return ",".join(hosts)


def server_command(
    base_dir: Path, port: int, *, bind_host: str = "127.0.0.1", extra_allowed_hosts: Iterable[str] = ()
) -> list[str]:
    """The ``mlflow server`` command line of the bed."""
    return [
        mlflow_executable(),
        "server",
        "--host",
        bind_host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{base_dir / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(base_dir / "artifacts"),
        "--allowed-hosts",
        allowed_hosts(port, extra_allowed_hosts),
    ]


def start_mlflow(
    base_dir: Path,
    *,
    port: int | None = None,
    timeout: float = 90.0,
    bind_host: str = "127.0.0.1",
    extra_allowed_hosts: Iterable[str] = (),
) -> MlflowServer:
    """Start ``mlflow server`` with its state under ``base_dir`` and wait until it is ready.

    :param base_dir: holds ``mlflow.db``, ``artifacts/``, ``server.log`` and ``server.pid``
        (created if missing; existing state is kept, a leftover server from it is killed).
    :param port: the port (default: a free one).
    :param timeout: seconds to wait for ``/health``.
    :param bind_host: the interface to listen on.
    :param extra_allowed_hosts: Host header values to accept besides localhost and 127.0.0.1
        (each also with ``:<port>``), e.g. ``host.docker.internal``.
    :raises MlflowStartError: the server exited or was not ready in time (message with log tail).
    """
    base_dir = base_dir.resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    kill_stale(base_dir)
    if in_use(base_dir):
        raise MlflowStartError(f"{base_dir} is in use by the MLflow server of another live process")
    (base_dir / "artifacts").mkdir(exist_ok=True)
    port = port or free_port()
    command = server_command(base_dir, port, bind_host=bind_host, extra_allowed_hosts=extra_allowed_hosts)
    log_path = base_dir / "server.log"
    t0 = time.monotonic()
    with open(log_path, "ab") as out:
        out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {subprocess.list2cmdline(command)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [*_pdeathsig_prefix(), *command],
            cwd=base_dir,  # any relative default (./mlruns, ./mlartifacts) stays inside the bed
            env=_server_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (base_dir / _PID_FILE).write_text(f"{proc.pid} {os.getpid()}\n")
    server = MlflowServer(base_dir, port, command, proc)
    try:
        server.wait_ready(timeout)
    except MlflowStartError as e:
        server.stop()
        raise MlflowStartError(f"MLflow test bed in {base_dir} failed to start: {e}\n{server.logs()}") from None
    except BaseException:
        server.stop()
        raise
    server.started_in = time.monotonic() - t0
    return server


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.testbed.mlflow_bed", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="state directory (db, artifacts, log)")
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument("--bind-host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--allowed-host", action="append", default=[], help="extra Host header to accept (repeatable)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = start_mlflow(args.dir, port=args.port, bind_host=args.bind_host, extra_allowed_hosts=args.allowed_host)
    except MlflowStartError as e:
        print(e, file=sys.stderr)
        return 1
    with server:
        pids = server.pids()
        info = {
            "url": server.url,
            "command": subprocess.list2cmdline(server.command),
            "started_in_s": round(server.started_in or 0.0, 2),
            "pids": pids,
            "rss_mb": round(rss_bytes(pids) / 2**20, 1),
            "artifacts": str(server.artifacts_dir),
            "log": str(server.log_path),
        }
        print(json.dumps(info), flush=True)
        while not stop.wait(1.0):
            if not server.running:
                print(f"mlflow server exited\n{server.logs()}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
