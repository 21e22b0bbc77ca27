"""SqlIngestOperator: ingest rows/s and peak memory against ``pandas.read_sql`` + ``to_parquet``.

A 1M-row table in a MariaDB database of its own (127.0.0.1:3306, root; unique name, dropped at the
end), filled by the server from its ``seq_1_to_1000000`` sequence: ``id BIGINT`` primary key,
``country CHAR(2)`` (45 values), ``sku INT``, ``price DECIMAL(10,2)``, ``qty INT`` (NULL every 10th
row), ``updated_at DATETIME(6)``, ``note VARCHAR(32)`` (NULL every 3rd row).

* Wall time, one local Parquet dataset, alternating runs: the operator's whole ``execute`` (read-only
  session, unbuffered cursor, ``chunk_rows`` rows per round trip, Arrow conversion, Parquet parts,
  atomic rename, ``_SUCCESS``) against the script it replaces: ``pandas.read_sql`` of the whole
  table (SQLAlchemy + mysqlclient, the same driver) and ``DataFrame.to_parquet``. Also both
  partitioned by country (the operator's ``partition_by`` against ``to_parquet(partition_cols=)``).
* Memory: peak RSS growth in a fresh interpreter (Linux VmHWM, reset after imports and a warm-up
  on a 10-row table) ingesting 1M rows (10x ``chunk_rows``) against 100k rows (1x), and against
  the pandas script on 1M rows.

``python -m bench.ingest`` runs it alone (about 2.5 minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Row, run_alone

ROWS = 1_000_000
CHUNK = 100_000
REPEATS = 3
CONN_ID = "ingest_bench"
HOST, PORT = "127.0.0.1", 3306
COUNTRIES = (
    "AT BE BG CH CY CZ DE DK EE ES FI FR GB GR HR HU IE IS IT LI LT LU LV MT NL NO PL PT RO SE SI SK "  # noqa: SIM905
    "AL BA ME MK RS TR UA MD GE AM AZ BY XK".split()
)
TABLE_SQL = (
    "CREATE TABLE {name} (id BIGINT PRIMARY KEY, country CHAR(2) NOT NULL, sku INT NOT NULL, price DECIMAL(10,2), "
    "qty INT, updated_at DATETIME(6) NOT NULL, note VARCHAR(32)) ENGINE=InnoDB"
)
FILL_SQL = (
    "INSERT INTO {name} SELECT seq, ELT(1 + seq % 45, {countries}), seq % 5000, (seq % 10000) / 100, "
    "IF(seq % 10 = 0, NULL, seq % 7), TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq SECOND, "
    "IF(seq % 3 = 0, NULL, CONCAT('note ', seq)) FROM seq_1_to_{rows}"
)

#: Run before the peak is reset (imports and a warm-up on the 10-row table), so the growth is what
#: ingesting the table costs.
_PEAK_SETUP = """
import os
mode, database, table, out, host, port, conn, chunk = sys.argv[1:9]
import MySQLdb, pandas, pyarrow.parquet, sqlalchemy
from airflow_ml_provider.operators.ingest import SqlIngestOperator
engine = sqlalchemy.create_engine(f"mysql+mysqldb://root@{host}:{port}/{database}?charset=utf8mb4")
def run(name, dst):
    if mode == "operator":
        task = SqlIngestOperator(task_id="ingest", conn_id=conn, table=name, output_path=dst, chunk_rows=int(chunk))
        task.execute({})
    else:
        frame = pandas.read_sql(f"SELECT * FROM {name}", engine)
        os.makedirs(dst, exist_ok=True)
        frame.to_parquet(os.path.join(dst, "part-00000.parquet"), index=False)
