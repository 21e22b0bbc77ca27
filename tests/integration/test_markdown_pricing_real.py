"""The markdown_pricing example DAG end to end on real dockerd and a real PostgreSQL ERP.

Under Airflow's ``dag.test()`` and through a real scheduler (an Airflow test bed): the sensor on
the week's data, pool-sized country groups, one training container per group on the project's
LightGBM image, predictions per country, one ERP write per group (its own pool) and the
drop-guard summary. The ERP database is created on 127.0.0.1:5432 for this module and dropped at
the end; the connection carries a password that must show nowhere (logs, XCom, rendered fields
of the training tasks, whose containers hold no ERP credentials).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, TESTBED
from tests.integration import databases
from tests.integration.conftest import running_airflow

pytestmark = pytest.mark.integration

WEEK = "2026-11-23"
COUNTRIES = ["DE", "FR", "IT", "PL", "NL"]
SKUS = 300
#: The ERP connection's password (trust auth ignores it): it must never show.
SECRET = "Erp-Pw-markdown-9431"
LAKE = TESTBED / "markdown-lake"

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
print("RESULT " + json.dumps({"state": str(dr.state), "run_id": dr.run_id, "xcoms": xcoms}, default=str))
"""


def _pg(dbname: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=dbname, connect_timeout=5)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def erp() -> Iterator[str]:
    """A PostgreSQL database of this module's own holding the DAG's ERP table (its DDL); dropped at the end."""
    sys.path.insert(0, str(ROOT))
    dag_module = importlib.import_module("dags.markdown_pricing")
    ddl = dag_module.ERP_TABLE_DDL.format(table=dag_module.DEFAULT_ERP_TABLE)

    with databases.postgres_database("mp_erp") as name:
        conn = _pg(name)
        with conn.cursor() as cur:
            cur.execute(ddl)
        conn.close()
        yield name


def erp_conn_env(database: str) -> dict[str, str]:
    conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "login": "postgres",
        "password": SECRET,
        "schema": database,
    }
    return {"AIRFLOW_CONN_MARKDOWN_PRICING_ERP": json.dumps(conn)}


