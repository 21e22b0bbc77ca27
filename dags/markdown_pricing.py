"""Weekly markdown pricing: one containerized LightGBM job per group of countries.

Every Monday 08:00 (UTC) for the week that just closed:

1. ``wait_for_sales`` waits, in the triggerer, for ``{week}/sales/_SUCCESS`` under
   ``marker_root`` (``hdfs:///…`` through the ``ml_hdfs_default`` connection; by default the
   local ``file://{data_root}``).
2. ``plan_groups`` splits the countries into as many groups as the ``markdown_pricing`` pool has
   slots (:data:`POOL_SLOTS`; sizes differ by at most one, order kept).
3. ``train_and_predict`` runs one container job per group (dynamic task mapping) on the
   scheduler that ``ml_docker_default`` names (the local Docker engine if it is not defined),
   in the ``markdown_pricing`` pool, with 3 retries; a retry re-attaches to a job still running
   from the previous try. Each job trains one model per country and writes
   ``{data_root}/{week}/predictions/country=XX/`` (Parquet, then ``_SUCCESS``).
4. ``collect_predictions`` checks that every country has its predictions and returns
   ``{country: predictions_path}``: the hand-off for the ERP writer (see the seam below).

Before the first run, create the pool with the slot count the groups are sized for::

    airflow pools set markdown_pricing 4 "markdown pricing container jobs"

The data directory is mounted into the container at the same path, so ``data_root`` must be a
path the container host can see (a shared mount in production). Trigger from the UI with other
``countries``, ``groups`` or ``data_root`` to try it on your own data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_ml_provider.hooks.container import ContainerJobHook
from airflow_ml_provider.operators.container import ContainerJobOperator
from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor

POOL = "markdown_pricing"
#: The pool's slot count, and so the default number of country groups.
POOL_SLOTS = 4
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
#: The week a run trains on: the ``week`` param if given, else the logical date (the Monday the
#: closed week began).
WEEK = "{{ params.week or ds }}"


with DAG(
    dag_id="markdown_pricing",
    description="Weekly per-country markdown recommendations, one container job per country group",
    schedule="0 8 * * 1",
    start_date=dt.datetime(2026, 11, 2, 8, tzinfo=dt.timezone.utc),
    catchup=True,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(days=1),
    default_args={"retries": 3, "retry_delay": dt.timedelta(minutes=2), "retry_exponential_backoff": True},
    tags=["example", "containers", "markdown-pricing"],
    render_template_as_native_obj=True,
    params={
        "data_root": Param(DEFAULT_DATA_ROOT, type="string", description="Absolute directory holding <week>/sales/."),
        "marker_root": Param(
            "",
            type="string",
            description="Where the sensor looks for <week>/sales/_SUCCESS, e.g. hdfs:///lake; empty: file://<data_root>.",
        ),
        "countries": Param(COUNTRIES, type="array", description="Countries to price."),
        "groups": Param(
            POOL_SLOTS, type="integer", minimum=1, description="Container jobs; default: the pool's slots."
        ),
        "week": Param("", type="string", description="YYYY-MM-DD; empty: the run's logical date."),
        "num_boost_round": Param(200, type="integer", minimum=1),
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

    @task(retries=0)
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
    wait_for_sales >> commands

    # Seam for the ERP writer (a later release): it takes ``predictions`` ({country: path}) and
    # replaces each country's rows in one transaction, e.g.
    #   ErpWriterOperator.partial(task_id="write_to_erp", ...).expand_kwargs(...)
    # so the training jobs never hold ERP credentials.
