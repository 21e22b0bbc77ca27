"""`make demo-markdown`: run the markdown_pricing pipeline once on embedded defaults.

What it does, all on this machine:

1. starts dockerd if needed and builds the training image locally (``scripts/testbed/docker_bed.py``);
2. writes a synthetic week of sales for a few countries under ``.demo/markdown/lake`` (with ``_SUCCESS``);
3. runs the ``markdown_pricing`` DAG with Airflow's ``dag.test()`` in a throwaway
   ``AIRFLOW_HOME`` (``.demo/markdown/airflow``, SQLite): the sensor finds the marker, the countries are
   split into pool-sized groups, one LightGBM container job per group trains and predicts, and
   the ERP writer replaces each country's rows in an embedded SQLite ERP (``.demo/markdown/erp.sqlite``,
   kept between demos, so a second demo compares its counts with the first's);
4. prints the rows it wrote per country, read back from the ERP table.

Options: ``--countries DE,FR,IT,...`` ``--groups N`` ``--week YYYY-MM-DD`` ``--erp-groups N``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo" / "markdown"

RUNNER = r"""
import datetime as dt, json, sqlite3, sys
sys.path.insert(0, sys.argv[1])
from dags.markdown_pricing import DEFAULT_ERP_TABLE, ERP_TABLE_DDL, dag
with sqlite3.connect(sys.argv[4]) as erp:  # the embedded ERP: its table, once
    if not erp.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (DEFAULT_ERP_TABLE,)).fetchone():
        erp.execute(ERP_TABLE_DDL.format(table=DEFAULT_ERP_TABLE))
week = dt.date.fromisoformat(sys.argv[3])
dr = dag.test(logical_date=dt.datetime(week.year, week.month, week.day, 8, tzinfo=dt.timezone.utc),
              run_conf=json.loads(sys.argv[2]))
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
with create_session() as session:
    row = session.query(XComModel).filter_by(
        dag_id=dag.dag_id, run_id=dr.run_id, task_id="erp_summary", key="return_value"
    ).first()
    print("DEMO-SUMMARY " + json.dumps(row.value if row else None))
print("DEMO-STATE " + str(dr.state))
"""


def main() -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--countries", default="DE,FR,IT,ES,PL,NL,BE,AT")
    parser.add_argument("--groups", type=int, default=4, help="container jobs (the pool's slots)")
    parser.add_argument("--week", default="2026-11-23")
    parser.add_argument("--erp-groups", type=int, default=2, help="ERP write tasks (the ERP pool's slots)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from airflow_ml_provider.jobs.common import BadInputError, parse_countries, parse_week
    from airflow_ml_provider.jobs.synthetic import write_week
    from scripts.testbed import docker_bed

    try:
        countries = parse_countries(args.countries.upper())
        parse_week(args.week)
    except BadInputError as e:
        parser.error(str(e))

    t0 = time.monotonic()
    print("demo: starting dockerd and building the training image (first time: a few minutes)", flush=True)
    docker_bed.ensure_dockerd()
    image = docker_bed.ensure_train_image()
    print(f"demo: image {image} ready after {time.monotonic() - t0:.0f} s", flush=True)

    lake = DEMO / "lake"
    write_week(str(lake), args.week, countries, rows_per_country=400)
    print(f"demo: wrote synthetic sales for {', '.join(countries)} under {lake}/{args.week}/sales", flush=True)

    erp = DEMO / "erp.sqlite"
    home = DEMO / "airflow"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_MARKDOWN_PRICING_ERP": json.dumps({"conn_type": "sqlite", "host": str(erp)}),
        }
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    for pool, slots in (("markdown_pricing", args.groups), ("markdown_pricing_erp", args.erp_groups)):
        subprocess.run([airflow, "pools", "set", pool, str(slots), "demo"], env=env, check=True, capture_output=True)
    conf = {
        "data_root": str(lake),
        "countries": countries,
        "groups": args.groups,
        "erp_groups": args.erp_groups,
        "num_boost_round": 100,
    }
    print(f"demo: running markdown_pricing with dag.test() ({args.groups} container jobs)", flush=True)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT), json.dumps(conf), args.week, str(erp)],
        env=env,
        text=True,
        capture_output=True,
    )
    (DEMO / "dag_test.log").write_text(done.stdout + done.stderr)
    for line in (done.stdout + done.stderr).splitlines():
        if "markdown_train: start" in line or "markdown_train: done" in line:
            print("  " + line[line.index("markdown_train:") :].split(" [airflow")[0])
        elif "Replaced " in line and " key(s) of " in line:
            print("  erp: " + line[line.index("Replaced ") :].split(" [airflow")[0])
    if "DEMO-STATE success" not in done.stdout:
        print(f"demo: the run failed; full log in {DEMO / 'dag_test.log'}", file=sys.stderr)
        return 1

    tagged = [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("DEMO-SUMMARY ")]
    counts = json.loads(tagged[-1] if tagged else "null") or {}
    if isinstance(counts, str):
        counts = json.loads(counts)
    print_erp_rows(erp, args.week, countries, counts)
    print(f"\ndemo: done in {time.monotonic() - t0:.0f} s; predictions under {lake}/{args.week}/predictions")
    print(f"demo: the ERP is the SQLite file {erp} (table markdown_recommendations); a second demo replaces its rows")
    return 0


def print_erp_rows(erp: Path, week: str, countries: list[str], counts: dict[str, dict[str, int]]) -> None:
    """The rows the run wrote, per country, read back from the SQLite ERP table.

    :param counts: the drop guard's counts per country (``erp_summary``'s XCom): the rows replaced.
    """
    import sqlite3

    with contextlib.closing(sqlite3.connect(erp)) as conn:
        rows = conn.execute(
            "SELECT country, count(*), avg(recommended_markdown), sum(expected_revenue), "
            "sum(revenue_at_no_markdown), max(run_id) FROM markdown_recommendations WHERE week = ? "
            "GROUP BY country ORDER BY country",
            (week,),
        ).fetchall()
    print(f"\nERP table markdown_recommendations, week {week} (read back from {erp.name}):")
    print("country  rows  replaced  mean recommended markdown  expected revenue vs no markdown")
    for country, n, markdown, revenue, baseline in (r[:5] for r in rows):
        uplift = revenue / max(baseline, 1e-9) - 1
        old = counts.get(country, {}).get("old", "?")
        print(f"{country:7}  {n:4}  {old:>8}  {markdown:25.1%}  {uplift:+31.1%}")
    print(
        "uplift: expected revenue over each SKU's remaining season at the recommended markdown vs the same SKUs "
        "at full price (no markdown), same stock"
    )
    missing = sorted(set(countries) - {r[0] for r in rows})
    if missing:
        print(f"demo: no ERP rows for {', '.join(missing)}", file=sys.stderr)
    if rows:
        print(f"written by run {rows[0][5]}")


if __name__ == "__main__":
    raise SystemExit(main())
