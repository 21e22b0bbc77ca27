"""Issue 10 (first contact): every example DAG triggers with its defaults, through the REST API and
from the real Trigger form in headless Chromium; its page shows its setup instructions; unpausing
it (the form's "Unpause on trigger") schedules nothing in the past.

One real Airflow (api-server, scheduler, triggerer, dag-processor) with the DAG files of
``dags/`` as they ship, and one real Chromium (Debian's, through Playwright) for the module.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.testbed.airflow_bed import AirflowBed
from scripts.testbed.browser import AirflowUI, BrowserUnavailableError, check_browser
from tests.conftest import ROOT, TESTBED, service_unavailable
from tests.integration.conftest import running_airflow

pytestmark = pytest.mark.integration

DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
#: Each example DAG (its file's stem) and what its setup instructions must tell a first-time user.
SETUP_TEXT = {
    "markdown_pricing": [
        "airflow pools set markdown_pricing ",
        "airflow pools set markdown_pricing_erp ",
        "markdown_pricing_erp (type postgres, mysql or sqlite)",
        "ERP_TABLE_DDL",
        "airflow backfill create --dag-id markdown_pricing",
        "file://",
    ],
    "example_hdfs_success": ["ml_hdfs_default", "file://", "airflow backfill create --dag-id example_hdfs_success"],
}
EXAMPLE_DAGS = sorted(SETUP_TEXT)
#: Example DAGs whose UI runs are tested in files of their own: unpausing ml_pipeline starts a run at
#: once (its timetable), so it needs the demo's set-up first.
ELSEWHERE = {"ml_pipeline": "tests/integration/test_ml_pipeline_browser.py"}
LAKE = TESTBED / "ui-trigger-lake"


def test_every_example_dag_is_covered() -> None:
    assert sorted(p.stem for p in DAG_FILES) == sorted([*EXAMPLE_DAGS, *ELSEWHERE])
    assert all((ROOT / path).is_file() for path in ELSEWHERE.values())


def write_quick_start_markers(lake: Path) -> list[Path]:
    """The ``file://`` quick start of example_hdfs_success's docs: a ``_SUCCESS`` per default country
    under ``data/sales/week=<today>`` (and tomorrow's, in case the run's date turns over midnight UTC)."""
    today = dt.datetime.now(dt.timezone.utc).date()
    markers = []
    for day in (today, today + dt.timedelta(days=1)):
        for country in ("DE", "FR", "IT", "ES", "PL"):
            marker = lake / "data" / "sales" / f"week={day.isoformat()}" / f"country={country}" / "_SUCCESS"
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            markers.append(marker)
    return markers


@pytest.fixture(scope="module")
def bed() -> Iterator[AirflowBed]:
    """The example DAGs in a real Airflow, set up as their docs say: the markdown_pricing pool, and
    ml_hdfs_default on a local directory (``file://``) holding the quick start's markers."""
    shutil.rmtree(LAKE, ignore_errors=True)
    write_quick_start_markers(LAKE)
    env = {"AIRFLOW_CONN_ML_HDFS_DEFAULT": json.dumps({"conn_type": "ml_hdfs", "host": f"file://{LAKE}"})}
    dags = {p.name: p.read_text() for p in DAG_FILES}
    pools = {"markdown_pricing": 4, "markdown_pricing_erp": 2}
    with running_airflow("ui-trigger", dags, env=env, pools=pools) as airflow:
        for dag_id in EXAMPLE_DAGS:
            airflow.wait_for_dag(dag_id)
        yield airflow


@pytest.fixture(scope="module")
def ui(bed: AirflowBed) -> Iterator[AirflowUI]:
    """Headless Chromium signed into the bed's api-server."""
    try:
        check_browser()
    except BrowserUnavailableError as e:
        service_unavailable(str(e))
    with AirflowUI.for_bed(bed, artifacts=TESTBED / "ui-trigger" / "screenshots") as browser:
        yield browser


def runs_path(dag_id: str) -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns"


def empty_params(bed: AirflowBed, dag_id: str) -> dict[str, None]:
    """The conf the Trigger form sends for the fields it shows empty: null for each (as the form does)."""
    params = bed.api("GET", f"/api/v2/dags/{dag_id}/details")["params"]
    return {name: None for name, p in params.items() if p.get("value") in ("", None)}


@pytest.mark.parametrize("dag_id", EXAMPLE_DAGS)
def test_rest_trigger_with_defaults_is_accepted(bed: AirflowBed, dag_id: str) -> None:
    """POST dagRuns with no conf, and with null for every field the form shows empty, creates runs."""
    nulls = empty_params(bed, dag_id)
    assert nulls, f"{dag_id} has no optional parameter: this test would not test what the form sends"
    created = []
    try:
        run = bed.api("POST", runs_path(dag_id), {"logical_date": None})
        created.append(run["dag_run_id"])
        assert run["run_type"] == "manual"
        assert run["conf"] == {}
        status, body = bed._request("POST", runs_path(dag_id), {"logical_date": None, "conf": nulls})
        assert status == 200, f"{dag_id} refuses the conf the Trigger form sends ({nulls}): HTTP {status}: {body}"
        created.append(body["dag_run_id"])
        assert body["conf"] == nulls
    finally:  # the DAG is paused: the runs never started; the browser test wants the DAG to itself
        for run_id in created:
            bed.api("DELETE", f"{runs_path(dag_id)}/{run_id}")


@pytest.mark.parametrize("dag_id", EXAMPLE_DAGS)
def test_trigger_form_with_defaults_creates_a_run_that_starts(bed: AirflowBed, ui: AirflowUI, dag_id: str) -> None:
    """Open the Trigger form in Chromium, fill nothing, press Trigger: a run is created and starts at
    once (the form unpauses the DAG; no catch-up or past scheduled run goes ahead of it)."""
    assert bed.api("GET", f"/api/v2/dags/{dag_id}")["is_paused"] is True
    result = ui.press_trigger(dag_id)
    assert result.status == 200, f"the Trigger form of {dag_id} was refused: {result}"
    assert set(result.request["conf"]) == set(bed.api("GET", f"/api/v2/dags/{dag_id}/details")["params"])

    run = bed.api("GET", f"{runs_path(dag_id)}/{result.run_id}")
    assert run["run_type"] == "manual"
    assert run["conf"] == result.request["conf"]
    bed.wait_unpaused(dag_id)  # "Unpause on trigger": the form's own request, which may come later

    deadline = time.monotonic() + 90
    while (state := bed.api("GET", f"{runs_path(dag_id)}/{result.run_id}")["state"]) not in ("running", "success"):
        tasks = bed.task_states(dag_id, result.run_id)
        assert state == "queued", f"{dag_id}: the triggered run went {state!r}: {tasks}"
        if time.monotonic() > deadline:
            runs = bed.api("GET", f"{runs_path(dag_id)}?limit=100")["dag_runs"]
            others = [(r["dag_run_id"], r["state"]) for r in runs if r["dag_run_id"] != result.run_id]
            raise AssertionError(f"{dag_id}: the triggered run stayed queued for 90 s; other runs: {others}")
        time.sleep(0.5)
    runs = bed.api("GET", f"{runs_path(dag_id)}?limit=100")["dag_runs"]
    assert [(r["dag_run_id"], r["run_type"]) for r in runs] == [(result.run_id, "manual")]
    details = bed.api("GET", f"/api/v2/dags/{dag_id}/details")
    assert details["catchup"] is False
    next_run = dt.datetime.fromisoformat(details["next_dagrun_run_after"])
    assert next_run > dt.datetime.now(dt.timezone.utc), f"unpausing {dag_id} schedules a run for {next_run}"
    if dag_id == "example_hdfs_success":
        check_quick_start_run(bed, result.run_id)


def check_quick_start_run(bed: AirflowBed, run_id: str) -> None:
    """example_hdfs_success on the quick start's markers succeeds; ``summarize`` logs each marker
    through logging (a task-log line of its own, not stdout in a collapsed group)."""
    dag_id = "example_hdfs_success"
    assert bed.wait_for_run(dag_id, run_id, timeout=120) == "success", bed.task_states(dag_id, run_id)
    log = bed.task_log(dag_id, run_id, "summarize")
    written = [line for line in log.splitlines() if "/_SUCCESS written at " in line]
    assert len(written) == 5, log
    assert [line for line in written if "task.stdout" in line or " example_hdfs_success " not in line] == [], log


@pytest.mark.parametrize("dag_id", EXAMPLE_DAGS)
def test_dag_page_shows_setup_instructions(ui: AirflowUI, dag_id: str) -> None:
    docs = ui.dag_docs(dag_id)
    missing = [text for text in SETUP_TEXT[dag_id] if text not in docs]
    assert missing == [], f"the Dag Docs of {dag_id} lack {missing}:\n{docs}"


def backfill_command(doc: str) -> list[str]:
    """The ``airflow backfill create ...`` command a DAG's docs give (``\\`` continuations joined), as
    arguments after ``airflow``."""
    joined = re.sub(r"\\\n\s*", " ", doc)
    lines = [line.strip() for line in joined.splitlines() if line.strip().startswith("airflow backfill create")]
    assert len(lines) == 1, f"expected one backfill command in the docs, found {lines}"
    return shlex.split(lines[0])[1:]


@pytest.mark.parametrize("dag_id", EXAMPLE_DAGS)
def test_documented_backfill_command_plans_one_run_per_monday(bed: AirflowBed, dag_id: str) -> None:
    """The backfill command of the DAG's docs, as a dry run, plans one run per Monday 08:00 UTC of its
    range, no more at once than the DAG's own max_active_runs (a backfill's default is 10)."""
    details = bed.api("GET", f"/api/v2/dags/{dag_id}/details")
    args = backfill_command(details["doc_md"] or "")
    assert args[args.index("--max-active-runs") + 1] == str(details["max_active_runs"]), args
    start = dt.datetime.fromisoformat(args[args.index("--from-date") + 1]).replace(tzinfo=dt.timezone.utc)
    end = dt.datetime.fromisoformat(args[args.index("--to-date") + 1]).replace(tzinfo=dt.timezone.utc)
    done = bed.cli(*args, "--dry-run")
    planned = [line.split("|")[1].strip() for line in done.stdout.splitlines() if re.match(r"\|\s*\d{4}-", line)]
    mondays = [
        day.replace(hour=8)
        for day in (start.replace(hour=0, minute=0) + dt.timedelta(days=i) for i in range((end - start).days + 1))
        if day.weekday() == 0 and start <= day.replace(hour=8) <= end
    ]
    assert len(mondays) >= 2
    assert planned == [m.strftime("%Y-%m-%d %H:%M:%S+00:00") for m in mondays], done.stdout
