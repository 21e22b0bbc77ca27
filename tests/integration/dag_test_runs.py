"""Running a DAG file under ``dag.test()`` in a fresh Airflow home (SQLite), as a subprocess.

For the integration tests that run a chain of real operators end to end: the DAG file goes into
``<home>/dags``, the metadata database is migrated once, and each run is a separate Python process
(Airflow's configuration and logging are per process) that prints the run's state, every task's
state and every ``return_value`` XCom as one ``RESULT {json}`` line.
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
dr = dag.test()
with create_session() as session:
    rows = session.query(XComModel).filter(XComModel.dag_id == dag.dag_id, XComModel.run_id == dr.run_id).all()
    xcoms = {r.task_id: r.value for r in rows if r.key == "return_value"}
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}
print("RESULT " + json.dumps({"state": str(dr.state), "xcoms": xcoms, "states": states}, default=str))
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


def run_dag_test(env: dict[str, str], module: str, timeout: float = 300) -> tuple[dict[str, Any], str]:
    """``dag.test()`` of ``<module>.dag`` in a subprocess; its result (XCom values JSON-decoded) and output.

    :param env: the environment from :func:`airflow_home` (plus what the DAG file reads).
    :param module: the DAG file's module name.
    :param timeout: seconds before the run is killed.
    """
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, env["AIRFLOW__CORE__DAGS_FOLDER"], module],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-8000:]
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    for task, value in result["xcoms"].items():
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                result["xcoms"][task] = json.loads(value)
    return result, output
