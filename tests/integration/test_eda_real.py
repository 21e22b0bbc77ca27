"""EdaReportOperator on real systems: HDFS in and out (WebHDFS), logging to a real MLflow server, and
the report opened in a real headless Chromium, whose charts must render (non-empty SVG boxes)."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.eda.values import percent
from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.operators.eda import DataQualityGateError, EdaReportOperator
from scripts.testbed.browser import CHROMIUM, CHROMIUM_ARGS, BrowserUnavailableError, check_browser
from tests.conftest import TESTBED, service_unavailable
from tests.integration.conftest import admin_client, set_hdfs_conn
from tests.unit.eda.sales import read_all, sales_table, write_sales

pytestmark = pytest.mark.integration
SHOTS = TESTBED / "eda"
COUNTRIES = {"DE": 2_400, "FR": 1_500, "IT": 900, "ES": 600}


class TI:
    dag_id = "markdown_pricing"
    task_id = "eda"
    run_id = "manual__2026-11-23T08:00:00+00:00"
    map_index = -1


def test_hdfs_dataset_profiled_and_report_written_next_to_it(
    hdfs: Any, hdfs_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    set_hdfs_conn(monkeypatch, "hdfs_eda", hdfs.namenode_urls)
    admin = admin_client(hdfs)
    admin.set_owner(hdfs_dir, owner="etl")  # the connection's user writes the report
    local = write_sales(tmp_path / "sales", {"DE": 700, "FR": 300}, files_per_country=2, label_nulls=0.08)
    for file in sorted(local.rglob("*.parquet")):
        admin.write(f"{hdfs_dir}/sales/{file.relative_to(local)}", data=file.read_bytes())
    admin.write(f"{hdfs_dir}/sales/_SUCCESS", data=b"")
    admin.set_owner(f"{hdfs_dir}/sales", owner="etl")
    frame = read_all(local)

    def run(**kw: Any) -> dict[str, Any]:
        task = EdaReportOperator(
            task_id="eda", input_path=f"{hdfs_dir}/sales", hdfs_conn_id="hdfs_eda", chunk_rows=128, **kw
        )
        return task.execute({})

    nulls = int(frame["units_sold"].isna().sum())
    rate = percent(nulls / 1_000)
    reason = f"column 'units_sold' has a null rate of {rate} ({nulls} of 1,000 rows), above max_null_rate 5 %"
    with pytest.raises(DataQualityGateError, match=re.escape(reason)):
        run(max_null_rate={"units_sold": 0.05})
    result = run(max_null_rate={"units_sold": 0.05}, fail_on_gate=False, min_partition_rows=300)
    assert result["report_html"] == f"hdfs://{hdfs_dir}/sales/_eda/report.html"
    assert result["rows"] == 1_000
    assert result["partitions"] == 2
    assert result["gate"]["status"] == "failed"
    assert result["gate"]["reasons"] == [reason]
    assert sorted(admin.list(f"{hdfs_dir}/sales")) == ["_SUCCESS", "_eda", "country=DE", "country=FR"]
    assert sorted(admin.list(f"{hdfs_dir}/sales/_eda")) == ["report.html", "summary.json"]
    with admin.read(f"{hdfs_dir}/sales/_eda/summary.json") as reader:
        summary = json.loads(reader.read())
    with admin.read(f"{hdfs_dir}/sales/_eda/report.html") as reader:
        page = reader.read().decode()
    assert "Gate: FAILED" in page
    cols = {c["name"]: c for c in summary["columns"]}
    assert cols["units_sold"]["nulls"] == frame["units_sold"].isna().sum()
    assert cols["price"]["mean"] == pytest.approx(frame["price"].mean())
    assert cols["sku"]["distinct"] == frame["sku"].nunique()
    assert summary["partition_rows"] == {"country=DE": 700, "country=FR": 300}
    # the report is hidden from dataset readers: the same files as before, still Parquet only
    with admin.read(f"{hdfs_dir}/sales/country=DE/part-0.parquet") as reader:
        assert pq.read_table(io.BytesIO(reader.read())).num_rows == 350
    with pytest.raises(InvalidSpecError, match="does not exist"):
        EdaReportOperator(task_id="eda", input_path=f"{hdfs_dir}/nope", hdfs_conn_id="hdfs_eda").execute({})


def test_report_logged_to_a_real_mlflow_server(mlflow_conn: str, tmp_path: Path) -> None:
    root = write_sales(tmp_path / "sales", {"DE": 500, "FR": 200})
    context: Any = {"ti": TI()}
    task = EdaReportOperator(
        task_id="eda",
        input_path=str(root),
        mlflow_conn_id=mlflow_conn,
        mlflow_experiment="eda-integration",
        max_null_rate={"units_sold": 0.5},
    )
    first = task.execute(context)
    again = task.execute(context)  # a retry: the same run, its artifacts overwritten
    assert first["mlflow_run_id"] == again["mlflow_run_id"]
    hook = MlflowHook(mlflow_conn)
    with hook.scoped():
        client = hook.get_client()
        run = client.get_run(first["mlflow_run_id"])
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "eda")) == [
            "eda/report.html",
            "eda/summary.json",
        ]
        downloaded = Path(client.download_artifacts(run.info.run_id, "eda/report.html", str(tmp_path)))
    assert downloaded.read_bytes() == (root / "_eda" / "report.html").read_bytes()
    assert run.data.metrics["eda.rows"] == 700
    assert run.data.metrics["eda.gate_passed"] == 1
    assert 0 < run.data.metrics["eda.null_rate/units_sold"] < 0.5
    assert run.data.tags["eda.gate"] == "passed"
    assert run.data.tags["airflow.run_id"] == TI.run_id
    assert run.info.status == "FINISHED"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium through Playwright (as scripts/testbed/browser.py launches it)."""
    try:
        check_browser()
    except BrowserUnavailableError as e:
        service_unavailable(str(e))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS))
        yield chromium
        chromium.close()


