"""Real HDFS clusters (NameNode + DataNode with WebHDFS) for integration tests and benchmarks.

Two shapes: :func:`start_single` (one NameNode, one DataNode) and :func:`start_ha` (an HA pair
``nn1``/``nn2`` sharing a ``file://`` edits directory, manual failover, one DataNode). Every
daemon is a JVM from the Hadoop 2.7.3 jars of :mod:`scripts.testbed.hadoop_dist`, bound to
127.0.0.1 on free ports picked at run time, so several clusters can run at once.

JVMs never outlive their starter: each runs in its own session (process group) under
``setpriv --pdeathsig TERM`` (so they get SIGTERM when the starting process dies, even by
SIGKILL), an ``atexit`` hook stops them, and their pids go to ``base_dir/pids`` so the next
start in the same ``base_dir`` kills leftovers.

CLI: ``python -m scripts.testbed.hdfs single|ha --dir DIR`` prints one JSON line and runs until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import requests

from scripts.testbed import hadoop_dist
from scripts.testbed.procs import kill_pids, processes_mentioning, stop_groups

NAMENODE_CLASS = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_CLASS = "org.apache.hadoop.hdfs.server.datanode.DataNode"
HAADMIN_CLASS = "org.apache.hadoop.hdfs.tools.DFSHAAdmin"
NAMESERVICE = "ns1"
NAMENODE_IDS = ("nn1", "nn2")

JVM_FLAGS = (
    "-Xmx128m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",  # C1 only: faster start, less memory; plenty for a test bed
    "-Djava.net.preferIPv4Stack=true",
)
LOG_TAIL_LINES = 40

#: The daemons' log4j and java.util.logging (Jersey 1) settings, shared with the compose stack's HDFS image.
_LOG_SETTINGS = Path(__file__).resolve().parents[1] / "images" / "hdfs"


class HdfsStartError(RuntimeError):
    """A cluster did not come up (the message carries the tail of the daemon logs)."""


class HdfsCommandError(RuntimeError):
    """A Hadoop command-line tool (format, DFSHAAdmin, ...) failed."""


# --------------------------------------------------------------------------- helpers


def _os_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held together while picking)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _site_xml(props: Mapping[str, str]) -> str:
    body = "".join(
        f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n" for k, v in props.items()
    )
    return f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n'


def _write_conf(conf_dir: Path, core: Mapping[str, str], hdfs: Mapping[str, str]) -> None:
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "core-site.xml").write_text(_site_xml(core))
    (conf_dir / "hdfs-site.xml").write_text(_site_xml(hdfs))
    for name in ("log4j.properties", "logging.properties"):
        shutil.copyfile(_LOG_SETTINGS / name, conf_dir / name)


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # never send 127.0.0.1 traffic through an HTTP(S)_PROXY
    return s


def _daemon_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HADOOP_", "JAVA_TOOL_OPTIONS"))}
    env.pop("CLASSPATH", None)
    return env


def _pdeathsig_prefix() -> list[str]:
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only use it from the main
    # thread; elsewhere atexit + the pids file are the safety net.
    if threading.current_thread() is threading.main_thread() and shutil.which("setpriv"):
        return ["setpriv", "--pdeathsig", "TERM", "--"]
    return []


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise HdfsStartError("java not found (install a JDK, e.g. openjdk-17-jre-headless)")
    return found


def kill_stale(base_dir: Path) -> list[int]:
    """Kill daemons recorded in ``base_dir/pids`` that still run from this ``base_dir``.

    A pid is only killed when its command line mentions ``base_dir`` (pids get reused).
    Returns the pids killed.
    """
    pid_file = base_dir / "pids"
    if not pid_file.is_file():
        return []
    alive = set(processes_mentioning(base_dir))
    victims: list[int] = []
    for line in pid_file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) in alive:
            victims.append(int(parts[1]))
    kill_pids(victims)
    pid_file.unlink(missing_ok=True)
    return victims


# --------------------------------------------------------------------------- daemons


@dataclass
class _Daemon:
    name: str
    main_class: str
    conf_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class HdfsCluster:
    """A running HDFS cluster; see :func:`start_single`."""

    base_dir: Path
    namenode_urls: list[str]
    rpc_url: str
    superuser: str
    #: The DataNode's HTTP address (what a user may mistake for the NameNode's).
    datanode_http_url: str = ""

    def __init__(self, base_dir: Path, namenode_urls: list[str], rpc_url: str) -> None:
        self.base_dir = base_dir
        self.namenode_urls = namenode_urls
        self.rpc_url = rpc_url
        self.superuser = _os_user()
        self._daemons: dict[str, _Daemon] = {}
        self._lock = threading.RLock()
        self._home = hadoop_dist.ensure_hadoop()
        self._stopped = False
        atexit.register(self.stop)

    # ---- process management

    def _classpath(self, conf_dir: Path) -> str:
        return hadoop_dist.classpath(conf_dir)

    def _java_cmd(self, conf_dir: Path, main_class: str, args: list[str]) -> list[str]:
        return [
            _java(),
            *JVM_FLAGS,
            f"-Dhadoop.home.dir={self._home}",
            f"-Dhadoop.log.dir={self.base_dir / 'logs'}",
            f"-Djava.util.logging.config.file={conf_dir / 'logging.properties'}",
            "-cp",
            self._classpath(conf_dir),
            main_class,
            *args,
        ]

    def _run_tool(
        self, conf_dir: Path, main_class: str, args: list[str], *, timeout: float = 60, log: str = "tools"
    ) -> subprocess.CompletedProcess[str]:
        """Run a short-lived Hadoop tool; its output is appended to ``logs/<log>.log``."""
        cmd = [*_pdeathsig_prefix(), *self._java_cmd(conf_dir, main_class, args)]
        proc = subprocess.run(
            cmd,
            cwd=self.base_dir,
            env=_daemon_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        with open(self.base_dir / "logs" / f"{log}.log", "a") as f:
            f.write(f"$ {main_class} {' '.join(args)} -> {proc.returncode}\n{proc.stdout}{proc.stderr}\n")
        return proc

    def _start_daemon(self, name: str, main_class: str, conf_dir: Path) -> _Daemon:
        with self._lock:
            d = self._daemons.get(name)
            if d is None:
                d = _Daemon(name, main_class, conf_dir, self.base_dir / "logs" / f"{name}.log")
                self._daemons[name] = d
            if d.running():
                return d
            cmd = [*_pdeathsig_prefix(), *self._java_cmd(conf_dir, main_class, [])]
            with open(d.log, "ab") as out:
                out.write(f"=== start {name} at {time.strftime('%H:%M:%S')}\n".encode())
                out.flush()
                d.proc = subprocess.Popen(
                    cmd,
                    cwd=self.base_dir,
                    env=_daemon_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._stopped:  # restarted after stop(): stop again at exit
                self._stopped = False
                atexit.register(self.stop)
            self._write_pids()
            return d

    def _write_pids(self) -> None:
        lines = [f"{d.name} {d.proc.pid}\n" for d in self._daemons.values() if d.proc is not None]
        tmp = self.base_dir / "pids.tmp"
        tmp.write_text("".join(lines))
        os.replace(tmp, self.base_dir / "pids")

    def _stop_daemons(self, names: list[str]) -> None:
        stop_groups([d.proc for n in names if (d := self._daemons.get(n)) is not None and d.proc is not None])

    def stop(self) -> None:
        """Terminate all the cluster's JVMs (SIGTERM, then SIGKILL) and wait for them; idempotent."""
        with self._lock:
            if not self._stopped:
                self._stop_daemons(list(self._daemons))
                self._stopped = True
                (self.base_dir / "pids").unlink(missing_ok=True)
        atexit.unregister(self.stop)

    def logs(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of each daemon's (and tool's) log, for error messages."""
        out: list[str] = []
        for log in sorted((self.base_dir / "logs").glob("*.log")):
            try:
                text = log.read_text(errors="replace").splitlines()
            except OSError:
                continue
            out.append(f"----- {log.name} (last {lines} lines)\n" + "\n".join(text[-lines:]))
        return "\n".join(out)

    def _check_alive(self, names: list[str] | None = None) -> None:
        for d in self._daemons.values():
            if (names is None or d.name in names) and d.proc is not None and d.proc.poll() is not None:
                raise HdfsStartError(f"{d.name} exited with {d.proc.returncode}")

    # ---- readiness

    def _wait(self, what: str, probe: Callable[[], bool], deadline: float, names: list[str] | None) -> None:
        last: BaseException | None = None
        while True:
            self._check_alive(names)
            try:
                if probe():
                    return
                last = None
            except (requests.RequestException, OSError, ValueError, HdfsCommandError) as e:
                last = e
            if time.monotonic() > deadline:
                why = f" (last error: {last})" if last else ""
                raise HdfsStartError(f"timed out waiting for {what}{why}")
            time.sleep(0.2)

    def _fail(self, err: BaseException) -> HdfsStartError:
        """Stop everything and build the error to raise, with the logs' tail."""
        self.stop()
        return HdfsStartError(f"HDFS test bed in {self.base_dir} failed to start: {err}\n{self.logs()}")

    def __enter__(self) -> HdfsCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namenode_urls={self.namenode_urls!r}, rpc_url={self.rpc_url!r})"


