"""The sdist and wheel built from the working tree (license, no ignored files), and the wheel on a
plain Airflow 3.3.2 as a worker installs it: the `mlflow` extra runs Airflow's CLI and a DAG, and a
worker without the `hdfs` extra is told which extra to install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from scripts.testbed.install_bed import base_venv, build_dists, changed, freeze, worker_venv
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

JUNK_DIRS = (".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".testbed", ".cache", ".venv", ".demo")


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel built from the working tree, as `python -m build` makes them."""
    return build_dists(tmp_path_factory.mktemp("dist"))


def git_kept_files(root: Path) -> set[str]:
    """Files of ``root`` git tracks or would track (untracked but not ignored)."""
    cmd = ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {f for f in out.split("\0") if f and (root / f).is_file()}


def sdist_files(sdist: Path) -> dict[str, bytes]:
    """``{path below the sdist's top folder: content}`` of its regular files."""
    with tarfile.open(sdist) as tf:
        return {
            m.name.split("/", 1)[1]: tf.extractfile(m).read()  # type: ignore[union-attr]
            for m in tf.getmembers()
            if m.isfile()
        }


def test_wheel_declares_the_apache_license_and_ships_its_text(dists: tuple[Path, Path]) -> None:
    license_text = (ROOT / "LICENSE").read_bytes()
    assert license_text.split(b"\n")[1:3] == [
        b" " * 33 + b"Apache License",
        b" " * 27 + b"Version 2.0, January 2004",
    ]
    with zipfile.ZipFile(dists[1]) as zf:
        info = next(n.split("/")[0] for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
        assert meta["License-Expression"] == "Apache-2.0"
        assert meta.get_all("License-File") == ["LICENSE"]
        assert meta["License"] is None  # the free-text field PEP 639 replaces
        assert zf.read(f"{info}/licenses/LICENSE") == license_text


def test_sdist_holds_the_license_and_no_file_git_ignores(dists: tuple[Path, Path]) -> None:
    files = sdist_files(dists[0])
    assert files["LICENSE"] == (ROOT / "LICENSE").read_bytes()
    ignored = sorted(set(files) - git_kept_files(ROOT) - {"PKG-INFO"})
    assert not ignored, f"the sdist ships files git ignores: {ignored[:20]}"
    assert "pyproject.toml" in files
    assert "airflow_ml_provider/__init__.py" in files


def test_sdist_leaves_out_tool_caches_and_test_beds(tmp_path: Path) -> None:
    """A copy of the tree plus what hypothesis, pytest, mypy, ruff and the test beds leave behind
    (the caches with the nested ``*`` .gitignore their tools write): only the project's files ship."""
    tree = tmp_path / "tree"
    kept = git_kept_files(ROOT)
    for rel in kept:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tree / rel)
    for junk in JUNK_DIRS:
        (tree / junk / "sub").mkdir(parents=True, exist_ok=True)
        (tree / junk / "sub" / "left-behind").write_text("x")
        if junk not in (".testbed", ".cache", ".venv", ".demo"):
            (tree / junk / ".gitignore").write_text("# written by the tool\n*\n")
    sdist, _ = build_dists(tmp_path / "dist", source=tree)
    shipped = set(sdist_files(sdist))
    assert not sorted(f for f in shipped if f.split("/")[0] in JUNK_DIRS)
    assert shipped - {"PKG-INFO"} <= kept


# --------------------------------------------------------------------------- a worker with the mlflow extra

#: What MLflow's tracking server brings and a worker does not need.
SERVER_STACK = {"mlflow", "flask", "gunicorn", "graphene", "matplotlib", "scipy", "scikit-learn", "huey"}
#: Airflow dependencies the `mlflow` extra may still move: mlflow-skinny (and mlflow-tracing) cap
#: cachetools<8 and importlib_metadata<10 (see the README's Install section).
ALLOWED_DOWNGRADES = {"cachetools", "importlib-metadata"}

MODEL_CODE = """
import mlflow
from mlflow.pyfunc import PythonModel


class Double(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["a"] * 2


mlflow.models.set_model(Double())
"""

