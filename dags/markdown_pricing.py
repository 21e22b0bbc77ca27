r"""Weekly markdown pricing: one containerized LightGBM job per group of countries.

Every Monday 08:00 UTC, for the `week` given as a param or else the run's logical date (the
Monday the run is scheduled for, or the moment it was triggered):

1. `wait_for_sales` waits, in the triggerer, for `<week>/sales/_SUCCESS` under `marker_root`
   (`hdfs:///…` through the `ml_hdfs_default` connection; empty: the local `file://<data_root>`).
   Beside training, `sales_report` writes the week's data report (row counts, null rates,
   distributions per country; `<week>/sales/_eda/report.html`); a failed check only warns.
2. `plan_groups` splits the countries into as many groups as the `markdown_pricing` pool has
   slots (4; sizes differ by at most one, order kept).
3. `train_and_predict` runs one container job per group (dynamic task mapping) on the engine
   that `ml_docker_default` names, in the `markdown_pricing` pool, with 3 retries; a retry
   re-attaches to a job still running from the previous try. Each job trains one model per
   country and writes `<data_root>/<week>/predictions/country=XX/` (Parquet, then `_SUCCESS`).
4. `collect_predictions` checks that every country has its predictions and returns
   `{country: predictions_path}`.
5. `plan_erp_writes` splits those countries into `erp_groups` groups, and `write_to_erp` writes
   each group (dynamic task mapping, in the `markdown_pricing_erp` pool so the ERP database sees
   at most that many writers) into `erp_table` through the `markdown_pricing_erp` connection:
   each country's rows are replaced in one transaction (readers see the old set until the commit),
   after the checks and the drop guard (a country whose row count falls by more than `max_drop`
   against the rows it replaces fails its group and writes nothing of it, unless `on_drop` is
   `warn`). The training containers never see the ERP connection: only this task reads it.
6. `erp_summary` (runs whatever the writes did) logs one table of old and new rows per country
   and fails the run naming the countries that were not written.

A task that fails for good sends the failure alert (DAG, task, run, error, failing countries,
log URL) to the `ml_webhook_default` connection (type `ml_webhook`) when it exists; without it
the task log says the alert was not delivered.

## Before the first run

1. Create the pools: the training groups are sized for the first, the second bounds the
   concurrent ERP writers:

    ```bash
    airflow pools set markdown_pricing 4 "markdown pricing container jobs"
    airflow pools set markdown_pricing_erp 2 "markdown pricing ERP writers"
    ```

2. Connections:
    - `markdown_pricing_erp` (type `postgres`, `mysql` or `sqlite`): the ERP database. Its
      table (`erp_table`, default `markdown_recommendations`) must exist; `ERP_TABLE_DDL` in this
      file creates one in PostgreSQL, MariaDB/MySQL or SQLite.
    - `ml_docker_default` (type `ml_docker`, `ml_swarm` or `ml_metronome`): where the jobs run;
      without it, the local Docker engine.
    - `ml_hdfs_default` (type `ml_hdfs`): only when `marker_root` is an `hdfs://` path.
    - `ml_webhook_default` (type `ml_webhook`): optional, where failure alerts go.
3. The training image `airflow-ml-provider/train:latest` on that engine (`make images` in the
   provider's repository builds it).

`data_root` is mounted into each container at the same path: it must be a directory the
container host sees (a shared mount in production).

## Quick start on local disk (`file://`)

Write a synthetic week of sales with the training image, then press Trigger with `data_root` =
`/tmp/lake`, `week` = `2026-11-23` and `countries` = `DE`, `FR` (the other fields as they are):

```bash
docker run --rm -v /tmp/lake:/tmp/lake airflow-ml-provider/train:latest \
    python -m airflow_ml_provider.jobs.synthetic --root /tmp/lake --week 2026-11-23 --countries DE,FR
```

## Schedule and backfill

No catch-up: unpausing the DAG, also with the Trigger form's "Unpause" box, starts nothing by
itself. The first scheduled run is the next Monday 08:00 UTC; a run you trigger starts at once.
Earlier weeks run only when you ask for them, with a backfill (Trigger → Backfill in the UI,
or the CLI; both dates inclusive, a bare date means 00:00 UTC; add
`--dag-run-conf '{"data_root": "/srv/lake"}'` for another data root). Its runs start while the
DAG is unpaused; a backfill runs up to 10 weeks at once unless told otherwise, so keep the
DAG's one at a time:

```bash
airflow backfill create --dag-id markdown_pricing --max-active-runs 1 \
    --from-date 2026-11-02 --to-date 2026-11-23T08:00:00+00:00
```
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, CronTriggerTimetable, Param, task

from airflow_ml_provider.hooks.container import ContainerJobHook
from airflow_ml_provider.notifications.webhook import WebhookNotifier
from airflow_ml_provider.operators.container import ContainerJobOperator
from airflow_ml_provider.operators.eda import EdaReportOperator
from airflow_ml_provider.operators.erp_writer import ErpWriteOperator
from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor

POOL = "markdown_pricing"
#: The pool's slot count, and so the default number of country groups.
POOL_SLOTS = 4
#: The ERP writers' own pool, and its slot count (the default number of write groups).
ERP_POOL = "markdown_pricing_erp"
ERP_POOL_SLOTS = 2
#: A standard SQL connection (postgres, mysql or sqlite) to the ERP database.
ERP_CONN_ID = "markdown_pricing_erp"
DEFAULT_ERP_TABLE = "markdown_recommendations"
#: The ERP table the writer fills (PostgreSQL, MariaDB/MySQL and SQLite accept it as is): one row per
#: (country, sku), replaced per country; prediction columns by name, the rest constants of the run.
ERP_TABLE_DDL = """CREATE TABLE {table} (
    country VARCHAR(2) NOT NULL,
    sku VARCHAR(40) NOT NULL,
    week DATE NOT NULL,
    base_price DOUBLE PRECISION NOT NULL,
    stock DOUBLE PRECISION NOT NULL,
    recommended_markdown DOUBLE PRECISION NOT NULL,
    expected_units DOUBLE PRECISION NOT NULL,
    expected_revenue DOUBLE PRECISION NOT NULL,
    revenue_at_no_markdown DOUBLE PRECISION NOT NULL,
    run_id VARCHAR(250) NOT NULL,
    written_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (country, sku)
)"""
TRAIN_IMAGE = "airflow-ml-provider/train:latest"
#: An ml_docker, ml_swarm or ml_metronome connection; the hook's default, when undefined, means the
#: local Docker engine.
CONTAINER_CONN_ID = ContainerJobHook.default_conn_name
DEFAULT_DATA_ROOT = "/srv/markdown-pricing/lake"
#: 45 markets, in the order their groups are formed.
COUNTRIES = [
    "DE", "FR", "IT", "ES", "PL", "NL", "BE", "AT", "CH", "CZ", "SK", "HU", "RO", "BG", "HR",
    "SI", "RS", "GR", "PT", "IE", "GB", "DK", "SE", "NO", "FI", "EE", "LV", "LT", "LU", "TR",
    "UA", "CY", "MT", "IS", "BA", "MK", "AL", "ME", "MD", "GE", "AM", "AZ", "KZ", "IL", "MA",
]  # fmt: skip
#: The week a run trains on: the ``week`` param if given, else the run's logical date (a scheduled
#: run's Monday; a triggered run's date).
WEEK = "{{ params.week or ds }}"


with DAG(
    dag_id="markdown_pricing",
    description="Weekly per-country markdown recommendations, one container job per country group",
    # Mondays 08:00 UTC. No start_date and run_immediately=0: unpausing starts nothing by itself (with a
    # past start_date even catchup=False runs the latest past Monday at once, ahead of a triggered run);
    # past weeks run only when backfilled (see the docs above).
    schedule=CronTriggerTimetable("0 8 * * 1", timezone="UTC", run_immediately=dt.timedelta(0)),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(days=1),
    default_args={
        "retries": 3,
        "retry_delay": dt.timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "on_failure_callback": [WebhookNotifier()],
    },
    tags=["example", "containers", "markdown-pricing"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        "data_root": Param(
            DEFAULT_DATA_ROOT,
            type="string",
            description="Absolute directory holding <week>/sales/; predictions go to <week>/predictions/. "
            "The container host must see it at the same path.",
        ),
        "marker_root": Param(
            None,
            type=["null", "string"],
            description="Where the sensor looks for <week>/sales/_SUCCESS, e.g. hdfs:///lake (through "
            "ml_hdfs_default). Empty: file://<data_root>.",
        ),
        "countries": Param(COUNTRIES, type="array", description="Countries to price, one per line."),
        "groups": Param(
            POOL_SLOTS,
            type="integer",
            minimum=1,
            description="Container jobs to split the countries into; default: the markdown_pricing pool's slots.",
        ),
        "week": Param(
            None,
            type=["null", "string"],
            description="The week to price, YYYY-MM-DD (the folder under data_root). Empty: the run's logical date.",
        ),
        "num_boost_round": Param(
            200,
            type="integer",
            minimum=1,
            description="LightGBM boosting rounds per country model: more fit longer (and may fit better).",
        ),
        "erp_table": Param(
            DEFAULT_ERP_TABLE,
            type="string",
            pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$",
            description="The ERP table (table or schema.table) whose rows are replaced per country.",
        ),
        "erp_groups": Param(
            ERP_POOL_SLOTS,
            type="integer",
            minimum=1,
            description="ERP write tasks to split the countries into (each replaces its countries in one "
            "transaction); default: the markdown_pricing_erp pool's slots.",
        ),
        "max_drop": Param(
            0.10,
            type="number",
            minimum=0,
            maximum=1,
            description="Drop guard: the largest allowed fall of a country's row count against the rows it "
            "replaces (0.10: 10%).",
        ),
        "on_drop": Param(
            "fail",
            enum=["fail", "warn"],
            description="What a larger drop does: fail (that group writes nothing) or warn (write anyway).",
        ),
    },
) as dag:
    wait_for_sales = HdfsSuccessSensor(
        task_id="wait_for_sales",
        paths=f"{{{{ params.marker_root or ('file://' ~ params.data_root) }}}}/{WEEK}/sales",
        deferrable=True,
        poke_interval=300,
        timeout=dt.timedelta(hours=20).total_seconds(),
    )

    @task(retries=0)
    def plan_groups(countries: Any, groups: Any, data_root: str, week: str, num_boost_round: Any) -> list[list[str]]:
        """One training command per country group (sizes differ by at most one)."""
        from airflow_ml_provider.utils.partitioning import split_into_groups

        return [
            [
                "python",
                "-m",
                "airflow_ml_provider.jobs.markdown_train",
                "--data-root",
                data_root,
                "--week",
                week,
                "--countries",
                ",".join(group),
                "--num-boost-round",
                str(num_boost_round),
            ]
            for group in split_into_groups(list(countries), int(groups))
        ]

    commands = plan_groups(
        countries="{{ params.countries }}",
        groups="{{ params.groups }}",
        data_root="{{ params.data_root }}",
        week=WEEK,
        num_boost_round="{{ params.num_boost_round }}",
    )

    train = ContainerJobOperator.partial(
        task_id="train_and_predict",
        image=TRAIN_IMAGE,
        conn_id=CONTAINER_CONN_ID,
        pool=POOL,
        resources={"cpus": 1, "memory": "2Gi"},
        mounts=["{{ params.data_root }}:{{ params.data_root }}"],
        network="none",
        environment={"ML_NUM_THREADS": "1", "WEEK": WEEK},
        map_index_template="{{ task.command[-3] }}",
        startup_timeout=900,
        deferrable=True,
        poll_interval=10,
    ).expand(command=commands)

    @task(retries=0, multiple_outputs=False)
    def collect_predictions(results: Any, countries: Any) -> dict[str, str]:
        """Every requested country must have predictions; returns ``{country: parquet path}``."""
        paths: dict[str, str] = {}
        for result in results:
            for country, info in (result or {}).get("countries", {}).items():
                paths[country] = info["predictions_path"]
        missing = sorted(set(countries) - set(paths))
        if missing:
            raise ValueError(f"No predictions for {missing}; see the train_and_predict task of their group.")
        return paths

    predictions = collect_predictions(train.output, countries="{{ params.countries }}")
    # The week's data report beside training, not before it: as in the seed, training runs whatever
    # the report says (a failed gate only warns; a broken report fails the run, not the training).
    sales_report = EdaReportOperator(
        task_id="sales_report",
        input_path="{{ params.data_root }}/" + WEEK + "/sales",
        title="Markdown pricing sales, week " + WEEK,
        max_null_rate={"units_sold": 0.05},
        fail_on_gate=False,
        retries=0,
    )
    wait_for_sales >> [commands, sales_report]

    @task(retries=0)
    def plan_erp_writes(predictions: Any, groups: Any) -> list[dict[str, str]]:
        """``{country: path}`` split into ``groups`` write tasks (sizes differ by at most one)."""
        from airflow_ml_provider.utils.partitioning import split_into_groups

        return [{c: predictions[c] for c in group} for group in split_into_groups(sorted(predictions), int(groups))]

    # Each mapped task replaces its countries' rows in one transaction; only this task reads the
    # ERP connection (the training containers hold no ERP credentials).
    write = ErpWriteOperator.partial(
        task_id="write_to_erp",
        conn_id=ERP_CONN_ID,
        table="{{ params.erp_table }}",
        key_column="country",
        constants={"week": WEEK, "run_id": "{{ run_id }}"},
        max_drop="{{ params.max_drop }}",
        on_drop="{{ params.on_drop }}",
        pool=ERP_POOL,
        map_index_template="{{ task.input_path.keys() | sort | join(',') }}",
    ).expand(input_path=plan_erp_writes(predictions, groups="{{ params.erp_groups }}"))

    @task(trigger_rule="all_done", retries=0, multiple_outputs=False)
    def erp_summary(results: Any, countries: Any) -> dict[str, dict[str, Any]]:
        """One table of old/new rows per country; fails naming the countries not written."""
        import logging

        written: dict[str, dict[str, Any]] = {}
        for result in results or []:
            written.update((result or {}).get("keys", {}))
        lines = [f"{'country':8} {'old':>8} {'new':>8} {'change':>8}"]
        for country, n in sorted(written.items()):
            change = "first" if n["change"] is None else f"{n['change']:+.1f}%"
            lines.append(f"{country:8} {n['old']:>8} {n['new']:>8} {change:>8}")
        logging.getLogger(__name__).info("ERP rows per country:\n%s", "\n".join(lines))
        missing = sorted(set(countries) - set(written))
        if missing:
            raise RuntimeError(
                f"{len(missing)} countr{'y was' if len(missing) == 1 else 'ies were'} not written to the ERP: "
                f"{', '.join(missing)}. See the failed write_to_erp (or train_and_predict) tasks: a drop-guard "
                "failure names the countries and their counts; their previous rows are unchanged."
            )
        return written

    erp_summary(write.output, countries="{{ params.countries }}")
