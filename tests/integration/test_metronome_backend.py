"""MetronomeBackend against a real HTTP Metronome v1 + DC/OS IAM test server whose runs really execute.

The server (:mod:`scripts.testbed.metronome_server`) answers like Metronome (paths, status codes, JSON
shapes, 422 details, 401s) and runs each job's ``cmd`` as a local ``/bin/sh -c`` process.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.backends.base import (
    FAILED,
    GONE,
    LABEL_KEY,
    LABEL_SPEC,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATES,
    JobHandle,
    JobSpec,
    JobStatus,
)
from airflow_ml_provider.backends.metronome import MetronomeBackend, MetronomeConfig
from airflow_ml_provider.exceptions import (
    BackendError,
    ConnectionConfigError,
    InvalidSpecError,
    JobExistsError,
    MetronomeValidationError,
)
from airflow_ml_provider.utils.resources import ResourceSpec
from scripts.testbed.metronome_server import LOGIN_PATH, MetronomeTestServer

pytestmark = pytest.mark.integration

PASSWORD = "pa55-w0rd-never-logged"
SECRET_VALUE = "s3cret-env-value-xyz"


@pytest.fixture
def server() -> Iterator[MetronomeTestServer]:
    with MetronomeTestServer(uid="admin", password=PASSWORD, launch_delay=0.2, kill_grace=1.0) as srv:
        yield srv


def make_backend(url: str, **kwargs: Any) -> MetronomeBackend:
    options: dict[str, Any] = {"uid": "admin", "password": PASSWORD, "retries": 3, "backoff": 0.01, "stop_timeout": 10}
    options.update(kwargs)
    return MetronomeBackend(MetronomeConfig(url=url, **options))


@pytest.fixture
def backend(server: MetronomeTestServer) -> Iterator[MetronomeBackend]:
    b = make_backend(server.url)
    yield b
    b.close()


def shell_spec(key: str, script: str, **kwargs: Any) -> JobSpec:
    """A job that runs ``script`` through the image's shell (cmd mode)."""
    fields: dict[str, Any] = {
        "key": key,
        "image": "alpine:3.20",
        "entrypoint": ["/bin/sh", "-c"],
        "command": [script],
        "spec_hash": "hash-1",
        "labels": {"team": "ml"},
    }
    fields.update(kwargs)
    return JobSpec(**fields)


def wait_finished(backend: MetronomeBackend, handle: JobHandle, timeout: float = 10) -> tuple[JobStatus, list[str]]:
    """Poll until terminal; returns the last status and every distinct state seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = backend.status(handle)
        if not seen or seen[-1] != status.state:
            seen.append(status.state)
        if status.state in TERMINAL_STATES:
            return status, seen
        time.sleep(0.05)
    raise AssertionError(f"{handle} did not finish in {timeout}s; states {seen}")


def wait_state(backend: MetronomeBackend, handle: JobHandle, state: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while backend.status(handle).state != state:
        assert time.monotonic() < deadline, f"{handle} never reached {state}"
        time.sleep(0.05)


def live_group_members(pgid: int) -> list[int]:
    """Pids of the process group's members that are not zombies (this sandbox's init reaps none)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def bodies(server: MetronomeTestServer, method: str, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in server.requests if r.method == method and r.path.split("?")[0] == path]


# ----------------------------------------------------------------------------- run life cycle


