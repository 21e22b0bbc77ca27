"""A real Spark standalone cluster (one Master, one Worker) from the venv's ``pyspark``.

The pip ``pyspark`` wheel ships ``bin/spark-class`` and ``bin/spark-submit`` but no
``sbin/start-master.sh``, so :func:`start_spark` runs the two daemons directly:

* ``spark-class org.apache.spark.deploy.master.Master --host 127.0.0.1 --port P --webui-port U``
  (a free web UI port: the default 8080 collides with Airflow's API server; the REST submission
  server, on by default in Spark 4 at the fixed port 6066, also gets a free port);
* ``spark-class org.apache.spark.deploy.worker.Worker spark://127.0.0.1:P --host 127.0.0.1
  --webui-port W --work-dir <base>/work --cores 2 --memory 2g`` (without ``--work-dir`` the worker
  writes its application directories into site-packages).

``SPARK_HOME`` is the ``pyspark`` package directory, ``SPARK_CONF_DIR`` an empty
``<base>/conf`` (no stray ``spark-defaults.conf``), ``SPARK_LOCAL_IP=127.0.0.1`` (no "resolves to a
loopback address" warning), ``SPARK_DAEMON_MEMORY`` small and the daemons' JIT limited to C1
(:data:`JVM_FLAGS`: about 4 s to an ALIVE worker on an idle machine instead of 7 s). Each JVM runs in its own session
(``spark-class`` execs the JVM, so the group leader is the JVM) under ``setpriv --pdeathsig TERM``
where available; :meth:`SparkCluster.stop` and an ``atexit`` hook signal both groups, and the
pids go to ``<base>/pids`` so that :func:`kill_stale` can kill leftovers of a run that is gone.

The cluster is ready when the master's JSON status (``GET <ui_url>/json/``) lists one ALIVE
worker with cores and memory. :func:`applications` reads the active and completed applications
from the same page; :func:`submit_env` is the environment a ``spark-submit`` client needs.

CLI: ``python -m scripts.testbed.spark_bed --dir DIR`` prints one JSON line (URLs, start time,
pids) and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from scripts.testbed.loopback_http import free_port
from scripts.testbed.procs import kill_pids, processes_mentioning, stop_groups

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
LOG_TAIL_LINES = 40
DAEMON_MEMORY = "512m"
#: C1 only and the serial collector: faster start and less memory for the two daemons (not executors).
JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


class SparkStartError(RuntimeError):
    """The cluster did not come up (the message carries the tail of the daemon logs)."""


# --------------------------------------------------------------------------- helpers


def spark_home() -> Path:
    """The installed ``pyspark`` package directory (it holds ``bin/`` and ``jars/``)."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise SparkStartError(f"pyspark is not installed for {sys.executable} (pip install pyspark)")
    home = Path(spec.origin).parent
    if not (home / "bin" / "spark-class").is_file():
        raise SparkStartError(f"{home}/bin/spark-class is missing (reinstall pyspark)")
    return home


def submit_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``spark-submit`` (and the daemons): ``SPARK_HOME``, the venv's ``bin`` first
    on ``PATH``, ``SPARK_LOCAL_IP=127.0.0.1`` and ``PYSPARK_PYTHON`` = the running interpreter.

    :param base: the environment to start from (default: ``os.environ``); ``SPARK_*`` entries
        other than those set here are dropped.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("SPARK_")}
    env.pop("JAVA_TOOL_OPTIONS", None)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "/usr/bin:/bin")])
    env["SPARK_HOME"] = str(spark_home())
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    return env


def spark_submit() -> str:
    """The ``spark-submit`` script of the venv's ``pyspark``."""
    return str(spark_home() / "bin" / "spark-submit")


def _http() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # never send 127.0.0.1 traffic through an HTTP(S)_PROXY
    return s


