"""The ``ml_pipeline`` demo's embedded defaults, shared by ``make demo``, its tests and ``make bench``.

:class:`DemoStack` lays out one directory (``.demo/`` for ``make demo``) and starts what the
``ml_pipeline`` DAG talks to, all on this machine:

* ``source.db``: the SQLite source database, seeded with ``python -m airflow_ml_provider.jobs.synthetic
  seed`` (connection ``ml_pipeline_source``);
* ``erp.db``: the SQLite ERP database holding the DAG's ``ERP_TABLE_DDL`` table (``ml_pipeline_erp``);
* ``lake/``: the ``file://`` storage root (the DAG's ``storage_root`` param);
* ``mlflow/``: a local ``mlflow server`` (:mod:`scripts.testbed.mlflow_bed`: SQLite store, proxied
  artifacts), so that the deploy step's model containers can download the model;
* ``airflow/home``: a real Airflow 3 (:class:`~scripts.testbed.airflow_bed.AirflowBed`: api-server,
  scheduler, dag-processor, triggerer; SQLite metadata) on ``dags/`` of this repository, with the
  ``ml_pipeline_spark`` pool; Spark runs ``local[*]`` through the venv's pyspark;
* the local Docker engine (:mod:`scripts.testbed.docker_bed`) with the serving image
  (:mod:`scripts.testbed.serve_image`), for the deploy step; when it cannot run,
  :meth:`DemoStack.docker` says why and the DAG's ``deploy=auto`` skips the deploy.

:func:`watch_run` prints one line per task state change; :func:`task_times` and
:func:`erp_counts` read what a run did.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scripts.testbed import ROOT

if TYPE_CHECKING:
    from scripts.testbed.airflow_bed import AirflowBed
    from scripts.testbed.mlflow_bed import MlflowServer

DAG_ID = "ml_pipeline"
DAGS_FOLDER = ROOT / "dags"
SOURCE_TABLE = "sales"
ERP_TABLE = "ml_pipeline_predictions"
SPARK_POOL = "ml_pipeline_spark"
#: The DAG's endpoint and port (its ML_PIPELINE_ENDPOINT / ML_PIPELINE_ENDPOINT_PORT variables override them).
ENDPOINT_NAME = "ml-pipeline"
ENDPOINT_PORT = 8790
#: The demo's data: 4 countries x 40 SKUs x 52 weeks = 8,320 rows (a few minutes on 2 cores in all).
COUNTRIES = ("DE", "FR", "IT", "ES")
SKUS_PER_COUNTRY = 40
WEEKS = 52
#: The columns the champion model takes (the training excludes id and week; units_sold is the label).
MODEL_INPUTS = ("country", "sku", "week_of_year", "base_price", "discount", "stock", "days_to_season_end")
#: The DAG's timetable starts a run as soon as the DAG is unpaused, with its default params (storage
#: outside the demo's directory): the demo's scheduler runs the triggered runs only.
SCHEDULER_SETTINGS = {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}


class DemoError(RuntimeError):
    """A set-up step of the demo failed; the message says which and why."""


def erp_table_ddl() -> str:
    """The DAG's ``ERP_TABLE_DDL`` for :data:`ERP_TABLE`, read from the DAG file (importing it does no I/O)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_ml_pipeline_for_demo", DAGS_FOLDER / "ml_pipeline.py")
    if spec is None or spec.loader is None:
        raise DemoError(f"cannot load {DAGS_FOLDER / 'ml_pipeline.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.ERP_TABLE_DDL).format(table=ERP_TABLE)


@dataclass
class DemoStack:
    """The embedded defaults of the ``ml_pipeline`` DAG under ``base``.

    :param base: the directory holding everything (``.demo`` for ``make demo``).
    :param say: where progress lines go (default: print, flushed).
    :param endpoint_name: the deploy step's endpoint (tests use their own, beside a user's demo).
    :param endpoint_port: its port on 127.0.0.1.
    :param no_docker: act as a machine without a Docker engine: :meth:`docker` does nothing and the
        tasks' ``ml_docker_default`` names a socket nothing listens on, so ``deploy=auto`` skips the deploy.
    """

    base: Path
    say: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    endpoint_name: str = ENDPOINT_NAME
    endpoint_port: int = ENDPOINT_PORT
    no_docker: bool = False
    mlflow: MlflowServer | None = None
    bed: AirflowBed | None = None
    #: Why the deploy step cannot run here (None: the Docker engine and the serving image are ready).
    docker_blocker: str | None = None

    @property
    def source_db(self) -> Path:
        """The SQLite source database."""
        return self.base / "source.db"

    @property
    def erp_db(self) -> Path:
        """The SQLite ERP database."""
        return self.base / "erp.db"

    @property
    def lake(self) -> Path:
        """The ``file://`` storage root."""
        return self.base / "lake"

    @property
    def mlflow_dir(self) -> Path:
        """The MLflow server's state (``mlflow.db``, ``artifacts/``)."""
        return self.base / "mlflow"

    @property
    def airflow_home(self) -> Path:
        """The Airflow home (metadata database, logs, the login's password file)."""
        return self.base / "airflow" / "home"

    @property
    def eda_report(self) -> Path:
        """Where the ``eda`` task writes its HTML report."""
        return self.lake / SOURCE_TABLE / "ingested" / "_eda" / "report.html"

    def conf(self, **overrides: Any) -> dict[str, Any]:
        """The run conf of a demo run: the storage root under :attr:`base`, then ``overrides``."""
        return {"storage_root": self.lake.as_uri(), **overrides}

    def connections(self) -> dict[str, str]:
        """The ``AIRFLOW_CONN_*`` variables of the DAG's connections (MLflow once :meth:`start_mlflow` ran)."""
        conns: dict[str, dict[str, Any]] = {
            "AIRFLOW_CONN_ML_PIPELINE_SOURCE": {"conn_type": "sqlite", "host": str(self.source_db)},
            "AIRFLOW_CONN_ML_PIPELINE_ERP": {"conn_type": "sqlite", "host": str(self.erp_db)},
        }
        if self.no_docker:
            nowhere = f"unix://{self.base / 'no-docker-engine.sock'}"
            conns["AIRFLOW_CONN_ML_DOCKER_DEFAULT"] = {"conn_type": "ml_docker", "host": nowhere}
        if self.mlflow is not None:
            conns["AIRFLOW_CONN_ML_MLFLOW_DEFAULT"] = {
                "conn_type": "ml_mlflow",
                "host": self.mlflow.url,
                "extra": {"max_retries": 2, "timeout": 60},
            }
        return {key: json.dumps(value) for key, value in conns.items()}

    def task_env(self) -> dict[str, str]:
        """The environment of the Airflow components: the connections and spark-submit's settings."""
        from scripts.testbed.spark_bed import submit_env

        # PYSPARK_*: the operators choose the driver's and executors' Python themselves
        spark = {k: v for k, v in submit_env().items() if k.startswith("SPARK_") or k == "PATH"}
        endpoint = {"ML_PIPELINE_ENDPOINT": self.endpoint_name, "ML_PIPELINE_ENDPOINT_PORT": str(self.endpoint_port)}
        return {**spark, **endpoint, **self.connections()}

    # ------------------------------------------------------------------ set-up steps

    def reset(self) -> None:
        """Remove what an earlier demo left in :attr:`base` (its MLflow server stopped first); the rest of
        :attr:`base` stays (``make demo-markdown`` keeps its files in ``.demo/markdown``)."""
        from scripts.testbed import mlflow_bed

        if self.mlflow_dir.is_dir():
            mlflow_bed.kill_stale(self.mlflow_dir)
        for path in (
            self.source_db,
            self.erp_db,
            self.lake,
            self.mlflow_dir,
            self.base / "airflow",
            self.base / "cli-home",
        ):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        self.base.mkdir(parents=True, exist_ok=True)

    def seed(self, *, countries: tuple[str, ...] = COUNTRIES, skus: int = SKUS_PER_COUNTRY, weeks: int = WEEKS) -> None:
        """Seed the source table as the DAG's docs say (the CLI), and create the ERP table."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "airflow_ml_provider.jobs.synthetic",
                "seed",
                "--conn-id",
                "ml_pipeline_source",
                "--table",
                SOURCE_TABLE,
                "--skus-per-country",
                str(skus),
                "--weeks",
                str(weeks),
                "--countries",
                ",".join(countries),
                "--replace",
            ],
            env=self._cli_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise DemoError(f"seeding {self.source_db} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        with contextlib.closing(sqlite3.connect(self.erp_db)) as erp, erp:
            erp.execute(f"DROP TABLE IF EXISTS {ERP_TABLE}")
            erp.execute(erp_table_ddl())
        rows = source_rows(self.source_db)
        self.say(f"demo: seeded {rows} rows ({', '.join(countries)}) into {self.source_db} table {SOURCE_TABLE}")

    def _cli_env(self) -> dict[str, str]:
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(self.connections())
        env["AIRFLOW_HOME"] = str(self.base / "cli-home")  # nothing of ~/airflow is read or written
        env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        return env

    def docker(self) -> str | None:
        """Start dockerd if needed and build the serving image if missing; why not, or None when ready.

        An endpoint of an earlier demo (on the DAG's port) is removed, so the run deploys afresh.
        """
        if self.no_docker:
            self.docker_blocker = "no_docker is set"
            self.say("demo: no Docker (as asked): the run will skip the deploy")
            return self.docker_blocker
        try:
            from airflow_ml_provider.operators.mlflow_deploy import remove_endpoint
            from scripts.testbed.serve_image import ensure_serve_image

            started = time.monotonic()
            self.say("demo: starting the Docker engine and building the serving image if missing (first time: minutes)")
            tag = ensure_serve_image()
            removed = remove_endpoint(self.endpoint_name)
            if removed:
                self.say(f"demo: removed the endpoint of an earlier demo ({', '.join(removed)})")
            self.say(f"demo: Docker ready, serving image {tag} ({time.monotonic() - started:.0f} s)")
            self.docker_blocker = None
        except Exception as e:  # any failure: the run goes on and skips the deploy
            self.docker_blocker = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else e!r}"
            self.say(f"demo: no Docker engine for the deploy step ({self.docker_blocker}); the run will skip deploy")
        return self.docker_blocker

    def start_mlflow(self) -> MlflowServer:
        """Start the local MLflow server on :attr:`mlflow_dir`."""
        from scripts.testbed.mlflow_bed import start_mlflow

        self.mlflow = start_mlflow(self.mlflow_dir, timeout=180)
        self.say(f"demo: MLflow server at {self.mlflow.url} (store {self.mlflow_dir})")
        return self.mlflow

    def start_airflow(self, *, database: str = "sqlite", timeout: float = 240) -> AirflowBed:
        """Start Airflow on ``dags/`` with the connections and the pool; wait until ``ml_pipeline`` is parsed."""
        from scripts.testbed.airflow_bed import AirflowBed

        self.bed = AirflowBed(
            self.airflow_home,
            DAGS_FOLDER,
            env={**self.task_env(), **SCHEDULER_SETTINGS},
            pools={SPARK_POOL: 1},
            database=database,
        )
        self.bed.start(timeout=timeout)
        self.bed.wait_for_dag(DAG_ID, timeout=timeout)
        self.say(f"demo: Airflow up at {self.bed.base_url} ({self.bed.timings['total']:.0f} s), {DAG_ID} parsed")
        return self.bed

    def stop(self) -> None:
        """Stop Airflow and the MLflow server (the endpoint's containers stay)."""
        if self.bed is not None:
            self.bed.stop()
        if self.mlflow is not None:
            self.mlflow.stop()

    @contextlib.contextmanager
    def running(self) -> Iterator[DemoStack]:
        """Reset, seed, Docker (see :meth:`docker`), MLflow and Airflow; everything stopped on exit."""
        self.reset()
        try:
            self.seed()
            self.docker()
            self.start_mlflow()
            self.start_airflow()
            yield self
        finally:
            self.stop()

    # ------------------------------------------------------------------ runs

    def trigger(self, conf: dict[str, Any] | None = None) -> str:
        """Create a manual run of ``ml_pipeline`` with :meth:`conf` (plus ``conf``), unpausing the DAG."""
        bed = self._started()
        return bed.trigger(DAG_ID, self.conf(**(conf or {})))

    def _started(self) -> AirflowBed:
        if self.bed is None:
            raise DemoError("Airflow is not started: call start_airflow() first")
        return self.bed


def source_rows(path: Path) -> int:
    """Rows of the source table."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {SOURCE_TABLE}").fetchone()[0])  # noqa: S608  # our constant


def erp_counts(path: Path) -> dict[str, int]:
    """country -> rows of the ERP table."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(f"SELECT country, COUNT(*) FROM {ERP_TABLE} GROUP BY country ORDER BY country").fetchall()  # noqa: S608
    return {str(country): int(n) for country, n in rows}


def sample_row(path: Path) -> dict[str, Any]:
    """The newest row of the source table with stock: the model's inputs (:data:`MODEL_INPUTS`) and ``units_sold``."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        cols = ", ".join(MODEL_INPUTS)
        row = db.execute(
            f"SELECT {cols}, units_sold FROM {SOURCE_TABLE} WHERE stock > 0 ORDER BY id DESC LIMIT 1"  # noqa: S608
        ).fetchone()
    return dict(zip((*MODEL_INPUTS, "units_sold"), row, strict=True))


def invocation_body(row: dict[str, Any]) -> str:
    """The ``/invocations`` JSON body (``dataframe_split``) for one row's :data:`MODEL_INPUTS`."""
    return json.dumps({"dataframe_split": {"columns": list(MODEL_INPUTS), "data": [[row[c] for c in MODEL_INPUTS]]}})


def watch_run(
    bed: AirflowBed, run_id: str, *, timeout: float, say: Callable[[str], None], started: float | None = None
) -> str:
    """Poll the run until it ends, printing one line per task state change; the run's final state.

    :param bed: the started Airflow.
    :param run_id: the run of ``ml_pipeline`` to watch.
    :param timeout: seconds before :class:`DemoError`.
    :param say: where the lines go.
    :param started: the ``time.monotonic()`` the printed seconds count from (default: now).
    """
    from scripts.testbed.airflow_bed import TERMINAL_RUN_STATES

    t0 = time.monotonic() if started is None else started
    deadline = time.monotonic() + timeout
    seen: dict[str, str | None] = {}
    run_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}"
    while True:
        run_state = bed.api("GET", run_path).get("state")
        for task, t in task_times(bed, run_id).items():
            state = t["state"]
            if state is not None and seen.get(task) != state:
                seen[task] = state
                say(f"  [{time.monotonic() - t0:6.1f} s] {t['label']:<28} {state}")
        if run_state in TERMINAL_RUN_STATES:
            return str(run_state)
        if time.monotonic() > deadline:
            raise DemoError(f"run {run_id} not finished after {timeout:.0f} s; tasks: {seen}")
        time.sleep(0.5)


def task_times(bed: AirflowBed, run_id: str) -> dict[str, dict[str, Any]]:
    """task (``task_id``, ``task_id[map index]`` when mapped) -> its ``label`` (``task_id[rendered map index]``),
    ``state``, ``try_number``, ``seconds`` from start to end, ``start`` and ``end`` (ISO)."""
    import datetime as dt

    body = bed.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")
    out: dict[str, dict[str, Any]] = {}
    for ti in body.get("task_instances", []):
        key = label = ti["task_id"]
        if ti.get("map_index", -1) >= 0:
            key += f"[{ti['map_index']}]"
            label += f"[{ti.get('rendered_map_index') or ti['map_index']}]"
        start, end = ti.get("start_date"), ti.get("end_date")
        running = None
        if start and end:
            running = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
        out[key] = {
            "label": label,
            "state": ti.get("state"),
            "try_number": ti.get("try_number"),
            "seconds": running,
            "start": start,
            "end": end,
        }
    return out


def xcom(bed: AirflowBed, run_id: str, task_id: str, key: str = "return_value") -> Any:
    """A task's XCom value (None when absent)."""
    status, body = bed._request(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}?deserialize=true"
    )
    if status != 200 or not isinstance(body, dict):
        return None
    value = body.get("value")
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value
