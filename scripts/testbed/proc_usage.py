"""CPU time and resident memory of a process tree, read from ``/proc`` (Linux).

The benchmarks ask what one component costs -- e.g. Airflow's triggerer, whose main process
runs its trigger-runner in a subprocess. :func:`sample_tree` takes one snapshot of a process and
all its descendants; two snapshots give the CPU used in between (:func:`cpu_percent`).

CPU per process is ``utime + stime + cutime + cstime`` (all threads, plus children it has
reaped), so a child that exits inside the window is still counted, through its parent. A process
that appears only in the later snapshot counts with all its CPU time. RSS is summed over the
tree's processes, so pages they share (e.g. after a fork) count once per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (index 0 = state); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (zombies excluded), root first.

    :param root: PID of the tree's top process.
    :return: the PIDs; empty if ``root`` is gone.
    """
    children: dict[int, list[int]] = {}
    alive: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None or fields[0] == "Z":
            continue
        alive.add(int(entry))
        children.setdefault(int(fields[1]), []).append(int(entry))
    if root not in alive:
        return []
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


@dataclass(frozen=True)
class TreeSample:
    """One snapshot of a process tree.

    :param cpu: PID -> CPU seconds used so far (own and reaped children's, user + system).
    :param rss: PID -> resident set size in bytes.
    """

    cpu: dict[int, float] = field(default_factory=dict)
    rss: dict[int, int] = field(default_factory=dict)

    @property
    def rss_bytes(self) -> int:
        """Sum of the processes' resident set sizes, in bytes."""
        return sum(self.rss.values())


def sample_tree(root: int) -> TreeSample:
    """Snapshot the CPU seconds and RSS of ``root`` and its descendants.

    :param root: PID of the tree's top process (e.g. an Airflow component's main process).
    """
    cpu: dict[int, float] = {}
    rss: dict[int, int] = {}
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # after the name: state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14 ... rss=21
        cpu[pid] = sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICKS
        rss[pid] = int(fields[21]) * _PAGE
    return TreeSample(cpu, rss)


def cpu_seconds_between(before: TreeSample, after: TreeSample) -> float:
    """CPU seconds the tree used between two snapshots (see the module docstring for what counts).

    :param before: the earlier snapshot.
    :param after: the later snapshot of the same tree.
    """
    return sum(max(0.0, used - before.cpu.get(pid, 0.0)) for pid, used in after.cpu.items())


def cpu_percent(before: TreeSample, after: TreeSample, seconds: float) -> float:
    """CPU used between two snapshots as a percentage of one core.

    :param before: the earlier snapshot.
    :param after: the later snapshot of the same tree.
    :param seconds: wall-clock seconds between the two snapshots.
    """
    return 100.0 * cpu_seconds_between(before, after) / seconds if seconds > 0 else 0.0
