"""Two Airflow installations on one container engine: each keeps to its own jobs.

Two real Airflow deployments (separate metadata databases, scheduler, triggerer, LocalExecutor)
run the same DAG with the same run_id at the same time on the same real dockerd. Each installation
creates its own namespace Variable on first use, so the two jobs get different container names and
labels, run side by side (the jobs meet through a shared directory: each waits until the other has
started) and both tasks succeed with their own results. A job under our key that carries another
installation's namespace is refused by name and left running. ``find()`` reports the namespace
label on the Docker, Swarm and Metronome backends.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_ml_provider.hooks.container import new_namespace
from tests.conftest import TESTBED
from tests.integration.conftest import running_airflow

pytestmark = pytest.mark.integration

LABEL_MANAGED = "airflow-ml-provider.managed"
LABEL_NAMESPACE = "airflow-ml-provider.namespace"
VARIABLE = "ml_provider_namespace"

#: Each job announces itself in /shared and waits (up to 120 s) until the other installation's job
#: of the same run has too: two tasks can only both succeed if their jobs ran side by side.
MEET = (
    "import json, os, pathlib, time\n"
    "bed, run = os.environ['BED'], os.environ['RUN']\n"
    "shared = pathlib.Path('/shared')\n"
    "(shared / f'{run}.{bed}.started').write_text(bed)\n"
    "print(f'meet: {bed} started', flush=True)\n"
    "deadline = time.time() + 120\n"
    "while len(list(shared.glob(f'{run}.*.started'))) < 2:\n"
    "    if time.time() > deadline:\n"
    "        print('meet: the other installation never started its job', flush=True)\n"
    "        raise SystemExit(4)\n"
    "    time.sleep(0.2)\n"
    "print(f'meet: {bed} sees both jobs', flush=True)\n"
    "time.sleep(2)\n"
    "out = pathlib.Path(os.environ['ML_RESULT_PATH'])\n"
    "out.parent.mkdir(parents=True, exist_ok=True)\n"
    "out.write_text(json.dumps({'bed': bed, 'run': run}))\n"
)

DAGS = textwrap.dedent(
    """
    import datetime as dt
    from airflow.sdk import DAG
    from airflow_ml_provider.operators.container import ContainerJobOperator

    START = dt.datetime(2026, 1, 1)
    with DAG("ns_same", schedule=None, start_date=START, catchup=False):
        ContainerJobOperator(
            task_id="job",
            image={image!r},
            command=["python3", "-c", {meet!r}],
            environment={{"BED": "{{{{ var.value.bed_name }}}}", "RUN": "{{{{ run_id }}}}"}},
            mounts=[{shared!r} + ":/shared"],
            retries=0,
            poll_interval=1,
        )
    with DAG("ns_foreign", schedule=None, start_date=START, catchup=False):
        ContainerJobOperator(task_id="job", image={image!r}, command=["sh", "-c", "echo mine"], retries=1)
    """
)


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[str]:
    path = TESTBED / "ns-shared" / uuid.uuid4().hex[:10]
    path.mkdir(parents=True)
    yield str(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def beds(docker_images: dict[str, str], shared_dir: str) -> Iterator[dict[str, Any]]:
    """Installations ``a`` and ``b``: the same DAG file, their own databases and Variables."""
    dags = {"ns_dags.py": DAGS.format(image=docker_images["base"], meet=MEET, shared=shared_dir)}
    with contextlib.ExitStack() as stack:
        started = {}
        for name in ("a", "b"):
            env = {"AIRFLOW_VAR_BED_NAME": name}
            started[name] = stack.enter_context(running_airflow(f"airflow-ns-{name}", dags, env=env))
        yield started


@pytest.fixture(scope="module")
def docker_client(docker_images: dict[str, str]) -> Iterator[Any]:
    import docker

    client = docker.from_env()
    yield client
    client.close()


def variable(bed: Any) -> dict[str, Any] | None:
    """The bed's namespace Variable as the REST API shows it, or None if it does not exist."""
    status, body = bed._request("GET", f"/api/v2/variables/{VARIABLE}")
    if status == 404:
        return None
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def namespace_of(bed: Any) -> str:
    """The bed's namespace; created through the REST API (as an admin would) if no task made it yet."""
    found = variable(bed)
    if found is None:
        bed.api("POST", "/api/v2/variables", {"key": VARIABLE, "value": new_namespace()})
        found = variable(bed)
    assert found is not None
    return str(found["value"])


