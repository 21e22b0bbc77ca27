"""`make demo`: run the markdown_pricing pipeline once on embedded defaults.

What it does, all on this machine:

1. starts dockerd if needed and builds the training image locally (``scripts/testbed/docker_bed.py``);
2. writes a synthetic week of sales for a few countries under ``.demo/lake`` (with ``_SUCCESS``);
3. runs the ``markdown_pricing`` DAG with Airflow's ``dag.test()`` in a throwaway
   ``AIRFLOW_HOME`` (``.demo/airflow``, SQLite): the sensor finds the marker, the countries are
   split into pool-sized groups, one LightGBM container job per group trains and predicts;
4. prints each country's recommended markdown from the predictions it wrote.

Options: ``--countries DE,FR,IT,...`` ``--groups N`` ``--week YYYY-MM-DD``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"

RUNNER = r"""
import datetime as dt, json, sys
sys.path.insert(0, sys.argv[1])
from dags.markdown_pricing import dag
week = dt.date.fromisoformat(sys.argv[3])
dr = dag.test(logical_date=dt.datetime(week.year, week.month, week.day, 8, tzinfo=dt.timezone.utc),
              run_conf=json.loads(sys.argv[2]))
print("DEMO-STATE " + str(dr.state))
"""


def main() -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--countries", default="DE,FR,IT,ES,PL,NL,BE,AT")
    parser.add_argument("--groups", type=int, default=4, help="container jobs (the pool's slots)")
    parser.add_argument("--week", default="2026-11-23")
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
        }
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run(
        [airflow, "pools", "set", "markdown_pricing", str(args.groups), "demo"],
        env=env,
        check=True,
        capture_output=True,
    )
    conf = {"data_root": str(lake), "countries": countries, "groups": args.groups, "num_boost_round": 100}
    print(f"demo: running markdown_pricing with dag.test() ({args.groups} container jobs)", flush=True)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT), json.dumps(conf), args.week], env=env, text=True, capture_output=True
    )
    (DEMO / "dag_test.log").write_text(done.stdout + done.stderr)
    for line in (done.stdout + done.stderr).splitlines():
        if "markdown_train: start" in line or "markdown_train: done" in line:
            print("  " + line[line.index("markdown_train:") :].split(" [airflow")[0])
    if "DEMO-STATE success" not in done.stdout:
        print(f"demo: the run failed; full log in {DEMO / 'dag_test.log'}", file=sys.stderr)
        return 1

    import pandas as pd

    print("\ncountry  skus  mean recommended markdown  expected revenue vs no markdown")
    for country in countries:
        frame = pd.read_parquet(lake / args.week / "predictions" / f"country={country}" / "part-0.parquet")
        uplift = frame["expected_revenue"].sum() / max(frame["revenue_at_no_markdown"].sum(), 1e-9) - 1
        print(f"{country:7}  {len(frame):4}  {frame['recommended_markdown'].mean():25.1%}  {uplift:+31.1%}")
    print(f"\ndemo: done in {time.monotonic() - t0:.0f} s; predictions under {lake}/{args.week}/predictions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