def _answers_http(url: str, *, timeout: float = 2.0) -> bool:
    """True when the NameNode at ``url`` answers WebHDFS (200, or 403 StandbyException)."""
    with _session() as s:
        r = s.get(f"{url}/webhdfs/v1/?op=GETFILESTATUS&user.name={_os_user()}", timeout=timeout)
    return r.status_code == 200 or (r.status_code == 403 and "StandbyException" in r.text)


def _live_datanodes(url: str, *, timeout: float = 2.0) -> int:
    """Number of live DataNodes the NameNode at ``url`` knows (via its /jmx)."""
    with _session() as s:
        r = s.get(f"{url}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState", timeout=timeout)
    r.raise_for_status()
    beans = r.json().get("beans", [])
    return int(beans[0].get("NumLiveDataNodes", 0)) if beans else 0


def webhdfs_roundtrip(url: str, user: str, *, timeout: float = 5.0) -> bool:
    """Write, read back and delete a small probe file through WebHDFS (two-step CREATE)."""
    path = f"/.testbed-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    data = b"hdfs test bed probe\n"
    base = f"{url}/webhdfs/v1{path}"
    with _session() as s:
        r = s.put(f"{base}?op=CREATE&overwrite=true&user.name={user}", allow_redirects=False, timeout=timeout)
        if r.status_code != 307 or "Location" not in r.headers:
            return False
        r = s.put(r.headers["Location"], data=data, timeout=timeout)
        if r.status_code != 201:
            return False
        r = s.get(f"{base}?op=OPEN&user.name={user}", timeout=timeout)
        if r.status_code != 200 or r.content != data:
            return False
        s.delete(f"{base}?op=DELETE&user.name={user}", timeout=timeout)
    return True