WORKER_DAG = """
import os

import pendulum
from airflow.sdk import dag, task

from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator
from airflow_ml_provider.operators.mlflow_registry import MlflowRegisterModelOperator

WORK = os.environ["ML_WORKER_CHECK_DIR"]


@dag(dag_id="ml_worker_check", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def ml_worker_check():
    @task
    def train() -> dict:
        import mlflow
        import pandas as pd
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        import airflow_ml_provider
        from airflow_ml_provider.hooks.mlflow import MlflowHook

        with open(f"{WORK}/package.txt", "w") as f:
            f.write(airflow_ml_provider.__file__)
        pd.DataFrame({"id": [1, 2, 3], "a": [0.5, 1.5, 2.5]}).to_parquet(f"{WORK}/input.parquet")
        # Given, not inferred from an input example: MLflow's inference imports scipy.
        signature = ModelSignature(inputs=Schema([ColSpec("double", "a")]), outputs=Schema([ColSpec("double")]))
        hook = MlflowHook()
        with hook.scoped():
            mlflow.set_tracking_uri(hook.config.tracking_uri)
            with mlflow.start_run() as run:
                mlflow.pyfunc.log_model(
                    name="model",
                    python_model=f"{WORK}/double.py",
                    signature=signature,
                    pip_requirements=["mlflow-skinny", "pandas"],
                )
        return {"run_id": run.info.run_id}

    register = MlflowRegisterModelOperator(
        task_id="register", name="double", model_uri="runs:/{{ ti.xcom_pull('train')['run_id'] }}/model"
    )
    predict = MlflowBatchPredictOperator(
        task_id="predict",
        model_uri="models:/double/{{ ti.xcom_pull('register')['version'] }}",
        input_path=f"{WORK}/input.parquet",
        output_path=f"{WORK}/out",
        passthrough_columns=["id"],
    )
    train() >> register >> predict


ml_worker_check()
"""


@pytest.mark.timeout(1800)
def test_mlflow_extra_on_plain_airflow_runs_the_cli_and_a_dag(dists: tuple[Path, Path], tmp_path: Path) -> None:
    """A venv with only Airflow and ``<wheel>[mlflow]`` (cached under .cache/install-bed/): no server
    stack, no Airflow dependency moved but the two mlflow-skinny caps, and Airflow's CLI plus a DAG
    that logs, registers and batch-scores a model (mlflow.pyfunc, MlflowClient) work."""
    t0 = time.monotonic()
    venv = worker_venv(dists[1], "mlflow")
    ready = time.monotonic() - t0
    got = freeze(venv)
    assert "mlflow-skinny" in got
    assert not SERVER_STACK & set(got), sorted(SERVER_STACK & set(got))
    moved = changed(freeze(base_venv()), got)
    assert set(moved) <= ALLOWED_DOWNGRADES, moved
    pip_check = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    assert pip_check.returncode == 0, pip_check.stdout + pip_check.stderr

    home, dags, work = tmp_path / "home", tmp_path / "dags", tmp_path / "work"
    for d in (home, dags, work):
        d.mkdir()
    (dags / "ml_worker_check.py").write_text(WORKER_DAG)
    (work / "double.py").write_text(MODEL_CODE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW_CONN_ML_MLFLOW_DEFAULT": json.dumps(
                {"conn_type": "ml_mlflow", "host": f"sqlite:///{work}/mlflow.db"}
            ),
            "ML_WORKER_CHECK_DIR": str(work),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
    )

    def run(*args: str) -> str:
        # in `work`: a sqlite:// tracking store puts artifacts under ./mlruns of the working directory
        done = subprocess.run([str(venv / "bin" / "airflow"), *args], env=env, cwd=work, capture_output=True, text=True)
        assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        return done.stdout

    assert run("version").strip() == got["apache-airflow"]
    run("db", "migrate")
    # --local parses the folder, as a worker does; Airflow prints a graphviz warning before the JSON
    listed = json.loads(run("dags", "list", "--local", "-o", "json").strip().splitlines()[-1])
    assert "ml_worker_check" in {d["dag_id"] for d in listed}
    log = run("dags", "test", "ml_worker_check")
    assert "has no signature" not in log  # the inputs were checked against the model's signature
    assert (work / "package.txt").read_text().startswith(str(venv))  # the installed wheel ran, not the source tree

    import pyarrow.parquet as pq

    out = work / "out"
    assert (out / "_SUCCESS").is_file()
    table = pq.read_table(sorted(out.glob("part-*.parquet"))[0])
    assert table.column_names == ["id", "prediction"]
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert table.column("prediction").to_pylist() == [1.0, 3.0, 5.0]
    assert (work / "mlruns").is_dir()  # the model's artifacts stayed in the scratch folder
    print(f"worker venv ready in {ready:.1f}s, whole check {time.monotonic() - t0:.1f}s")


