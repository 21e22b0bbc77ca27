"""Shared pieces of the shared-poll tests on the real NameNode (issue 15).

Every test drives the triggers as a triggerer does: each ``run()`` generator is a task in one
asyncio loop in this process, consumed until its single event, against the real NameNode beds.
Requests are counted by :class:`CountingProxy` instances in front of the NameNodes (the
connection's hosts are the proxies); the test's own HDFS writes go to the NameNodes directly, and
run in a thread pool of the test's, so they neither count nor block the loop or queue behind
the triggers' threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import inspect
import logging
import posixpath
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar, cast

import pytest
import structlog

from airflow_ml_provider.triggers.hdfs import HdfsMarkersTrigger
from scripts.testbed.counting_proxy import CountingProxy
from tests.integration.conftest import admin_client

T = TypeVar("T")
POKE = 0.5  #: the smallest poke_interval used; one "interval" below
UTC = dt.timezone.utc
_POOL = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="test-admin")


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call (admin HDFS writes, haadmin) off the loop, outside the triggers' pool."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, lambda: fn(*args))


def new_trigger(markers: list[str], conn_id: str, *, deadline: float = 90.0, **kw: Any) -> HdfsMarkersTrigger:
    """A trigger with ``deadline`` seconds from now; ``summary_interval`` is passed only when the
    constructor takes it (the code before issue 15 does not)."""
    if "summary_interval" not in inspect.signature(HdfsMarkersTrigger).parameters:
        kw.pop("summary_interval", None)
    kw.setdefault("poke_interval", POKE)
    return HdfsMarkersTrigger(markers=markers, hdfs_conn_id=conn_id, deadline=time.time() + deadline, **kw)


async def first_event(trigger: HdfsMarkersTrigger) -> dict[str, Any]:
    """The trigger's event; its generator must then end (exactly one event)."""
    gen = cast(Any, trigger.run())
    try:
        event = await gen.__anext__()
        with contextlib.suppress(StopAsyncIteration):
            await asyncio.wait_for(gen.__anext__(), 5)
            raise AssertionError(f"{trigger.markers} yielded a second event")
    finally:
        await gen.aclose()
    return cast(dict[str, Any], event.payload)


