"""The example DAG, run by Airflow's own dag.test() (after `airflow db migrate`) against real HDFS."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import admin_client

pytestmark = pytest.mark.integration

RUNNER = r"""
import datetime as dt, json, sys
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
sys.path.insert(0, sys.argv[1])
from dags.example_hdfs_success import example_dag
dag = example_dag
dr = dag.test(logical_date=dt.datetime(2026, 11, 23, 8, tzinfo=dt.timezone.utc), run_conf=json.loads(sys.argv[2]))
with create_session() as session:
    rows = session.query(XComModel).filter(XComModel.dag_id == dag.dag_id, XComModel.run_id == dr.run_id).all()
    xcoms = {r.task_id: r.value for r in rows}
print("RESULT " + json.dumps({"state": str(dr.state), "xcoms": xcoms}, default=str))
"""


def run_dag_test(env: dict[str, str], conf: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT), json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-4000:] + done.stderr[-4000:]
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory, hdfs: Any) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-dagtest")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW_CONN_ML_HDFS_DEFAULT": json.dumps(
            {
                "conn_type": "ml_hdfs",
                "host": ",".join(u.removeprefix("http://") for u in hdfs.namenode_urls),
                "login": "etl",
                "extra": {"timeout": 5},
            }
        ),
    }
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def test_example_dag_waits_for_all_countries_on_real_hdfs(
    airflow_env: dict[str, str], hdfs: Any, hdfs_dir: str
) -> None:
    countries = ["DE", "FR", "PL"]
    client = admin_client(hdfs)
    for c in countries:
        client.write(f"{hdfs_dir}/week=2026-11-23/country={c}/_SUCCESS", data=b"")
    # The logical date 2026-11-23 08:00 has data_interval_end = that instant for this cron schedule.
    result = run_dag_test(airflow_env, {"base_path": hdfs_dir, "countries": countries, "fresh_since": ""})
    assert result["state"] == "success", result
    markers = result["xcoms"]["wait_for_week"]
    assert sorted(m["path"] for m in markers) == [f"{hdfs_dir}/week=2026-11-23/country={c}/_SUCCESS" for c in countries]
    assert result["xcoms"]["summarize"] == 3
    newest = max(dt.datetime.fromisoformat(m["modification_time"]) for m in markers)
    assert newest <= dt.datetime.now(dt.timezone.utc)
