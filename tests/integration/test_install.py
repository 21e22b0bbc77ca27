"""The installed package as Airflow and pip see it: provider registration, connection types and
their forms, connections tested against the real services, and a consistent pyspark (pyspark-client
shares its folder). The built sdist and wheel are tested in ``test_packaging.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration
AIRFLOW = str(Path(sys.executable).parent / "airflow")


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, text=True)
    return env


def airflow(env: dict[str, str], *args: str, check: bool = True) -> str:
    done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + ("" if check else done.stderr)


def test_providers_list_shows_the_package(airflow_env: dict[str, str]) -> None:
    rows = json.loads(airflow(airflow_env, "providers", "list", "-o", "json"))
    ours = [r for r in rows if r["package_name"] == "airflow-ml-provider"]
    assert ours
    assert ours[0]["version"] == "0.1.0"


def test_connection_type_is_known_with_its_form(airflow_env: dict[str, str]) -> None:
    hooks = json.loads(airflow(airflow_env, "providers", "hooks", "-o", "json"))
    ml = [h for h in hooks if h.get("connection_type") == "ml_hdfs"]
    assert ml
    assert ml[0]["class"] == "airflow_ml_provider.hooks.webhdfs.HdfsHook"
    behaviours = json.loads(airflow(airflow_env, "providers", "behaviours", "-o", "json"))
    assert {"field_behaviours": "ml_hdfs"} in behaviours
    widgets = json.loads(airflow(airflow_env, "providers", "widgets", "-o", "json"))
    ours = {w["connection_parameter_name"] for w in widgets if w["package_name"] == "airflow-ml-provider"}
    hdfs = {w for w in ours if w.startswith("extra__ml_hdfs__")}
    fields = ("auth", "use_ssl", "verify", "ca_bundle", "timeout", "proxy_user", "rpc_port", "nameservice")
    assert {f"extra__ml_hdfs__{f}" for f in fields} == hdfs
    for conn_type, cls in (
        ("ml_docker", "airflow_ml_provider.hooks.container.ContainerJobHook"),
        ("ml_swarm", "airflow_ml_provider.hooks.container.SwarmJobHook"),
        ("ml_metronome", "airflow_ml_provider.hooks.container.MetronomeJobHook"),
        ("ml_mlflow", "airflow_ml_provider.hooks.mlflow.MlflowHook"),
    ):
        hook = [h for h in hooks if h.get("connection_type") == conn_type]
        assert hook, conn_type
        assert hook[0]["class"] == cls
        assert {"field_behaviours": conn_type} in behaviours
    assert "extra__ml_mlflow__registry_uri" in ours
    assert "extra__ml_docker__pull" in ours
    assert "extra__ml_metronome__token" in ours
    for stock in ("docker", "http"):
        owners = [h for h in hooks if h.get("connection_type") == stock]
        assert all(h["package_name"] != "airflow-ml-provider" for h in owners), stock
    webhdfs_owner = [h for h in hooks if h.get("connection_type") == "webhdfs"]
    assert all(h["package_name"] != "airflow-ml-provider" for h in webhdfs_owner)


def test_connection_of_our_type_can_be_created_and_tested(airflow_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    airflow(
        airflow_env,
        "connections",
        "add",
        "lake_it",
        "--conn-type",
        "ml_hdfs",
        "--conn-host",
        f"file://{tmp_path}/lake",
    )
    shown = json.loads(airflow(airflow_env, "connections", "get", "lake_it", "-o", "json"))
    assert shown[0]["conn_type"] == "ml_hdfs"
    out = airflow(airflow_env, "connections", "test", "lake_it")
    assert "success" in out.lower(), out


def test_docker_connection_can_be_tested_against_the_real_engine(
    airflow_env: dict[str, str], docker_images: dict[str, str]
) -> None:
    airflow(
        airflow_env,
        "connections",
        "add",
        "engine_it",
        "--conn-type",
        "ml_docker",
        "--conn-host",
        "unix:///var/run/docker.sock",
    )
    out = airflow(airflow_env, "connections", "test", "engine_it")
    assert "success" in out.lower(), out
    airflow(
        airflow_env,
        "connections",
        "add",
        "engine_bad",
        "--conn-type",
        "ml_docker",
        "--conn-host",
        "unix:///nonexistent.sock",
    )
    out = airflow(airflow_env, "connections", "test", "engine_bad", check=False)
    assert "success" not in out.lower(), out


def test_mlflow_connection_can_be_tested_against_the_real_server(
    airflow_env: dict[str, str], mlflow_server: Any
) -> None:
    airflow(
        airflow_env, "connections", "add", "mlflow_it", "--conn-type", "ml_mlflow", "--conn-host", mlflow_server.url
    )
    out = airflow(airflow_env, "connections", "test", "mlflow_it")
    assert "success" in out.lower(), out


def test_pyspark_is_one_consistent_release() -> None:
    """Distribution, module and JVM jars agree, and a real local Spark session reports it."""
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_pyspark.py")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    code = (
        "import pyspark\n"
        "from pyspark.sql import SparkSession\n"
        "s = SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false')"
        ".config('spark.driver.bindAddress', '127.0.0.1').getOrCreate()\n"
        "print(pyspark.__version__, s.version, s.range(5).count())\n"
        "s.stop()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    module_version, jvm_version, count = out.stdout.strip().splitlines()[-1].split()
    assert module_version == jvm_version
    assert count == "5"


# --------------------------------------------------------------------------- the built sdist and wheel

#: What tools and test beds leave in a working tree; none of it may reach an sdist.
