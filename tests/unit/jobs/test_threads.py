"""Thread sizing inside the job container (airflow_ml_provider.jobs.threads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_ml_provider.jobs import threads
from airflow_ml_provider.jobs.common import BadInputError


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("200000 100000\n", 2),
        ("150000 100000", 2),
        ("50000 100000", 1),
        ("max 100000\n", None),
        ("", None),
        ("x y", None),
    ],
)
def test_cgroup_cpu_limit(tmp_path: Path, content: str, expected: int | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(content)
    assert threads.cgroup_cpu_limit(str(cpu_max)) == expected


def test_num_threads(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000")
    assert threads.num_threads({}, str(cpu_max)) == 1
    assert threads.num_threads({"ML_NUM_THREADS": "3"}, str(cpu_max)) == 3
    assert threads.num_threads({}, str(tmp_path / "absent")) == threads.available_cpus()
    with pytest.raises(BadInputError, match="ML_NUM_THREADS"):
        threads.num_threads({"ML_NUM_THREADS": "lots"})


@pytest.mark.parametrize(
    ("rows", "limit", "explicit", "expected"),
    [(400, 8, False, 1), (400, 8, True, 8), (100_000, 8, False, 5), (10**7, 8, False, 8), (10**7, 2, False, 2)],
)
def test_small_data_gets_few_threads(rows: int, limit: int, explicit: bool, expected: int) -> None:
    assert threads.threads_for(rows, limit, explicit) == expected


@pytest.mark.parametrize(
    ("env", "expected"), [({}, False), ({"ML_NUM_THREADS": " "}, False), ({"ML_NUM_THREADS": "2"}, True)]
)
def test_explicit_threads(env: dict[str, str], expected: bool) -> None:
    assert threads.explicit_threads(env) is expected
