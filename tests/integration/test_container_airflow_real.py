"""ContainerJobOperator in a real Airflow (scheduler, triggerer, LocalExecutor) on a real dockerd.

Kills mid-run leave nothing behind (worker on_kill and the triggerer's on_kill), a retry
re-attaches to the previous try's container instead of starting a twin, execution_timeout
removes the job, the deferrable path relays log lines through the triggerer, and a secret from a
Connection reaches the container but no log file, rendered field, XCom or error. The bed's
installation namespace is set as its Variable ``ml_provider_namespace`` (as an admin would), so
the tests know every job key before the task computes it.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import running_airflow

pytestmark = pytest.mark.integration

SECRET = "erp-" + uuid.uuid4().hex  # must never be shown anywhere
LABEL_KEY = "airflow-ml-provider.job-key"
#: This bed's installation namespace (its Variable ml_provider_namespace).
NAMESPACE = "it-" + uuid.uuid4().hex[:8]

DAGS = textwrap.dedent(
    """
    import datetime as dt
    from airflow.sdk import DAG
    from airflow_ml_provider.operators.container import ContainerJobOperator

    IMAGE = {image!r}
    OK = (
        "import hashlib, json, os, time\\n"
        "print('job: first line', flush=True)\\n"
        "secret = os.environ['ERP_PASSWORD']\\n"
        "for i in range(5):\\n"
        "    print(f'job: step {{i}}', flush=True); time.sleep(1.2)\\n"
        "os.makedirs(os.path.dirname(os.environ['ML_RESULT_PATH']), exist_ok=True)\\n"
        "json.dump({{'sha': hashlib.sha256(secret.encode()).hexdigest(), 'run': os.environ['RUN']}},"
        " open(os.environ['ML_RESULT_PATH'], 'w'))\\n"
        "print('job: last line', flush=True)\\n"
    )

    def make(dag_id, **kw):
        with DAG(dag_id, schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, max_active_runs=8):
            ContainerJobOperator(task_id="job", image=IMAGE, poll_interval=1, **kw)

    SECRET_ENV = {{"ERP_PASSWORD": "conn://erp_db/password"}}
    make("c_ok", command=["python3", "-c", OK], secret_env=SECRET_ENV, environment={{"RUN": "{{{{ run_id }}}}"}})
    make("c_defer", command=["python3", "-c", OK], secret_env=SECRET_ENV, environment={{"RUN": "{{{{ run_id }}}}"}},
         deferrable=True)
    FAIL = (
        "import os, sys\\n"
        "print('fail: first', flush=True)\\n"
        "print('fail: len=%d' % len(os.environ['ERP_PASSWORD']), file=sys.stderr, flush=True)\\n"
        "sys.exit(3)\\n"
    )
    make("c_fail", command=["python3", "-c", FAIL], secret_env=SECRET_ENV)
    LEAK = (  # a careless job that prints its own secret, plainly and escaped, then fails
        "import os, sys, time\\n"
        "secret = os.environ['ERP_PASSWORD']\\n"
        "print('leak: first', flush=True)\\n"
        "time.sleep(6)\\n"  # the deferrable task is deferred, and the scheduler knows it, before the leak
        "for i in range(3):\\n"
        "    print(f'leak: plain={{secret}} repr={{secret!r}}', flush=True)\\n"
        "print(f'leak: stderr={{secret}}', file=sys.stderr, flush=True)\\n"
        "sys.exit(5)\\n"
    )
    make("c_leak", command=["python3", "-c", LEAK], secret_env=SECRET_ENV)
    make("c_leak_defer", command=["python3", "-c", LEAK], secret_env=SECRET_ENV, deferrable=True)
    make("c_sleep", command=["sh", "-c", "echo sleeping; sleep 300"])
    make("c_sleep_defer", command=["sh", "-c", "echo sleeping; sleep 300"], deferrable=True)
    make("c_reattach", command=["sh", "-c", "echo attach: start; sleep 6; echo attach: end"], retries=0)
    make("c_timeout", command=["sh", "-c", "echo slow; sleep 300"], execution_timeout=dt.timedelta(seconds=6))
    """
)


@pytest.fixture(scope="module")
def bed(docker_images: dict[str, str]) -> Iterator[Any]:
    env = {
        "AIRFLOW_CONN_ERP_DB": json.dumps({"conn_type": "postgres", "host": "erp", "login": "w", "password": SECRET}),
        "AIRFLOW__CORE__PARALLELISM": "8",
    }
    dags = {"container_dags.py": DAGS.format(image=docker_images["base"])}
    # 5 tasks at once: not SQLite
    with running_airflow("airflow-container", dags, env=env, database="postgres") as airflow:
        airflow.api("POST", "/api/v2/variables", {"key": "ml_provider_namespace", "value": NAMESPACE})
        yield airflow


@pytest.fixture(scope="module")
def docker_client(docker_images: dict[str, str]) -> Iterator[Any]:
    import docker

    client = docker.from_env()
    yield client
    client.close()


def key_of(dag_id: str, run_id: str) -> str:
    from airflow_ml_provider.backends.base import job_key

    return job_key(dag_id, "job", run_id, -1, namespace=NAMESPACE)


def containers(client: Any, key: str) -> list[Any]:
    # sparse: no per-container inspect, so a container removed meanwhile cannot fail the listing
    return list(client.containers.list(all=True, sparse=True, filters={"label": f"{LABEL_KEY}={key}"}))


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def all_airflow_text(bed: Any) -> str:
    chunks = []
    for folder in (bed.home / "logs", bed.component_log_dir):
        for path in folder.rglob("*"):
            if path.is_file():
                chunks.append(path.read_text(errors="replace"))
    return "\n".join(chunks)


def ti(bed: Any, dag_id: str, run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = bed.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/job")
    return result


def xcom(bed: Any, dag_id: str, run_id: str, key: str = "return_value") -> Any:
    value = bed.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/job/xcomEntries/{key}")["value"]
    return json.loads(value) if isinstance(value, str) else value


def test_success_logs_first_and_last_lines_and_returns_the_result(bed: Any, docker_client: Any) -> None:
    bed.wait_for_dag("c_ok")
    run_id = bed.trigger("c_ok")
    assert bed.wait_for_run("c_ok", run_id, timeout=180) == "success", bed.task_log("c_ok", run_id, "job")
    log = bed.task_log("c_ok", run_id, "job")
    assert "job: first line" in log
    assert "job: step 4" in log
    assert "job: last line" in log
    assert f"Job namespace {NAMESPACE} (Airflow Variable ml_provider_namespace)" in log
    assert f"docker container {key_of('c_ok', run_id)} " in log
    result = xcom(bed, "c_ok", run_id)
    assert result == {"sha": hashlib.sha256(SECRET.encode()).hexdigest(), "run": run_id}
    assert containers(docker_client, key_of("c_ok", run_id)) == []


def test_deferrable_run_goes_through_the_triggerer(bed: Any, docker_client: Any) -> None:
    bed.wait_for_dag("c_defer")
    run_id = bed.trigger("c_defer")
    bed.wait_deferred("c_defer", run_id, "job")
    assert bed.wait_for_run("c_defer", run_id, timeout=180) == "success", bed.task_log("c_defer", run_id, "job")
    log = bed.task_log("c_defer", run_id, "job")
    assert "job: first line" in log
    assert "job: last line" in log
    assert xcom(bed, "c_defer", run_id)["run"] == run_id
    assert containers(docker_client, key_of("c_defer", run_id)) == []


def test_failure_reports_exit_code_and_last_lines(bed: Any, docker_client: Any) -> None:
    bed.wait_for_dag("c_fail")
    run_id = bed.trigger("c_fail")
    assert bed.wait_for_run("c_fail", run_id, timeout=180) == "failed"
    log = bed.task_log("c_fail", run_id, "job")
    assert "exit code 3" in log
    assert "fail: first" in log
    assert f"fail: len={len(SECRET)}" in log
    assert containers(docker_client, key_of("c_fail", run_id)) == []


@pytest.mark.parametrize("dag_id", ["c_leak", "c_leak_defer"])
def test_a_job_printing_its_secret_is_redacted_in_the_task_log(bed: Any, docker_client: Any, dag_id: str) -> None:
    """Running (worker's masker and redaction) or deferred (the trigger resolves and redacts itself)."""
    bed.wait_for_dag(dag_id)
    run_id = bed.trigger(dag_id)
    if dag_id.endswith("defer"):
        bed.wait_deferred(dag_id, run_id, "job")
    assert bed.wait_for_run(dag_id, run_id, timeout=180) == "failed"
    log = bed.task_log(dag_id, run_id, "job")
    assert "exit code 5" in log
    assert "leak: first" in log
    assert "leak: plain=*** repr='***'" in log
    assert "leak: stderr=***" in log
    assert SECRET not in log
    assert containers(docker_client, key_of(dag_id, run_id)) == []


def test_secret_never_reaches_logs_rendered_fields_xcom_or_api(bed: Any) -> None:
    """Runs after the success, deferrable, failure and leak tests above have used the secret."""
    for dag_id in ("c_ok", "c_defer", "c_fail", "c_leak", "c_leak_defer"):
        runs = bed.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
        assert runs, dag_id
        for run in runs:
            run_id = run["dag_run_id"]
            instance = ti(bed, dag_id, run_id)
            assert SECRET not in json.dumps(instance), dag_id
            assert "ERP_PASSWORD" not in json.dumps((instance.get("rendered_fields") or {}).get("environment"))
            entries = bed.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/job/xcomEntries")
            for entry in entries["xcom_entries"]:
                value = bed.api(
                    "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/job/xcomEntries/{entry['key']}"
                )
                assert SECRET not in json.dumps(value)
            assert SECRET not in bed.task_log(dag_id, run_id, "job")
    assert SECRET not in all_airflow_text(bed)
    # Trigger kwargs hold references only; trigger events (stored unmasked) were redacted first.
    dump = bed.dump_database()
    assert "c_leak_defer" in dump  # the bed's own database, with the runs above in it
    assert SECRET not in dump


def _kill_batch(bed: Any, client: Any, dag_id: str, n: int) -> list[str]:
    """Start ``n`` runs, kill each task while its container runs; returns the job keys."""
    run_ids = [bed.trigger(dag_id) for _ in range(n)]
    keys = {run_id: key_of(dag_id, run_id) for run_id in run_ids}
    for run_id, key in keys.items():
        wait_until(
            lambda key=key: any(c.status == "running" for c in containers(client, key)),
            120,
            f"{dag_id} container running",
        )
        if dag_id.endswith("defer"):
            bed.wait_for_task_state(dag_id, run_id, "job", {"deferred"}, timeout=60)
            # Airflow calls a trigger's on_kill only once a triggerer runs it: wait for the
            # job's first line relayed by the trigger (a kill before that is a known gap, README).
            wait_until(lambda run_id=run_id: "sleeping" in bed.task_log(dag_id, run_id, "job"), 60, "trigger running")
    for run_id in run_ids:
        bed.api("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/job", {"new_state": "failed"})
    for run_id, key in keys.items():
        wait_until(
            lambda key=key: not containers(client, key), 60, f"container of {dag_id}/{run_id} removed after kill"
        )
    return list(keys.values())


def test_killing_the_task_mid_run_20_times_leaves_no_container(bed: Any, docker_client: Any) -> None:
    """10 kills of running tasks (worker on_kill) and 10 of deferred ones (trigger on_kill, Airflow 3.3)."""
    killed: list[str] = []
    for dag_id in ("c_sleep", "c_sleep_defer"):
        bed.wait_for_dag(dag_id)
        for _ in range(2):
            killed += _kill_batch(bed, docker_client, dag_id, 5)
    assert len(set(killed)) == 20
    left = docker_client.containers.list(all=True, filters={"label": "airflow-ml-provider.managed=true"})
    assert [c.name for c in left if c.name in killed] == []


def test_execution_timeout_removes_the_job(bed: Any, docker_client: Any) -> None:
    bed.wait_for_dag("c_timeout")
    run_id = bed.trigger("c_timeout")
    assert bed.wait_for_run("c_timeout", run_id, timeout=120) == "failed"
    wait_until(lambda: not containers(docker_client, key_of("c_timeout", run_id)), 30, "container removed")
    assert "slow" in bed.task_log("c_timeout", run_id, "job")


def test_retry_reattaches_to_the_running_job_of_the_previous_try(
    bed: Any, docker_client: Any, docker_images: dict[str, str]
) -> None:
    """The previous try's container (same key, same definition) is still running when the task
    starts: the task must wait for it and take its outcome, never create a second container."""
    from airflow_ml_provider.backends.docker_engine import DockerBackend, DockerConfig
    from airflow_ml_provider.operators.container import ContainerJobOperator

    dag_id = "c_reattach"
    bed.wait_for_dag(dag_id)
    run_id = f"manual__reattach_{uuid.uuid4().hex[:8]}"
    # Create the run while the DAG is paused, so nothing starts before the "previous try" does.
    bed.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})
    bed.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None})
    op = ContainerJobOperator(
        task_id="job",
        image=docker_images["base"],
        command=["sh", "-c", "echo attach: start; sleep 6; echo attach: end"],
        poll_interval=1,
    )
    key = key_of(dag_id, run_id)
    backend = DockerBackend(DockerConfig())
    since = time.time() - 1
    previous = backend.submit(op.build_spec(key, NAMESPACE))
    bed.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    assert bed.wait_for_run(dag_id, run_id, timeout=180) == "success"
    log = bed.task_log(dag_id, run_id, "job")
    assert "re-attaching" in log
    assert "attach: end" in log
    creates = [
        e
        for e in docker_client.events(
            since=since, until=time.time(), decode=True, filters={"type": "container", "event": "create"}
        )
        if e["Actor"]["Attributes"].get("name") == key
    ]
    assert len(creates) == 1
    assert creates[0]["id"] == previous.job_id
    assert containers(docker_client, key) == []