# --------------------------------------------------------------------------- configuration


def _common_conf(base_dir: Path, default_fs: str) -> tuple[dict[str, str], dict[str, str]]:
    data = base_dir / "data"
    core = {
        "fs.defaultFS": default_fs,
        "hadoop.tmp.dir": str(data / "tmp"),
        "ipc.client.connect.max.retries": "2",
        "ipc.client.connect.retry.interval": "250",
        "ipc.client.connect.max.retries.on.timeouts": "2",
        "hadoop.http.staticuser.user": "dr.who",
    }
    hdfs = {
        "dfs.replication": "1",
        "dfs.namenode.name.dir": f"file://{data / 'name'}",
        "dfs.datanode.data.dir": f"file://{data / 'dn'}",
        "dfs.datanode.hostname": "127.0.0.1",
        "dfs.namenode.datanode.registration.ip-hostname-check": "false",
        "dfs.namenode.safemode.extension": "0",
        "dfs.namenode.safemode.min.datanodes": "0",
        "dfs.permissions.enabled": "true",
        "dfs.webhdfs.enabled": "true",
        "dfs.http.policy": "HTTP_ONLY",
        "dfs.heartbeat.interval": "1",
        "dfs.blockreport.initialDelay": "0",
        "dfs.namenode.fs-limits.min-block-size": "0",
        "dfs.datanode.du.reserved": "0",
    }
    return core, hdfs


def _datanode_conf(hdfs: dict[str, str]) -> str:
    """Give the DataNode free ports; returns its HTTP URL."""
    dn_http, dn_data, dn_ipc = free_ports(3)
    hdfs["dfs.datanode.http.address"] = f"127.0.0.1:{dn_http}"
    hdfs["dfs.datanode.address"] = f"127.0.0.1:{dn_data}"
    hdfs["dfs.datanode.ipc.address"] = f"127.0.0.1:{dn_ipc}"
    return f"http://127.0.0.1:{dn_http}"


