"""Issue 15: many HdfsMarkersTrigger waits in ONE event loop (one triggerer) share their polls:
requests per directory and interval, per-wait bounds and refusals, HA failover (real NameNodes).

How the triggers are driven and requests counted: :mod:`tests.integration.shared_polls_support`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any

import pytest

from scripts.testbed.counting_proxy import CountingProxy
from tests.integration.conftest import admin_client, set_hdfs_conn
from tests.integration.shared_polls_support import (
    POKE,
    UTC,
    Waits,
    base,
    blocking,
    expected_xcom,
    interval_for,
    mtime,
    new_trigger,
    polls,
    prepared_layout,
    put_marker,
    run,
    sharing_problems,
    until,
    window,
)
from tests.integration.test_hdfs_ha_real import ha, other

pytestmark = pytest.mark.integration
__all__ = ["base", "ha"]  # fixtures shared with other modules


def test_1000_waits_over_50_directories_cost_one_request_per_directory_and_interval(
    hdfs: Any, base: str, proxy: CountingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_hdfs_conn(monkeypatch, "hdfs_shared", [proxy.url])
    client, wanted, expect = prepared_layout(hdfs, base, 50, 20)

    async def scenario() -> None:
        waits = Waits()
        for key, markers in wanted.items():
            waits.add(key, new_trigger(markers, "hdfs_shared", poke_interval=interval_for(int(key[-2:]), 20)))
        await until(lambda: set(expect) <= set(polls([proxy], set(expect))), "a first poll of every directory")
        await asyncio.sleep(2 * POKE)  # every wait has had its first answer
        n, seen = await window([proxy], set(expect), 3.0)
        assert len(waits.pending()) == 1000, "no marker exists yet: nothing may end"
        markers = sorted({m for ms in wanted.values() for m in ms})
        await asyncio.gather(*(blocking(put_marker, client, m) for m in markers))
        events = await waits.events()
        times = dict(zip(markers, await asyncio.gather(*(blocking(mtime, client, m) for m in markers)), strict=True))
        for key, event in events.items():
            assert event["status"] == "success", (key, event)
            assert event["markers"] == [{"path": m, "modification_time": times[m]} for m in wanted[key]], key
        problems = sharing_problems(seen, expect, n)
        assert not problems, f"{len(problems)} sharing problems, e.g. {problems[:4]}"

    run(scenario())


# -- 2. different newer_than bounds on one directory ---------------------------------------------


def test_each_wait_applies_its_own_newer_than_to_the_shared_answer(
    hdfs: Any, base: str, proxy: CountingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_hdfs_conn(monkeypatch, "hdfs_bounds", [proxy.url])
    client = admin_client(hdfs)
    marker = f"{base}/day/_SUCCESS"
    old = dt.datetime(2026, 1, 1, tzinfo=UTC)
    client.write(marker, data=b"")
    client.set_times(marker, access_time=int(old.timestamp() * 1000), modification_time=int(old.timestamp() * 1000))
    soon = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    bounds = {"before": "2025-12-01T00:00:00+00:00", "none": None, "after": "2026-06-01T00:00:00+00:00"}
    bounds["future"] = soon.isoformat()

    async def scenario() -> None:
        waits = Waits()
        started = time.monotonic()
        for label, bound in bounds.items():
            for i in range(10):
                deadline = 4.0 if label == "future" else 90.0
                waits.add(f"{label}/{i}", new_trigger([marker], "hdfs_bounds", newer_than=bound, deadline=deadline))
        early = {**await waits.events("before"), **await waits.events("none")}
        assert max(waits.ended[k] for k in early) - started < 2 * POKE + 1, "bounded before the marker: at once"
        for event in early.values():
            assert event["status"] == "success"
            assert event["markers"] == [{"path": marker, "modification_time": old.isoformat()}]
        n, seen = await window([proxy], {f"{base}/day"}, 2.0)
        assert len(waits.pending("after")) == 10, "the marker is stale for waits bounded after it"
        await blocking(put_marker, client, marker)
        for key, event in (await waits.events("after", timeout=10)).items():
            assert event["status"] == "success", (key, event)
            assert event["markers"] == expected_xcom(client, [marker])
        for key, event in (await waits.events("future", timeout=10)).items():
            assert event["status"] == "timeout", (key, event)
            assert f"older than the freshness bound {soon.isoformat()}" in event["message"]
            assert marker in event["message"]
        problems = sharing_problems(seen, {f"{base}/day": ("GETFILESTATUS", marker)}, n)
        assert not problems, problems

    run(scenario())


# -- 3. refusals fail only their own waits --------------------------------------------------------


def test_refused_directory_and_directory_marker_fail_only_their_waits(
    hdfs: Any, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_hdfs_conn(monkeypatch, "hdfs_refusals", hdfs.namenode_urls)
    client = admin_client(hdfs)
    locked, open_, mixed = f"{base}/locked", f"{base}/open", f"{base}/mixed"
    for path in (f"{locked}/one/_SUCCESS", f"{locked}/two/_A", f"{locked}/two/_B"):
        client.write(path, data=b"")  # present, but unreadable for the connection's user
    client.set_permission(locked, "700")  # owned by the superuser, not "etl"
    client.makedirs(open_, permission="755")
    client.makedirs(f"{mixed}/_BAD", permission="755")  # a "marker" that is a directory
    wanted = {
        **{f"locked-one/{i}": [f"{locked}/one/_SUCCESS"] for i in range(5)},
        **{f"locked-two/{i}": [f"{locked}/two/_A", f"{locked}/two/_B"][: 1 + i % 2] for i in range(5)},
        **{f"open/{i}": [f"{open_}/_SUCCESS"] for i in range(5)},
        **{f"bad/{i}": [f"{mixed}/_BAD", f"{mixed}/_OK"][: 1 + i % 2] for i in range(6)},
        **{f"ok/{i}": [f"{mixed}/_OK"] for i in range(6)},
    }

    async def scenario() -> None:
        waits = Waits()
        for key, markers in wanted.items():
            waits.add(key, new_trigger(markers, "hdfs_refusals"))
        for key, event in (await waits.events("locked", timeout=5 * POKE + 5)).items():
            assert (event["status"], event.get("kind")) == ("error", "access"), (key, event)
            assert f"{locked}/{key.split('/')[0].removeprefix('locked-')}" in event["message"], event
            assert "Permission denied" in event["message"]
        for key, event in (await waits.events("bad", timeout=5)).items():
            assert (event["status"], event.get("kind")) == ("error", "access"), (key, event)
            assert f"{mixed}/_BAD" in event["message"]
            assert "is a directory" in event["message"]
        await asyncio.sleep(3 * POKE)
        assert sorted(waits.pending()) == sorted(k for k in wanted if k.startswith(("open", "ok")))
        await asyncio.gather(
            blocking(put_marker, client, f"{open_}/_SUCCESS"), blocking(put_marker, client, f"{mixed}/_OK")
        )
        for key, event in {**await waits.events("open", 10), **await waits.events("ok", 10)}.items():
            assert event["status"] == "success", (key, event)
            assert event["markers"] == expected_xcom(client, wanted[key])

    run(scenario())


# -- 4. HA failover during shared polls -----------------------------------------------------------


def test_failover_and_all_standby_during_shared_polls_fail_no_wait(ha: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 waits over 10 directories, through a proxy in front of each NameNode. A failover ends no
    wait and costs at most one retry per directory; with both NameNodes in standby the waits keep
    waiting (new ones with a short deadline time out with the last error); once one NameNode is
    active again, writing the markers ends every wait with success."""
    base = f"/ha/{uuid.uuid4().hex[:10]}"
    client, wanted, expect = prepared_layout(ha, base, 10, 20)
    with CountingProxy(ha.url_of("nn1")) as p1, CountingProxy(ha.url_of("nn2")) as p2:
        set_hdfs_conn(monkeypatch, "hdfs_ha_shared", [p1.url, p2.url], timeout=2)
        proxies, dirs = [p1, p2], set(expect)

        async def scenario() -> None:
            waits = Waits()
            for key, markers in wanted.items():
                waits.add(key, new_trigger(markers, "hdfs_ha_shared", poke_interval=interval_for(int(key[-2:]), 20)))
            await until(lambda: dirs <= set(polls(proxies, dirs)), "a first poll of every directory")
            await asyncio.sleep(2 * POKE)
            n_before, before = await window(proxies, dirs, 2.0)
            active = await blocking(ha.active)
            await blocking(ha.failover, active, other(active))
            await asyncio.sleep(2 * POKE)
            old = p1 if active == "nn1" else p2
            n_after, after = await window(proxies, dirs, 2.0)
            retries = sum(1 for _, op, _ in old.requests if op in ("GETFILESTATUS", "LISTSTATUS"))
            assert len(waits.pending()) == len(wanted), "a failover must not end any wait"
            await blocking(ha.transition_to_standby, other(active))  # now no NameNode serves
            for i in range(6):
                waits.add(f"short/{i}", new_trigger([f"{base}/d00/_SUCCESS"], "hdfs_ha_shared", deadline=2.0))
            n_standby, standby = await window(proxies, dirs, 2.0)
            for key, event in (await waits.events("short", timeout=10)).items():
                assert event["status"] == "timeout", (key, event)
                assert "StandbyException" in event["message"], event
            assert len(waits.pending()) == len(wanted), "no NameNode answering means waiting"
            await blocking(ha.transition_to_active, active)
            await asyncio.gather(
                *(blocking(put_marker, client, m) for m in sorted({m for v in wanted.values() for m in v}))
            )
            for key, event in (await waits.events("d")).items():
                assert event["status"] == "success", (key, event)
                assert event["markers"] == expected_xcom(client, wanted[key])
            assert not sharing_problems(before, expect, n_before), sharing_problems(before, expect, n_before)[:4]
            # after the failover the shared HdfsCLI client asks the NameNode that answered first
            assert retries <= len(dirs), f"{retries} requests still sent to the old NameNode in 2 s"
            after_total = sum(sum(c.values()) for c in after.values())
            assert after_total <= len(dirs) * (n_after + 1) + retries, after
            # all standby: each poll asks both NameNodes once, no more
            standby_total = sum(sum(c.values()) for c in standby.values())
            assert standby_total <= 2 * len(dirs) * (n_standby + 1), standby

        run(scenario())