def create_run(bed: Any, dag_id: str, run_id: str) -> None:
    """A manual run with our run_id, created while the DAG is paused (nothing starts yet)."""
    bed.wait_for_dag(dag_id)
    bed.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})
    bed.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None})


def managed(client: Any, **labels: str) -> list[tuple[str, str, str]]:
    """(name, namespace label, state) of our containers carrying ``labels``, from one listing.

    Sparse: no per-container inspect, so a container removed meanwhile cannot fail the listing.
    """
    filters = [f"{LABEL_MANAGED}=true", *(f"{k}={v}" for k, v in labels.items())]
    found = client.containers.list(all=True, sparse=True, filters={"label": filters})
    return [
        (c.attrs["Names"][0].lstrip("/"), str((c.attrs.get("Labels") or {}).get(LABEL_NAMESPACE, "")), c.attrs["State"])
        for c in found
    ]


def test_two_installations_run_the_same_task_side_by_side(beds: dict[str, Any], docker_client: Any) -> None:
    from airflow_ml_provider.backends.base import job_key

    run_id = f"ns__{uuid.uuid4().hex[:8]}"
    for bed in beds.values():
        create_run(bed, "ns_same", run_id)
    for bed in beds.values():  # both start now
        bed.api("PATCH", "/api/v2/dags/ns_same", {"is_paused": False})
    # what dockerd holds while they run: (name, namespace label, status) per poll
    polls: list[set[tuple[str, str, str]]] = []
    states: dict[str, str] = {}
    deadline = time.monotonic() + 240
    while len(states) < 2:
        assert time.monotonic() < deadline, f"runs not finished: {states}"
        polls.append({seen for seen in managed(docker_client) if "ns-same" in seen[0]})
        for name, bed in beds.items():
            if name not in states:
                state = bed.api("GET", f"/api/v2/dags/ns_same/dagRuns/{run_id}")["state"]
                if state in ("success", "failed"):
                    states[name] = state
        time.sleep(0.3)
    logs = {name: bed.task_log("ns_same", run_id, "job") for name, bed in beds.items()}
    assert states == {"a": "success", "b": "success"}, logs
    for name, bed in beds.items():
        value = bed.api("GET", f"/api/v2/dags/ns_same/dagRuns/{run_id}/taskInstances/job/xcomEntries/return_value")
        result = json.loads(value["value"]) if isinstance(value["value"], str) else value["value"]
        assert result == {"bed": name, "run": run_id}
        assert f"meet: {name} sees both jobs" in logs[name]
        for words in ("starting anew", "disappeared", "re-attaching", "Removing"):
            assert words not in logs[name], logs[name]

    # each installation made its own namespace Variable, with a description saying what it is
    found = {name: variable(bed) for name, bed in beds.items()}
    namespaces = {name: str((var or {}).get("value")) for name, var in found.items()}
    for var in found.values():
        assert var is not None
        assert re.fullmatch(r"[a-z][0-9a-f]{7}", var["value"]), var["value"]
        assert "must differ" in var["description"]
    assert namespaces["a"] != namespaces["b"]
    keys = {name: job_key("ns_same", "job", run_id, -1, namespace=ns) for name, ns in namespaces.items()}
    assert keys["a"] != keys["b"]
    for name, ns in namespaces.items():
        assert keys[name].startswith(f"ml-{ns}-ns-same-job-")
    # the two jobs existed at the same moment, each named by its key and labelled with its namespace
    together = [
        poll
        for poll in polls
        if {(keys["a"], namespaces["a"], "running"), (keys["b"], namespaces["b"], "running")} <= poll
    ]
    assert together, polls
    # and nothing is left behind
    for ns in namespaces.values():
        assert managed(docker_client, **{LABEL_NAMESPACE: ns}) == []


