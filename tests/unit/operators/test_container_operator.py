"""ContainerJobOperator: parse-time validation, retry policy, outcome mapping, cleanup, deferral."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskDeferred

from airflow_ml_provider.backends.base import (
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    JobSpec,
    JobStatus,
    job_key,
    spec_digest,
)
from airflow_ml_provider.exceptions import (
    ConnectionConfigError,
    ContainerJobFailed,
    ForeignJobError,
    InvalidSpecError,
    JobResultError,
    MlProviderError,
)
from airflow_ml_provider.hooks.container import ContainerJobHook
from airflow_ml_provider.operators.container import ContainerJobOperator
from airflow_ml_provider.operators.container_args import parse_mounts
from airflow_ml_provider.triggers.container import ContainerJobTrigger
from tests.unit.conftest import FakeBackend

SECRET = "s3cr3t-Pa55word"
NAMESPACE = "staging"


class FakeTI:
    dag_id = "markdown_pricing"
    task_id = "train"
    run_id = "scheduled__2026-11-23T08:00:00+00:00"
    map_index = 3

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


class FakeHook:
    namespace = NAMESPACE

    def resolve_secret_env(self, refs: dict[str, Any]) -> dict[str, str]:
        return {name: SECRET for name in refs}

    def job_namespace(self) -> str:
        return self.namespace


def make(backend: FakeBackend | None = None, **kwargs: Any) -> tuple[ContainerJobOperator, FakeBackend]:
    kwargs.setdefault("task_id", "train")
    kwargs.setdefault("image", "airflow-ml-provider/train:latest")
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("deferrable", False)
    op = ContainerJobOperator(**kwargs)
    fake = backend or FakeBackend()
    op.__dict__["backend"] = fake
    op.__dict__["hook"] = FakeHook()
    return op, fake


def context() -> Any:
    return {"ti": FakeTI()}


# -- parse time ------------------------------------------------------------------------------


def test_template_fields_are_a_tuple_without_secrets() -> None:
    assert isinstance(ContainerJobOperator.template_fields, tuple)
    assert "secret_env" not in ContainerJobOperator.template_fields
    assert "secret_refs" not in ContainerJobOperator.template_fields


@pytest.mark.parametrize(
    ("resources", "needle"),
    [
        ({"memory": "4g"}, "memory"),
        ({"cpus": -1}, "cpus"),
        ({"cpus": 0}, "cpus"),
        ({"memory": "lots"}, "memory"),
        ({"gpus": 1.5}, "gpus"),
        ({"disk": "10Xi"}, "disk"),
        ({"cpu": 2}, "Unknown resource field"),
    ],
)
def test_invalid_resources_fail_at_parse_time_naming_the_field(resources: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidSpecError, match=needle) as err:
        ContainerJobOperator(task_id="t", image="i", resources=resources)
    assert "e.g." in str(err.value)


def test_secret_env_must_be_references_and_errors_do_not_echo_values() -> None:
    with pytest.raises(InvalidSpecError) as err:
        ContainerJobOperator(task_id="t", image="i", secret_env={"ERP_PASSWORD": SECRET})
    assert SECRET not in str(err.value)
    assert "conn://" in str(err.value)
    op = ContainerJobOperator(
        task_id="t", image="i", secret_env={"A": "conn://erp/password", "B": "var://k", "C": "conn://erp/extra/key"}
    )
    assert [str(r) for r in op.secret_refs.values()] == ["conn://erp/password", "var://k", "conn://erp/extra/key"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"command": "python -m job"},
        {"skip_on_exit_code": 0},
        {"skip_on_exit_code": [300]},
        {"result_path": "result.json"},
        {"mounts": ["/a"]},
        {"mounts": [{"source": "/a", "target": "rel"}]},
        {"environment": {"A": "1"}, "secret_env": {"A": "var://a"}},
        {"secret_env": {"1BAD": "var://a"}},
    ],
)
def test_other_bad_arguments_fail_at_parse_time(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidSpecError):
        ContainerJobOperator(task_id="t", image="i", **kwargs)


def test_mounts_accept_strings_and_dicts() -> None:
    op = ContainerJobOperator(task_id="t", image="i", mounts=["/lake:/data:ro", {"source": "/out", "target": "/out"}])
    assert [tuple(m) for m in parse_mounts(op.mounts)] == [("/lake", "/data", True), ("/out", "/out", False)]
    templated = ContainerJobOperator(task_id="t", image="i", mounts=["{{ params.root }}:{{ params.root }}"])
    assert templated.mounts == ["{{ params.root }}:{{ params.root }}"]


def test_constructor_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def refuse(*a: Any, **k: Any) -> None:
        raise AssertionError("network I/O in the constructor")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    ContainerJobOperator(task_id="t", image="i", conn_id="ml_swarm_somewhere", secret_env={"A": "var://a"})


# -- outcomes --------------------------------------------------------------------------------


def test_success_streams_lines_returns_result_and_removes_the_job(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeBackend()
    fake.script = [JobStatus(PENDING), JobStatus(RUNNING), JobStatus(SUCCEEDED, 0)]
    fake.lines = ["first line", "last line"]
    fake.result_value = {"rows": 10}
    op, _ = make(fake, environment={"WEEK": "2026-11-23"}, secret_env={"ERP_PASSWORD": "conn://erp/password"})
    ctx = context()
    assert op.execute(ctx) == {"rows": 10}
    spec = fake.submitted[0]
    assert spec.key == job_key("markdown_pricing", "train", FakeTI.run_id, 3, namespace=NAMESPACE)
    assert spec.key.startswith("ml-staging-markdown-pricing-train-3-")
    assert spec.namespace == NAMESPACE
    assert spec.all_labels()["airflow-ml-provider.namespace"] == NAMESPACE
    assert spec.secret_env == {"ERP_PASSWORD": SECRET}
    assert spec.env == {"WEEK": "2026-11-23"}
    assert fake.cancelled == [spec.key]
    assert ctx["ti"].pushed["job"]["key"] == spec.key
    assert ctx["ti"].pushed["job"]["namespace"] == NAMESPACE
    assert SECRET not in str(ctx["ti"].pushed)
    out = capsys.readouterr().out
    assert "first line" in out
    assert "last line" in out
    assert SECRET not in out


def test_failure_carries_exit_code_and_last_lines_with_secrets_redacted() -> None:
    fake = FakeBackend()
    fake.script = [JobStatus(RUNNING), JobStatus(FAILED, 3, message="")]
    fake.lines = [f"line {i}" for i in range(30)] + [f"connecting with {SECRET}"]
    op, _ = make(fake, secret_env={"ERP_PASSWORD": "conn://erp/password"}, tail_lines=5)
    with pytest.raises(ContainerJobFailed) as err:
        op.execute(context())
    text = str(err.value)
    assert "exit code 3" in text
    assert "line 29" in text
    assert "line 25" not in text
    assert SECRET not in text
    assert "connecting with ***" in text
    assert err.value.exit_code == 3
    assert len(fake.cancelled) == 1


def test_oom_is_reported_as_such() -> None:
    fake = FakeBackend()
    fake.script = [JobStatus(RUNNING), JobStatus(FAILED, 137, oom_killed=True)]
    op, _ = make(fake, resources={"memory": "64Mi"})
    with pytest.raises(ContainerJobFailed, match="memory limit") as err:
        op.execute(context())
    assert err.value.oom_killed
    assert "OOM" in str(err.value)
    assert "64 MiB" in str(err.value)


def test_skip_on_exit_code_skips_and_cleans_up() -> None:
    fake = FakeBackend()
    fake.script = [JobStatus(RUNNING), JobStatus(FAILED, 99)]
    op, _ = make(fake, skip_on_exit_code=[99])
    with pytest.raises(AirflowSkipException):
        op.execute(context())
    assert len(fake.cancelled) == 1


def test_startup_timeout_fails_with_a_hint_and_removes_the_job() -> None:
    fake = FakeBackend()
    fake.script = [JobStatus(PENDING, message="no suitable node")]
    op, _ = make(fake, startup_timeout=0.05)
    with pytest.raises(ContainerJobFailed, match=r"still pending.*no suitable node"):
        op.execute(context())
    assert len(fake.cancelled) == 1


def test_an_interrupt_while_waiting_removes_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(handle: Any) -> Any:
        raise KeyboardInterrupt

    fake = FakeBackend()
    monkeypatch.setattr(fake, "follow", boom)
    fake.script = [JobStatus(RUNNING)]
    op, _ = make(fake)
    with pytest.raises(KeyboardInterrupt):
        op.execute(context())
    assert len(fake.cancelled) == 1


def test_on_kill_is_idempotent() -> None:
    fake = FakeBackend()
    fake.script = [JobStatus(RUNNING)]
    op, _ = make(fake)
    handle = fake.submit(JobSpec(key="k", image="i"))
    op._handle = handle
    op.on_kill()
    op.on_kill()
    assert fake.cancelled == ["k"]


# -- retries ---------------------------------------------------------------------------------


def _previous(
    fake: FakeBackend, op: ContainerJobOperator, states: list[JobStatus], same: bool = True, namespace: str = NAMESPACE
) -> str:
    spec = op.build_spec(op._job_key(context(), NAMESPACE), namespace)
    if not same:
        spec = spec._replace(spec_hash="something-else")
    fake.script = states
    fake.submit(spec)
    fake.submitted.clear()
    return spec.key


def test_retry_reattaches_to_the_running_job_of_the_previous_try() -> None:
    fake = FakeBackend()
    op, _ = make(fake)
    key = _previous(fake, op, [JobStatus(RUNNING), JobStatus(RUNNING), JobStatus(SUCCEEDED, 0)])
    fake.jobs[key].result = {"from": "previous try"}
    assert op.execute(context()) == {"from": "previous try"}
    assert fake.submitted == []


def test_retry_takes_the_result_of_a_job_that_already_succeeded() -> None:
    fake = FakeBackend()
    op, _ = make(fake)
    key = _previous(fake, op, [JobStatus(SUCCEEDED, 0)])
    fake.jobs[key].result = {"done": True}
    assert op.execute(context()) == {"done": True}
    assert fake.submitted == []
    assert fake.cancelled == [key]


def test_retry_replaces_a_failed_job() -> None:
    fake = FakeBackend()
    op, _ = make(fake)
    key = _previous(fake, op, [JobStatus(FAILED, 1)])
    fake.script = [JobStatus(RUNNING), JobStatus(SUCCEEDED, 0)]
    op.execute(context())
    assert len(fake.submitted) == 1
    assert fake.cancelled == [key, key]


def test_retry_replaces_a_running_job_whose_definition_changed() -> None:
    fake = FakeBackend()
    op, _ = make(fake)
    _previous(fake, op, [JobStatus(RUNNING)], same=False)
    fake.script = [JobStatus(RUNNING), JobStatus(SUCCEEDED, 0)]
    op.execute(context())
    assert len(fake.submitted) == 1


@pytest.mark.parametrize("state", [JobStatus(RUNNING), JobStatus(SUCCEEDED, 0), JobStatus(FAILED, 1)])
def test_a_job_of_another_namespace_under_our_key_is_refused_and_left_alone(state: JobStatus) -> None:
    """Whatever its state or definition: never re-attached, adopted or removed; no retry either."""
    fake = FakeBackend()
    op, _ = make(fake, retries=3)
    key = _previous(fake, op, [state], namespace="production")
    with pytest.raises(ForeignJobError) as err:
        op.execute(context())
    assert isinstance(err.value, AirflowFailException)  # permanent: the task fails without retries
    text = str(err.value)
    assert f"fake job {key}" in text
    assert "'production'" in text
    assert f"'{NAMESPACE}'" in text
    assert "left it running" in text
    assert "extra 'namespace'" in text
    assert "ml_provider_namespace" in text
    assert not text.endswith("..")
    assert fake.cancelled == []
    assert fake.submitted == []
    assert key in fake.jobs


def test_a_job_without_a_namespace_label_keeps_the_retry_policy() -> None:
    """Jobs started by a release without namespaces: re-attached or replaced as before."""
    fake = FakeBackend()
    op, _ = make(fake)
    key = _previous(fake, op, [JobStatus(RUNNING), JobStatus(SUCCEEDED, 0)], namespace="")
    fake.jobs[key].result = {"from": "older release"}
    assert op.execute(context()) == {"from": "older release"}
    assert fake.submitted == []
    fake = FakeBackend()
    op, _ = make(fake)
    key = _previous(fake, op, [JobStatus(FAILED, 1)], namespace="")
    fake.script = [JobStatus(RUNNING), JobStatus(SUCCEEDED, 0)]
    op.execute(context())
    assert [spec.namespace for spec in fake.submitted] == [NAMESPACE]
    assert fake.cancelled == [key, key]


def test_installations_with_different_namespaces_get_different_jobs() -> None:
    """The same task instance in two installations on one engine: two keys, two jobs, none removed."""
    fake = FakeBackend()
    fake.script = [JobStatus(RUNNING)]
    staging, _ = make(fake)
    production, _ = make(fake)
    production.__dict__["hook"].namespace = "production"
    keys = [op._job_key(context(), op.hook.job_namespace()) for op in (staging, production)]
    assert keys[0] != keys[1]
    for op in (staging, production):
        namespace = op.hook.job_namespace()
        handle, adopted = op._attach_or_submit(op.build_spec(op._job_key(context(), namespace), namespace))
        assert (handle.namespace, adopted) == (namespace, None)
    assert sorted(fake.jobs) == sorted(keys)
    assert fake.cancelled == []


def test_the_namespace_is_read_at_execute_time_not_in_the_constructor(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any) -> str:
        raise AssertionError("namespace read at parse time")

    monkeypatch.setattr(ContainerJobHook, "job_namespace", refuse)
    op = ContainerJobOperator(task_id="t", image="i")
    monkeypatch.undo()
    assert op.conn_id == "ml_docker_default"


def test_spec_digest_ignores_secret_values() -> None:
    a = JobSpec(key="k", image="i", secret_env={"P": "one"})
    b = JobSpec(key="k", image="i", secret_env={"P": "two"})
    c = JobSpec(key="k", image="i", secret_env={"Q": "one"})
    assert spec_digest(a) == spec_digest(b) != spec_digest(c)
    assert "one" not in spec_digest(a)


# -- deferral --------------------------------------------------------------------------------


def test_deferrable_submits_then_defers_with_the_handle_and_resumes() -> None:
    fake = FakeBackend()
    fake.script = [JobStatus(PENDING), JobStatus(RUNNING)]
    op, _ = make(fake, deferrable=True, secret_env={"P": "var://p"})
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, ContainerJobTrigger)
    _path, kwargs = trigger.serialize()
    assert SECRET not in repr(kwargs)
    assert kwargs["secret_env"] == {"P": "var://p"}  # references, resolved by the trigger itself
    assert kwargs["handle"]["key"] == fake.submitted[0].key
    assert fake.cancelled == []  # deferring must not remove the job

    fake.jobs[kwargs["handle"]["key"]].result = {"ok": 1}
    event = {"status": "finished", "state": SUCCEEDED, "exit_code": 0, "oom_killed": False, "handle": kwargs["handle"]}
    assert op.execute_complete(context(), event) == {"ok": 1}
    assert len(fake.cancelled) == 1


@pytest.mark.parametrize("event", [None, {}, {"status": "finished"}, "finished"])
def test_execute_complete_rejects_malformed_events(event: Any) -> None:
    op, _ = make()
    with pytest.raises(MlProviderError, match="malformed"):
        op.execute_complete(context(), event)


def test_execute_complete_maps_failure_and_startup_timeout() -> None:
    fake = FakeBackend()
    op, _ = make(fake)
    handle = {"backend": "fake", "key": "k", "job_id": "id-k"}
    with pytest.raises(ContainerJobFailed, match="exit code 2"):
        op.execute_complete(
            context(), {"status": "finished", "state": FAILED, "exit_code": 2, "handle": handle, "tail": ["x"]}
        )
    op, _ = make(FakeBackend())
    with pytest.raises(ContainerJobFailed, match="pending"):
        op.execute_complete(
            context(), {"status": "startup_timeout", "message": "still pending after 9 s", "handle": handle}
        )


def test_execute_complete_removes_the_job_when_its_secrets_cannot_be_read() -> None:
    fake = FakeBackend()
    handle = fake.submit(JobSpec(key="k", image="i"))
    op, _ = make(fake, secret_env={"P": "var://gone"})

    class NoSecrets:
        def resolve_secret_env(self, refs: dict[str, Any]) -> dict[str, str]:
            raise MlProviderError("secret_env['P']: could not read var://gone")

    op.__dict__["hook"] = NoSecrets()
    event = {"status": "error", "message": "could not read the job's secrets", "handle": handle.to_dict()}
    with pytest.raises(MlProviderError, match="var://gone"):
        op.execute_complete(context(), event)
    assert fake.cancelled == ["k"]


# -- defaults and permanent errors -----------------------------------------------------------


def test_the_default_connection_is_the_hooks() -> None:
    assert ContainerJobOperator(task_id="t", image="i").conn_id == ContainerJobHook.default_conn_name
    assert ContainerJobOperator(task_id="t", image="i").hook.conn_id == "ml_docker_default"


@pytest.mark.parametrize(
    "error", [ConnectionConfigError("token rejected"), JobResultError("result.json is not valid JSON")]
)
def test_permanent_errors_reach_airflow_unchanged_and_the_job_is_removed(
    error: MlProviderError, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never re-wrapped into a retryable type: AirflowFailException fails the task without retries."""
    fake = FakeBackend()
    fake.script = [JobStatus(SUCCEEDED, 0)]

    def broken(handle: Any, path: str) -> Any:
        raise error

    monkeypatch.setattr(fake, "result", broken)
    op, _ = make(fake)
    with pytest.raises(type(error)) as err:
        op.execute(context())
    assert err.value is error
    assert isinstance(err.value, AirflowFailException)
    assert len(fake.cancelled) == 1


def test_a_permanent_error_in_the_trigger_fails_the_resumed_task_without_retries() -> None:
    fake = FakeBackend()
    handle = fake.submit(JobSpec(key="k", image="i"))
    op, _ = make(fake)
    event = {
        "status": "error",
        "message": "ConnectionConfigError: the configured token was rejected",
        "error_type": "ConnectionConfigError",
        "handle": handle.to_dict(),
    }
    with pytest.raises(ConnectionConfigError, match="token was rejected") as err:
        op.execute_complete(context(), event)
    assert isinstance(err.value, AirflowFailException)
    assert fake.cancelled == ["k"]
    # a transient error (or an unknown type name) stays retryable
    fake.submit(JobSpec(key="k", image="i"))
    op, _ = make(fake)
    with pytest.raises(ContainerJobFailed, match="engine down") as transient:
        op.execute_complete(context(), {**event, "message": "engine down", "error_type": "ConnectionError"})
    assert not isinstance(transient.value, AirflowFailException)
