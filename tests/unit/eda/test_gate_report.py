"""The gate's verdicts and reasons; the HTML report's charts and escaping."""

from __future__ import annotations

import html.parser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ml_provider.eda.gate import check_thresholds, evaluate
from airflow_ml_provider.eda.profile import accuracy, profile_dataset
from airflow_ml_provider.eda.report import render_html
from airflow_ml_provider.eda.stats import Caps
from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.storage.local import LocalStorage

SUMMARY: dict[str, Any] = {
    "rows": 1_000,
    "partition_rows": {"country=DE": 900, "country=FR": 100},
    "columns": [
        {"name": "units_sold", "rows": 1_000, "nulls": 60, "nan": 3, "null_rate": 0.063},
        {"name": "price", "rows": 1_000, "nulls": 0, "nan": 0, "null_rate": 0.0},
    ],
}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_rows": -1}, "min_rows=-1 must be a whole number >= 0"),
        ({"min_rows": True}, "min_rows=True"),
        ({"min_partition_rows": 1.5}, "min_partition_rows=1.5"),
        ({"max_null_rate": 0.05}, "must map column names to fractions, e.g. max_null_rate={'units_sold': 0.05}"),
        ({"max_null_rate": {"x": 5}}, r"max_null_rate\['x'\]=5 must be a fraction between 0 and 1"),
        ({"max_null_rate": {"x": float("nan")}}, r"max_null_rate\['x'\]=nan"),
        ({"max_null_rate": {"": 0.1}}, "keys are column names"),
    ],
)
def test_bad_thresholds_are_refused(kwargs: dict[str, Any], message: str) -> None:
    args = {"min_rows": None, "min_partition_rows": None, "max_null_rate": None, **kwargs}
    with pytest.raises(InvalidSpecError, match=message):
        check_thresholds(**args)


def test_no_thresholds_pass() -> None:
    assert evaluate(SUMMARY) == {"status": "passed", "passed": True, "reasons": [], "checks": []}


def test_each_failed_check_names_subject_value_and_threshold() -> None:
    gate = evaluate(
        SUMMARY, min_rows=2_000, min_partition_rows=200, max_null_rate={"units_sold": 0.05, "price": 0, "label": 0.1}
    )
    assert gate["status"] == "failed"
    assert not gate["passed"]
    assert gate["reasons"] == [
        "the dataset has 1,000 rows, fewer than min_rows=2,000",
        "partition country=FR has 100 rows, fewer than min_partition_rows=200",
        "column 'units_sold' has a null rate of 6.3 % (63 of 1,000 rows), above max_null_rate 5 %",
        "column 'label' of max_null_rate is not in the dataset (it has ['price', 'units_sold'])",
    ]
    assert [c["passed"] for c in gate["checks"]] == [False, True, False, False, True, False]


def test_thresholds_met_pass() -> None:
    gate = evaluate(SUMMARY, min_rows=1_000, min_partition_rows=100, max_null_rate={"units_sold": 0.063})
    assert gate["passed"]
    assert gate["reasons"] == []
    assert len(gate["checks"]) == 4


class Collector(html.parser.HTMLParser):
    """Tags, script elements and event-handler attributes of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.handlers: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def report_of(tmp_path: Path, table: pa.Table, **gate: Any) -> str:
    path = tmp_path / "d" / "country=<em>DE"
    path.mkdir(parents=True)
    pq.write_table(table, path / "p.parquet")
    storage = LocalStorage()
    files = storage.list_dataset(str(tmp_path / "d")) or []
    result = profile_dataset(storage, files, columns=None, chunk_rows=1000, scratch=str(tmp_path))
    summary = {
        "dataset": "file:///<script>alert('dataset')</script>",
        "title": "<i>title</i>",
        "generated_at": "2026-11-23T08:00:00+00:00",
        **result.to_dict(top_k=5),
        "accuracy": accuracy(Caps(), Caps(1_024, 1_024, 50)),
    }
    summary["gate"] = evaluate(summary, **gate)
    return render_html(summary, max_null_rate=gate.get("max_null_rate"))


def test_data_values_are_escaped_everywhere(tmp_path: Path) -> None:
    evil_column = "<script>alert(1)</script>"
    evil_value = '"><img src=x onerror=alert(2)>'
    table = pa.table({evil_column: [1.0, 2.0, None], "cat": [evil_value, "a&b", evil_value]})
    page = report_of(tmp_path, table, max_null_rate={evil_column: 0.1})
    parsed = Collector()
    parsed.feed(page)
    assert "script" not in parsed.tags
    assert "img" not in parsed.tags
    assert "i" not in parsed.tags
    assert "em" not in parsed.tags
    assert parsed.handlers == []
    text = "".join(parsed.text)
    for shown in (evil_column, evil_value, "a&b", "country=<em>DE", "<i>title</i>"):
        assert shown in text, shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "column '<script>alert(1)</script>' has a null rate of 33.33 %" in text


def test_report_has_a_chart_per_column_and_the_overview_charts(tmp_path: Path) -> None:
    table = pa.table({"x": [1.5, 2.5, 3.5, 10.0] * 10, "s": ["a", "b", "b", "c"] * 10, "flag": [True, False] * 20})
    page = report_of(tmp_path, table, min_rows=1)
    parsed = Collector()
    parsed.feed(page)
    # null rates, rows per partition, then one distribution per column (x, s, flag, country)
    assert parsed.tags.count("svg") == 6
    assert parsed.tags.count("rect") >= 3 + 4 + 3 + 2 + 1 + 1
    assert "Gate: PASSED" in page
    assert "How accurate" in page
    assert "<link" not in page
    assert "<script" not in page
    assert "http" not in page.replace('xmlns="http', "")