def _fresh_dirs(base_dir: Path) -> Path:
    base_dir.mkdir(parents=True, exist_ok=True)
    base_dir = base_dir.resolve()
    kill_stale(base_dir)
    for sub in ("data", "conf", "logs"):
        shutil.rmtree(base_dir / sub, ignore_errors=True)
    (base_dir / "logs").mkdir()
    return base_dir


# --------------------------------------------------------------------------- single


def start_single(base_dir: Path, *, timeout: float = 90) -> HdfsCluster:
    """Start a fresh one-NameNode, one-DataNode cluster in ``base_dir`` and wait until writable.

    Any daemons left running from an earlier start in the same ``base_dir`` are killed and its
    data is wiped. Raises :class:`HdfsStartError` (with the logs' tail) if it is not ready in
    ``timeout`` seconds; everything started is stopped first.
    """
    deadline = time.monotonic() + timeout
    hadoop_dist.classpath()  # fail early (download / missing Jersey 1) before touching base_dir
    base_dir = _fresh_dirs(Path(base_dir))
    rpc, http = free_ports(2)
    core, hdfs = _common_conf(base_dir, f"hdfs://127.0.0.1:{rpc}")
    hdfs["dfs.namenode.rpc-address"] = f"127.0.0.1:{rpc}"
    hdfs["dfs.namenode.http-address"] = f"127.0.0.1:{http}"
    datanode_url = _datanode_conf(hdfs)
    conf = base_dir / "conf" / "single"
    _write_conf(conf, core, hdfs)

    url = f"http://127.0.0.1:{http}"
    cluster = HdfsCluster(base_dir, [url], f"hdfs://127.0.0.1:{rpc}")
    cluster.datanode_http_url = datanode_url
    try:
        fmt = cluster._run_tool(conf, NAMENODE_CLASS, ["-format", "-nonInteractive", "-force"], log="format")
        if fmt.returncode != 0:
            raise HdfsCommandError(f"NameNode -format exited with {fmt.returncode}")
        cluster._start_daemon("namenode", NAMENODE_CLASS, conf)
        cluster._start_daemon("datanode", DATANODE_CLASS, conf)
        cluster._wait(
            "a WebHDFS write/read round trip",
            lambda: webhdfs_roundtrip(url, cluster.superuser),
            deadline,
            None,
        )
    except Exception as e:
        raise cluster._fail(e) from e
    return cluster


# --------------------------------------------------------------------------- HA


