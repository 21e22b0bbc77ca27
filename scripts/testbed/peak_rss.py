"""Peak resident memory of a piece of work, in a fresh interpreter (Linux).

The benchmarks and the memory tests ask what *the work* costs, not the imports: ``setup`` runs
first (imports, a model load, a warm-up write), then the peak resident set (``VmHWM`` in
``/proc/self/status``) is reset to the current RSS by writing ``5`` to ``/proc/self/clear_refs``,
then ``measured`` runs and the new peak is read. ``ru_maxrss`` cannot be reset, hence VmHWM.
Both snippets see ``sys.argv[1:]`` = ``args``; ``measured`` may set a dict ``extra`` whose items are
added to the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

_RESET = """
def _peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
_baseline = _peak()
_started = time.perf_counter()
extra = {}
"""
_REPORT = """
print(json.dumps({"baseline": _baseline, "peak": _peak(), "seconds": time.perf_counter() - _started, **extra}))
"""


def peak_rss_growth(setup: str, measured: str, args: Sequence[str], *, timeout: float = 600) -> dict[str, Any]:
    """Run ``setup`` then ``measured`` in a fresh interpreter (cwd and ``PYTHONPATH``: the repository).

    :param setup: Python run before the peak is reset (``json``, ``sys`` and ``time`` are imported).
    :param measured: Python whose peak memory is measured.
    :param args: the interpreter's ``sys.argv[1:]``.
    :param timeout: seconds before the run is killed.
    :return: ``{"baseline", "peak", "growth", "seconds", ...extra}``, memory in bytes.
    :raises RuntimeError: the interpreter failed (with the end of its stderr).
    """
    script = "import json, sys, time\n" + textwrap.dedent(setup) + _RESET + textwrap.dedent(measured) + _REPORT
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"peak-RSS subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["growth"] = result["peak"] - result["baseline"]
    return result
