"""Running a DAG file under ``dag.test()`` in a fresh Airflow home (SQLite), as a subprocess.

For the integration tests that run a chain of real operators end to end: the DAG file goes into
``<home>/dags``, the metadata database is migrated once, and each run is a separate Python process
(Airflow's configuration and logging are per process) that prints the run's state, every task's
state, every ``return_value`` XCom and every task's duration as one ``RESULT {json}`` line. A
mapped task instance is keyed ``task_id[map_index]`` (``train[0]``), an unmapped one ``task_id``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, TESTBED

_RUNNER = r"""
import importlib, json, sys
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
sys.path.insert(0, sys.argv[1])
dag = importlib.import_module(sys.argv[2]).dag
dr = dag.test(run_conf=json.loads(sys.argv[3]) or None)
def key(task_id, map_index):
    return task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"
with create_session() as session:
    rows = session.query(XComModel).filter(XComModel.dag_id == dag.dag_id, XComModel.run_id == dr.run_id).all()
    xcoms = {key(r.task_id, r.map_index): r.value for r in rows if r.key == "return_value"}
    others = {f"{key(r.task_id, r.map_index)}:{r.key}": r.value for r in rows if r.key != "return_value"}
    tis = dr.get_task_instances(session=session)
    states = {key(ti.task_id, ti.map_index): str(ti.state) for ti in tis}
    durations = {key(ti.task_id, ti.map_index): ti.duration for ti in tis}
print("RESULT " + json.dumps({"state": str(dr.state), "run_id": dr.run_id, "xcoms": xcoms, "other_xcoms": others,
                              "states": states, "durations": durations}, default=str))
"""


def airflow_home(name: str, module: str, dag_file: str, env: dict[str, str]) -> dict[str, str]:
    """A fresh Airflow home ``.testbed/<name>`` holding ``dags/<module>.py``; its migrated environment.

    :param name: the home's directory name under the test bed.
    :param module: the DAG file's module name (its file is ``<module>.py``).
    :param dag_file: the DAG file's text.
    :param env: the base environment (``AIRFLOW*`` entries are replaced), plus the connections.
    """
    home = TESTBED / name
    shutil.rmtree(home, ignore_errors=True)
    (home / "dags").mkdir(parents=True)
    (home / "dags" / f"{module}.py").write_text(dag_file)
    full = {
        **{k: v for k, v in env.items() if not k.startswith("AIRFLOW") or k.startswith("AIRFLOW_CONN_")},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "PYTHONPATH": str(ROOT),
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=full, check=True, capture_output=True)
    return full


def _decode(values: dict[str, Any]) -> None:
    """JSON-decode, in place, the values stored as JSON text."""
    for task, value in values.items():
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                values[task] = json.loads(value)


def run_dag_test(
    env: dict[str, str],
    module: str,
    timeout: float = 300,
    conf: dict[str, Any] | None = None,
    cwd: Path = ROOT,
) -> tuple[dict[str, Any], str]:
    """``dag.test()`` of ``<module>.dag`` in a subprocess; its result (XCom values JSON-decoded) and output.

    The result has ``state`` and ``run_id`` (the run's), ``states`` (task key -> state, e.g.
    ``TaskInstanceState.SUCCESS``), ``xcoms`` (task key -> ``return_value``), ``other_xcoms``
    (``"<task key>:<xcom key>"`` -> value) and ``durations`` (task key -> seconds, None if it never
    ran); a task key is ``task_id``, or ``task_id[map_index]`` for a mapped task instance.

    :param env: the environment from :func:`airflow_home` (plus what the DAG file reads).
    :param module: the DAG file's module name.
    :param timeout: seconds before the run is killed.
    :param conf: the run's conf (``dag.test(run_conf=...)``), validated against the DAG's params.
    :param cwd: the working directory of the run (and so of its tasks).
    """
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, env["AIRFLOW__CORE__DAGS_FOLDER"], module, json.dumps(conf or {})],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-8000:]
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    _decode(result["xcoms"])
    _decode(result["other_xcoms"])
    return result, output


def task_states(result: dict[str, Any]) -> dict[str, str]:
    """``result["states"]`` as plain lower-case states (``success``, ``skipped``, ...)."""
    return {task: state.removeprefix("TaskInstanceState.").lower() for task, state in result["states"].items()}
