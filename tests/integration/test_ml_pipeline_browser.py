"""``ml_pipeline`` from the Airflow UI in a real browser: trigger with a param, watch the run succeed in
the grid; a bad param fails the run at once and the failed task's log says what to fix.

One real Airflow (api-server, scheduler, dag-processor, triggerer) on the demo's embedded defaults
(:class:`scripts.testbed.demo_stack.DemoStack`: the seeded SQLite source, the SQLite ERP, ``file://``
storage, Spark ``local[*]``, a local ``mlflow server``), and Debian's Chromium driven by Playwright
(:class:`scripts.testbed.browser.AirflowUI`). The stack acts as a machine without Docker
(``no_docker``: the tasks' Docker connection names a socket nothing listens on), so the DAG's
``deploy=auto`` skips the deploy and says why, as on a laptop without Docker; the deploy itself is
tests/integration/test_demo.py's. Screenshots go to ``.testbed/ui/``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.testbed.browser import AirflowUI, BrowserUnavailableError, check_browser
from scripts.testbed.demo_stack import DAG_ID, DemoStack, erp_counts, source_rows, xcom
from scripts.testbed.loopback_http import free_port
from tests.conftest import TESTBED, service_unavailable

pytestmark = pytest.mark.integration

BASE = TESTBED / "ml-pipeline-browser"
SHOTS = TESTBED / "ui"
ENDPOINT = "ml-pipeline-browser-test"


@pytest.fixture(scope="module")
def stack() -> Iterator[DemoStack]:
    """The demo's stack, started, acting as a machine without Docker."""
    try:
        check_browser()
    except BrowserUnavailableError as e:
        service_unavailable(str(e))
    demo = DemoStack(BASE, endpoint_name=ENDPOINT, endpoint_port=free_port(), no_docker=True)
    demo.reset()
    try:
        try:
            demo.seed()
            demo.start_mlflow()
            demo.start_airflow()
        except Exception as e:  # any failure to start is "service unavailable"
            service_unavailable(f"could not start the demo stack: {type(e).__name__}: {e}")
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def ui(stack: DemoStack) -> Iterator[AirflowUI]:
    assert stack.bed is not None
    with AirflowUI.for_bed(stack.bed, artifacts=SHOTS, timeout=60) as browser:
        yield browser


def test_trigger_form_param_and_the_grid_shows_success(stack: DemoStack, ui: AirflowUI) -> None:
    """Type ``storage_root`` into the Trigger form, press Trigger: the run shows success in the grid."""
    assert stack.bed is not None
    lake = stack.lake.as_uri()
    result = ui.press_trigger(DAG_ID, params={"storage_root": lake})
    assert result.status == 200, result
    assert result.request["conf"]["storage_root"] == lake
    assert result.request["conf"]["source_table"] == "sales"
    # the form also unpauses the DAG, in a request of its own: leaving the page before it is sent
    # leaves the DAG paused and the run queued (CI saw that)
    stack.bed.wait_unpaused(DAG_ID)

    assert ui.wait_for_run(DAG_ID, result.run_id, {"success"}, timeout=1200) == "success"
    tasks = {t["task_id"] for t in stack.bed.api("GET", f"/api/v2/dags/{DAG_ID}/tasks")["tasks"]}
    shown = ui.grid_task_ids(result.run_id, expect=tasks)
    assert tasks <= set(shown), (sorted(tasks), shown)
    ui.page.screenshot(path=str(SHOTS / "ml_pipeline-run-success.png"))

    run = stack.bed.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{result.run_id}")
    assert (run["run_type"], run["state"], run["conf"]["storage_root"]) == ("manual", "success", lake)
    assert (stack.lake / "sales" / "ingested" / "_SUCCESS").is_file()
    counts = erp_counts(stack.erp_db)
    assert sorted(counts) == ["DE", "ES", "FR", "IT"]
    assert sum(counts.values()) == source_rows(stack.source_db)
    # no Docker engine: the run skipped the deploy and its gate says why
    assert stack.bed.task_states(DAG_ID, result.run_id)["deploy"] == "skipped"
    decision = xcom(stack.bed, result.run_id, "deploy_gate", "decision")
    assert str(decision).startswith("skipped: deploy=auto and "), decision
    assert "Docker engine" in str(decision), decision
    assert "'ml_docker_default'" in str(decision), decision


def test_a_table_that_does_not_exist_fails_once_and_the_log_says_why(stack: DemoStack, ui: AirflowUI) -> None:
    """``source_table`` passes the form's schema but names no table: ``ingest`` fails on its first try
    (no retries, though the DAG has retries=2), and its log in the UI names the table and the fix."""
    assert stack.bed is not None
    result = ui.press_trigger(DAG_ID, params={"storage_root": stack.lake.as_uri(), "source_table": "no_such_table"})
    assert result.status == 200, result
    assert ui.wait_for_run(DAG_ID, result.run_id, {"failed"}, timeout=600) == "failed"

    ingest = stack.bed.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{result.run_id}/taskInstances/ingest")
    assert (ingest["state"], ingest["try_number"]) == ("failed", 1), ingest
    states = stack.bed.task_states(DAG_ID, result.run_id)
    assert states["eda"] == "upstream_failed", states

    log = ui.open_task_log(DAG_ID, result.run_id, "ingest", expect="no_such_table")
    ui.page.screenshot(path=str(SHOTS / "ml_pipeline-ingest-failed-log.png"))
    assert "Reading table no_such_table failed on connection 'ml_pipeline_source'" in log, log[-3000:]
    assert "Check the table's name and schema" in log, log[-3000:]
