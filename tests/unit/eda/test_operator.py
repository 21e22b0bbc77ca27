"""EdaReportOperator: parse-time checks, cheap import, and execution on local data (and a local MLflow store)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.operators.eda import DataQualityGateError, EdaReportOperator
from tests.unit.eda.sales import write_sales


class TI:
    dag_id = "markdown_pricing"
    task_id = "eda"
    run_id = "scheduled__2026-11-23T08:00:00+00:00"
    map_index = -1


def op(**kw: Any) -> EdaReportOperator:
    kw.setdefault("input_path", "/data/sales")
    return EdaReportOperator(task_id="eda", **kw)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_rows": 0}, "chunk_rows=0 must be a whole number >= 1, e.g. chunk_rows=100000"),
        ({"sample_size": 10}, "sample_size=10"),
        ({"distinct_cap": "many"}, "distinct_cap='many'"),
        ({"top_k": 0}, "top_k=0"),
        ({"input_path": "sales"}, "input_path='sales' is not absolute"),
        ({"output_path": "/data/sales"}, "overlaps input_path='/data/sales'"),
        ({"output_path": "/data/sales/report"}, "overlaps input_path"),
        ({"output_path": "/data"}, "overlaps input_path"),
        ({"columns": "units_sold"}, "columns='units_sold' must be a list of column names"),
        ({"min_rows": -5}, "min_rows=-5"),
        ({"max_null_rate": {"units_sold": 5}}, r"max_null_rate\['units_sold'\]=5"),
        ({"fail_on_gate": "yes"}, "fail_on_gate='yes'"),
        ({"mlflow_conn_id": ""}, "mlflow_conn_id=''"),
        ({"mlflow_experiment": " "}, "mlflow_experiment=' '"),
    ],
)
def test_bad_arguments_fail_at_parse_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        op(**kwargs)


def test_templated_and_hidden_outputs_are_accepted() -> None:
    op(input_path="{{ params.data_root }}/sales", output_path="/data/sales")  # checked after rendering
    op(output_path="/data/sales/_reports/eda")
    op(output_path="hdfs:///reports/sales")
    assert op().template_fields == ("input_path", "output_path", "columns", "mlflow_experiment", "title")


def test_import_and_construction_load_no_data_library() -> None:
    heavy = ["pandas", "pyarrow", "mlflow", "hdfs"]
    code = (
        "import json, sys\n"
        "from airflow_ml_provider.operators.eda import EdaReportOperator\n"
        "EdaReportOperator(task_id='t', input_path='hdfs:///in', hdfs_conn_id='nope', mlflow_conn_id='nope',"
        " max_null_rate={'y': 0.05})\n"
        f"print(json.dumps(sorted(n for n in {heavy!r} if n in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_writes_json_and_html_next_to_the_data_hidden_from_readers(tmp_path: Path) -> None:
    from airflow_ml_provider.storage.local import LocalStorage

    root = write_sales(tmp_path / "sales", {"DE": 800, "FR": 300})
    before = LocalStorage().list_dataset(str(root))
    result = op(input_path=str(root), chunk_rows=250, title="Week 2026-11-23").execute({})
    report = root / "_eda"
    assert result == {
        "report_html": f"file://{report}/report.html",
        "summary_json": f"file://{report}/summary.json",
        "rows": 1_100,
        "files": 2,
        "partitions": 2,
        "columns": 7,
        "gate": {"status": "passed", "passed": True, "reasons": []},
        "mlflow_run_id": None,
    }
    assert sorted(p.name for p in report.iterdir()) == ["report.html", "summary.json"]
    summary = json.loads((report / "summary.json").read_text())
    assert summary["format"] == "airflow-ml-provider/eda/1"
    assert summary["rows"] == 1_100
    assert summary["title"] == "Week 2026-11-23"
    assert summary["dataset"] == f"file://{root}"
    assert "Data report: Week 2026-11-23" in (report / "report.html").read_text()
    assert LocalStorage().list_dataset(str(root)) == before  # readers of the dataset do not see the report
    op(input_path=str(root)).execute({})  # a rerun replaces the report and leaves nothing aside
    assert sorted(p.name for p in root.iterdir()) == ["_SUCCESS", "_eda", "country=DE", "country=FR"]


def test_a_one_file_dataset_gets_a_sibling_report(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2, 3]}), tmp_path / "data.parquet")
    result = op(input_path=f"file://{tmp_path}/data.parquet").execute({})
    assert result["report_html"] == f"file://{tmp_path}/_eda_data.parquet/report.html"
    assert (tmp_path / "_eda_data.parquet" / "summary.json").is_file()


def test_a_failed_gate_raises_after_writing_the_report(tmp_path: Path) -> None:
    root = write_sales(tmp_path / "sales", {"DE": 1_000}, label_nulls=0.2)
    task = op(input_path=str(root), max_null_rate={"units_sold": 0.05, "price": 0.0}, min_rows=10)
    with pytest.raises(DataQualityGateError) as failed:
        task.execute({})
    message = str(failed.value)
    assert f"The data-quality gate failed for file://{root}: column 'units_sold' has a null rate of" in message
    assert "above max_null_rate 5 %" in message
    assert f"The report is at file://{root}/_eda/report.html" in message
    assert failed.value.reasons == [message.split(": ", 1)[1].split(". The report")[0]]
    summary = json.loads((root / "_eda" / "summary.json").read_text())
    assert summary["gate"]["status"] == "failed"
    assert summary["gate"]["reasons"] == failed.value.reasons
    assert "Gate: FAILED" in (root / "_eda" / "report.html").read_text()


def test_fail_on_gate_false_only_warns(tmp_path: Path) -> None:
    root = write_sales(tmp_path / "sales", {"DE": 50})
    result = op(input_path=str(root), min_partition_rows=100, fail_on_gate=False).execute({})
    assert result["gate"] == {
        "status": "failed",
        "passed": False,
        "reasons": ["partition country=DE has 50 rows, fewer than min_partition_rows=100"],
    }


def test_missing_or_empty_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError, match="does not exist"):
        op(input_path=str(tmp_path / "nope")).execute({})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").touch()
    with pytest.raises(InvalidSpecError, match="holds no data files"):
        op(input_path=str(tmp_path / "empty")).execute({})


def test_logs_both_files_to_mlflow_into_one_run_per_task_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_ml_provider.hooks.mlflow import MlflowHook
    from scripts.testbed.predict_data import CONN_ENV, mlflow_conn_json, mlflow_env_snapshot

    monkeypatch.setenv(CONN_ENV, mlflow_conn_json(tmp_path / "store"))
    (tmp_path / "store").mkdir()
    before = mlflow_env_snapshot()
    hook = MlflowHook()
    with hook.scoped():
        hook.get_client().create_experiment("eda-unit", artifact_location=(tmp_path / "artifacts").as_uri())
    root = write_sales(tmp_path / "sales", {"DE": 300})
    task = op(input_path=str(root), mlflow_conn_id="ml_mlflow_default", mlflow_experiment="eda-unit")
    context: Any = {"ti": TI()}
    first = task.execute(context)
    again = task.execute(context)  # a retry of the same task instance
    assert first["mlflow_run_id"] == again["mlflow_run_id"]
    assert mlflow_env_snapshot() == before
    with hook.scoped():
        client = hook.get_client()
        run = client.get_run(first["mlflow_run_id"])
        artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id, "eda"))
    assert artifacts == ["eda/report.html", "eda/summary.json"]
    assert run.data.metrics["eda.rows"] == 300
    assert run.data.metrics["eda.null_rate/units_sold"] > 0
    assert run.data.tags["eda.gate"] == "passed"
    assert run.data.tags["airflow.task_id"] == "eda"
    assert run.info.status == "FINISHED"
