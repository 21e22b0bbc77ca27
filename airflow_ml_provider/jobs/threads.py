"""How many threads a job may use inside its container.

``$ML_NUM_THREADS`` if set (used as given), else the container's CPU limit (cgroup v2 ``cpu.max``,
or cgroup v1 CFS quota), else the CPUs this process may run on. Without the variable, a unit of work
(a country) also gets no more than one thread per :data:`ROWS_PER_THREAD` rows: on small data,
LightGBM's OpenMP threads cost far more than they bring (400 rows: 0.07 s on one thread, 1 to 3 s
on two busy CPUs).

Hand-written because ``os.cpu_count()`` and ``os.sched_getaffinity`` ignore a CFS quota (a
``--cpus=1`` container on a 16-CPU host reports 16), and ``os.process_cpu_count`` (3.13) too.
Stdlib only (see the package docstring).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from airflow_ml_provider.jobs.common import BadInputError

THREADS_ENV = "ML_NUM_THREADS"
CGROUP_V2_CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_V1_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
CGROUP_V1_PERIOD = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"
#: Without ``$ML_NUM_THREADS``, a country gets at most one thread per this many rows.
ROWS_PER_THREAD = 20_000


def cgroup_cpu_limit(cpu_max: str = CGROUP_V2_CPU_MAX) -> int | None:
    """The container's CPU limit rounded up to whole CPUs, or ``None`` if unlimited or unknown.

    Reads cgroup v2 ``cpu.max`` (``"200000 100000"`` = 2 CPUs, ``"max 100000"`` = no limit),
    else cgroup v1's CFS quota and period (only when ``cpu_max`` is the default path).

    :param cpu_max: the cgroup v2 file to read (tests pass their own).
    """
    try:
        with open(cpu_max) as f:
            fields = f.read().split()
        quota, period = fields[0], (fields[1] if len(fields) > 1 else "100000")
    except (OSError, IndexError):
        if cpu_max != CGROUP_V2_CPU_MAX:
            return None
        try:
            with open(CGROUP_V1_QUOTA) as f:
                quota = f.read().strip()
            with open(CGROUP_V1_PERIOD) as f:
                period = f.read().strip()
        except OSError:
            return None
    if quota == "max":
        return None
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # v1 uses -1 for "no limit"
        return None
    return max(1, math.ceil(q / p))


def available_cpus() -> int:
    """CPUs this process may run on (affinity), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def explicit_threads(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``$ML_NUM_THREADS`` is set (then it is used as given, whatever the data size).

    :param env: the environment to read (default ``os.environ``).
    """
    env = os.environ if env is None else env
    return bool(env.get(THREADS_ENV, "").strip())


def num_threads(env: Mapping[str, str] | None = None, cpu_max: str = CGROUP_V2_CPU_MAX) -> int:
    """Thread limit: ``$ML_NUM_THREADS``, else the cgroup CPU limit, else the available CPUs.

    :param env: the environment to read (default ``os.environ``).
    :param cpu_max: the cgroup v2 ``cpu.max`` file (see :func:`cgroup_cpu_limit`).
    :raises BadInputError: ``$ML_NUM_THREADS`` is not a whole number >= 1.
    """
    env = os.environ if env is None else env
    value = env.get(THREADS_ENV, "").strip()
    if value:
        try:
            threads = int(value)
        except ValueError:
            raise BadInputError(f"{THREADS_ENV}={value!r} is not a whole number of threads, e.g. 4") from None
        if threads < 1:
            raise BadInputError(f"{THREADS_ENV}={value!r} must be at least 1")
        return threads
    cpus = available_cpus()
    limit = cgroup_cpu_limit(cpu_max)
    return cpus if limit is None else min(limit, cpus)


def threads_for(rows: int, limit: int, explicit: bool) -> int:
    """Threads for a unit of ``rows`` rows.

    :param rows: the unit's row count.
    :param limit: the limit from :func:`num_threads`.
    :param explicit: whether the limit was set explicitly (then it is used as is); otherwise one
        thread per :data:`ROWS_PER_THREAD` rows, at least one, at most ``limit``.
    """
    return limit if explicit else max(1, min(limit, rows // ROWS_PER_THREAD))
