"""MlflowDeployModelOperator: arguments checked at DAG parse time, default connections, public names.

The blue/green flow itself runs against a real MLflow server and Docker engine in
tests/integration/test_mlflow_deploy_real.py; ``target_uri`` in test_mlflow_deploy_target.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError, ModelDeployError
from airflow_ml_provider.hooks.container import ContainerJobHook
from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.operators import mlflow_deploy
from airflow_ml_provider.operators.mlflow_deploy import MlflowDeployModelOperator


def make(**kw: Any) -> MlflowDeployModelOperator:
    args: dict[str, Any] = {"task_id": "deploy", "name": "lin", "endpoint_name": "pricing", "port": 8080, **kw}
    return MlflowDeployModelOperator(**args)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"endpoint_name": "Pricing"}, "endpoint_name='Pricing' must be 1-40 of"),
        ({"endpoint_name": "-x"}, "endpoint_name="),
        ({"endpoint_name": "x" * 41}, "endpoint_name="),
        ({"name": ""}, "name=''"),
        ({"image": " "}, "image="),
        ({"version": 0}, "version=0 must be a registered version number"),
        ({"alias": ""}, "alias="),
        ({"port": 0}, "port=0 must be a TCP port"),
        ({"port": 70000}, "port=70000"),
        ({"port": True}, "port=True"),
        ({"admin_port": 8080}, "must differ from port"),
        ({"port": 65535}, "admin_port=65536"),  # the default admin port, port + 1, is out of range
        ({"workers": 0}, "workers=0"),
        ({"health_timeout": 0}, "health_timeout=0"),
        ({"drain_timeout": -1}, "drain_timeout=-1"),
        ({"lock_timeout": "soon"}, "lock_timeout='soon'"),
    ],
)
def test_bad_arguments_fail_at_parse_time_naming_the_argument(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidSpecError) as err:
        make(**kw)
    assert needle in str(err.value)


def test_defaults_and_a_templated_endpoint_name() -> None:
    op = make(endpoint_name="{{ params.endpoint }}", version=3)
    assert op.endpoint_name == "{{ params.endpoint }}"  # checked again when the task runs
    assert op.version == "3"
    assert op.admin_port == 8081
    assert op.mlflow_conn_id == MlflowHook.default_conn_name
    assert op.docker_conn_id == ContainerJobHook.default_conn_name
    assert ContainerJobHook.default_conn_name == mlflow_deploy.DEFAULT_DOCKER_CONN_ID
    assert "endpoint_name" in op.template_fields


def test_a_rendered_endpoint_name_is_checked_before_anything_runs() -> None:
    op = make(endpoint_name="{{ params.endpoint }}")
    op.endpoint_name = "Not Valid"  # what rendering produced
    with pytest.raises(InvalidSpecError, match="endpoint_name='Not Valid'"):
        op.execute({})


def test_every_public_name_stays_importable_from_the_operator_module() -> None:
    for name in mlflow_deploy.__all__:
        assert getattr(mlflow_deploy, name) is not None, name
    assert mlflow_deploy.ModelDeployError is ModelDeployError
    assert callable(mlflow_deploy.remove_endpoint)