class HaHdfsCluster(HdfsCluster):
    """An HA pair ``nn1``/``nn2`` (manual failover) with one DataNode; see :func:`start_ha`.

    ``namenode_urls`` is ``[nn1_url, nn2_url]``; ``rpc_url`` is nn1's RPC address and
    ``rpc_urls`` maps each NameNode id to its own; ``nameservice`` is the logical name that
    HA-aware HDFS clients would use (``hdfs://ns1``).
    """

    nameservice: str
    rpc_urls: dict[str, str]

    def __init__(self, base_dir: Path, namenode_urls: list[str], rpc_urls: dict[str, str]) -> None:
        super().__init__(base_dir, namenode_urls, rpc_urls["nn1"])
        self.rpc_urls = rpc_urls
        self.nameservice = NAMESERVICE

    def url_of(self, nn: str) -> str:
        """WebHDFS base URL of NameNode ``nn`` ("nn1"/"nn2")."""
        return self.namenode_urls[self._index(nn)]

    @staticmethod
    def _index(nn: str) -> int:
        if nn not in NAMENODE_IDS:
            raise ValueError(f"unknown NameNode {nn!r}; expected one of {NAMENODE_IDS}")
        return NAMENODE_IDS.index(nn)

    @property
    def _client_conf(self) -> Path:
        return self.base_dir / "conf" / "client"

    def _haadmin(self, *args: str, timeout: float = 60) -> str:
        proc = self._run_tool(self._client_conf, HAADMIN_CLASS, list(args), timeout=timeout, log="haadmin")
        if proc.returncode != 0:
            raise HdfsCommandError(
                f"DFSHAAdmin {' '.join(args)} exited with {proc.returncode}: "
                f"{(proc.stdout + proc.stderr).strip()[-2000:]}"
            )
        return proc.stdout

    def transition_to_active(self, nn: str) -> None:
        """Make ``nn`` active (``DFSHAAdmin -transitionToActive``); the other must not be active.

        DFSHAAdmin refuses when it cannot reach the other NameNode; when that one is stopped
        (known here, it is our process) ``--forceactive`` skips that check.
        """
        other = NAMENODE_IDS[1 - self._index(nn)]
        d = self._daemons.get(other)
        if d is not None and d.running():
            self._haadmin("-transitionToActive", nn)
        else:
            self._haadmin("-transitionToActive", "--forceactive", nn)

    def transition_to_standby(self, nn: str) -> None:
        """Make ``nn`` standby (``DFSHAAdmin -transitionToStandby``); with both standby none serves."""
        self._index(nn)
        self._haadmin("-transitionToStandby", nn)

    def failover(self, from_nn: str, to_nn: str) -> None:
        """Fail over from ``from_nn`` to ``to_nn`` (``DFSHAAdmin -failover``; fences with /bin/true)."""
        self._index(from_nn)
        self._index(to_nn)
        self._haadmin("-failover", from_nn, to_nn)

    def state(self, nn: str) -> str:
        """``"active"`` or ``"standby"`` (``DFSHAAdmin -getServiceState``); raises if unreachable."""
        self._index(nn)
        return self._haadmin("-getServiceState", nn).strip().splitlines()[-1].strip()

    def active(self) -> str:
        """The id of the active NameNode; raises :class:`HdfsCommandError` when none is active."""
        errors: list[str] = []
        for nn in NAMENODE_IDS:
            if not self._daemons[nn].running():
                continue
            try:
                if self.state(nn) == "active":
                    return nn
            except HdfsCommandError as e:
                errors.append(str(e))
        raise HdfsCommandError("no active NameNode" + (": " + "; ".join(errors) if errors else ""))

    def stop_namenode(self, nn: str) -> None:
        """Stop NameNode ``nn`` (SIGTERM, then SIGKILL) and wait for its exit."""
        self._index(nn)
        with self._lock:
            self._stop_daemons([nn])

    def start_namenode(self, nn: str, *, timeout: float = 60) -> None:
        """(Re)start a stopped NameNode ``nn``; it comes up as standby. Waits until it answers
        WebHDFS and sees the DataNode, so a failover to it can follow at once."""
        i = self._index(nn)
        deadline = time.monotonic() + timeout
        self._start_daemon(nn, NAMENODE_CLASS, self.base_dir / "conf" / nn)
        url = self.namenode_urls[i]
        try:
            self._wait(f"{nn} to answer HTTP", lambda: _answers_http(url), deadline, [nn])
            self._wait(f"{nn} to see the DataNode", lambda: _live_datanodes(url) >= 1, deadline, [nn])
        except HdfsStartError as e:
            raise HdfsStartError(f"{e}\n{self.logs()}") from e