def master_status(ui_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The master's JSON status page (``GET <ui_url>/json/``): workers, cores, apps.

    :param ui_url: the master's web UI, ``http://127.0.0.1:<port>``.
    :param timeout: seconds for the request.
    """
    with _http() as http:
        r = http.get(f"{ui_url.rstrip('/')}/json/", timeout=timeout)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


def applications(ui_url: str) -> dict[str, list[dict[str, Any]]]:
    """``{"active": [...], "completed": [...]}``: the applications the master lists in ``/json/``
    (each a dict with ``id``, ``name``, ``state`` such as ``RUNNING``/``FINISHED``, ``cores``...).

    :param ui_url: the master's web UI, ``http://127.0.0.1:<port>``.
    """
    status = master_status(ui_url)
    return {"active": list(status.get("activeapps", [])), "completed": list(status.get("completedapps", []))}


def _pdeathsig_prefix() -> list[str]:
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits: only use it from the main thread.
    if threading.current_thread() is threading.main_thread() and shutil.which("setpriv"):
        return ["setpriv", "--pdeathsig", "TERM", "--"]
    return []


def bed_pids(base_dir: Path) -> list[int]:
    """Live processes whose command line mentions ``base_dir`` (the bed's JVMs and their children)."""
    return processes_mentioning(base_dir)


def kill_stale(base_dir: Path) -> list[int]:
    """Kill daemons recorded in ``base_dir/pids`` whose command line still mentions ``base_dir``.

    Returns the pids killed (SIGTERM to their groups, SIGKILL after 10 s).
    """
    pid_file = base_dir / "pids"
    if not pid_file.is_file():
        return []
    alive = set(bed_pids(base_dir))
    victims = kill_pids(int(p) for p in pid_file.read_text().split() if p.isdigit() and int(p) in alive)
    pid_file.unlink(missing_ok=True)
    return victims


# --------------------------------------------------------------------------- the cluster


class SparkCluster:
    """A running Spark standalone cluster; see :func:`start_spark`.

    :ivar master_url: ``spark://127.0.0.1:<port>``, for ``spark-submit --master``.
    :ivar ui_url: the master's web UI, ``http://127.0.0.1:<port>`` (JSON status at ``/json/``).
    :ivar worker_ui_url: the worker's web UI.
    :ivar rest_port: the master's REST submission port (``spark.master.rest.port``; a free one,
        since Spark 4 enables the REST server on the fixed port 6066 by default).
    :ivar started_in: seconds from spawning the master to the worker being ALIVE.
    """

    def __init__(self, base_dir: Path, master_port: int, ui_port: int, worker_ui_port: int, rest_port: int) -> None:
        self.base_dir = base_dir
        self.rest_port = rest_port
        self.master_url = f"spark://127.0.0.1:{master_port}"
        self.ui_url = f"http://127.0.0.1:{ui_port}"
        self.worker_ui_url = f"http://127.0.0.1:{worker_ui_port}"
        self.work_dir = base_dir / "work"
        self.log_dir = base_dir / "logs"
        self.started_in: float | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stopped = False
        atexit.register(self.stop)

    def _spawn(self, name: str, args: list[str]) -> None:
        cmd = [*_pdeathsig_prefix(), str(spark_home() / "bin" / "spark-class"), *args]
        env = submit_env()
        env["SPARK_CONF_DIR"] = str(self.base_dir / "conf")
        env["SPARK_DAEMON_MEMORY"] = DAEMON_MEMORY
        # the marker that lets bed_pids/kill_stale recognise the JVM by its command line
        env["SPARK_DAEMON_JAVA_OPTS"] = " ".join(
            (f"-Dspark.bed.dir={self.base_dir}", f"-Dspark.master.rest.port={self.rest_port}", *JVM_FLAGS)
        )
        with open(self.log_dir / f"{name}.log", "ab") as out:
            out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {subprocess.list2cmdline(cmd)}\n".encode())
            out.flush()
            self._procs[name] = subprocess.Popen(
                cmd,
                cwd=self.base_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self.base_dir / "pids").write_text("".join(f"{p.pid}\n" for p in self._procs.values()))

    def pids(self) -> list[int]:
        """The bed's live processes (found by their command line mentioning the bed directory)."""
        return bed_pids(self.base_dir)

    def logs(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the master's and the worker's logs, for error messages."""
        out: list[str] = []
        for log in sorted(self.log_dir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()
            out.append(f"----- {log} (last {lines} lines)\n" + "\n".join(text[-lines:]))
        return "\n".join(out) or f"(no logs in {self.log_dir})"

    def wait_ready(self, timeout: float) -> None:
        """Poll ``/json/`` until one ALIVE worker with cores and memory is listed.

        :param timeout: seconds to wait.
        :raises SparkStartError: a daemon exited or the worker was not ALIVE in time.
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SparkStartError(f"the Spark {name} exited with {proc.returncode}")
            try:
                status = master_status(self.ui_url, timeout=2)
                alive = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
                if alive and alive[0].get("cores", 0) > 0 and alive[0].get("memory", 0) > 0:
                    return
                last = f"status {status.get('status')}, {len(alive)} ALIVE worker(s)"
            except (requests.RequestException, ValueError) as e:
                last = type(e).__name__
            if time.monotonic() > deadline:
                raise SparkStartError(f"no ALIVE worker at {self.ui_url}/json/ within {timeout:.0f} s (last: {last})")
            time.sleep(0.3)

    def stop(self) -> None:
        """SIGTERM both JVMs' process groups, SIGKILL after 10 s, and wait for them. Idempotent."""
        with self._lock:
            if not self._stopped:
                stop_groups(list(reversed(self._procs.values())))  # worker first; executors in its group too
                (self.base_dir / "pids").unlink(missing_ok=True)
                self._stopped = True
        atexit.unregister(self.stop)

    def __enter__(self) -> SparkCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(master_url={self.master_url!r}, ui_url={self.ui_url!r})"


def start_spark(base_dir: Path, *, cores: int = 2, memory: str = "2g", timeout: float = 90.0) -> SparkCluster:
    """Start a Master and one Worker with their state under ``base_dir``; wait until the worker is ALIVE.

    :param base_dir: holds ``conf/`` (empty), ``work/`` (the worker's application directories),
        ``logs/master.log``, ``logs/worker.log`` and ``pids``; created if missing, a leftover
        cluster recorded in it is killed first.
    :param cores: cores the worker offers (``--cores``).
    :param memory: memory the worker offers to executors (``--memory``, e.g. ``2g``).
    :param timeout: seconds to wait for the ALIVE worker.
    :raises SparkStartError: a daemon exited or did not register in time (message with log tails).
    """
    base_dir = base_dir.resolve()
    if base_dir.is_dir():
        kill_stale(base_dir)
    for sub in ("conf", "work", "logs"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    ports: list[int] = []
    while len(ports) < 4:
        port = free_port()
        if port not in ports:
            ports.append(port)
    master_port, ui_port, worker_ui_port, rest_port = ports
    cluster = SparkCluster(base_dir, master_port, ui_port, worker_ui_port, rest_port)
    t0 = time.monotonic()
    try:
        cluster._spawn("master", [MASTER_CLASS, "--host", "127.0.0.1", "--port", str(master_port),
                                  "--webui-port", str(ui_port)])  # fmt: skip
        cluster._spawn("worker", [WORKER_CLASS, cluster.master_url, "--host", "127.0.0.1",
                                  "--webui-port", str(worker_ui_port), "--work-dir", str(cluster.work_dir),
                                  "--cores", str(cores), "--memory", memory])  # fmt: skip
        cluster.wait_ready(timeout)
    except SparkStartError as e:
        cluster.stop()
        raise SparkStartError(f"Spark test bed in {base_dir} failed to start: {e}\n{cluster.logs()}") from None
    except BaseException:
        cluster.stop()
        raise
    cluster.started_in = time.monotonic() - t0
    return cluster


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.testbed.spark_bed", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="state directory (conf, work, logs)")
    parser.add_argument("--cores", type=int, default=2, help="cores the worker offers")
    parser.add_argument("--memory", default="2g", help="memory the worker offers to executors")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cluster = start_spark(args.dir, cores=args.cores, memory=args.memory)
    except SparkStartError as e:
        print(e, file=sys.stderr)
        return 1
    with cluster:
        info = {
            "master_url": cluster.master_url,
            "ui_url": cluster.ui_url,
            "worker_ui_url": cluster.worker_ui_url,
            "started_in_s": round(cluster.started_in or 0.0, 2),
            "pids": cluster.pids(),
            "logs": str(cluster.log_dir),
        }
        print(json.dumps(info), flush=True)
        while not stop.wait(1.0):
            if any(p.poll() is not None for p in cluster._procs.values()):
                print(f"a Spark daemon exited\n{cluster.logs()}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
