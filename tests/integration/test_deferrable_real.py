"""The deferrable sensor in a real Airflow (scheduler, triggerer, dag-processor, api-server)
against a real HDFS: deferred while waiting, resumed with its XCom, refusals fail without
retries even with soft_fail, timeouts skip with soft_fail, a token never reaches the logs, and
waits in the one triggerer share their NameNode checks (counted by a proxy)."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from scripts.testbed.counting_proxy import CountingProxy
from tests.conftest import TESTBED
from tests.integration.conftest import admin_client, running_airflow

pytestmark = pytest.mark.integration

TOKEN = "tok-" + uuid.uuid4().hex  # a "delegation token" that must never be shown

DAGS = textwrap.dedent(
    """
    import datetime as dt
    from airflow.sdk import dag, task
    from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor

    def make(dag_id, **kw):
        @dag(dag_id=dag_id, schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False,
             params={"paths": ["/none"]}, render_template_as_native_obj=True)
        def _d():
            HdfsSuccessSensor(task_id="wait", paths="{{ params.paths }}", deferrable=True, poke_interval=1, **kw)
        return _d()

    make("defer_ok", timeout=120)
    make("defer_denied", timeout=120, retries=2, soft_fail=True)
    make("defer_timeout", timeout=4, soft_fail=True)
    make("defer_token", timeout=120, retries=1, hdfs_conn_id="hdfs_token")

    @dag(dag_id="defer_shared", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False,
         params={"markers": ["/none"]}, render_template_as_native_obj=True, max_active_tasks=64)
    def _shared():
        @task
        def plan(**context):
            return context["params"]["markers"]

        HdfsSuccessSensor.partial(task_id="wait", marker=None, deferrable=True, poke_interval=2, timeout=300,
                                  retries=1, hdfs_conn_id="hdfs_counted").expand(paths=plan())
    _shared()

    @dag(dag_id="bad_marker", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False,
         params={"marker": "_SUCCESS"})
    def _bad_marker():
        HdfsSuccessSensor(task_id="wait", paths="file:///tmp/never", marker="{{ params.marker }}",
                          deferrable=True, poke_interval=1, timeout=60, retries=2, soft_fail=True,
                          retry_delay=dt.timedelta(seconds=1))
    _bad_marker()
    """
)


@pytest.fixture(scope="module")
def counted(hdfs: Any) -> Iterator[CountingProxy]:
    """A request-counting proxy in front of the NameNode, for the ``hdfs_counted`` connection."""
    with CountingProxy(hdfs.namenode_urls[0]) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def bed(hdfs: Any, counted: CountingProxy) -> Iterator[Any]:
    host = ",".join(u.removeprefix("http://") for u in hdfs.namenode_urls)
    env = {
        "AIRFLOW_CONN_HDFS_COUNTED": json.dumps(
            {"conn_type": "ml_hdfs", "host": counted.url.removeprefix("http://"), "login": "etl"}
        ),
        "AIRFLOW_CONN_ML_HDFS_DEFAULT": json.dumps({"conn_type": "ml_hdfs", "host": host, "login": "etl"}),
        "AIRFLOW_CONN_HDFS_TOKEN": json.dumps(
            {"conn_type": "ml_hdfs", "host": host, "password": TOKEN, "extra": {"auth": "token"}}
        ),
    }
    with running_airflow("airflow-deferrable", {"deferrable_dags.py": DAGS}, env=env) as airflow:
        yield airflow


def trigger(bed: Any, dag_id: str, paths: list[str]) -> str:
    bed.wait_for_dag(dag_id)
    run_id: str = bed.trigger(dag_id, conf={"paths": paths})
    return run_id


def test_waits_deferred_then_succeeds_with_xcom(bed: Any, hdfs: Any, hdfs_dir: str) -> None:
    paths = [f"{hdfs_dir}/country=FR", f"{hdfs_dir}/country=DE"]
    run_id = trigger(bed, "defer_ok", paths)
    bed.wait_deferred("defer_ok", run_id, "wait")  # before the marker: see AirflowBed.wait_deferred
    client = admin_client(hdfs)
    for p in paths:
        client.write(f"{p}/_SUCCESS", data=b"")
    assert bed.wait_for_run("defer_ok", run_id, timeout=120) == "success"
    xcom = bed.api("GET", f"/api/v2/dags/defer_ok/dagRuns/{run_id}/taskInstances/wait/xcomEntries/return_value")
    value = xcom["value"]
    markers = json.loads(value) if isinstance(value, str) else value
    assert sorted(m["path"] for m in markers) == sorted(f"{p}/_SUCCESS" for p in paths)


def test_permission_denied_while_deferred_fails_without_retry_despite_soft_fail(
    bed: Any, hdfs: Any, hdfs_dir: str
) -> None:
    secure = f"{hdfs_dir}/secure"
    run_id = trigger(bed, "defer_denied", [f"{secure}/p"])
    bed.wait_deferred("defer_denied", run_id, "wait")  # before the refusal: see AirflowBed.wait_deferred
    client = admin_client(hdfs)
    client.makedirs(secure, permission="700")  # now the trigger's next check is refused
    assert bed.wait_for_run("defer_denied", run_id, timeout=120) == "failed"
    ti = bed.api("GET", f"/api/v2/dags/defer_denied/dagRuns/{run_id}/taskInstances/wait")
    assert ti["state"] == "failed"
    assert ti["try_number"] == 1
    log = bed.task_log("defer_denied", run_id, "wait")
    assert "AccessControlException" in log
    assert secure in log


def test_an_invalid_spec_found_after_templating_fails_without_retries(bed: Any) -> None:
    """Issue 9 item 8: a templated marker with a slash is only known to be invalid when the task runs;
    it must fail at once (InvalidSpecError is permanent), not be retried, and not be skipped by soft_fail."""
    bed.wait_for_dag("bad_marker")
    run_id = bed.trigger("bad_marker", conf={"marker": "sub/_SUCCESS"})
    assert bed.wait_for_run("bad_marker", run_id, timeout=120) == "failed"
    ti = bed.api("GET", f"/api/v2/dags/bad_marker/dagRuns/{run_id}/taskInstances/wait")
    assert ti["state"] == "failed"
    assert ti["try_number"] == 1
    log = bed.task_log("bad_marker", run_id, "wait")
    assert "plain file name" in log
    assert "'sub/_SUCCESS'" in log


def test_timeout_with_soft_fail_is_skipped(bed: Any, hdfs_dir: str) -> None:
    run_id = trigger(bed, "defer_timeout", [f"{hdfs_dir}/never"])
    bed.wait_for_run("defer_timeout", run_id, timeout=120)
    assert bed.task_state("defer_timeout", run_id, "wait") == "skipped"


def test_token_never_appears_in_logs_xcom_or_api(bed: Any, hdfs: Any, hdfs_dir: str) -> None:
    """A token connection (sent as ?delegation=... on every request) through deferral and resume."""
    run_id = trigger(bed, "defer_token", [f"{hdfs_dir}/tok"])
    bed.wait_deferred("defer_token", run_id, "wait")  # before the marker: see AirflowBed.wait_deferred
    admin_client(hdfs).write(f"{hdfs_dir}/tok/_SUCCESS", data=b"")
    assert bed.wait_for_run("defer_token", run_id, timeout=120) == "success"
    log = bed.task_log("defer_token", run_id, "wait")
    assert "_SUCCESS" in log
    assert TOKEN not in log
    rendered = bed.api("GET", f"/api/v2/dags/defer_token/dagRuns/{run_id}/taskInstances/wait")
    assert TOKEN not in json.dumps(rendered)
    for path in (TESTBED / "airflow-deferrable" / "home").rglob("*.log"):
        assert TOKEN not in path.read_text(errors="replace"), path


def test_waits_in_one_triggerer_share_one_check_per_directory(
    bed: Any, hdfs: Any, hdfs_dir: str, counted: CountingProxy
) -> None:
    """12 mapped waits over 3 directories: 3 checks per interval in all, not 12; each wait gets its own XCom.

    ``a`` and ``c`` hold four waits on the same ``_SUCCESS`` (one GETFILESTATUS per interval), ``b``
    four waits on four different files (one LISTSTATUS per interval)."""
    markers = [f"{hdfs_dir}/a/_SUCCESS"] * 4 + [f"{hdfs_dir}/b/part-{i}.done" for i in range(4)]
    markers += [f"{hdfs_dir}/c/_SUCCESS"] * 4
    client = admin_client(hdfs)
    for d in ("a", "b", "c"):
        client.makedirs(f"{hdfs_dir}/{d}")
    bed.wait_for_dag("defer_shared")
    run_id = bed.trigger("defer_shared", conf={"markers": [[m] for m in markers]})
    for i in range(len(markers)):
        bed.wait_deferred("defer_shared", run_id, "wait", map_index=i)
    time.sleep(4)  # every wait has joined its directory's poll
    counted.reset()
    window = 20.0
    time.sleep(window)
    requests = [(op, path) for _, op, path in counted.requests]
    intervals = window / 2
    # 3 directories, one request each per 2 s interval (+1 for a check at either edge of the window);
    # one poll per wait would be 12 per interval.
    assert len(requests) <= 3 * (intervals + 1), requests
    assert len(requests) >= 3 * (intervals - 1), requests
    assert {op for op, _ in requests} == {"GETFILESTATUS", "LISTSTATUS"}
    assert {p for op, p in requests if op == "LISTSTATUS"} == {f"/webhdfs/v1{hdfs_dir}/b"}
    for m in sorted(set(markers)):
        client.write(m, data=b"")
    assert bed.wait_for_run("defer_shared", run_id, timeout=180) == "success"
    for i, m in enumerate(markers):
        entries = f"/api/v2/dags/defer_shared/dagRuns/{run_id}/taskInstances/wait/xcomEntries"
        xcom = bed.api("GET", f"{entries}/return_value?map_index={i}")
        value = xcom["value"]
        got = json.loads(value) if isinstance(value, str) else value
        assert [x["path"] for x in got] == [m]