def start_ha(base_dir: Path, *, timeout: float = 120) -> HaHdfsCluster:
    """Start a fresh HA cluster in ``base_dir``: nn1 active, nn2 standby, one DataNode, writable.

    nn2 is bootstrapped with ``-bootstrapStandby``; both NameNodes share a ``file://`` edits
    directory; fencing is ``shell(/bin/true)``; there is no automatic failover. Returns once a
    WebHDFS round trip through nn1 succeeds, nn2 answers (StandbyException) and both
    NameNodes see the DataNode. Raises :class:`HdfsStartError` with the logs' tail otherwise.
    """
    deadline = time.monotonic() + timeout
    hadoop_dist.classpath()
    base_dir = _fresh_dirs(Path(base_dir))
    rpc1, http1, rpc2, http2 = free_ports(4)
    ns = NAMESERVICE
    core, hdfs = _common_conf(base_dir, f"hdfs://{ns}")
    data = base_dir / "data"
    hdfs.update(
        {
            "dfs.nameservices": ns,
            f"dfs.ha.namenodes.{ns}": ",".join(NAMENODE_IDS),
            f"dfs.namenode.rpc-address.{ns}.nn1": f"127.0.0.1:{rpc1}",
            f"dfs.namenode.rpc-address.{ns}.nn2": f"127.0.0.1:{rpc2}",
            f"dfs.namenode.http-address.{ns}.nn1": f"127.0.0.1:{http1}",
            f"dfs.namenode.http-address.{ns}.nn2": f"127.0.0.1:{http2}",
            "dfs.namenode.shared.edits.dir": f"file://{data / 'shared-edits'}",
            f"dfs.client.failover.proxy.provider.{ns}": (
                "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider"
            ),
            "dfs.ha.fencing.methods": "shell(/bin/true)",
            "dfs.ha.automatic-failover.enabled": "false",
            "dfs.ha.tail-edits.period": "1",
            "dfs.ha.log-roll.period": "10",
        }
    )
    datanode_url = _datanode_conf(hdfs)
    (data / "shared-edits").mkdir(parents=True)
    confs = {}
    for name in ("client", *NAMENODE_IDS):
        conf_hdfs = dict(hdfs)
        if name in NAMENODE_IDS:
            conf_hdfs["dfs.ha.namenode.id"] = name
            conf_hdfs["dfs.namenode.name.dir"] = f"file://{data / ('name-' + name)}"
        confs[name] = base_dir / "conf" / name
        _write_conf(confs[name], core, conf_hdfs)

    urls = [f"http://127.0.0.1:{http1}", f"http://127.0.0.1:{http2}"]
    cluster = HaHdfsCluster(base_dir, urls, {"nn1": f"hdfs://127.0.0.1:{rpc1}", "nn2": f"hdfs://127.0.0.1:{rpc2}"})
    cluster.datanode_http_url = datanode_url
    try:
        fmt = cluster._run_tool(confs["nn1"], NAMENODE_CLASS, ["-format", "-nonInteractive", "-force"], log="format")
        if fmt.returncode != 0:
            raise HdfsCommandError(f"NameNode -format (nn1) exited with {fmt.returncode}")
        cluster._start_daemon("nn1", NAMENODE_CLASS, confs["nn1"])
        cluster._start_daemon("datanode", DATANODE_CLASS, confs["client"])
        cluster._wait("nn1 to answer HTTP", lambda: _answers_http(urls[0]), deadline, None)
        boot = cluster._run_tool(
            confs["nn2"],
            NAMENODE_CLASS,
            ["-bootstrapStandby", "-nonInteractive", "-force"],
            timeout=max(5.0, deadline - time.monotonic()),
            log="bootstrap",
        )
        if boot.returncode != 0:
            raise HdfsCommandError(f"NameNode -bootstrapStandby (nn2) exited with {boot.returncode}")
        cluster.transition_to_active("nn1")  # nn2 not running yet: --forceactive, no need to wait
        cluster._start_daemon("nn2", NAMENODE_CLASS, confs["nn2"])
        cluster._wait(
            "a WebHDFS write/read round trip through nn1",
            lambda: webhdfs_roundtrip(urls[0], cluster.superuser),
            deadline,
            None,
        )
        cluster._wait("nn2 to answer HTTP", lambda: _answers_http(urls[1]), deadline, None)
        cluster._wait("nn2 to see the DataNode", lambda: _live_datanodes(urls[1]) >= 1, deadline, None)
    except Exception as e:
        raise cluster._fail(e) from e
    return cluster


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """CLI: start a cluster, print one JSON line, run until SIGINT/SIGTERM, then stop."""
    parser = argparse.ArgumentParser(prog="python -m scripts.testbed.hdfs", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("kind", choices=("single", "ha"))
    parser.add_argument("--dir", required=True, type=Path, help="base directory of the cluster")
    parser.add_argument("--timeout", type=float, default=None, help="start timeout in seconds")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    started = time.monotonic()
    cluster: HdfsCluster
    try:
        if args.kind == "single":
            cluster = start_single(args.dir, **({"timeout": args.timeout} if args.timeout else {}))
        else:
            cluster = start_ha(args.dir, **({"timeout": args.timeout} if args.timeout else {}))
    except HdfsStartError as e:
        print(e, file=sys.stderr)
        return 1
    info: dict[str, object] = {
        "kind": args.kind,
        "namenode_urls": cluster.namenode_urls,
        "rpc_url": cluster.rpc_url,
        "superuser": cluster.superuser,
        "base_dir": str(cluster.base_dir),
        "start_seconds": round(time.monotonic() - started, 2),
    }
    if isinstance(cluster, HaHdfsCluster):
        info["rpc_urls"] = cluster.rpc_urls
        info["nameservice"] = cluster.nameservice
    print(json.dumps(info), flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
