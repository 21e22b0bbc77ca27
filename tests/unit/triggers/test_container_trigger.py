"""ContainerJobTrigger: serialization, one event per wait, startup timeout, errors, redaction, on_kill."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_ml_provider.backends.base import FAILED, PENDING, RUNNING, JobSpec, JobStatus
from airflow_ml_provider.exceptions import ConnectionConfigError
from airflow_ml_provider.triggers.container import ContainerJobTrigger
from tests.unit.conftest import FakeBackend

SECRET = "s3cr3t-Pa55word"


def _run_trigger(trigger: ContainerJobTrigger, fake: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    async def backend(self: Any) -> FakeBackend:
        return fake

    monkeypatch.setattr(ContainerJobTrigger, "_backend", backend)

    async def collect() -> list[Any]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def _status_fails(fake: FakeBackend, error: Exception, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make every ``status`` call of ``fake`` raise ``error``; returns the list of calls made."""
    calls: list[Any] = []

    def failing(handle: Any) -> JobStatus:
        calls.append(handle)
        raise error

    monkeypatch.setattr(fake, "status", failing)
    return calls


def test_trigger_serialize_round_trips() -> None:
    trigger = ContainerJobTrigger(
        conn_id="c", handle={"backend": "docker", "key": "k", "job_id": "x", "spec_hash": "h"}, log_cursor=[5, 1]
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_ml_provider.triggers.container.ContainerJobTrigger"
    again = ContainerJobTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)


def test_trigger_yields_one_finished_event_with_the_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeBackend()
    fake.script = [JobStatus(RUNNING), JobStatus(RUNNING), JobStatus(FAILED, 4)]
    fake.lines = [f"l{i}" for i in range(5)]
    handle = fake.submit(JobSpec(key="k", image="i"))
    trigger = ContainerJobTrigger(conn_id="c", handle=handle.to_dict(), poll_interval=0.01, tail_lines=3)
    events = _run_trigger(trigger, fake, monkeypatch)
    assert len(events) == 1
    assert events[0]["status"] == "finished"
    assert events[0]["exit_code"] == 4
    assert events[0]["tail"] == ["l2", "l3", "l4"]


def test_trigger_startup_timeout_and_error_events(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeBackend()
    fake.script = [JobStatus(PENDING, message="no node")]
    handle = fake.submit(JobSpec(key="k", image="i"))
    trigger = ContainerJobTrigger(conn_id="c", handle=handle.to_dict(), poll_interval=0.01, startup_timeout=0.03)
    assert _run_trigger(trigger, fake, monkeypatch)[0]["status"] == "startup_timeout"

    broken = FakeBackend()
    calls = _status_fails(broken, ConnectionError("engine down"), monkeypatch)
    trigger = ContainerJobTrigger(conn_id="c", handle=handle.to_dict(), poll_interval=0.01, max_errors=3)
    events = _run_trigger(trigger, broken, monkeypatch)
    assert events == [
        {
            "status": "error",
            "message": "ConnectionError: engine down",
            "error_type": "ConnectionError",
            "handle": handle.to_dict(),
            "tail": [],
        }
    ]
    assert len(calls) == 3  # a transient error is tolerated max_errors - 1 times


def test_trigger_gives_up_at_once_on_a_permanent_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rejected token or a malformed connection cannot heal: no max_errors rounds, the type travels."""
    fake = FakeBackend()
    handle = fake.submit(JobSpec(key="k", image="i"))
    calls = _status_fails(fake, ConnectionConfigError("Metronome: the configured token was rejected"), monkeypatch)
    trigger = ContainerJobTrigger(conn_id="c", handle=handle.to_dict(), poll_interval=0.01, max_errors=5)
    [event] = _run_trigger(trigger, fake, monkeypatch)
    assert len(calls) == 1
    assert event["status"] == "error"
    assert event["error_type"] == "ConnectionConfigError"


def test_trigger_redacts_secrets_in_relayed_lines_and_in_the_event(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The trigger gets references only and resolves them itself, in the triggerer."""
    monkeypatch.setenv("AIRFLOW_VAR_PRICING_TOKEN", SECRET)
    fake = FakeBackend()
    fake.script = [JobStatus(RUNNING), JobStatus(FAILED, 1, message=f"died holding {SECRET}")]
    fake.lines = [f"token={SECRET}", f"repr={SECRET!r}", "plain line"]
    handle = fake.submit(JobSpec(key="k", image="i"))
    trigger = ContainerJobTrigger(
        conn_id="c", handle=handle.to_dict(), secret_env={"TOKEN": "var://pricing_token"}, poll_interval=0.01
    )
    _path, kwargs = trigger.serialize()
    assert kwargs["secret_env"] == {"TOKEN": "var://pricing_token"}
    assert SECRET not in repr(kwargs)
    events = _run_trigger(trigger, fake, monkeypatch)
    assert events[0]["tail"] == ["token=***", "repr='***'", "plain line"]
    assert events[0]["message"] == "died holding ***"
    assert SECRET not in repr(events)
    out = "".join(capsys.readouterr())
    assert "token=***" in out
    assert SECRET not in out


def test_trigger_that_cannot_resolve_its_secrets_relays_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_VAR_GONE", raising=False)
    fake = FakeBackend()
    fake.lines = ["would be relayed"]
    handle = fake.submit(JobSpec(key="k", image="i"))
    trigger = ContainerJobTrigger(
        conn_id="c", handle=handle.to_dict(), secret_env={"TOKEN": "var://gone"}, poll_interval=0.01
    )
    events = _run_trigger(trigger, fake, monkeypatch)
    assert len(events) == 1
    assert events[0]["status"] == "error"
    assert "var://gone" in events[0]["message"]
    assert "tail" not in events[0]
    assert fake.cancelled == []  # the resumed task fails and removes the job (next test)


def test_trigger_on_kill_cancels_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeBackend()
    handle = fake.submit(JobSpec(key="k", image="i"))
    trigger = ContainerJobTrigger(conn_id="c", handle=handle.to_dict())

    async def backend(self: Any) -> FakeBackend:
        return fake

    monkeypatch.setattr(ContainerJobTrigger, "_backend", backend)
    asyncio.run(trigger.on_kill())
    asyncio.run(trigger.on_kill())
    assert fake.cancelled == ["k", "k"]
    assert fake.jobs == {}


def test_a_job_that_prints_nothing_costs_no_log_line_per_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeBackend()
    fake.script = [JobStatus(RUNNING)] * 50 + [JobStatus(FAILED, 1)]
    fake.lines = []
    handle = fake.submit(JobSpec(key="k", image="i"))
    trigger = ContainerJobTrigger(conn_id="c", handle=handle.to_dict(), poll_interval=0.001)
    lines: list[tuple[str, tuple[Any, ...]]] = []

    class Log:
        def __getattr__(self, level: str) -> Any:
            return lambda msg, *args, **kwargs: lines.append((level, (msg, *args)))

    trigger._log = Log()  # LoggingMixin keeps its logger here
    polls: list[JobStatus] = []
    status = fake.status

    def counted(handle: Any) -> JobStatus:
        polls.append(status(handle))
        return polls[-1]

    monkeypatch.setattr(fake, "status", counted)
    events = _run_trigger(trigger, fake, monkeypatch)
    assert [e["status"] for e in events] == ["finished"]
    assert len(polls) == 51
    assert lines == []