#: Per chart: its box, and how many of its bars (rect) have a non-empty box.
_CHART_BOXES = """() => [...document.querySelectorAll('svg.chart')].map(svg => {
    const box = svg.getBoundingClientRect();
    const bars = [...svg.querySelectorAll('rect')].map(r => r.getBoundingClientRect());
    return {width: box.width, height: box.height, bars: bars.length,
            drawn: bars.filter(b => b.width > 0 && b.height > 0).length,
            column: svg.closest('article') ? svg.closest('article').querySelector('h3').textContent : null};
})"""


def test_report_renders_its_charts_in_chromium(browser: Any) -> None:
    lake = SHOTS / "lake"  # kept after the test, with the screenshot, to look at
    shutil.rmtree(lake, ignore_errors=True)
    root = write_sales(lake / "2026-11-23" / "sales", COUNTRIES, files_per_country=2, label_nulls=0.03)
    result = EdaReportOperator(
        task_id="eda",
        input_path=str(root),
        title="Sales, week 2026-11-23",
        max_null_rate={"units_sold": 0.05, "discount": 0.15},
        min_partition_rows=500,
    ).execute({})
    assert result["gate"]["passed"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(result["report_html"])
        charts = page.evaluate(_CHART_BOXES)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
        text = page.inner_text("body")
    finally:
        page.close()
    columns = ["sku", "week", "price", "discount", "units_sold", "promo", "country"]
    assert [c["column"] for c in charts] == [None, None, *columns]  # null rates, partitions, one per column
    for chart in charts:
        assert chart["width"] > 100, chart
        assert chart["height"] > 40, chart
        assert chart["drawn"] >= 2, chart  # at least two bars with a visible area
    assert charts[1]["drawn"] == len(COUNTRIES)
    assert "Gate: PASSED" in text
    assert "Data report: Sales, week 2026-11-23" in text
    assert (SHOTS / "report.png").stat().st_size > 50_000


def test_hostile_names_show_as_text_and_run_nothing_in_chromium(browser: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    evil_column = "<script>alert('column')</script>"
    evil_value = "\"><img src=x onerror=alert('value')>"
    table = sales_table(200).append_column(evil_column, pa.array([evil_value, "plain"] * 100))
    folder = tmp_path / "data" / "country=<svg onload=alert(1)>"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")
    result = EdaReportOperator(task_id="eda", input_path=str(tmp_path / "data")).execute({})
    page = browser.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        page.goto(result["report_html"])
        text = page.text_content("body")  # collapsed <details> too
        images = page.evaluate("document.querySelectorAll('img, script').length")
        charts = page.evaluate(_CHART_BOXES)
    finally:
        page.close()
    assert dialogs == []
    assert images == 0
    assert evil_column in text
    assert evil_value in text
    assert "country=<svg onload=alert(1)>" in text
    assert all(c["drawn"] >= 1 for c in charts)
    shutil.rmtree(tmp_path / "data")