def test_submit_runs_to_success(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    spec = shell_spec(
        "ml-ok-0000000001",
        'sleep 0.4; test "$PLAIN" = "plain value" && test "$TOKEN" = "' + SECRET_VALUE + '" && test "$(pwd)" = /tmp',
        env={"PLAIN": "plain value"},
        secret_env={"TOKEN": SECRET_VALUE},
        working_dir="/tmp",
    )
    handle = backend.submit(spec)
    assert handle.backend == "metronome"
    assert handle.key == spec.key
    assert handle.spec_hash == "hash-1"
    job_id, run_id = handle.job_id.split("/")
    assert job_id == spec.key
    assert run_id
    status, seen = wait_finished(backend, handle)
    assert seen[0] == PENDING, seen
    assert RUNNING in seen, seen
    assert seen[-1] == SUCCEEDED, seen
    assert status.exit_code is None
    assert not status.oom_killed
    assert run_id in status.message
    (body,) = bodies(server, "POST", "/v1/jobs")
    run = body["run"]
    assert (
        run["cmd"]
        == 'cd /tmp && /bin/sh -c \'sleep 0.4; test "$PLAIN" = "plain value" && test "$TOKEN" = "'
        + SECRET_VALUE
        + '" && test "$(pwd)" = /tmp\''
    )
    assert "args" not in run
    assert run["docker"] == {"image": "alpine:3.20", "forcePullImage": False}
    assert run["restart"] == {"policy": "NEVER"}
    assert run["maxLaunchDelay"] == 3600
    assert (run["cpus"], run["mem"], run["disk"], run["gpus"]) == (1.0, 128, 0, 0)
    assert body["labels"][LABEL_KEY] == spec.key
    assert body["labels"][LABEL_SPEC] == "hash-1"
    assert body["labels"]["team"] == "ml"
    assert backend.logs(handle) == ([], None)
    assert backend.logs(handle, 7) == ([], 7)
    assert list(backend.follow(handle)) == []
    assert backend.result(handle, "/airflow/xcom/result.json") is None
    assert backend.describe(handle) == f"metronome job {spec.key} run {run_id}"


def test_args_mode_uses_image_entrypoint_semantics(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    spec = JobSpec(
        key="ml-args-0000000002",
        image="alpine:3.20",
        command=["/bin/sh", "-c", 'test "$1" = "two words"', "sh", "two words"],
        resources=ResourceSpec.of(cpus=0.5, memory="256Mi", disk="1Gi"),
    )
    handle = backend.submit(spec)
    assert wait_finished(backend, handle)[0].state == SUCCEEDED
    run = bodies(server, "POST", "/v1/jobs")[0]["run"]
    assert run["args"] == list(spec.command or [])
    assert "cmd" not in run
    assert (run["cpus"], run["mem"], run["disk"]) == (0.5, 256, 1024)


def test_failed_run(backend: MetronomeBackend) -> None:
    handle = backend.submit(shell_spec("ml-fail-0000000003", "exit 3"))
    status, _ = wait_finished(backend, handle)
    assert status.state == FAILED
    assert status.exit_code is None
    assert "failed" in status.message


def test_resubmit_after_finish_updates_the_job(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    key = "ml-upsert-0000000004"
    first = backend.submit(shell_spec(key, "exit 3"))
    assert wait_finished(backend, first)[0].state == FAILED
    second = backend.submit(shell_spec(key, "exit 0", spec_hash="hash-2"))
    assert second.job_id != first.job_id
    assert wait_finished(backend, second)[0].state == SUCCEEDED
    (put,) = bodies(server, "PUT", f"/v1/jobs/{key}")
    assert put["run"]["cmd"] == "/bin/sh -c 'exit 0'"
    assert put["labels"][LABEL_SPEC] == "hash-2"
    assert len(bodies(server, "POST", "/v1/jobs")) == 1
    # both runs are in the history; find() picks the newest and reads the spec hash from the labels
    assert backend.find(key) == second
    assert backend.status(first).state == FAILED


def test_submit_refuses_a_twin_of_an_active_run(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    key = "ml-twin-0000000005"
    handle = backend.submit(shell_spec(key, "sleep 30"))
    with pytest.raises(JobExistsError, match=key):
        backend.submit(shell_spec(key, "sleep 30"))
    assert backend.find(key) == handle  # the active run
    backend.cancel(handle)


def test_find(backend: MetronomeBackend) -> None:
    assert backend.find("ml-unknown-0000000000") is None
    handle = backend.submit(shell_spec("ml-find-0000000006", "exit 0"))
    assert backend.find(handle.key) == handle
    wait_finished(backend, handle)
    assert backend.find(handle.key) == handle


# ------------------------------------------------------------------------------ authentication


def test_relogin_after_token_expiry(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    handle = backend.submit(shell_spec("ml-relogin-0000000007", "exit 0"))
    assert server.logins == 1
    server.expire_tokens()
    wait_finished(backend, handle)
    assert server.logins == 2
    statuses = [r for r in server.requests if r.path.startswith("/v1/")]
    assert all(r.has_auth for r in statuses)


def test_rejected_token_without_password_is_a_config_error(server: MetronomeTestServer) -> None:
    backend = make_backend(server.url, uid="", password="", token="expired-token-value")
    with pytest.raises(ConnectionConfigError, match="token was rejected") as info:
        backend.find("ml-any-0000000008")
    assert "expired-token-value" not in str(info.value)
    assert server.logins == 0
    backend.close()


def test_wrong_password_is_a_config_error(server: MetronomeTestServer) -> None:
    backend = make_backend(server.url, password="wrong-password-123")
    with pytest.raises(ConnectionConfigError, match=r"refused the login of uid 'admin'.*401") as info:
        backend.find("ml-any-0000000009")
    assert "wrong-password-123" not in str(info.value)


def test_preissued_token_is_used_then_replaced_by_a_login(server: MetronomeTestServer) -> None:
    backend = make_backend(server.url, token="stale-token")
    assert backend.find("ml-any-0000000010") is None  # 401 with the stale token, login, retry
    assert server.logins == 1
    assert [r.path.split("?")[0] for r in server.requests] == [
        "/v1/jobs/ml-any-0000000010",
        LOGIN_PATH,
        "/v1/jobs/ml-any-0000000010",
    ]


# ---------------------------------------------------------------------------- retries and errors


def test_5xx_and_connection_errors_are_retried(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    assert backend.find("ml-any-0000000011") is None  # logged in
    server.fail_next(2, status=503)
    handle = backend.submit(shell_spec("ml-retry-0000000011", "exit 0"))
    server.drop_next(2)
    assert wait_finished(backend, handle)[0].state == SUCCEEDED
    assert sum(1 for r in server.requests if r.path == "/v1/jobs/ml-retry-0000000011?embed=activeRuns") == 3


def test_failed_trigger_is_retried_without_a_twin(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    key = "ml-trigger-0000000012"
    backend.find(key)
    # GET job (404), POST job, then the first trigger attempt gets a 502
    original = server._dispatch
    calls = {"n": 0}

    def flaky(method: str, target: str, auth: str | None, raw: bytes) -> tuple[int, Any]:
        result = original(method, target, auth, raw)
        if method == "POST" and target == f"/v1/jobs/{key}/runs" and calls["n"] == 0:
            calls["n"] += 1
            return 502, "<html><head><title>502 Bad Gateway</title></head></html>"  # processed, answer lost
        return result

    server._dispatch = flaky  # type: ignore[method-assign]
    handle = backend.submit(shell_spec(key, "sleep 0.3"))
    assert len([r for r in server.requests if r.method == "POST" and r.path == f"/v1/jobs/{key}/runs"]) == 1
    assert backend.find(key) == handle  # the adopted run
    assert wait_finished(backend, handle)[0].state == SUCCEEDED


def test_a_post_answered_503_is_not_resent_but_a_get_is_retried(
    server: MetronomeTestServer, backend: MetronomeBackend
) -> None:
    """urllib3's Retry resends only idempotent methods after a 5xx: a POST may have started a run."""
    backend.find("ml-any-0000000030")  # logged in
    server.reset_log()
    server.fail_next(1, status=503)
    body = backend.job_definition(shell_spec("ml-post-0000000030", "exit 0"))
    with pytest.raises(BackendError, match=r"POST /v1/jobs failed after 1 attempt\(s\): HTTP 503"):
        backend.client.request("POST", "/v1/jobs", json=body)
    assert [(r.method, r.path) for r in server.requests] == [("POST", "/v1/jobs")]
    server.reset_log()
    server.fail_next(2, status=503)
    assert backend.client.request("GET", "/v1/jobs/ml-post-0000000030").status_code == 404
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v1/jobs/ml-post-0000000030")] * 3


def test_a_post_whose_answer_is_lost_is_not_resent(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    """A dropped connection after the request was read is a read error: the POST may have run."""
    backend.find("ml-any-0000000031")
    server.reset_log()
    server.drop_next(1)
    body = backend.job_definition(shell_spec("ml-lost-0000000031", "exit 0"))
    with pytest.raises(BackendError, match="POST /v1/jobs failed after 1 attempt"):
        backend.client.request("POST", "/v1/jobs", json=body)
    assert [(r.method, r.path) for r in server.requests] == [("POST", "/v1/jobs")]
    server.drop_next(1)
    assert backend.client.request("PUT", "/v1/jobs/ml-lost-0000000031", json=body).status_code == 404
    assert [r.method for r in server.requests] == ["POST", "PUT", "PUT"]  # PUT is idempotent: retried


def test_a_refused_connection_is_retried_for_every_method() -> None:
    """Nothing was sent, so even the login POST is retried (retries=2: three attempts)."""
    backend = make_backend("http://127.0.0.1:9", retries=2)
    with pytest.raises(BackendError, match=r"POST /acs/api/v1/auth/login failed after 3 attempt\(s\)"):
        backend.find("ml-any-0000000032")


def test_exhausted_retries_raise_backend_error_without_secrets(
    server: MetronomeTestServer, backend: MetronomeBackend
) -> None:
    backend.find("ml-any-0000000013")
    server.fail_next(100, status=503)
    with pytest.raises(BackendError) as info:
        backend.find("ml-any-0000000013")
    text = str(info.value)
    assert "GET /v1/jobs/ml-any-0000000013" in text
    assert "503" in text
    assert "4 attempt" in text
    assert PASSWORD not in text
    assert "token=" not in text


def test_unreachable_scheduler() -> None:
    backend = make_backend("http://127.0.0.1:9", retries=1)
    with pytest.raises(BackendError, match=r"POST /acs/api/v1/auth/login failed after 2 attempt\(s\): ConnectionError"):
        backend.find("ml-any-0000000014")


def test_invalid_job_body_is_a_validation_error(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    spec = shell_spec("ml-invalid-0000000015", "exit 0", resources=ResourceSpec.of(memory="16Mi"))
    with pytest.raises(
        MetronomeValidationError, match=r"HTTP 422.*Object is not valid: /run/mem: is less than 32"
    ) as info:
        backend.submit(spec)
    assert isinstance(info.value, BackendError)
    assert isinstance(info.value, InvalidSpecError)
    assert server.job_ids() == []
    with pytest.raises(InvalidSpecError, match="not a valid Metronome job id"):
        backend.submit(shell_spec("ML_Bad_Key", "exit 0"))
    with pytest.raises(InvalidSpecError, match="network='none'"):
        backend.submit(shell_spec("ml-net-0000000015", "exit 0", network="none"))


def test_raw_api_validation_matches_metronome(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    backend.find("ml-any-0000000016")  # log in
    response = backend.client.request(
        "POST", "/v1/jobs", json={"id": "Bad_Id", "run": {"cpus": -1, "cmd": "x", "args": ["y"]}}
    )
    assert response.status_code == 422
    data = response.json()
    assert data["message"] == "Object is not valid"
    paths = {d["path"] for d in data["details"]}
    assert {"/id", "/run/cpus", "/run/mem", "/run/disk", "/run"} <= paths


# --------------------------------------------------------------------------------------- cancel


def test_cancel_stops_the_process_and_removes_the_job(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    handle = backend.submit(shell_spec("ml-cancel-0000000017", "sleep 60"))
    wait_state(backend, handle, RUNNING)
    job_id, run_id = handle.job_id.split("/")
    process = server.process(job_id, run_id)
    assert process is not None
    assert process.poll() is None
    started = time.monotonic()
    backend.cancel(handle)
    assert time.monotonic() - started < 5
    assert process.poll() is not None
    assert live_group_members(process.pid) == []
    assert job_id not in server.job_ids()
    assert backend.status(handle).state == GONE
    assert backend.find(handle.key) is None
    backend.cancel(handle)  # idempotent
    backend.cancel(JobHandle("metronome", "ml-never-0000000000", "ml-never-0000000000/20240101000000ABCDE"))
    stops = [r for r in server.requests if r.path.endswith("/actions/stop")]
    assert len(stops) == 3
    deletes = [r.path for r in server.requests if r.method == "DELETE"]
    assert deletes[0] == f"/v1/jobs/{job_id}?stopCurrentJobRuns=true"


def test_cancel_a_finished_run_removes_the_job(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    handle = backend.submit(shell_spec("ml-cancel-done-0000000018", "exit 0"))
    wait_finished(backend, handle)
    backend.cancel(handle)
    assert server.job_ids() == []


def test_cancel_raises_only_when_unreachable(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    handle = backend.submit(shell_spec("ml-cancel-down-0000000019", "sleep 30"))
    server.fail_next(100, status=503)
    with pytest.raises(BackendError, match="actions/stop"):
        backend.cancel(handle)
    server._faults.clear()
    backend.cancel(handle)
    assert server.job_ids() == []


def test_delete_with_active_runs_needs_stop_flag(server: MetronomeTestServer, backend: MetronomeBackend) -> None:
    handle = backend.submit(shell_spec("ml-delete-0000000020", "sleep 30"))
    response = backend.client.request("DELETE", f"/v1/jobs/{handle.key}")
    assert response.status_code == 409
    assert "stopCurrentJobRuns=true" in response.json()["message"]
    backend.cancel(handle)


# ------------------------------------------------------------------------------------ secrets


def test_password_and_secrets_stay_out_of_requests_and_logs(
    server: MetronomeTestServer, backend: MetronomeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    handle = backend.submit(shell_spec("ml-secret-0000000021", "exit 0", secret_env={"API_KEY": SECRET_VALUE}))
    server.expire_tokens()
    wait_finished(backend, handle)
    backend.cancel(handle)
    logins = [r for r in server.requests if r.path == LOGIN_PATH]
    assert len(logins) == 2
    assert all(r.method == "POST" and PASSWORD in r.body for r in logins)
    others = [r for r in server.requests if r.path != LOGIN_PATH]
    assert others
    assert all(PASSWORD not in r.path + r.body for r in others)
    assert all(not r.body for r in others if r.method in ("GET", "DELETE"))
    assert PASSWORD not in caplog.text
    assert SECRET_VALUE not in caplog.text
    assert SECRET_VALUE not in json.dumps(handle.to_dict())


def test_dcos_secret_store_reference_resolved_by_metronome() -> None:
    with MetronomeTestServer(password=PASSWORD, secrets={"/ml/api-key": SECRET_VALUE}) as srv:
        backend = make_backend(srv.url)
        script = f'test "$API_KEY" = "{SECRET_VALUE}"'
        handle = backend.submit(
            shell_spec("ml-store-0000000022", script, secret_env={"API_KEY": "dcos-secret:/ml/api-key"})
        )
        assert wait_finished(backend, handle)[0].state == SUCCEEDED
        run = bodies(srv, "POST", "/v1/jobs")[0]["run"]
        assert run["env"]["API_KEY"] == {"secret": "secret0"}
        assert run["secrets"] == {"secret0": {"source": "/ml/api-key"}}
        backend.close()


def test_config_repr_hides_secrets() -> None:
    config = MetronomeConfig(
        url="https://dcos.example.com/service/metronome", uid="admin", password=PASSWORD, token="tok-123"
    )
    text = repr(config)
    assert PASSWORD not in text
    assert "tok-123" not in text
    assert "password='***'" in text
    assert "uid='admin'" in text
    assert config.verify is True
    assert config.iam_login_url() == "https://dcos.example.com/acs/api/v1/auth/login"
    assert str(config) == text
