"""Job bookkeeping shared by the real Docker and Swarm backend tests: unique keys, waits, cleanup.

Every spec carries the installation namespace :data:`NAMESPACE` unless a test gives another, so the
tests that compare ``find(key)`` with the submitted handle also check that the backend reads the
namespace label back.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from airflow_ml_provider.backends.base import (
    PENDING,
    RUNNING,
    ContainerBackend,
    JobHandle,
    JobSpec,
    JobStatus,
    spec_digest,
)

#: Prepares the result file's directory; the backend sets ML_RESULT_PATH to the spec's result_path.
RESULT = (
    "import json, os, pathlib\n"
    "out = pathlib.Path(os.environ['ML_RESULT_PATH'])\n"
    "out.parent.mkdir(parents=True, exist_ok=True)\n"
)
#: The installation namespace of the specs made by :meth:`TrackedJobs.spec`.
NAMESPACE = "itest-backend"


class TrackedJobs:
    """Submits jobs with unique keys and removes every one of them afterwards.

    Subclasses say how to remove what a key may have left behind besides the submitted handles
    (a job whose submit failed, a foreign object a test made under our name).

    :param backend: the backend under test.
    :param image: the default image of :meth:`spec`.
    :param poll: seconds between status polls in the waits.
    """

    def __init__(self, backend: ContainerBackend, image: str, poll: float = 0.05) -> None:
        self.backend = backend
        self.image = image
        self.poll = poll
        self.keys: list[str] = []
        self.handles: list[JobHandle] = []

    def key(self) -> str:
        key = f"ml-test-{uuid.uuid4().hex[:16]}"
        self.keys.append(key)
        return key

    def spec(self, script: str | None = None, **kwargs: Any) -> JobSpec:
        """A spec with a fresh key, the default image, :data:`NAMESPACE` and ``python3 -c script`` as its command."""
        kwargs.setdefault("key", self.key())
        kwargs.setdefault("image", self.image)
        kwargs.setdefault("namespace", NAMESPACE)
        if script is not None:
            kwargs["command"] = ["python3", "-c", script]
        spec = JobSpec(**kwargs)
        return spec._replace(spec_hash=spec.spec_hash or spec_digest(spec))

    def submit(self, spec: JobSpec) -> JobHandle:
        handle = self.backend.submit(spec)
        self.handles.append(handle)
        return handle

    def run(self, script: str, timeout: float = 60, **kwargs: Any) -> tuple[JobHandle, JobStatus]:
        handle = self.submit(self.spec(script, **kwargs))
        return handle, self.wait(handle, timeout)

    def wait(self, handle: JobHandle, timeout: float = 60) -> JobStatus:
        """The terminal status; a job seen in a state other than pending/running before it fails the test."""
        deadline = time.monotonic() + timeout
        seen = set()
        while True:
            status = self.backend.status(handle)
            seen.add(status.state)
            if status.finished:
                assert seen <= {PENDING, RUNNING, status.state}, seen
                return status
            assert time.monotonic() < deadline, f"{handle.key} still {status} after {timeout} s"
            time.sleep(self.poll)

    def wait_running(self, handle: JobHandle, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (status := self.backend.status(handle)).state != RUNNING:
            assert not status.finished, status
            assert time.monotonic() < deadline, f"{handle.key} not running after {timeout} s: {status}"
            time.sleep(self.poll)

    def cleanup(self) -> None:
        for handle in self.handles:
            self.backend.cancel(handle)
        for key in self.keys:
            self.remove_leftovers(key)

    def remove_leftovers(self, key: str) -> None:
        """Remove whatever the scheduler still holds under ``key`` (missing objects are fine)."""
        raise NotImplementedError
