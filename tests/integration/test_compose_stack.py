"""The full stack of ``docker-compose.yaml``, really run on the local dockerd.

Once per module (:func:`stack`): the stack's images are built (Docker's layer cache makes a warm
build a cache check), ``up -d`` starts it with **two** Celery workers on free ports, and every
long-running service must turn healthy and both init services exit 0. ``ml_pipeline`` is then
triggered through the REST API with two algorithms (so ``train`` has two mapped task instances),
HDFS as its lake, the stack's Spark master and deploy on, and must succeed. Afterwards
``down -v`` must leave no container or volume of the project, and the deploy step's endpoint
containers (started on the host's engine, outside the project) are removed and checked gone too.

Locally this runs with ``COMPOSE_STACK_TEST=1``; under ``CI=true`` it always runs, and a missing
docker-compose or engine fails it. The figures (build, time to healthy, pipeline run, down) are
printed and written to ``.testbed/compose/<project>/timings.json``; ``bench/compose_stack.py``
reports them as a benchmark.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import IN_CI, TESTBED, service_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(5400)]

DAG_ID = "ml_pipeline"
ALGORITHMS = ["lightgbm_per_group", "linear"]
#: Small enough that a warm run takes minutes; the per-country training needs 50 rows a country.
SEED_ROWS = os.environ.get("STACK_SEED_ROWS", "3000")
WORKERS = 2


@dataclass
class Running:
    """The module's stack, its REST client, its one pipeline run and the measured figures."""

    stack: Any
    api: Any
    values: dict[str, str]
    run_id: str = ""
    state: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def _enabled() -> None:
    if not (IN_CI or os.environ.get("COMPOSE_STACK_TEST") == "1"):
        pytest.skip(
            "the compose stack test builds and runs the whole stack: set COMPOSE_STACK_TEST=1 (CI always runs it)"
        )


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    """The stack up and healthy with two workers, ``ml_pipeline`` run once; always taken down after."""
    _enabled()
    from scripts.testbed import compose_bed

    try:
        compose_bed.compose_command()
        compose_bed.remove_stale()
        project = f"{compose_bed.TEST_PREFIX}{os.getpid()}"
        overrides = {
            "STACK_SEED_ROWS": SEED_ROWS,
            # Both training applications at once, one task per worker at a time: the two mapped
            # trainings are queued together and each worker takes one.
            "STACK_POOLS": "ml_pipeline_spark=2",
            "AIRFLOW_WORKER_CONCURRENCY": "1",
            # An endpoint of this test's own (name, free port pair): never another run's ml-pipeline.
            "ML_PIPELINE_ENDPOINT": project,
        }
        stack = compose_bed.prepare(TESTBED / "compose" / project, project, overrides)
    except Exception as e:  # no engine, no docker-compose, no base image: a missing service
        service_unavailable(f"compose stack cannot be prepared: {type(e).__name__}: {e}")
    endpoint = stack.values["ML_PIPELINE_ENDPOINT"]
    timings: dict[str, float] = {}
    try:
        timings["build_s"] = stack.build()
        t0 = time.monotonic()
        stack.up(workers=WORKERS)
        stack.wait_healthy(timeout=900)
        timings["to_healthy_s"] = time.monotonic() - t0
        api = stack.api()
        api.wait_for_dag(DAG_ID)
        run = Running(stack=stack, api=api, values=stack.values, timings=timings)
        _run_pipeline(run)
        if run.state != "success":
            (stack.workdir / "containers.log").write_text(stack.logs_tail(lines=300))
        yield run
    except BaseException:
        # What each container said last (redacted), kept beside compose.log for the failure's post-mortem.
        (stack.workdir / "containers.log").write_text(stack.logs_tail(lines=300))
        raise
    finally:
        removed = compose_bed.remove_endpoint_containers(endpoint)
        t0 = time.monotonic()
        left = stack.down()
        timings["down_s"] = time.monotonic() - t0
        (stack.workdir / "timings.json").write_text(json.dumps(timings, indent=1))
        stack.env_file.unlink(missing_ok=True)  # the secrets of a stack that is gone
        print(f"\ncompose stack timings: {timings}; endpoint containers removed: {removed}")
        assert left == {"containers": [], "volumes": []}, f"docker-compose down -v left {left} (removed now)"
        assert compose_bed.project_leftovers(stack.project) == {"containers": [], "volumes": []}
        assert compose_bed.endpoint_containers(endpoint) == []


