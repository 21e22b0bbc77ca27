"""The one parser of --week and --countries every job uses (airflow_ml_provider.jobs.common)."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_ml_provider.jobs import markdown_train, synthetic
from airflow_ml_provider.jobs.common import BadInputError, parse_countries, parse_week


def test_both_jobs_use_the_one_parser() -> None:
    assert synthetic.parse_week is markdown_train.parse_week is parse_week
    assert synthetic.parse_countries is markdown_train.parse_countries is parse_countries


def test_parse_week() -> None:
    assert parse_week("2026-11-23") == dt.date(2026, 11, 23)


@pytest.mark.parametrize("week", ["2026-11-31", "2026-13-01", "../x", "2026-1-5", "20261123", "2026-11-23/..", ""])
def test_parse_week_refuses_names_the_value_and_the_form(week: str) -> None:
    with pytest.raises(BadInputError) as info:
        parse_week(week)
    assert repr(week) in str(info.value)
    assert "YYYY-MM-DD" in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("DE,FR", ["DE", "FR"]),
        (" DE , FR ,DE,", ["DE", "FR"]),
        (["DE", " IT ", "DE", ""], ["DE", "IT"]),
        (("x_1", "y-2"), ["x_1", "y-2"]),
    ],
)
def test_parse_countries_from_text_or_sequence(value: str | list[str], expected: list[str]) -> None:
    assert parse_countries(value) == expected


@pytest.mark.parametrize(("value", "named"), [("DE,../FR", "'../FR'"), (["DE", "F R"], "'F R'"), ("DE/x", "'DE/x'")])
def test_parse_countries_refuses_a_bad_code_naming_it(value: str | list[str], named: str) -> None:
    with pytest.raises(BadInputError, match="letters, digits") as info:
        parse_countries(value)
    assert named in str(info.value)


@pytest.mark.parametrize("value", [" , ", "", []])
def test_parse_countries_refuses_none_and_shows_an_example(value: str | list[str]) -> None:
    with pytest.raises(BadInputError, match=r"e\.g\. DE,FR"):
        parse_countries(value)


def test_bad_input_is_a_value_error() -> None:
    """Callers of the Python API (synthetic.write_week) catch ValueError; the training job exits 2 on it."""
    assert issubclass(BadInputError, ValueError)


def test_jobs_log_through_logging_to_stdout_never_print(capsys: pytest.CaptureFixture[str]) -> None:
    """Job output goes through stdlib logging (one handler on stdout, one line per record); no print()."""
    import ast
    import logging
    from pathlib import Path

    from airflow_ml_provider.jobs.common import job_logger

    jobs_dir = Path(markdown_train.__file__).parent
    for path in sorted(jobs_dir.glob("*.py")):
        calls = [
            n.lineno
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
        ]
        assert not calls, f"{path.name} prints at lines {calls}; use its job_logger"
    logger = job_logger("check")
    assert job_logger("check") is logger
    assert len(logger.handlers) == 1  # asking twice adds no second handler
    assert not logger.propagate
    logger.info("one %s", "line")
    logger.error("error: two")
    logging.getLogger().error("root, not ours")
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["check: one line", "check: error: two"]
