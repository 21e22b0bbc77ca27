"""Process groups of the bed's daemons: signal, stop and find them (Linux).

Every daemon the bed starts leads its own process group (``start_new_session=True``; the JVM
scripts exec the JVM), so a signal to the group also reaches anything it started. These helpers
are the one copy the HDFS and Spark beds share.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from scripts.testbed import pid_alive

#: Seconds a daemon gets between SIGTERM and SIGKILL.
STOP_GRACE = 10.0


def kill_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid``; a group that is gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_groups(procs: Sequence[subprocess.Popen[bytes]], grace: float = STOP_GRACE) -> None:
    """SIGTERM each process's group, wait up to ``grace`` seconds in all, SIGKILL what is left; reaped."""
    for p in procs:
        if p.poll() is None:
            kill_group(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill_group(p.pid, signal.SIGKILL)
            p.wait(5)
        kill_group(p.pid, signal.SIGKILL)  # anything the daemon left in its group


def processes_mentioning(marker: Path) -> list[int]:
    """Live processes (not this one) whose command line contains the resolved path ``marker``."""
    text = str(marker.resolve()).encode()
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if text in cmdline and pid_alive(int(entry)):
            found.append(int(entry))
    return sorted(found)


def kill_pids(victims: Iterable[int], grace: float = STOP_GRACE) -> list[int]:
    """SIGTERM the groups of ``victims``, SIGKILL those still alive after ``grace`` seconds; the pids."""
    pids = list(victims)
    for pid in pids:
        kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            kill_group(pid, signal.SIGKILL)
    return pids