def _run_pipeline(run: Running) -> None:
    """Trigger ml_pipeline (then unpause it; the scheduled run that makes is failed) and wait for the end."""
    v = run.values
    conf = {
        "storage_root": "hdfs:///lake/ml_pipeline",
        "spark_master": f"spark://{v['STACK_HOST']}:{v['SPARK_MASTER_PORT']}",
        "algorithms": ALGORITHMS,
        "deploy": "on",
    }
    t0 = time.monotonic()
    run.run_id = run.api.trigger(DAG_ID, conf)
    run.api.set_paused(DAG_ID, False)
    run.state = run.api.wait_for_run(DAG_ID, run.run_id, timeout=2400)
    run.timings["pipeline_s"] = time.monotonic() - t0
    run.api.set_paused(DAG_ID, True)
    run.api.fail_other_runs(DAG_ID, run.run_id)


def _failure_report(run: Running) -> str:
    lines = []
    for ti in run.api.task_instances(DAG_ID, run.run_id):
        lines.append(f"{ti['task_id']}[{ti['map_index']}] {ti['state']} on {ti.get('hostname')}")
        if ti["state"] in ("failed", "up_for_retry", "upstream_failed") and ti.get("try_number"):
            log = run.api.task_log(DAG_ID, run.run_id, ti["task_id"], ti["try_number"], ti["map_index"])
            lines.append(run.stack.redact(log[-4000:]))
    return "\n".join(lines)


def test_ml_pipeline_runs_in_the_stack(running: Running) -> None:
    """The whole pipeline succeeds in the stack: ERP rows per country from this run, the champion served."""
    assert running.state == "success", _failure_report(running)
    import psycopg2

    v = running.values
    conn = psycopg2.connect(
        host=v["STACK_HOST"], port=int(v["POSTGRES_PORT"]), dbname="erp", user="erp",
        password=v["ERP_DB_PASSWORD"], connect_timeout=10,
    )  # fmt: skip
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT country, count(*), min(model_uri), max(model_uri) FROM ml_pipeline_predictions "
                "WHERE run_id = %s GROUP BY country ORDER BY country",
                (running.run_id,),
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    assert [r[0] for r in rows] == ["DE", "FR", "IT"], rows
    assert all(r[1] > 0 for r in rows), rows
    assert len({r[2] for r in rows} | {r[3] for r in rows}) == 1, rows  # one model version for every country
    assert rows[0][2].startswith("models:/ml_pipeline_units/"), rows

    tis = {(t["task_id"], t["map_index"]): t for t in running.api.task_instances(DAG_ID, running.run_id)}
    assert tis[("deploy", -1)]["state"] == "success", _failure_report(running)
    import urllib.request

    url = f"http://127.0.0.1:{v['ML_PIPELINE_ENDPOINT_PORT']}/ping"
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=30) as r:
        assert r.status == 200
    # No secret of the env file in any task log.
    secrets = running.stack.secrets()
    for (task_id, map_index), ti in tis.items():
        if ti.get("try_number"):
            text = running.api.task_log(DAG_ID, running.run_id, task_id, ti["try_number"], map_index)
            leaked = [k for k, s in running.values.items() if s in secrets and s in text]
            assert not leaked, f"{task_id}[{map_index}] log shows {leaked}"


def test_mapped_trainings_spread_over_both_workers(running: Running) -> None:
    """The two mapped ``train`` task instances ran on the two different Celery workers."""
    assert running.state == "success", _failure_report(running)
    trains = [t for t in running.api.task_instances(DAG_ID, running.run_id) if t["task_id"] == "train"]
    assert sorted(t["map_index"] for t in trains) == [0, 1]
    hosts = {t["rendered_map_index"] or str(t["map_index"]): t["hostname"] for t in trains}
    print(f"\ntrain task instances by worker: {hosts}")
    nodes = {c.name: c for c in running.stack.containers() if "airflow-worker" in c.name}
    assert len(nodes) == WORKERS, nodes
    assert all(h and h.startswith("worker-") for h in hosts.values()), hosts
    assert len(set(hosts.values())) == WORKERS, f"both trainings ran on one worker: {hosts}"
