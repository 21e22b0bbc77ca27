"""Shared marker polls: many HdfsMarkersTrigger waits in one event loop, on the local disk.

The real NameNode versions (request counts through a proxy, refusals, failover) are in
tests/integration/test_shared_polls_real.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest

from airflow_ml_provider.exceptions import StorageRefusedError, StorageUnavailableError
from airflow_ml_provider.storage.base import FileInfo
from airflow_ml_provider.triggers.hdfs import HdfsMarkersTrigger
from airflow_ml_provider.triggers.shared_polls import FileSystem, PollOutcome, registry


class RecordingLog:
    """Stands in for a trigger's logger: keeps (level, message) of every line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(("info", msg % args))

    def warning(self, msg: str, *args: Any) -> None:
        self.lines.append(("warning", msg % args))


def _trigger(paths: list[str], log: RecordingLog | None = None, **kwargs: Any) -> HdfsMarkersTrigger:
    trigger = HdfsMarkersTrigger(markers=paths, **{"poke_interval": 0.05, **kwargs})
    if log is not None:
        trigger._log = log  # type: ignore[assignment]  # LoggingMixin keeps its logger here
    return trigger


async def _first(trigger: HdfsMarkersTrigger) -> dict[str, Any]:
    gen = cast(AsyncGenerator[Any, None], trigger.run())
    try:
        event = await gen.__anext__()
    finally:
        await gen.aclose()
    return cast(dict[str, Any], event.payload)


