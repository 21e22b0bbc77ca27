"""Shared by the tests of airflow_ml_provider.jobs: the week, a synthetic lake, result reading, subprocess runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.jobs import synthetic
from tests.conftest import ROOT

JOBS_DIR = ROOT / "airflow_ml_provider" / "jobs"
WEEK = "2026-11-23"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-JSON constant {name} in the result")


def load_result(path: Path) -> dict[str, Any]:
    """A job's JSON result; a NaN or Infinity in it fails (the job must write strict JSON)."""
    return json.loads(path.read_text(), parse_constant=_reject_constant)


def run_subprocess(
    args: list[str], pythonpath: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run with only ``pythonpath`` added to the path (``cwd`` too goes first on ``sys.path``)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("ML_RESULT_PATH", "ML_NUM_THREADS")}
    full_env.update(env or {}, PYTHONPATH=str(pythonpath))
    return subprocess.run(args, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120, check=False)


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """``tmp_path/lake`` with a synthetic week of sales for DE and FR (400 rows each)."""
    synthetic.write_week(str(tmp_path / "lake"), WEEK, ["DE", "FR"], rows_per_country=400, seed=1)
    return tmp_path / "lake"
