"""``scripts/pytest_lanes.py``: which modules run in the stacks lane, and how arguments reach each lane."""

from __future__ import annotations

import ast
from pathlib import Path

from scripts import pytest_lanes

#: Session-scoped fixtures of tests/integration/conftest.py that start a bed shared by the beds lane.
SHARED_BEDS = {
    "hdfs",
    "hdfs_ha",
    "hdfs_dir",
    "proxy",
    "spark_standalone",
    "mlflow_server",
    "mlflow_conn",
    "serve_image",
    "swarm",
}


def _requested_fixtures(path: Path) -> set[str]:
    """Every argument name of the module's functions (tests and fixtures alike)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names |= {a.arg for a in node.args.args + node.args.kwonlyargs}
    return names


def test_stack_modules_exist_and_start_no_shared_bed() -> None:
    for module in pytest_lanes.STACK_MODULES:
        path = pytest_lanes.ROOT / module
        assert path.is_file(), module
        shared = _requested_fixtures(path) & SHARED_BEDS
        assert not shared, f"{module} uses the shared beds {sorted(shared)}: move it to the beds lane"


def test_a_test_path_or_one_lane_means_a_single_session() -> None:
    assert pytest_lanes._names_a_path(["tests/unit", "-q"])
    assert pytest_lanes._names_a_path(["tests/unit/test_pytest_lanes.py::test_x"])
    assert not pytest_lanes._names_a_path(["-q", "-k", "erp", "-m", "integration"])


def test_junit_files_are_made_per_lane() -> None:
    args = ["-v", "--junitxml=/tmp/r/junit.xml"]
    assert pytest_lanes._lane_args(args, "stacks") == ["-v", "--junitxml=/tmp/r/junit.stacks.xml"]
    assert args == ["-v", "--junitxml=/tmp/r/junit.xml"]
