"""Ingest → EDA as Airflow tasks under ``dag.test()``: the seeds' Sqoop and Hive steps on today's stack.

A MariaDB database of this module's own (127.0.0.1:3306) is seeded with the project's generator
(``jobs.synthetic_seed``); a DAG copies its ``sales`` table into a country-partitioned Parquet
dataset on the real HDFS (incremental by ``id``), then profiles it with the EDA report, whose gate
only warns, as in the seed. A second run finds no new rows and adds no batch; the report still runs.
The source user's password must show nowhere in the run's output or XComs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration import databases
from tests.integration.conftest import admin_client
from tests.integration.dag_test_runs import airflow_home, run_dag_test

pytestmark = pytest.mark.integration

SECRET = "Src-Pw-ingest-eda-5521"
COUNTRIES = ["DE", "FR", "IT"]
WEEKS, SKUS = 8, 20

#: The DAG file (dag.test() runs DAGs from the DAGs folder); the output path comes from the environment.
DAG_FILE = """
import os
from airflow.sdk import DAG
from airflow_ml_provider.operators.eda import EdaReportOperator
from airflow_ml_provider.operators.ingest import SqlIngestOperator

out = os.environ["INGEST_EDA_OUT"]
with DAG(dag_id="ingest_eda", schedule=None) as dag:
    ingest = SqlIngestOperator(task_id="ingest", conn_id="shop_src", table="sales", output_path=out,
                               hdfs_conn_id="lake", partition_by="country", watermark_column="id", chunk_rows=200)
    eda = EdaReportOperator(task_id="eda", input_path=out, hdfs_conn_id="lake", title="Sales (ingested)",
                            max_null_rate={"units_sold": 0.05}, min_partition_rows=1, fail_on_gate=False)
    ingest >> eda
"""


@pytest.fixture(scope="module")
def source() -> Iterator[str]:
    """A MariaDB database seeded with the generator's ``sales`` table; its name (also the user's)."""
    with databases.mariadb_database("ingest_eda", password=SECRET, grant="ALL") as name:
        yield name


@pytest.fixture(scope="module")
def airflow_env(source: str, hdfs: Any) -> dict[str, str]:
    src = {
        "conn_type": "mysql",
        "host": databases.MARIADB_HOST,
        "port": databases.MARIADB_PORT,
        "login": source,
        "password": SECRET,
        "schema": source,
    }
    lake = {"conn_type": "ml_hdfs", "host": ",".join(u.removeprefix("http://") for u in hdfs.namenode_urls),
            "login": "etl", "extra": {"timeout": 10}}  # fmt: skip
    env = {**os.environ, "AIRFLOW_CONN_SHOP_SRC": json.dumps(src), "AIRFLOW_CONN_LAKE": json.dumps(lake)}
    return airflow_home("airflow-ingest-eda", "ingest_eda", DAG_FILE, env)


def run_dag(env: dict[str, str], out: str) -> tuple[dict[str, Any], str]:
    return run_dag_test({**env, "INGEST_EDA_OUT": out}, "ingest_eda")


def test_ingest_then_eda_under_dag_test(
    airflow_env: dict[str, str], source: str, hdfs: Any, hdfs_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_ml_provider.jobs.synthetic_seed import seed_database

    env_conn = json.loads(airflow_env["AIRFLOW_CONN_SHOP_SRC"])
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_SRC", json.dumps(env_conn))
    seeded = seed_database("shop_src", skus_per_country=SKUS, weeks=WEEKS, countries=COUNTRIES, seed=0)
    total = WEEKS * len(COUNTRIES) * SKUS
    assert seeded["rows"] == total
    admin = admin_client(hdfs)
    admin.set_owner(hdfs_dir, owner="etl")  # the lake connection's user writes the dataset
    out = f"hdfs://nn{hdfs_dir}/sales"

    result, output = run_dag(airflow_env, out)
    assert result["state"] == "success", output[-6000:]
    ingest, eda = result["xcoms"]["ingest"], result["xcoms"]["eda"]
    assert ingest["rows"] == total
    assert sorted(ingest["partitions"]) == [f"country={c}" for c in COUNTRIES]
    assert ingest["watermark"] == total  # ids 1..total
    assert eda["rows"] == total
    assert eda["gate"]["status"] == "passed", eda["gate"]
    listing = admin.list(f"{hdfs_dir}/sales")
    assert "_SUCCESS" in listing
    assert "ingest_batch=00000" in listing
    assert "report.html" in admin.list(f"{hdfs_dir}/sales/_eda")
    with admin.read(f"{hdfs_dir}/sales/_eda/summary.json") as f:
        summary = json.load(f)
    assert summary["rows"] == total
    assert {c["name"] for c in summary["columns"]} >= {"units_sold", "discount", "base_price", "country"}

    # Again: no new rows, so no new batch; the report is made again over the same dataset.
    again, output2 = run_dag(airflow_env, out)
    assert again["state"] == "success", output2[-6000:]
    assert again["xcoms"]["ingest"]["rows"] == 0
    assert again["xcoms"]["ingest"]["watermark"] == total
    assert again["xcoms"]["eda"]["rows"] == total
    assert sorted(p for p in admin.list(f"{hdfs_dir}/sales") if p.startswith("ingest_batch=")) == ["ingest_batch=00000"]

    for text in (output, output2, json.dumps(result), json.dumps(again)):
        assert SECRET not in text