def erp_rows(database: str) -> dict[str, tuple[int, str, str]]:
    """Per country: (rows, distinct week, distinct run_id) in the ERP table."""
    conn = _pg(database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT country, count(*), min(week)::text, max(week)::text, min(run_id), max(run_id) "
                "FROM markdown_recommendations GROUP BY country ORDER BY country"
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    out = {}
    for country, n, week_lo, week_hi, run_lo, run_hi in rows:
        assert (week_lo, run_lo) == (week_hi, run_hi), f"{country} holds rows of two runs: a mix"
        out[country] = (n, week_lo, run_lo)
    return out


@pytest.fixture(scope="module")
def airflow_env(docker_images: dict[str, str], erp: str) -> dict[str, str]:
    home = TESTBED / "airflow-markdown"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        **erp_conn_env(erp),
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    for pool, slots in (("markdown_pricing", "2"), ("markdown_pricing_erp", "1")):
        subprocess.run([airflow, "pools", "set", pool, slots, "test"], env=env, check=True, capture_output=True)
    return env


def dag_test(env: dict[str, str], conf: dict[str, Any]) -> tuple[dict[str, Any], dict[Any, Any], str]:
    """One ``dag.test()`` run: (result, xcoms by (task, map index, key), its output)."""
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT), json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-6000:]
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    xcoms = {}
    for x in result["xcoms"]:
        value = x["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        xcoms[(x["task_id"], x["map_index"], x["key"])] = value
    return result, xcoms, output


def predicted_rows(week: str, country: str) -> int:
    return int(pq.read_metadata(LAKE / week / "predictions" / f"country={country}" / "part-0.parquet").num_rows)


def test_markdown_pricing_runs_end_to_end_into_the_erp(
    airflow_env: dict[str, str], docker_images: dict[str, str], erp: str
) -> None:
    import docker

    from airflow_ml_provider.jobs.synthetic import write_week

    shutil.rmtree(LAKE, ignore_errors=True)
    write_week(str(LAKE), WEEK, COUNTRIES, rows_per_country=SKUS)
    conf = {"data_root": str(LAKE), "countries": COUNTRIES, "groups": 2, "erp_groups": 2, "num_boost_round": 20}
    result, xcoms, output = dag_test(airflow_env, conf)
    assert result["state"] == "success", output[-6000:]
    plan = xcoms[("plan_groups", -1, "return_value")]
    assert [cmd[cmd.index("--countries") + 1] for cmd in plan] == ["DE,FR,IT", "PL,NL"]
    predictions = xcoms[("collect_predictions", -1, "return_value")]
    assert sorted(predictions) == sorted(COUNTRIES)
    for country in COUNTRIES:
        assert (LAKE / WEEK / "predictions" / f"country={country}" / "_SUCCESS").is_file()
    assert "markdown_train: start countries=DE,FR,IT" in output
    assert "markdown_train: done countries=PL,NL" in output
    report = xcoms[("sales_report", -1, "return_value")]
    assert report["rows"] == SKUS * len(COUNTRIES)
    assert report["gate"]["passed"] is True
    assert (LAKE / WEEK / "sales" / "_eda" / "report.html").is_file()

    # ERP: two write tasks (sorted countries split in two), each country's rows replaced, a first run.
    writes = [xcoms[("write_to_erp", i, "return_value")] for i in range(2)]
    assert [sorted(w["keys"]) for w in writes] == [["DE", "FR", "IT"], ["NL", "PL"]]
    summary = xcoms[("erp_summary", -1, "return_value")]
    expected = {c: predicted_rows(WEEK, c) for c in COUNTRIES}
    assert {c: (n["old"], n["new"], n["change"]) for c, n in summary.items()} == {
        c: (0, expected[c], None) for c in COUNTRIES
    }
    assert erp_rows(erp) == {c: (expected[c], WEEK, result["run_id"]) for c in COUNTRIES}
    assert "ERP rows per country:" in output
    assert "first run" in output

    # The password shows nowhere: not in the output, the XComs, or the training tasks' rendered fields.
    assert SECRET not in output
    assert SECRET not in json.dumps(result)
    logs = "".join(p.read_text(errors="replace") for p in (Path(airflow_env["AIRFLOW_HOME"]) / "logs").rglob("*.log"))
    assert SECRET not in logs
    client = docker.from_env()
    try:
        left = client.containers.list(all=True, filters={"label": "airflow-ml-provider.managed=true"})
        assert [c.name for c in left if "markdown-pricing" in c.name] == []
    finally:
        client.close()


def test_a_country_whose_predictions_fall_by_half_is_not_written_and_the_run_fails_naming_it(
    airflow_env: dict[str, str], docker_images: dict[str, str], erp: str
) -> None:
    """The seed's alert: DE's new set is half its old one. DE's group writes nothing (DE and its group
    partner keep the first run's rows), the other group is written, the summary fails naming them."""
    from airflow_ml_provider.jobs.synthetic import write_week

    before = erp_rows(erp)
    assert set(before) == set(COUNTRIES), "runs after test_markdown_pricing_runs_end_to_end_into_the_erp"
    write_week(str(LAKE), WEEK, COUNTRIES, rows_per_country=SKUS, seed=1)
    write_week(str(LAKE / "de-half"), WEEK, ["DE"], rows_per_country=SKUS // 2)
    conf = {
        "data_root": str(LAKE),
        "countries": COUNTRIES,
        "groups": 1,
        "erp_groups": 2,
        "num_boost_round": 10,
    }
    # DE with half its SKUs: replace its sales partition before the run.
    de = LAKE / WEEK / "sales" / "country=DE"
    shutil.rmtree(de)
    shutil.copytree(LAKE / "de-half" / WEEK / "sales" / "country=DE", de)
    result, xcoms, output = dag_test(airflow_env, conf)
    assert result["state"] == "failed", output[-6000:]
    assert predicted_rows(WEEK, "DE") < before["DE"][0] * 0.9
    after = erp_rows(erp)
    # group 0 (DE, FR, IT) failed on the guard: untouched; group 1 (NL, PL) written by this run.
    assert {c: after[c] for c in ("DE", "FR", "IT")} == {c: before[c] for c in ("DE", "FR", "IT")}
    assert {c: after[c][2] for c in ("NL", "PL")} == {"NL": result["run_id"], "PL": result["run_id"]}
    assert ("write_to_erp", 0, "return_value") not in xcoms
    assert "DropGuardError" in output
    assert "DE" in output.split("DropGuardError", 1)[1][:2000]
    assert "3 countries were not written to the ERP: DE, FR, IT" in output
    assert SECRET not in output


def test_markdown_pricing_through_the_real_scheduler(docker_images: dict[str, str], erp: str) -> None:
    """Triggered through the REST API of a real Airflow (scheduler, triggerer, LocalExecutor): the sensor
    defers until the week's data lands, the ERP holds that week's rows for every country, and the
    training tasks' rendered fields hold no ERP credential."""
    from airflow_ml_provider.jobs.synthetic import write_week

    week = "2026-11-30"
    countries = ["DE", "FR", "IT"]
    # The example DAG as shipped, polling every 5 s instead of 300 so the test does not wait minutes.
    source = (ROOT / "dags" / "markdown_pricing.py").read_text()
    assert "poke_interval=300," in source
    dags = {"markdown_pricing.py": source.replace("poke_interval=300,", "poke_interval=5,")}
    pools = {"markdown_pricing": 2, "markdown_pricing_erp": 1}
    with running_airflow("markdown-erp", dags, env=erp_conn_env(erp), pools=pools) as bed:
        bed.wait_for_dag("markdown_pricing")
        conf = {"data_root": str(LAKE), "countries": countries, "week": week, "groups": 2, "num_boost_round": 10}
        run_id = bed.trigger("markdown_pricing", conf)
        bed.wait_deferred("markdown_pricing", run_id, "wait_for_sales")
        write_week(str(LAKE), week, countries, rows_per_country=SKUS)
        state = bed.wait_for_run("markdown_pricing", run_id, timeout=600)
        tasks = bed.task_states("markdown_pricing", run_id)
        assert state == "success", f"{tasks}\n{bed.logs_tail(120)}"
        assert tasks["erp_summary"] == "success"
        rows = erp_rows(erp)
        assert {c: rows[c] for c in countries} == {c: (predicted_rows(week, c), week, run_id) for c in countries}
        for i in range(2):
            path = f"/api/v2/dags/markdown_pricing/dagRuns/{run_id}/taskInstances/train_and_predict/{i}"
            rendered = bed.api("GET", path)["rendered_fields"]
            assert "environment" in rendered
            assert SECRET not in json.dumps(rendered)
            assert "markdown_pricing_erp" not in json.dumps(rendered)
        summary_log = bed.task_log("markdown_pricing", run_id, "erp_summary")
        assert "ERP rows per country:" in summary_log
        all_logs = "".join(p.read_text(errors="replace") for p in bed.log_dir.rglob("*.log"))
        assert SECRET not in all_logs