def test_a_job_of_another_namespace_is_refused_and_left_alone(
    beds: dict[str, Any], docker_client: Any, docker_images: dict[str, str]
) -> None:
    """The job under our key carries another installation's namespace label: the task fails at once
    (no retry, though it has retries=1) naming both namespaces, and the job keeps running."""
    from airflow_ml_provider.backends.base import JobSpec, job_key
    from airflow_ml_provider.backends.docker_engine import DockerBackend, DockerConfig

    bed = beds["a"]
    ours = namespace_of(bed)
    run_id = f"ns_foreign__{uuid.uuid4().hex[:8]}"
    create_run(bed, "ns_foreign", run_id)
    key = job_key("ns_foreign", "job", run_id, -1, namespace=ours)
    backend = DockerBackend(DockerConfig(stop_timeout=1))
    foreign = backend.submit(
        JobSpec(key=key, image=docker_images["base"], command=["sleep", "300"], namespace="other-install")
    )
    try:
        assert backend.find(key) == foreign
        assert foreign.namespace == "other-install"
        bed.api("PATCH", "/api/v2/dags/ns_foreign", {"is_paused": False})
        assert bed.wait_for_run("ns_foreign", run_id, timeout=120) == "failed"
        instance = bed.api("GET", f"/api/v2/dags/ns_foreign/dagRuns/{run_id}/taskInstances/job")
        assert (instance["state"], instance["try_number"]) == ("failed", 1)  # permanent: no retry
        log = bed.task_log("ns_foreign", run_id, "job")
        assert f"docker container {key}" in log
        assert "namespace 'other-install'" in log
        assert f"'{ours}'" in log
        assert "left it running" in log
        assert "ml_provider_namespace" in log
        container = docker_client.containers.get(key)
        assert (container.id, container.status) == (foreign.job_id, "running")
        assert container.labels[LABEL_NAMESPACE] == "other-install"
    finally:
        backend.cancel(foreign)
        backend.close()
    assert managed(docker_client, **{LABEL_NAMESPACE: "other-install"}) == []


# --- find() reports the namespace label on every backend ------------------------------------------------


def _round_trip(backend: Any, spec: Any) -> None:
    """Submit, find while it runs (so ``find`` sees a live job), cancel."""
    from airflow_ml_provider.backends.base import RUNNING

    handle = backend.submit(spec)
    try:
        assert handle.namespace == "team-a"
        deadline = time.monotonic() + 60
        while (status := backend.status(handle)).state != RUNNING:
            assert not status.finished, status
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        found = backend.find(spec.key)
        assert found == handle
        assert found.namespace == "team-a"
    finally:
        backend.cancel(handle)
    assert backend.find(spec.key) is None


def test_docker_and_swarm_find_report_the_namespace(swarm: dict[str, str], docker_client: Any) -> None:
    from airflow_ml_provider.backends.base import JobSpec
    from airflow_ml_provider.backends.docker_engine import DockerBackend, DockerConfig
    from airflow_ml_provider.backends.swarm import SwarmBackend

    for backend_class in (DockerBackend, SwarmBackend):
        backend = backend_class(DockerConfig(stop_timeout=1))
        key = f"ml-team-a-ns-{uuid.uuid4().hex[:12]}"
        spec = JobSpec(key=key, image=swarm["base"], command=["sleep", "30"], namespace="team-a", spec_hash="h")
        try:
            _round_trip(backend, spec)
        finally:
            backend.close()
        assert managed(docker_client, **{LABEL_NAMESPACE: "team-a"}) == []


def test_metronome_find_reports_the_namespace() -> None:
    from airflow_ml_provider.backends.base import JobSpec
    from airflow_ml_provider.backends.metronome import MetronomeBackend, MetronomeConfig
    from scripts.testbed.metronome_server import MetronomeTestServer

    with MetronomeTestServer(uid="admin", password="pw-ns-test", launch_delay=0.2, kill_grace=1.0) as server:
        backend = MetronomeBackend(
            MetronomeConfig(url=server.url, uid="admin", password="pw-ns-test", retries=1, stop_timeout=5)
        )
        key = f"ml-team-a-ns-{uuid.uuid4().hex[:12]}"
        spec = JobSpec(
            key=key,
            image="alpine:3.20",
            entrypoint=["/bin/sh", "-c"],
            command=["sleep 30"],
            namespace="team-a",
            spec_hash="h",
        )
        try:
            _round_trip(backend, spec)
            assert server.job_ids() == []
        finally:
            backend.close()
