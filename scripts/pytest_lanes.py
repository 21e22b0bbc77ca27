"""``make test``'s pytest run in two lanes at once: one for the self-contained stacks, one for the rest.

Most of the suite waits rather than computes: Airflow schedulers picking up tasks, JVMs starting,
containers turning healthy. Run in one pytest session on our 2-core machine, it took 76 min with the
CPUs 36 % idle over the run (``/proc/stat``). Two lanes fill that idle time:

* **stacks** (:data:`STACK_MODULES`): modules that start a whole stack of their own and use none of
  the shared session beds (HDFS, Spark standalone, the MLflow server): the compose stack, the demo,
  the browser tests, the packaging venvs, the real-scheduler tests of the container launcher and
  the notifications;
* **beds**: every other module, in pytest's usual order, sharing the session beds.

Each lane is an ordinary pytest session. Its beds live under ``.testbed/*/session-<pid>``, so the
two never touch each other's daemons, and image builds already take a lock. The beds lane streams to
the terminal; the stacks lane writes ``.testbed/lanes/stacks.log``, printed whole when both are done.
The exit status is the first failing lane's.

Why not pytest-xdist: its workers take modules in whatever order frees up, so each worker would
start every session bed it meets (HDFS single and HA, Spark standalone, MLflow) and modules would
get new neighbours (order-dependent set-ups such as PySpark's gateway have bitten us before). Two
fixed lanes start each bed once and keep each module's neighbours.

Usage: ``python -m scripts.pytest_lanes [pytest options]``. Given a test path, or ``--one-lane``, it
runs a single ordinary pytest session with the arguments instead.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / ".testbed" / "lanes"

#: Modules of the stacks lane: each starts everything it needs and shares no session bed.
STACK_MODULES = (
    "tests/integration/test_compose_stack.py",
    "tests/integration/test_demo.py",
    "tests/integration/test_ml_pipeline_browser.py",
    "tests/integration/test_ui_trigger_browser.py",
    "tests/integration/test_packaging.py",
    "tests/integration/test_markdown_pricing_real.py",
    "tests/integration/test_container_airflow_real.py",
    "tests/integration/test_mlflow_deploy_crash_real.py",
    "tests/integration/test_notifications_real.py",
    "tests/integration/test_airflow_bed.py",
)


def _names_a_path(args: Sequence[str]) -> bool:
    """Whether the arguments select tests by path (then lanes would run them twice or not at all)."""
    return any(not a.startswith("-") and (ROOT / a.split("::")[0]).exists() for a in args)


def _lane_args(args: Sequence[str], lane: str) -> list[str]:
    """``args`` with a ``--junitxml`` file made per lane (``x.xml`` -> ``x.<lane>.xml``)."""
    out = []
    for a in args:
        if a.startswith("--junitxml="):
            path = Path(a.split("=", 1)[1])
            a = f"--junitxml={path.with_suffix(f'.{lane}{path.suffix}')}"
        out.append(a)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    pytest = [sys.executable, "-m", "pytest"]
    if "--one-lane" in args or _names_a_path(args):
        return subprocess.call([*pytest, *(a for a in args if a != "--one-lane")], cwd=ROOT)
    missing = [m for m in STACK_MODULES if not (ROOT / m).exists()]
    if missing:
        print(f"pytest_lanes: STACK_MODULES names missing files {missing}", file=sys.stderr)
        return 2
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / "stacks.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        stacks = subprocess.Popen(
            [*pytest, *_lane_args(args, "stacks"), *STACK_MODULES],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        print(f"pytest_lanes: the stacks lane runs in the background, output in {log_path}", flush=True)
        ignores = [f"--ignore={m}" for m in STACK_MODULES]
        try:
            beds_rc = subprocess.call([*pytest, *_lane_args(args, "beds"), *ignores], cwd=ROOT)
            beds_done = time.monotonic() - started
            stacks_rc = stacks.wait()
        except BaseException:
            stacks.terminate()
            stacks.wait()
            raise
    total = time.monotonic() - started
    print(f"\n{'=' * 30} stacks lane ({log_path}) {'=' * 30}", flush=True)
    sys.stdout.buffer.write(log_path.read_bytes())
    print(
        f"\npytest_lanes: beds lane exit {beds_rc} after {beds_done / 60:.1f} min; "
        f"stacks lane exit {stacks_rc}; both done after {total / 60:.1f} min",
        flush=True,
    )
    return beds_rc or stacks_rc


if __name__ == "__main__":
    sys.exit(main())