def _run(body: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(body())  # a fresh loop: a fresh registry


def _dirs(tmp_path: Path, count: int) -> list[Path]:
    out = []
    for i in range(count):
        d = tmp_path / f"d{i}"
        d.mkdir()
        out.append(d)
    return out


def test_waits_on_one_directory_share_one_check_per_interval(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path, 5)
    triggers = [_trigger([f"file://{dirs[i % 5]}/_SUCCESS"], poke_interval=0.1) for i in range(200)]

    async def go() -> tuple[dict[str, int], dict[str, int], list[dict[str, Any]]]:
        tasks = [asyncio.create_task(_first(t)) for t in triggers]
        await asyncio.sleep(0.05)
        started = dict(registry().stats())
        await asyncio.sleep(1.0)
        later = dict(registry().stats())
        for d in dirs:
            (d / "_SUCCESS").write_text("")
        events = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return started, later, events

    started, later, events = _run(go)
    assert started["polls"] == 5
    assert started["members"] == 200
    # 1 s at 0.1 s per check: about 10 checks of each of the 5 directories, never one per wait.
    checks = later["checks"] - started["checks"]
    assert 5 * 7 <= checks <= 5 * 11, later
    assert later["requests"] - started["requests"] == checks  # one stat per check once the parent was seen
    assert all(e["status"] == "success" for e in events)
    assert {e["markers"][0]["path"] for e in events} == {f"{d}/_SUCCESS" for d in dirs}


def test_last_wait_out_stops_the_poll_and_a_new_one_starts_again(tmp_path: Path) -> None:
    async def go() -> None:
        task = asyncio.create_task(_first(_trigger([f"file://{tmp_path}/_SUCCESS"])))
        await asyncio.sleep(0.1)
        assert registry().stats()["polls"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert registry().polls == {}
        assert registry().filesystems == {}
        (tmp_path / "_SUCCESS").write_text("")
        event = await asyncio.wait_for(_first(_trigger([f"file://{tmp_path}/_SUCCESS"])), 5)
        assert event["status"] == "success"
        assert registry().polls == {}

    _run(go)


def test_each_wait_applies_its_own_freshness_bound(tmp_path: Path) -> None:
    marker = tmp_path / "_SUCCESS"
    marker.write_text("")
    old = time.time() - 3600
    os.utime(marker, (old, old))
    before = dt.datetime.fromtimestamp(old - 60, dt.timezone.utc).isoformat()
    after = dt.datetime.fromtimestamp(old + 60, dt.timezone.utc).isoformat()
    early = [_trigger([f"file://{marker}"], newer_than=before) for _ in range(3)]
    late = [_trigger([f"file://{marker}"], newer_than=after) for _ in range(3)]

    async def go() -> None:
        late_tasks = [asyncio.create_task(_first(t)) for t in late]
        for event in await asyncio.wait_for(asyncio.gather(*(_first(t) for t in early)), 5):
            assert event["status"] == "success"
        await asyncio.sleep(0.3)
        assert not any(t.done() for t in late_tasks)  # stale for them
        marker.write_text("again")  # rewritten now: fresh for everyone
        for event in await asyncio.wait_for(asyncio.gather(*late_tasks), 5):
            assert event["status"] == "success"

    _run(go)


def test_a_marker_that_is_a_directory_fails_only_its_own_waits(tmp_path: Path) -> None:
    (tmp_path / "subdir").mkdir()
    bad = [_trigger([f"file://{tmp_path}/subdir"]) for _ in range(2)]
    good = [_trigger([f"file://{tmp_path}/_SUCCESS"]) for _ in range(2)]

    async def go() -> None:
        good_tasks = [asyncio.create_task(_first(t)) for t in good]
        for event in await asyncio.wait_for(asyncio.gather(*(_first(t) for t in bad)), 5):
            assert event["status"] == "error"
            assert event["kind"] == "access"
            assert "is a directory" in event["message"]
        await asyncio.sleep(0.2)
        assert not any(t.done() for t in good_tasks)
        (tmp_path / "_SUCCESS").write_text("")
        for event in await asyncio.wait_for(asyncio.gather(*good_tasks), 5):
            assert event["status"] == "success"

    _run(go)


def test_a_poll_that_finds_nothing_new_logs_nothing(tmp_path: Path) -> None:
    logs = [RecordingLog() for _ in range(50)]
    triggers = [_trigger([f"file://{tmp_path}/_SUCCESS"], log=log, poke_interval=0.02) for log in logs]

    async def go() -> None:
        tasks = [asyncio.create_task(_first(t)) for t in triggers]
        await asyncio.sleep(1.0)  # about 50 checks
        assert registry().stats()["checks"] >= 30
        (tmp_path / "_SUCCESS").write_text("")
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

    _run(go)
    for log in logs:  # the first answer, then silence until done
        assert log.lines == [("info", f"Waiting for markers: 0/1 markers present; missing: {tmp_path}/_SUCCESS")]


def test_changes_and_summaries_are_logged(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    log = RecordingLog()
    trigger = _trigger(
        [f"file://{tmp_path}/a/_SUCCESS", f"file://{tmp_path}/b/_SUCCESS"], log=log, summary_interval=0.5
    )

    async def go() -> dict[str, Any]:
        task = asyncio.create_task(_first(trigger))
        await asyncio.sleep(0.3)
        (tmp_path / "a" / "_SUCCESS").write_text("")
        await asyncio.sleep(1.3)  # two summaries in this time, at most three
        (tmp_path / "b" / "_SUCCESS").write_text("")
        return await asyncio.wait_for(task, 5)

    event = _run(go)
    assert event["status"] == "success"
    texts = [text for _, text in log.lines]
    assert texts[0].startswith("Waiting for markers: 0/2 markers present")
    assert texts[1].startswith("Waiting for markers: 1/2 markers present")
    summaries = [t for t in texts[2:] if t.startswith("Still waiting for markers (checked every 0.05 s): 1/2")]
    assert 2 <= len(summaries) <= 3, texts
    assert len(texts) == 2 + len(summaries), texts


def test_unreachable_namenodes_are_logged_once_not_per_check(monkeypatch: Any) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEAD_HDFS", '{"conn_type": "ml_hdfs", "host": "127.0.0.1:1", "extra": {"timeout": 1}}'
    )
    log = RecordingLog()
    trigger = _trigger(["/d/_SUCCESS"], log=log, hdfs_conn_id="dead_hdfs", deadline=time.time() + 1.0)
    event = _run(lambda: _first(trigger))
    assert event["status"] == "timeout"
    assert "Last error: No NameNode answered" in event["message"]
    assert [level for level, _ in log.lines] == ["warning"], log.lines


class FakeBackend:
    """A storage whose answers a test sets per path; counts calls."""

    def __init__(self) -> None:
        self.answers: dict[str, FileInfo | Exception | None] = {}
        self.calls: list[tuple[str, str]] = []

    def describe(self) -> str:
        return "fake file system"

    def _answer(self, op: str, path: str) -> Any:
        self.calls.append((op, path))
        answer = self.answers.get(path)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def stat(self, path: str) -> FileInfo | None:
        return cast(FileInfo | None, self._answer("stat", path))

    def list_dir(self, path: str) -> dict[str, FileInfo] | None:
        return cast(dict[str, FileInfo] | None, self._answer("list", path))


class Member:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.outcomes: list[PollOutcome] = []

    def deliver(self, poll: Any, outcome: PollOutcome) -> None:
        self.outcomes.append(outcome)


def test_errors_reach_only_the_members_of_the_directory_that_failed() -> None:
    backend = FakeBackend()
    backend.answers["/denied"] = StorageRefusedError("Permission denied: /denied")
    backend.answers["/denied/_SUCCESS"] = StorageRefusedError("Permission denied: /denied")
    backend.answers["/down/_SUCCESS"] = StorageUnavailableError("No NameNode answered")
    fs = FileSystem(backend, inline=True)  # type: ignore[arg-type]  # the part of Storage a poll uses
    members = {d: [Member(0.05) for _ in range(3)] for d in ("/ok", "/denied", "/down")}

    async def go() -> None:
        reg = registry()
        for d, ms in members.items():
            for m in ms:
                reg.join("fake", fs, d, m, (f"{d}/_SUCCESS",))
        await asyncio.sleep(0.12)
        for d, ms in members.items():
            for m in ms:
                reg.polls[("fake", d)].remove(m)
        assert reg.polls == {}

    _run(go)
    for m in members["/ok"]:
        assert m.outcomes
        assert all(o.error is None and o.answer is not None for o in m.outcomes)
        assert all(o.answer.infos == {"/ok/_SUCCESS": None} for o in m.outcomes if o.answer is not None)
    for m in members["/denied"]:
        assert m.outcomes
        assert all(isinstance(o.error, StorageRefusedError) for o in m.outcomes)
    for m in members["/down"]:
        assert m.outcomes
        assert all(isinstance(o.error, StorageUnavailableError) for o in m.outcomes)
    # one check per directory per interval, whatever the number of members
    per_dir = {d: sum(1 for _, p in backend.calls if p.startswith(d + "/")) for d in members}
    assert max(per_dir.values()) <= 4, backend.calls


def test_a_member_with_a_shorter_interval_speeds_up_the_poll() -> None:
    backend = FakeBackend()
    fs = FileSystem(backend, inline=True)  # type: ignore[arg-type]
    slow, fast = Member(10.0), Member(0.05)

    async def go() -> None:
        reg = registry()
        poll = reg.join("fake", fs, "/d", slow, ("/d/_SUCCESS",))
        await asyncio.sleep(0.05)
        assert len(slow.outcomes) == 1  # the first check at once, the next one 10 s later
        reg.join("fake", fs, "/d", fast, ("/d/other",))
        await asyncio.sleep(0.3)
        poll.remove(fast)
        checks = poll.checks
        await asyncio.sleep(0.2)
        assert poll.checks == checks  # back to every 10 s
        poll.remove(slow)

    _run(go)
    assert len(fast.outcomes) >= 4
    assert len(slow.outcomes) == len(fast.outcomes) + 1  # both get every shared answer
    listed = [p for op, p in backend.calls if op == "list"]
    assert listed
    assert set(listed) == {"/d"}


def test_a_wait_joining_during_a_check_takes_the_next_answer_not_that_one(tmp_path: Path) -> None:
    """The check in flight did not ask for the newcomer's marker: it must not read as "missing"."""
    from airflow_ml_provider.storage.local import LocalStorage

    class SlowDisk(LocalStorage):
        def stat(self, path: str) -> FileInfo | None:
            time.sleep(0.3)
            return super().stat(path)

    (tmp_path / "_B").write_text("")
    log_b = RecordingLog()

    async def go() -> dict[str, Any]:
        registry().filesystems[("file",)] = FileSystem(SlowDisk(), inline=False)  # checks in a thread
        a = asyncio.create_task(_first(_trigger([f"file://{tmp_path}/_A"], poke_interval=0.5)))
        await asyncio.sleep(0.1)  # A's first check is in flight
        event = await asyncio.wait_for(_first(_trigger([f"file://{tmp_path}/_B"], log=log_b, poke_interval=0.5)), 5)
        a.cancel()
        return event

    event = _run(go)
    assert event["status"] == "success"
    assert log_b.lines == []  # never reported _B missing
