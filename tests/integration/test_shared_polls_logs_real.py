"""Issue 15: shared polls on the real NameNode, continued: what waits log (nothing for a check that
found nothing new), summaries, cancelled waits, and a wait joining during a check.

How the triggers are driven: :mod:`tests.integration.shared_polls_support`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import time
from collections import Counter
from typing import Any

import pytest

from airflow_ml_provider.triggers.hdfs import HdfsMarkersTrigger
from scripts.testbed.counting_proxy import CountingProxy
from scripts.testbed.loopback_http import free_port
from tests.integration.conftest import admin_client, set_hdfs_conn
from tests.integration.shared_polls_support import (
    POKE,
    LogRecorder,
    Waits,
    base,
    blocking,
    interval_for,
    layout,
    new_trigger,
    polls,
    prepared_layout,
    put_marker,
    run,
    sharing_problems,
    until,
    window,
)

pytestmark = pytest.mark.integration
__all__ = ["base"]  # a fixture shared with other modules


def test_quiet_polls_log_nothing_and_a_change_logs_once_per_wait(
    hdfs: Any, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_hdfs_conn(monkeypatch, "hdfs_quiet", hdfs.namenode_urls)
    client, wanted, expect = prepared_layout(hdfs, base, 6, 20)  # 120 waits, 3 single-name and 3 multi-name directories
    changed = [k for k, v in wanted.items() if f"{base}/d01/_A" in v and len(v) > 1]
    done = [k for k, v in wanted.items() if v == [f"{base}/d01/_A"]]

    async def scenario() -> None:
        with LogRecorder().recording() as log:
            waits = Waits()
            for key, markers in wanted.items():
                waits.add(key, new_trigger(markers, "hdfs_quiet", summary_interval=600.0))
            await asyncio.sleep(4 * POKE)  # first answers
            first = len(log.records)
            assert 0 < first <= len(wanted) + len(expect), f"{first} records for the first answers"
            await asyncio.sleep(8 * POKE)
            assert log.since(first) == [], f"{len(log.since(first))} records from quiet polls: {log.since(first)[:3]}"
            await blocking(put_marker, client, f"{base}/d01/_A")
            await asyncio.sleep(4 * POKE)
            assert sorted(k for k in wanted if k.startswith("d01") and k not in waits.pending()) == sorted(done)
            info = log.since(first, "info")
            assert len(changed) <= len(info) <= len(changed) + len(done), f"{len(info)} INFO for {len(changed)} changes"
            mark = len(log.records)
            await asyncio.sleep(6 * POKE)
            assert log.since(mark) == [], log.since(mark)[:3]
            await waits.cancel()

    run(scenario())


def test_unreachable_namenode_warns_once_per_wait_and_times_out_with_the_last_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with CountingProxy(f"http://127.0.0.1:{free_port()}") as dead:  # answers nothing: the NameNode is down
        set_hdfs_conn(monkeypatch, "hdfs_down", [dead.url], timeout=1)
        wanted, expect = layout("/down", 4, 10)

        async def scenario() -> None:
            with LogRecorder().recording() as log:
                waits = Waits()
                for key, markers in wanted.items():
                    waits.add(key, new_trigger(markers, "hdfs_down", deadline=7.0, summary_interval=600.0))
                await until(lambda: set(expect) <= set(polls([dead], set(expect))), "a first poll of every directory")
                await asyncio.sleep(2 * POKE)  # past the first checks (asked before every wait had joined)
                n, seen = await window([dead], set(expect), 3.0)
                assert len(waits.pending()) == len(wanted), "an unreachable NameNode means waiting"
                for key, event in (await waits.events(timeout=10)).items():
                    assert event["status"] == "timeout", (key, event)
                    assert "No NameNode answered" in event["message"], event
                    assert dead.url in event["message"], event
                warnings = log.since(0, "warning")
                # one per wait, or two when the error's words change (LISTSTATUS once all names joined)
                assert 1 <= len(warnings) <= 2 * len(wanted), f"{len(warnings)} warnings for {len(wanted)} waits"
                assert log.since(0, "info") == [], "no answer: nothing to report but the error"
                problems = sharing_problems(seen, expect, n)
                assert not problems, problems[:4]

        run(scenario())


def test_summaries_follow_the_summary_interval(hdfs: Any, base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "summary_interval" in inspect.signature(HdfsMarkersTrigger).parameters, "no summary_interval yet"
    set_hdfs_conn(monkeypatch, "hdfs_summary", hdfs.namenode_urls)
    wanted, _ = layout(base, 2, 10)

    async def scenario() -> None:
        with LogRecorder().recording() as log:
            waits = Waits()
            for key, markers in wanted.items():
                waits.add(key, new_trigger(markers, "hdfs_summary", summary_interval=1.0))
            await asyncio.sleep(3 * POKE)  # first answers
            mark, started = len(log.records), time.monotonic()
            await asyncio.sleep(3.6)
            lines = log.since(mark)
            per_wait = (time.monotonic() - started) / 1.0
            assert {level for _, level, _ in lines} == {"info"}, lines[:3]
            assert len(wanted) * (per_wait - 1.5) <= len(lines) <= len(wanted) * (per_wait + 1), len(lines)
            await waits.cancel()

    run(scenario())


# -- 6. leaving waits leave the shared poll -------------------------------------------------------


def test_cancelled_waits_stop_their_polls_and_the_interval_follows_the_remaining_waits(
    hdfs: Any, base: str, proxy: CountingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_hdfs_conn(monkeypatch, "hdfs_cancel", [proxy.url])
    client, wanted, expect = prepared_layout(hdfs, base, 2, 10)
    d0, d1 = sorted(expect)

    async def scenario() -> None:
        waits = Waits()
        for key, markers in wanted.items():
            waits.add(key, new_trigger(markers, "hdfs_cancel", poke_interval=interval_for(int(key[-2:]), 10)))
        await until(lambda: set(expect) <= set(polls([proxy], set(expect))), "a first poll of every directory")
        await waits.cancel("d00/")
        await waits.cancel("d01/w09")  # the only wait polling d01 every 0.5 s; the others 1-2 s
        await asyncio.sleep(2.5)
        n, seen = await window([proxy], set(expect), 4.0)
        assert d0 not in seen, f"cancelled waits still polled: {seen.get(d0)}"
        polls_d1 = sum(seen.get(d1, Counter()).values())
        assert n / 2 - 1 <= polls_d1 <= n / 2 + 1, f"{polls_d1} polls of {d1} in {n * POKE:.1f} s at 1 s"
        for m in sorted({m for k, v in wanted.items() if k.startswith("d01") for m in v}):
            await blocking(put_marker, client, m)
        events = await waits.events("d01/", timeout=10)
        assert all(e["status"] == "success" for e in events.values())

    run(scenario())


# -- 7. a wait joining while its directory is being checked ---------------------------------------


def test_a_wait_joining_during_a_check_is_not_told_its_marker_is_missing(
    hdfs: Any, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The NameNode pauses (as in a long GC) while the directory's first check, for ``_A`` only, waits
    for it; a wait on ``_B`` joins meanwhile. That check's answer says nothing about ``_B``, which
    exists: the new wait must not be told it is missing (nor time out saying so)."""
    set_hdfs_conn(monkeypatch, "hdfs_join", hdfs.namenode_urls, timeout=10)
    client = admin_client(hdfs)
    for name in ("_A", "_B"):
        client.write(f"{base}/d/{name}", data=b"")
    namenode = hdfs._daemons["namenode"].proc.pid  # its own process group (start_new_session)

    async def scenario() -> None:
        with LogRecorder().recording() as log:
            waits = Waits()
            os.killpg(namenode, signal.SIGSTOP)
            try:
                waits.add("a", new_trigger([f"{base}/d/_A"], "hdfs_join", poke_interval=3.0))
                await asyncio.sleep(1.0)  # a's first check is waiting for the paused NameNode
                waits.add("b", new_trigger([f"{base}/d/_B"], "hdfs_join", poke_interval=3.0))
                await asyncio.sleep(0.5)  # b has joined the directory's poll
            finally:
                os.killpg(namenode, signal.SIGCONT)
            events = await waits.events(timeout=15)
            assert [e["status"] for e in events.values()] == ["success", "success"], events
            told = [r for r in log.records if f"{base}/d/_B" in r[2]]
            assert told == [], f"b was told about _B before any check asked for it: {told}"

    run(scenario())
