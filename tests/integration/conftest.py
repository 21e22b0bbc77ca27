"""Real services for integration tests: HDFS (single and HA), each started once per session."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.hooks.mlflow import SCOPED_VARIABLES
from scripts.testbed import pid_alive
from scripts.testbed.counting_proxy import CountingProxy
from tests.conftest import TESTBED, service_unavailable


@contextlib.contextmanager
def running_airflow(
    name: str,
    dag_files: dict[str, str],
    *,
    env: dict[str, str] | None = None,
    pools: dict[str, int] | None = None,
    database: str = "sqlite",
    timeout: float = 120,
) -> Iterator[Any]:
    """A started Airflow bed under ``.testbed/<name>`` with ``dag_files``; stopped on exit.

    A bed that cannot start is a missing service (a failure under ``CI=true``).
    """
    from scripts.testbed.airflow_bed import AirflowBed

    airflow = AirflowBed.for_dags(TESTBED / name, dag_files, env=env, pools=pools, database=database)
    try:
        airflow.start(timeout=timeout)
    except Exception as e:  # any failure to start is "service unavailable"
        airflow.stop()
        service_unavailable(f"could not start the Airflow test bed: {type(e).__name__}: {e}")
    try:
        yield airflow
    finally:
        airflow.stop()


def _session_dir(root: Path, kill_stale: Callable[[Path], object]) -> Path:
    """``root/session-<pid>`` for this test session, made empty; dead sessions' directories are removed
    (their leftover daemons killed first by the bed's ``kill_stale(dir)``). Two sessions at once (CI
    beside a developer's run) each get their own, so one never kills or overwrites the other's daemons."""
    for old in root.glob("session-*"):
        owner = old.name.removeprefix("session-")
        if owner.isdigit() and int(owner) != os.getpid() and pid_alive(int(owner)):
            continue
        kill_stale(old)
        shutil.rmtree(old, ignore_errors=True)
    base = root / f"session-{os.getpid()}"
    base.mkdir(parents=True)
    return base


def _start(kind: str) -> Any:
    try:
        from scripts.testbed import hdfs as bed

        base = _session_dir(TESTBED / f"hdfs-{kind}", bed.kill_stale)
        return bed.start_single(base) if kind == "single" else bed.start_ha(base)
    except Exception as e:  # any failure to start is "service unavailable"
        service_unavailable(f"could not start the {kind} HDFS test bed: {type(e).__name__}: {e}")


@pytest.fixture(scope="session")
def hdfs() -> Iterator[Any]:
    """A real single-NameNode HDFS with WebHDFS on 127.0.0.1."""
    cluster = _start("single")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def hdfs_ha() -> Iterator[Any]:
    """A real HA pair (nn1 active, nn2 standby) sharing one DataNode."""
    cluster = _start("ha")
    yield cluster
    cluster.stop()


def admin_client(cluster: Any, url: str | None = None) -> Any:
    """HdfsCLI client as the HDFS superuser, to prepare fixtures."""
    from hdfs import InsecureClient

    return InsecureClient(url or ";".join(cluster.namenode_urls), user=cluster.superuser, timeout=30)


@pytest.fixture
def hdfs_dir(hdfs: Any) -> Iterator[str]:
    """A fresh directory on the single-NameNode HDFS, removed afterwards."""
    path = f"/t/{uuid.uuid4().hex[:10]}"
    client = admin_client(hdfs)
    client.makedirs(path, permission="755")
    yield path
    client.delete(path, recursive=True)


def set_hdfs_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, hosts: list[str], **extra: Any) -> None:
    """Define an ml_hdfs connection through the AIRFLOW_CONN_<ID> environment variable."""
    user = extra.pop("user", "etl")
    body = {
        "conn_type": "ml_hdfs",
        "host": ",".join(h.removeprefix("http://") for h in hosts),
        "login": user,
        "extra": {"timeout": 5, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))


@pytest.fixture
def proxy(hdfs: Any) -> Iterator[CountingProxy]:
    """A request-counting proxy in front of the single NameNode."""
    with CountingProxy(hdfs.namenode_urls[0]) as p:
        yield p


@pytest.fixture(scope="session")
def docker_images() -> dict[str, str]:
    """A running dockerd (installed and started by scripts/dockerd.sh) and the locally built images.

    Returns ``{"base": tag, "train": tag}``.
    """
    try:
        from scripts.testbed import docker_bed

        docker_bed.ensure_dockerd()
        return {"base": docker_bed.ensure_base_image(), "train": docker_bed.ensure_train_image()}
    except Exception as e:
        service_unavailable(f"could not start dockerd or build the test images: {type(e).__name__}: {e}")


@pytest.fixture(scope="session")
def serve_image(docker_images: dict[str, str]) -> str:
    """The model-serving image (``scripts/testbed/serve_image.py``), built locally when missing; its tag."""
    try:
        from scripts.testbed.serve_image import ensure_serve_image

        return ensure_serve_image()
    except Exception as e:
        service_unavailable(f"could not build the serve image: {type(e).__name__}: {e}")


@pytest.fixture(scope="session")
def swarm(docker_images: dict[str, str]) -> dict[str, str]:
    """The local engine as a one-node Swarm manager (``docker swarm init``); returns the image tags."""
    try:
        from scripts.testbed import docker_bed

        docker_bed.ensure_swarm()
    except Exception as e:
        service_unavailable(f"could not initialise Docker Swarm: {type(e).__name__}: {e}")
    return docker_images


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[Any]:
    """A real ``mlflow server`` on 127.0.0.1: SQLite store and proxied artifacts under
    ``.testbed/mlflow/session-<pid>`` (one directory per pytest process, since sessions run
    concurrently; directories of dead sessions are removed first).
    """
    try:
        from scripts.testbed import mlflow_bed

        root = TESTBED / "mlflow"
        mlflow_bed.clean_sessions(root)
        base = root / f"session-{os.getpid()}"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        server = mlflow_bed.start_mlflow(base)
    except Exception as e:  # any failure to start is "service unavailable"
        service_unavailable(f"could not start the MLflow test bed: {type(e).__name__}: {e}")
    yield server
    server.stop()


@pytest.fixture
def mlflow_conn(mlflow_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``ml_mlflow_default`` pointing at the session's MLflow server; afterwards no ``MLFLOW_*``
    variable may be left in the environment (the hook's scope must restore it)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_ML_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "ml_mlflow", "host": mlflow_server.url, "extra": {"max_retries": 1, "timeout": 10}}),
    )
    for name in SCOPED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield "ml_mlflow_default"
    leaked = [name for name in SCOPED_VARIABLES if name in os.environ]
    assert leaked == [], f"MLflow variables left in the environment: {leaked}"


@pytest.fixture(scope="session")
def spark_standalone() -> Iterator[Any]:
    """A real Spark standalone cluster (one Master, one Worker with 2 cores / 2 GB) on 127.0.0.1
    from the venv's ``pyspark``, under ``.testbed/spark/session-<pid>``; directories of dead
    sessions are removed first (their leftover JVMs killed)."""
    try:
        from scripts.testbed import spark_bed

        cluster = spark_bed.start_spark(_session_dir(TESTBED / "spark", spark_bed.kill_stale))
    except Exception as e:  # any failure to start is "service unavailable"
        service_unavailable(f"could not start the Spark standalone test bed: {type(e).__name__}: {e}")
    yield cluster
    cluster.stop()
