"""SwarmBackend against the test bed's one-node Swarm (``swarm`` fixture: the local dockerd as manager).

Services use no network (``none``) like the Docker backend; no VIPs or published ports (no IPVS).
Every test uses fresh job keys and a finalizer that cancels (removes) its services and containers.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_ml_provider.backends.base import (
    FAILED,
    GONE,
    LABEL_KEY,
    LABEL_MANAGED,
    LABEL_SPEC,
    RUNNING,
    SUCCEEDED,
    JobStatus,
)
from airflow_ml_provider.backends.docker_common import DockerConfig
from airflow_ml_provider.backends.swarm import SwarmBackend, task_status
from airflow_ml_provider.exceptions import BackendError, JobExistsError
from airflow_ml_provider.utils.resources import ResourceSpec
from tests.integration.backend_jobs import RESULT, TrackedJobs

pytestmark = pytest.mark.integration


class Services(TrackedJobs):
    """Swarm: a key may leave a service and exited task containers behind."""

    backend: SwarmBackend

    def remove_leftovers(self, key: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.backend.client.api.remove_service(key)
        label = f"com.docker.swarm.service.name={key}"
        for container in self.backend.client.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


@pytest.fixture
def backend(swarm: dict[str, str]) -> Iterator[SwarmBackend]:
    b = SwarmBackend(DockerConfig(stop_timeout=2), poll_interval=0.2)
    yield b
    b.close()


@pytest.fixture
def services(backend: SwarmBackend, swarm: dict[str, str]) -> Iterator[Services]:
    s = Services(backend, swarm["base"], poll=0.1)
    yield s
    s.cleanup()


def left_behind(backend: SwarmBackend, key: str) -> tuple[list[Any], list[Any]]:
    """The services named ``key`` and the containers (any state) labelled with it."""
    named = [s for s in backend.client.services.list(filters={"name": key}) if s.name == key]
    labelled = backend.client.containers.list(all=True, filters={"label": f"{LABEL_KEY}={key}"})
    return named, labelled


def test_success_with_result_and_find(services: Services, backend: SwarmBackend) -> None:
    spec = services.spec(RESULT + "json.dump({'auc': 0.9, 'at': str(out)}, out.open('w'))\nprint('trained')")
    handle = services.submit(spec)
    assert backend.find(spec.key) == handle
    assert handle.spec_hash == spec.spec_hash
    assert services.wait(handle) == JobStatus(SUCCEEDED, 0)
    assert backend.result(handle, "/airflow/xcom/result.json") == {"auc": 0.9, "at": "/airflow/xcom/result.json"}
    assert backend.result(handle, "/nowhere/result.json") is None
    assert list(backend.follow(handle)) == ["trained"]
    assert backend.describe(handle).startswith(f"swarm service {spec.key} (")
    with pytest.raises(JobExistsError, match=spec.key):
        backend.submit(spec)
    backend.cancel(handle)  # a finished job: its service and exited container go
    assert left_behind(backend, spec.key) == ([], [])


def test_exit_3_is_failed_with_the_schedulers_message(services: Services) -> None:
    _, status = services.run("import sys; sys.exit(3)")
    assert status.state == FAILED
    assert status.exit_code == 3
    assert status.oom_killed is False
    assert "non-zero exit (3)" in status.message


def test_a_missing_image_says_the_job_never_ran_and_why(services: Services, backend: SwarmBackend) -> None:
    """Issue 9 item 13: a task rejected for a missing image used to read "failed with exit code 0"."""
    from airflow_ml_provider.operators.container_args import failure_message

    image = f"airflow-ml-provider/absent:{uuid.uuid4().hex[:8]}"
    handle, status = services.run("print(1)", image=image)
    assert (status.state, status.exit_code) == (FAILED, None)
    assert f"it never ran: Swarm rejected its task (No such image: {image})" in status.message
    text = failure_message(backend.describe(handle), status, [], None)
    assert "exit code" not in text
    assert "check the image name and tag" in text


def test_oom_kill_is_reported(services: Services) -> None:
    _, status = services.run("x = b'x' * (200 * 1024 * 1024)", resources=ResourceSpec.of(memory="64Mi"))
    assert status.state == FAILED
    assert status.exit_code == 137
    assert status.oom_killed is True


def test_service_spec_limits_reservations_restart_and_mode(services: Services, backend: SwarmBackend) -> None:
    spec = services.spec(
        command=["true"], resources=ResourceSpec.of(cpus=0.5, memory="128Mi"), labels={"team": "ml"}, env={"A": "1"}
    )
    handle = services.submit(spec)
    attrs = backend.client.api.inspect_service(handle.job_id)["Spec"]
    template = attrs["TaskTemplate"]
    for kind in ("Limits", "Reservations"):
        assert template["Resources"][kind]["NanoCPUs"] == 500_000_000, kind
        assert template["Resources"][kind]["MemoryBytes"] == 128 * 1024**2, kind
    assert template["RestartPolicy"]["Condition"] == "none"
    assert "ReplicatedJob" in attrs["Mode"]
    assert attrs["Mode"]["ReplicatedJob"].get("TotalCompletions", 1) == 1
    assert attrs["Labels"][LABEL_KEY] == spec.key
    assert attrs["Labels"][LABEL_SPEC] == spec.spec_hash
    assert attrs["Labels"][LABEL_MANAGED] == "true"
    assert attrs["Labels"]["team"] == "ml"
    assert template["ContainerSpec"]["Labels"][LABEL_KEY] == spec.key
    assert "ML_RESULT_PATH=/airflow/xcom/result.json" in template["ContainerSpec"]["Env"]
    assert "A=1" in template["ContainerSpec"]["Env"]
    assert template["LogDriver"]["Name"] == "json-file"
    assert not template.get("Networks")
    assert services.wait(handle).state == SUCCEEDED


def test_follow_and_logs_return_every_line(services: Services, backend: SwarmBackend) -> None:
    handle = services.submit(
        services.spec("import sys\nsys.stdout.writelines(f'line {i:04d}\\n' for i in range(2000))")
    )
    lines = list(backend.follow(handle))
    assert lines[0] == "line 0000"
    assert lines[-1] == "line 1999"
    assert lines == [f"line {i:04d}" for i in range(2000)]
    assert backend.status(handle).state == SUCCEEDED
    lines, cursor = backend.logs(handle, None)
    assert len(lines) == 2000
    assert backend.logs(handle, json.loads(json.dumps(cursor))) == ([], cursor)


def test_cancel_a_running_job_leaves_nothing_and_is_idempotent(services: Services, backend: SwarmBackend) -> None:
    handle = services.submit(services.spec(command=["sleep", "60"]))
    deadline = time.monotonic() + 30
    while backend.status(handle).state != RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    named, labelled = left_behind(backend, handle.key)
    assert len(named) == 1
    assert len(labelled) == 1
    started = time.monotonic()
    backend.cancel(handle)
    assert time.monotonic() - started < backend.config.stop_timeout + 10
    assert left_behind(backend, handle.key) == ([], [])
    backend.cancel(handle)  # a no-op now
    assert backend.status(handle).state == GONE
    assert backend.find(handle.key) is None
    assert backend.logs(handle, None) == ([], None)


def test_cancel_right_after_submit_leaves_no_container_behind(services: Services, backend: SwarmBackend) -> None:
    """A task killed in its first moment: Swarm may still create the container of a removed service."""
    handle = services.submit(services.spec(command=["sleep", "60"]))
    backend.cancel(handle)
    assert left_behind(backend, handle.key)[0] == []
    time.sleep(8)  # long enough for a late task container to appear (it did, 3 times in 3)
    assert left_behind(backend, handle.key) == ([], [])


def test_find_refuses_a_foreign_service_with_the_same_name(
    services: Services, backend: SwarmBackend, swarm: dict[str, str]
) -> None:
    from docker.types import ServiceMode

    key = services.key()
    backend.client.services.create(swarm["base"], ["true"], name=key, mode=ServiceMode("replicated-job"))
    with pytest.raises(BackendError, match=f"{key} exists but was not started by airflow-ml-provider"):
        backend.find(key)
    # let its task finish, so the finalizer also finds (and removes) the task's container
    deadline = time.monotonic() + 30
    while task_status(backend.client.services.get(key).tasks()).state != SUCCEEDED:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_secret_env_not_in_the_status_message(services: Services, backend: SwarmBackend) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    from airflow_ml_provider.exceptions import InvalidSpecError

    # Swarm would fail the task with the KEY=VALUE entry in its message; refused before any API call.
    with pytest.raises(InvalidSpecError) as e:
        services.submit(services.spec(command=["true"], secret_env={"API_TOKEN": secret + "\x00tail"}))
    assert secret not in str(e.value)
    assert "API_TOKEN" in str(e.value)
