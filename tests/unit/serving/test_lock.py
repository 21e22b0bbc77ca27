"""The endpoint deploy lock's naming; taking, waiting for and taking over a lock is tested against the
real Docker engine in tests/integration/test_mlflow_deploy_real.py."""

from __future__ import annotations

import os
from types import SimpleNamespace

from airflow_ml_provider.serving.lock import lock_name, lock_owner

RUN = "scheduled__2026-11-23T08:00:00+00:00"


def ti(map_index: int = -1) -> SimpleNamespace:
    return SimpleNamespace(dag_id="weekly_pricing", run_id=RUN, task_id="deploy", map_index=map_index)


def test_the_lock_is_named_after_the_endpoint() -> None:
    assert lock_name("pricing") == "ml-serve-pricing-deploy-lock"


def test_the_holder_is_dag_run_task_with_the_map_index_when_mapped() -> None:
    assert lock_owner({"ti": ti()}) == f"weekly_pricing/{RUN}/deploy"
    assert lock_owner({"ti": ti(3)}) == f"weekly_pricing/{RUN}/deploy[3]"


def test_outside_airflow_the_holder_is_the_process() -> None:
    assert lock_owner({}) == f"a deploy outside Airflow (pid {os.getpid()})"