class Waits:
    """Labelled trigger tasks in the running loop, as a triggerer holds them."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self.markers: dict[str, list[str]] = {}
        self.ended: dict[str, float] = {}

    def add(self, key: str, trigger: HdfsMarkersTrigger) -> None:
        """Start ``trigger`` as the task ``key``."""
        task = asyncio.create_task(first_event(trigger), name=key)
        task.add_done_callback(lambda _: self.ended.setdefault(key, time.monotonic()))
        self.tasks[key], self.markers[key] = task, list(trigger.markers)

    def pending(self, prefix: str = "") -> list[str]:
        """Keys (starting with ``prefix``) still waiting."""
        return [k for k, t in self.tasks.items() if k.startswith(prefix) and not t.done()]

    async def events(self, prefix: str = "", timeout: float = 60) -> dict[str, dict[str, Any]]:
        """Wait for the events of the (not cancelled) keys starting with ``prefix``."""
        mine = {k: t for k, t in self.tasks.items() if k.startswith(prefix) and not t.cancelled()}
        await asyncio.wait(mine.values(), timeout=timeout)
        late = [k for k, t in mine.items() if not t.done()]
        assert not late, f"{len(late)} still waiting after {timeout} s, e.g. {late[:5]}"
        return {k: t.result() for k, t in mine.items()}

    async def cancel(self, prefix: str = "") -> None:
        """Cancel the tasks starting with ``prefix`` (what a triggerer does when a task is cleared)."""
        tasks = [t for k, t in self.tasks.items() if k.startswith(prefix)]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def until(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def polls(proxies: list[CountingProxy], dirs: set[str]) -> dict[str, Counter[tuple[str, str]]]:
    """Requests so far per watched directory (a marker's status counts for its directory), as
    ``(op, path)`` counts; requests for anything else are under their own path."""
    out: dict[str, Counter[tuple[str, str]]] = {}
    for proxy in proxies:
        for _, op, path in list(proxy.requests):
            path = path.removeprefix("/webhdfs/v1")
            key = path if path in dirs else posixpath.dirname(path)
            out.setdefault(key if key in dirs else path, Counter())[(op, path)] += 1
    return out


async def window(proxies: list[CountingProxy], dirs: set[str], seconds: float) -> tuple[float, dict[str, Any]]:
    """Reset the proxies, let the waits poll for ``seconds``; the intervals elapsed and :func:`polls`."""
    for p in proxies:
        p.reset()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    seen = polls(proxies, dirs)
    return (time.monotonic() - started) / POKE, seen


def sharing_problems(
    seen: dict[str, Counter[tuple[str, str]]], expect: dict[str, tuple[str, str]], n: float, *, least: float = 1
) -> list[str]:
    """What breaks "one request of the expected kind per directory and interval" over ``n`` intervals;
    each directory must have been polled at least ``least`` times (a loaded machine polls less often,
    never more)."""
    problems = [f"{key}: {dict(c)} is no watched directory" for key, c in seen.items() if key not in expect]
    for d, want in expect.items():
        got = seen.get(d, Counter())
        if set(got) != {want}:
            problems.append(f"{d}: expected only {want}, got {dict(got)}")
        elif not least <= got[want] <= n + 1:
            problems.append(f"{d}: {got[want]} polls in {n:.1f} intervals (expected one per {POKE} s)")
    total = sum(sum(c.values()) for c in seen.values())
    if total > len(expect) * (n + 1):
        problems.append(f"{total} requests in {n:.1f} intervals for {len(expect)} directories")
    return problems


def put_marker(client: Any, path: str) -> None:
    """Write ``path`` complete at once (written aside, then renamed: a wait never sees it half-made)."""
    tmp = f"{posixpath.dirname(path)}/.tmp-{uuid.uuid4().hex[:8]}"
    client.write(tmp, data=b"", overwrite=True)
    client.delete(path)
    client.rename(tmp, path)


def mtime(client: Any, path: str) -> str:
    ms = client.status(path)["modificationTime"]
    return dt.datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def expected_xcom(client: Any, markers: list[str]) -> list[dict[str, str]]:
    return [{"path": m, "modification_time": mtime(client, m)} for m in sorted(markers)]


def layout(base: str, n_dirs: int, per_dir: int) -> tuple[dict[str, list[str]], dict[str, tuple[str, str]]]:
    """Waits over ``n_dirs`` directories: even ones watch ``_SUCCESS`` only, odd ones 1-2 of four
    names. Returns key -> markers, and directory -> the one request expected per poll."""
    waits: dict[str, list[str]] = {}
    expect: dict[str, tuple[str, str]] = {}
    names = ["_A", "_B", "_C", "_D"]
    for d in range(n_dirs):
        path = f"{base}/d{d:02d}"
        single = d % 2 == 0
        expect[path] = ("GETFILESTATUS", f"{path}/_SUCCESS") if single else ("LISTSTATUS", path)
        for i in range(per_dir):
            watched = ["_SUCCESS"] if single else sorted({names[i % 4], names[(i + i // 4) % 4]})
            waits[f"d{d:02d}/w{i:02d}"] = [f"{path}/{n}" for n in watched]
    return waits, expect


def prepared_layout(
    cluster: Any, base: str, n_dirs: int, per_dir: int
) -> tuple[Any, dict[str, list[str]], dict[str, tuple[str, str]]]:
    """:func:`layout` with its directories made on ``cluster``; returns the admin client too."""
    client = admin_client(cluster)
    wanted, expect = layout(base, n_dirs, per_dir)
    for d in expect:
        client.makedirs(d, permission="755")
    return client, wanted, expect


def interval_for(i: int, per_dir: int) -> float:
    """The last wait of each directory has the smallest interval: the shared poll must follow it."""
    return POKE if i == per_dir - 1 else (1.0, 2.0)[i % 2]


def run(scenario: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, 110))


@pytest.fixture
def base(hdfs: Any) -> Iterator[str]:
    path = f"/t/{uuid.uuid4().hex[:10]}"
    admin_client(hdfs).makedirs(path, permission="755")
    yield path
    admin_client(hdfs).delete(path, recursive=True)


# -- 1. 1,000 waits over 50 directories -----------------------------------------------------------


class LogRecorder:
    """Records from this package's loggers, structlog (the trigger's ``.log``) and stdlib alike."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, str]] = []  # (logger, level, message)

    def _structlog(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        name = str(getattr(logger, "name", "") or event.get("logger", ""))
        if name.startswith("airflow_ml_provider"):
            message, args = str(event.get("event")), event.get("positional_args")
            with contextlib.suppress(TypeError, ValueError):
                message = message % tuple(args) if args else message
            self.records.append((name, method, message))
        return event

    @contextlib.contextmanager
    def recording(self) -> Iterator[LogRecorder]:
        processors = structlog.get_config()["processors"]  # the list cached loggers use too
        processors.insert(1, self._structlog)  # after respect_stdlib_disable
        recorder = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                recorder.records.append((record.name, record.levelname.lower(), record.getMessage()))

        handler, logger = Handler(logging.INFO), logging.getLogger("airflow_ml_provider")
        logger.addHandler(handler)
        try:
            yield self
        finally:
            processors.remove(self._structlog)
            logger.removeHandler(handler)

    def since(self, mark: int, level: str | None = None) -> list[tuple[str, str, str]]:
        return [r for r in self.records[mark:] if level is None or r[1] == level]
