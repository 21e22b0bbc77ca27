"""A task (or `airflow connections test`) on a machine without one of the provider's extras.

Each test hides a module the extra installs (``sys.modules[name] = None`` makes ``import name``
raise ``ModuleNotFoundError``, as on a worker without it) and runs the real code path: the error
must be permanent (no retries: a retry cannot install a package), name the module and say
``pip install "airflow-ml-provider[<extra>]"``. The CLI renders a failed connection test as rich
markup, so there the brackets are escaped and still shown.
"""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_ml_provider.exceptions import PermanentError

CLI_MODULE = "airflow.cli.commands.connection_command"


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import`` of each module, and of any of its submodules already loaded, fail as if not installed."""
    for name in modules:
        for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")] or [name]:
            monkeypatch.setitem(sys.modules, loaded, None)


def check_missing(error: BaseException, module: str, extra: str) -> None:
    """The error is the permanent MissingExtraError naming ``module`` and the install command."""
    assert type(error).__name__ == "MissingExtraError", f"{type(error).__name__}: {error}"
    assert isinstance(error, PermanentError)
    assert isinstance(error, AirflowFailException)  # Airflow fails the task without retries
    assert getattr(error, "retryable", True) is False
    assert f'pip install "airflow-ml-provider[{extra}]"' in str(error)
    named = getattr(error, "module", "")  # the module Python could not import: ``module`` or one of its own
    assert named == module or named.startswith(f"{module}."), named
    assert f"{named!r}" in str(error)
    assert getattr(error, "extra", None) == extra
    assert not str(error).endswith("..")


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **body: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))


def rendered_by_rich(message: str) -> str:
    """What ``console.print(f"...{message}")`` shows, as the Airflow CLI prints a failed test."""
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=400, color_system=None).print(f"[bold][red]Connection failed![/bold]\n{message}")
    return out.getvalue()


# -- hdfs / kerberos ----------------------------------------------------------------------------------


def hdfs_hook(**config: Any) -> Any:
    from airflow_ml_provider.hooks.webhdfs import HdfsConfig, HdfsHook

    return HdfsHook("nn", config=HdfsConfig(conn_id="nn", namenodes=("http://127.0.0.1:1",), **config))


def test_hdfs_hook_without_the_hdfs_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "hdfs")
    with pytest.raises(PermanentError) as info:
        hdfs_hook().get_conn()
    check_missing(info.value, "hdfs", "hdfs")


def test_kerberos_without_the_kerberos_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "hdfs.ext.kerberos")
    with pytest.raises(PermanentError) as info:
        hdfs_hook(auth="kerberos").get_conn()
    check_missing(info.value, "hdfs.ext.kerberos", "kerberos")


def test_hdfs_sensor_task_fails_without_retries_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor

    hide(monkeypatch, "hdfs")
    set_conn(monkeypatch, "nn", conn_type="ml_hdfs", host="127.0.0.1", port=1)
    sensor = HdfsSuccessSensor(
        task_id="wait", paths="/data/week", hdfs_conn_id="nn", poke_interval=0.05, timeout=5, soft_fail=True
    )
    with pytest.raises(PermanentError) as info:
        sensor.execute({})
    check_missing(info.value, "hdfs", "hdfs")  # soft_fail does not turn it into a skip either


def test_hdfs_connection_test_names_the_extra_and_survives_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "hdfs")
    ok, message = hdfs_hook().test_connection()
    assert not ok
    assert 'pip install "airflow-ml-provider[hdfs]"' in message  # the UI shows the message as it is
    monkeypatch.setitem(sys.modules, CLI_MODULE, types.ModuleType(CLI_MODULE))  # as in `airflow connections test`
    ok, message = hdfs_hook().test_connection()
    assert not ok
    assert 'pip install "airflow-ml-provider[hdfs]"' in rendered_by_rich(message)


def test_the_kerberos_hint_survives_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: "install 'airflow-ml-provider[kerberos]'" printed as "install 'airflow-ml-provider'"."""
    hide(monkeypatch, "hdfs.ext.kerberos")
    monkeypatch.setitem(sys.modules, CLI_MODULE, types.ModuleType(CLI_MODULE))
    ok, message = hdfs_hook(auth="kerberos").test_connection()
    assert not ok
    assert 'pip install "airflow-ml-provider[kerberos]"' in rendered_by_rich(message)


