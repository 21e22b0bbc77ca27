"""The example DAGs of ``dags/`` as a first-time user meets them (issue 10).

Their Trigger form must work with the defaults: each param validates with its default and, where
the form shows an empty field, with the null the form sends for it (and with "" from older confs
and REST callers). Each param says what it is for, each DAG shows its module docstring (setup
steps, a ``file://`` quick start, how to backfill) as ``doc_md``, unpausing schedules nothing in
the past, and task output goes through logging, not ``print()``.
"""

from __future__ import annotations

import ast
import copy
import datetime as dt
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from airflow.sdk import DAG

from tests.conftest import ROOT

DAG_FILES = sorted((ROOT / "dags").glob("*.py"))


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_example_dag_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULES = {path.stem: load(path) for path in DAG_FILES}
DAGS = {
    dag.dag_id: (dag, module) for module in MODULES.values() for dag in vars(module).values() if isinstance(dag, DAG)
}


def with_conf(dag: DAG, conf: dict[str, Any]) -> dict[str, Any]:
    """The run's params for ``conf``, validated as the api-server does when a run is created."""
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return params.validate()


def form_conf(dag: DAG) -> dict[str, Any]:
    """What the Trigger form sends when nothing is changed: each default, null for an empty field."""
    return {name: None if param.value in ("", None) else param.value for name, param in dag.params.items()}


def test_every_dag_file_has_one_dag() -> None:
    assert len(DAG_FILES) >= 2
    assert sorted(module for module in MODULES) == sorted(DAGS)


@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_params_validate_with_defaults_and_with_what_the_form_sends(dag_id: str) -> None:
    dag, _ = DAGS[dag_id]
    defaults = dag.params.validate()
    assert with_conf(dag, {}) == defaults
    assert with_conf(dag, form_conf(dag)) == form_conf(dag)
    empty = [name for name, param in dag.params.items() if param.value in ("", None)]
    assert empty, f"{dag_id} has no optional param: the null case would go untested"
    for name in empty:
        assert with_conf(dag, {name: None})[name] is None, name
        assert with_conf(dag, {name: ""})[name] == "", name
        assert dag.params.get_param(name).value is None, f"{name}: an optional param defaults to None"


@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_every_param_has_a_description(dag_id: str) -> None:
    dag, _ = DAGS[dag_id]
    assert [name for name, param in dag.params.items() if not (param.description or "").strip()] == []


@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_doc_md_is_the_setup_instructions(dag_id: str) -> None:
    dag, module = DAGS[dag_id]
    doc = module.__doc__ or ""
    assert dag.doc_md == doc
    for text in ("file://", f"airflow backfill create --dag-id {dag_id}"):
        assert text in doc, text


@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_unpausing_schedules_no_run_in_the_past(dag_id: str) -> None:
    """No catch-up, and the first scheduled run is the next one to come: the run the user triggers
    from the form is not queued behind a scheduled one (``max_active_runs=1``)."""
    from airflow.serialization.serialized_objects import DagSerialization

    dag, _ = DAGS[dag_id]
    assert dag.catchup is False
    now = dt.datetime.now(dt.timezone.utc)
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    first = serialized.next_dagrun_info(last_automated_run_info=None)
    assert first is not None
    assert first.run_after >= now, f"unpausing {dag_id} now schedules a run for {first.run_after}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_no_print_in_dag_files(path: Path) -> None:
    """print() output lands in a collapsed log group of the task log; the DAGs use logging."""
    tree = ast.parse(path.read_text())
    prints = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]
    assert prints == [], f"print() at lines {prints} of {path.name}"
