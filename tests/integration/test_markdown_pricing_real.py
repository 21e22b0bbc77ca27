"""The markdown_pricing example DAG end to end under Airflow's dag.test(): the sensor on the
week's data, country groups, one real training container per group on the project's LightGBM
image, predictions per country."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TESTBED

pytestmark = pytest.mark.integration

RUNNER = r"""
import datetime as dt, json, sys
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
sys.path.insert(0, sys.argv[1])
from dags.markdown_pricing import dag
dr = dag.test(logical_date=dt.datetime(2026, 11, 23, 8, tzinfo=dt.timezone.utc), run_conf=json.loads(sys.argv[2]))
with create_session() as session:
    rows = session.query(XComModel).filter(XComModel.dag_id == dag.dag_id, XComModel.run_id == dr.run_id).all()
    xcoms = [{"task_id": r.task_id, "map_index": r.map_index, "key": r.key, "value": r.value} for r in rows]
print("RESULT " + json.dumps({"state": str(dr.state), "xcoms": xcoms}, default=str))
"""


@pytest.fixture(scope="module")
def airflow_env(docker_images: dict[str, str]) -> dict[str, str]:
    home = TESTBED / "airflow-markdown"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([airflow, "pools", "set", "markdown_pricing", "2", "test"], env=env, check=True, capture_output=True)
    return env


def test_markdown_pricing_runs_end_to_end(airflow_env: dict[str, str], docker_images: dict[str, str]) -> None:
    import docker

    from airflow_ml_provider.jobs.synthetic import write_week

    lake = TESTBED / "markdown-lake"
    shutil.rmtree(lake, ignore_errors=True)
    countries = ["DE", "FR", "IT", "PL", "NL"]
    write_week(str(lake), "2026-11-23", countries, rows_per_country=300)
    conf = {"data_root": str(lake), "countries": countries, "groups": 2, "num_boost_round": 20}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT), json.dumps(conf)],
        env=airflow_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-6000:]
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    assert result["state"] == "success", output[-6000:]
    xcoms = {(x["task_id"], x["map_index"], x["key"]): x["value"] for x in result["xcoms"]}
    plan = xcoms[("plan_groups", -1, "return_value")]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    assert [cmd[cmd.index("--countries") + 1] for cmd in plan] == ["DE,FR,IT", "PL,NL"]
    predictions = xcoms[("collect_predictions", -1, "return_value")]
    predictions = json.loads(predictions) if isinstance(predictions, str) else predictions
    assert sorted(predictions) == sorted(countries)
    for country in countries:
        folder = lake / "2026-11-23" / "predictions" / f"country={country}"
        assert (folder / "part-0.parquet").is_file()
        assert (folder / "_SUCCESS").is_file()
    assert "markdown_train: start countries=DE,FR,IT" in output
    assert "markdown_train: done countries=PL,NL" in output
    client = docker.from_env()
    try:
        left = client.containers.list(all=True, filters={"label": "airflow-ml-provider.managed=true"})
        assert [c.name for c in left if "markdown-pricing" in c.name] == []
    finally:
        client.close()
