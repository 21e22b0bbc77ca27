"""Shared unit-test fakes: an in-memory container backend for the operator and trigger tests.

The real backends are tested against real dockerd, a real Swarm and the Metronome test server in
tests/integration; this one only scripts job states so the operator's and trigger's own logic
(retry policy, outcome mapping, cleanup, redaction) can be checked in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_ml_provider.backends.base import (
    GONE,
    PENDING,
    ContainerBackend,
    JobExistsError,
    JobHandle,
    JobSpec,
    JobStatus,
)


class FakeJob:
    def __init__(self, spec: JobSpec, states: list[JobStatus], lines: list[str], result: Any) -> None:
        self.spec = spec
        self.states = list(states)
        self.lines = list(lines)
        self.result = result
        self.cancelled = False

    def current(self) -> JobStatus:
        return self.states[0]

    def advance(self) -> None:
        if len(self.states) > 1:
            self.states.pop(0)


class FakeBackend(ContainerBackend):
    """Each ``status`` call advances the scripted states of the job by one step."""

    name = "fake"

    def __init__(self) -> None:
        self.jobs: dict[str, FakeJob] = {}
        self.script: list[JobStatus] = [JobStatus(PENDING)]
        self.lines: list[str] = []
        self.result_value: Any = None
        self.submitted: list[JobSpec] = []
        self.cancelled: list[str] = []
        self.closed = 0

    def find(self, key: str) -> JobHandle | None:
        job = self.jobs.get(key)
        if job is None:
            return None
        return JobHandle(self.name, key, f"id-{key}", job.spec.spec_hash, job.spec.namespace)

    def submit(self, spec: JobSpec) -> JobHandle:
        if spec.key in self.jobs:
            raise JobExistsError(spec.key)
        self.jobs[spec.key] = FakeJob(spec, self.script, self.lines, self.result_value)
        self.submitted.append(spec)
        return JobHandle(self.name, spec.key, f"id-{spec.key}", spec.spec_hash, spec.namespace)

    def status(self, handle: JobHandle) -> JobStatus:
        job = self.jobs.get(handle.key)
        if job is None:
            return JobStatus(GONE)
        status = job.current()
        job.advance()
        return status

    def logs(self, handle: JobHandle, cursor: Any = None) -> tuple[list[str], Any]:
        job = self.jobs.get(handle.key)
        start = cursor or 0
        lines = job.lines[start:] if job else []
        return lines, start + len(lines)

    def follow(self, handle: JobHandle) -> Iterator[str]:
        job = self.jobs.get(handle.key)
        return iter(job.lines if job else [])

    def result(self, handle: JobHandle, path: str) -> Any:
        job = self.jobs[handle.key]
        return job.result

    def cancel(self, handle: JobHandle) -> None:
        self.cancelled.append(handle.key)
        self.jobs.pop(handle.key, None)

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def fake_backend() -> FakeBackend:
    """A fresh :class:`FakeBackend` whose jobs stay pending until a test scripts their states."""
    return FakeBackend()