# --------------------------------------------------------------------------- a worker without the extras

#: A DAG whose sensor needs the hdfs extra; retries with no delay, so a retryable error would run it 4 times.
NO_EXTRAS_DAG = """
import datetime as dt

import pendulum
from airflow.sdk import dag

from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor


@dag(dag_id="ml_missing_extra", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def ml_missing_extra():
    HdfsSuccessSensor(
        task_id="wait",
        paths="/data/sales/week=2026-11-23",
        hdfs_conn_id="nn_it",
        deferrable=False,
        poke_interval=1,
        timeout=60,
        retries=3,
        retry_delay=dt.timedelta(seconds=0),
    )


the_dag = ml_missing_extra()
"""

#: Runs the DAG with dag.test() and prints the sensor's final state and how many times it ran.
NO_EXTRAS_RUNNER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import airflow_ml_provider
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
from ml_missing_extra import the_dag
dr = the_dag.test()
with create_session() as session:
    ti = session.query(TaskInstance).filter_by(dag_id="ml_missing_extra", run_id=dr.run_id, task_id="wait").one()
    result = {"state": str(ti.state), "try_number": ti.try_number, "package": airflow_ml_provider.__file__}
    print("RESULT " + json.dumps(result))
"""


@pytest.mark.timeout(1800)
def test_worker_without_the_hdfs_extra_is_told_which_extra_to_install(dists: tuple[Path, Path], tmp_path: Path) -> None:
    """The wheel without extras (venv cached under .cache/install-bed/): ``airflow connections test``
    of an ml_hdfs connection prints the install command with its brackets (the CLI renders rich
    markup, which used to swallow ``[hdfs]``), and a DAG with the HDFS sensor fails at its first try
    (no retries: the task has 3) with the same command, not a bare ModuleNotFoundError."""
    venv = worker_venv(dists[1], "")
    python = str(venv / "bin" / "python")
    for module in ("hdfs", "docker", "mlflow", "pyspark"):  # what the extras would bring
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0, f"{module} is installed in the venv without extras"

    home, dags = tmp_path / "home", tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    (dags / "ml_missing_extra.py").write_text(NO_EXTRAS_DAG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW_CONN_NN_IT": json.dumps({"conn_type": "ml_hdfs", "host": "127.0.0.1", "port": 1}),
        }
    )
    airflow_bin = str(venv / "bin" / "airflow")
    migrated = subprocess.run([airflow_bin, "db", "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]

    tested = subprocess.run(
        [airflow_bin, "connections", "test", "nn_it"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    shown = tested.stdout + tested.stderr
    assert tested.returncode != 0, shown
    assert "Connection failed!" in shown, shown
    # brackets visible, no backslash, and the command on a line of its own (80 columns do not break it)
    assert '\nInstall the provider\'s extra: pip install "airflow-ml-provider[hdfs]"\n' in shown, shown
    assert "needs the Python module 'hdfs'" in shown, shown

    done = subprocess.run(  # cwd: not the source tree, whose package `python -c` would import instead
        [python, "-c", NO_EXTRAS_RUNNER, str(dags)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert results, output[-6000:]
    result = json.loads(results[-1][len("RESULT ") :])
    assert result["package"].startswith(str(venv)), result  # the installed wheel ran
    assert (result["state"], result["try_number"]) == ("failed", 1), output[-6000:]  # at once, retries unused
    assert "MissingExtraError" in output, output[-6000:]
    assert "airflow-ml-provider[hdfs]" in output, output[-6000:]
