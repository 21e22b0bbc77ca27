"""The Docker test bed for real: the engine, a single-node swarm, and the locally built images."""

from __future__ import annotations

import subprocess
import time

import pytest

from scripts.testbed import docker_bed
from tests.conftest import service_unavailable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine() -> None:
    try:
        docker_bed.ensure_dockerd()
    except (docker_bed.DockerBedError, OSError, subprocess.TimeoutExpired) as e:
        service_unavailable(f"could not start dockerd: {e}")


@pytest.fixture(scope="module")
def images(engine: None) -> dict[str, str]:
    # A build failure is a test failure, not a missing service: the engine is up.
    return {"base": docker_bed.ensure_base_image(), "train": docker_bed.ensure_train_image()}


def run_in(image: str, *args: str, network: str = "none") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [docker_bed.docker_cli(), "run", "--rm", f"--network={network}", image, *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_base_image_runs_python_without_network(images: dict[str, str]) -> None:
    assert images["base"] == "airflow-ml-provider/base:bookworm"
    proc = run_in(images["base"], "python3", "-c", "import sys; print(1, sys.version_info[:2])")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1 (3, 11)"


def test_train_image_has_libraries_and_jobs_but_no_airflow(images: dict[str, str]) -> None:
    tag = images["train"]
    assert tag == docker_bed.train_image_tag()
    assert len(tag.rsplit(":", 1)[1]) == 12
    latest = docker_bed.image_inspect(docker_bed.TRAIN_LATEST)
    built = docker_bed.image_inspect(tag)
    assert latest is not None
    assert built is not None
    assert latest["Id"] == built["Id"]
    script = (
        "import importlib, importlib.util, pkgutil, sys\n"
        "import lightgbm, numpy, pandas, pyarrow\n"
        "import airflow_ml_provider.jobs as jobs\n"
        "mods = [m.name for m in pkgutil.walk_packages(jobs.__path__, 'airflow_ml_provider.jobs.')]\n"
        "for m in mods: importlib.import_module(m)\n"
        "assert importlib.util.find_spec('airflow') is None, 'the train image must not have Airflow'\n"
        "print(sys.prefix, lightgbm.__version__, pandas.__version__, pyarrow.__version__, *mods)\n"
    )
    proc = run_in(tag, "python", "-c", script)
    assert proc.returncode == 0, proc.stderr
    prefix, *_versions = proc.stdout.split()
    assert prefix == "/opt/venv"
    # lightgbm actually trains (libgomp1 is there).
    train = (
        "import lightgbm as lgb, numpy as np\n"
        "X = np.random.default_rng(0).normal(size=(200, 3)); y = X[:, 0] * 2 + 1\n"
        "m = lgb.train({'objective': 'regression', 'verbose': -1, 'num_threads': 1}, lgb.Dataset(X, y), 10)\n"
        "print(m.num_trees())\n"
    )
    proc = run_in(tag, "python", "-c", train)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "10"


def test_swarm_active_after_ensure_swarm(engine: None) -> None:
    docker_bed.ensure_swarm()
    assert docker_bed.swarm_manager_active()
    out = subprocess.run(
        [docker_bed.docker_cli(), "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert out == ["active", "true"]


def test_ensure_all_is_fast_when_everything_exists(images: dict[str, str]) -> None:
    docker_bed.ensure_all()
    t0 = time.monotonic()
    tags = docker_bed.ensure_all()
    assert time.monotonic() - t0 < 1.0
    assert tags == {"base": images["base"], "train": images["train"], "train_latest": docker_bed.TRAIN_LATEST}