# -- docker -------------------------------------------------------------------------------------------


def test_docker_backend_without_the_docker_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_ml_provider.hooks.container import ContainerJobHook

    hide(monkeypatch, "docker")
    set_conn(monkeypatch, "engine", conn_type="ml_docker", host="unix:///var/run/docker.sock")
    backend = ContainerJobHook("engine").get_backend()
    with pytest.raises(PermanentError) as info:
        backend.find("ml-some-job")  # what the operator asks first
    check_missing(info.value, "docker", "docker")


@pytest.mark.parametrize("conn_type", ["ml_docker", "ml_swarm"])
def test_docker_connection_test_names_the_extra(monkeypatch: pytest.MonkeyPatch, conn_type: str) -> None:
    from airflow_ml_provider.hooks.container import ContainerJobHook

    hide(monkeypatch, "docker")
    set_conn(monkeypatch, "engine", conn_type=conn_type, host="unix:///var/run/docker.sock")
    monkeypatch.setitem(sys.modules, CLI_MODULE, types.ModuleType(CLI_MODULE))
    ok, message = ContainerJobHook("engine").test_connection()
    assert not ok
    shown = rendered_by_rich(message)
    assert 'pip install "airflow-ml-provider[docker]"' in shown
    assert "MissingExtraError" in shown


# -- mlflow (and pandas / pyarrow, which the mlflow extra installs) ----------------------------------------


def mlflow_hook() -> Any:
    from airflow_ml_provider.hooks.mlflow import MlflowConfig, MlflowHook

    hook = MlflowHook("tracking")
    hook.__dict__["config"] = MlflowConfig(tracking_uri="http://127.0.0.1:1", registry_uri="http://127.0.0.1:1")
    return hook


def test_mlflow_hook_without_the_mlflow_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "mlflow")
    with pytest.raises(PermanentError) as info:
        mlflow_hook().get_client()
    check_missing(info.value, "mlflow", "mlflow")
    monkeypatch.setitem(sys.modules, CLI_MODULE, types.ModuleType(CLI_MODULE))
    ok, message = mlflow_hook().test_connection()
    assert not ok
    assert 'pip install "airflow-ml-provider[mlflow]"' in rendered_by_rich(message)


def test_batch_prediction_model_loading_without_the_mlflow_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_ml_provider.scoring.model import load_model

    hide(monkeypatch, "mlflow")
    with pytest.raises(PermanentError) as info:
        load_model("models:/pricing@champion", "tracking", str(tmp_path))
    check_missing(info.value, "mlflow", "mlflow")


def test_registry_operator_without_the_mlflow_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_ml_provider.operators.mlflow_registry import MlflowPromoteModelOperator

    hide(monkeypatch, "mlflow")
    op = MlflowPromoteModelOperator(task_id="promote", name="pricing", version="3")
    with pytest.raises(PermanentError) as info:
        op.execute({})
    check_missing(info.value, "mlflow", "mlflow")


def test_parquet_reading_without_pyarrow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow_ml_provider.storage.base import DataFile
    from airflow_ml_provider.storage.local import LocalStorage

    hide(monkeypatch, "pyarrow")
    with pytest.raises(PermanentError) as info:
        LocalStorage().read_schema(DataFile(path=str(tmp_path / "part-0.parquet"), size=0))
    check_missing(info.value, "pyarrow", "mlflow")


def test_pandas_scoring_without_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_ml_provider.scoring.pandas_engine import predict_chunk

    hide(monkeypatch, "pandas")
    with pytest.raises(PermanentError) as info:
        predict_chunk(object(), object(), "rows 0-9", model_uri="models:/m/1", prediction_column="p")  # type: ignore[arg-type]
    check_missing(info.value, "pandas", "mlflow")


# -- spark --------------------------------------------------------------------------------------------


def test_spark_engine_without_the_spark_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from airflow_ml_provider.scoring.spark_engine import spark_session

    hide(monkeypatch, "pyspark")
    with pytest.raises(PermanentError) as info:
        spark_session("local[1]", None, "test", logging.getLogger("test"))
    check_missing(info.value, "pyspark", "spark")