run("warm", out + "-warm")
"""
_PEAK_MEASURED = """
run(table, out)
"""


def _admin(database: str = "") -> Any:
    import MySQLdb

    conn = MySQLdb.connect(host=HOST, port=PORT, user="root", passwd="", db=database, connect_timeout=5)
    conn.autocommit(True)
    return conn


def _execute(conn: Any, sql: str) -> None:
    cur = conn.cursor()
    cur.execute(sql)
    cur.close()


def _timed(fn: Callable[[], None], samples: list[float]) -> None:
    started = time.perf_counter()
    fn()
    samples.append(time.perf_counter() - started)


def _peak_growth_mb(mode: str, database: str, table: str, out: Path) -> float:
    from scripts.testbed.peak_rss import peak_rss_growth

    args = [mode, database, table, str(out), HOST, str(PORT), CONN_ID, str(CHUNK)]
    return float(peak_rss_growth(_PEAK_SETUP, _PEAK_MEASURED, args)["growth"]) / 2**20


def run(base: Path, repeats: int = REPEATS) -> list[Row]:
    """Create and fill the tables, measure, drop the database; four rows."""
    import pandas as pd
    import sqlalchemy

    from airflow_ml_provider.operators.ingest import SqlIngestOperator

    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    database = f"ingest_bench_{uuid.uuid4().hex[:10]}"
    admin = _admin()
    _execute(admin, f"CREATE DATABASE `{database}`")
    saved = os.environ.get(f"AIRFLOW_CONN_{CONN_ID.upper()}")
    conn = {"conn_type": "mysql", "host": HOST, "port": PORT, "login": "root", "schema": database}
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
    engine = sqlalchemy.create_engine(f"mysql+mysqldb://root@{HOST}:{PORT}/{database}?charset=utf8mb4")
    try:
        db = _admin(database)
        countries = ", ".join(f"'{c}'" for c in COUNTRIES)
        for name, rows in (("big", ROWS), ("small", CHUNK), ("warm", 10)):
            _execute(db, TABLE_SQL.format(name=name))
            _execute(db, FILL_SQL.format(name=name, countries=countries, rows=rows))
        db.close()

        def ours(partition_by: str | None = None) -> Callable[[], None]:
            def go() -> None:
                SqlIngestOperator(
                    task_id="ingest",
                    conn_id=CONN_ID,
                    table="big",
                    output_path=str(base / "ours"),
                    chunk_rows=CHUNK,
                    partition_by=partition_by,
                ).execute({})

            return go

        def script(partition_cols: list[str] | None = None) -> Callable[[], None]:
            def go() -> None:
                frame = pd.read_sql("SELECT * FROM big", engine)
                shutil.rmtree(base / "pandas", ignore_errors=True)
                if partition_cols:
                    frame.to_parquet(base / "pandas", index=False, partition_cols=partition_cols)
                else:
                    (base / "pandas").mkdir(parents=True)
                    frame.to_parquet(base / "pandas" / "part-00000.parquet", index=False)

            return go

        ours()()  # warm: imports, connections, the server's buffer pool
        times: dict[str, list[float]] = {"ours": [], "script": [], "ours_p": [], "script_p": []}
        for _ in range(repeats):
            _timed(ours(), times["ours"])
            _timed(script(), times["script"])
            _timed(ours("country"), times["ours_p"])
            _timed(script(["country"]), times["script_p"])
        t = {k: statistics.median(v) for k, v in times.items()}
        mem_10 = _peak_growth_mb("operator", database, "big", base / "mem-ours-10")
        mem_1 = _peak_growth_mb("operator", database, "small", base / "mem-ours-1")
        mem_script = _peak_growth_mb("pandas", database, "big", base / "mem-pandas")
    finally:
        engine.dispose()
        _execute(admin, f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()
        if saved is None:
            os.environ.pop(f"AIRFLOW_CONN_{CONN_ID.upper()}", None)
        else:
            os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = saved
        shutil.rmtree(base, ignore_errors=True)

    def rate(seconds: float) -> str:
        return f"{ROWS / seconds / 1e3:.0f}k rows/s"

    what = f"ingest {ROWS // 1_000_000}M-row MariaDB table to Parquet"
    note = f"median of {repeats}, alternating; chunk_rows={CHUNK}"
    script_name = "pandas.read_sql (SQLAlchemy, mysqlclient) + to_parquet"
    return [
        Row(
            f"{what}, wall time",
            t["ours"],
            t["script"],
            "s",
            script_name,
            f"{note}; ours {rate(t['ours'])}, pandas {rate(t['script'])} (and decimals as floats)",
        ),
        Row(
            f"{what} partitioned by country (45), wall time",
            t["ours_p"],
            t["script_p"],
            "s",
            f"{script_name}(partition_cols=['country'])",
            f"{note}; ours {rate(t['ours_p'])}, pandas {rate(t['script_p'])}",
        ),
        Row(
            f"peak RSS growth ingesting {ROWS} rows (10x chunk_rows)",
            mem_10,
            mem_1,
            "MB",
            f"same operator on {CHUNK} rows (1x chunk_rows)",
            "fresh interpreter, VmHWM reset after imports and a warm-up ingest",
        ),
        Row(
            f"peak RSS growth ingesting {ROWS} rows",
            mem_10,
            mem_script,
            "MB",
            script_name,
            "fresh interpreter, VmHWM reset after imports and a warm-up ingest",
        ),
    ]


if __name__ == "__main__":  # python -m bench.ingest
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    sys.exit(run_alone(run, "ingest"))
