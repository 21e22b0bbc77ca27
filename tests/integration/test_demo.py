"""``make demo`` as a user runs it: ``scripts/demo.py`` end to end, then what it printed is checked
against the real outputs.

One demo run (real everything: the seeded SQLite source, the SQLite ERP, ``file://`` storage, Spark
``local[*]``, a local ``mlflow server``, a real Airflow scheduler and api-server, the local Docker
engine for the deploy) in its own directory ``.testbed/demo`` and with its own endpoint name and
port, so a user's ``.demo`` and endpoint are left alone. The test then checks that:

* the output has a progress line per task and the run's end;
* the ERP rows per country it printed are what the SQLite ERP holds, one per source row, all
  written by the run with the model version it deployed;
* the EDA report it names exists;
* the printed ``curl`` request works against the endpoint;
* the printed UI command serves the run (logged in with the printed login, over the REST API);
* nothing of the demo is left running (no process mentions its directory), the endpoint aside.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.testbed.loopback_http import free_port
from tests.conftest import ROOT, TESTBED, service_unavailable

pytestmark = pytest.mark.integration

BASE = TESTBED / "demo"
ENDPOINT = "ml-pipeline-demo-test"
TASKS = ("ingest", "eda", "plan_training", "train", "select_model", "register", "promote", "deploy_gate",
         "deploy", "predict", "write_erp")  # fmt: skip


def _processes_mentioning(text: str) -> list[str]:
    """``pid cmdline`` of the live processes whose command line or environment contains ``text``."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and (needle in cmdline or needle in environ):
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
            found.append(f"{entry.name} {shown}")
    return found


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[str, float]]:
    """The demo's output and wall time; its endpoint is removed afterwards."""
    port = free_port()
    command = [sys.executable, "scripts/demo.py", "--dir", str(BASE), "--endpoint", ENDPOINT]
    command += ["--endpoint-port", str(port)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    seconds = time.monotonic() - started
    try:
        assert done.returncode == 0, (
            f"{shlex.join(command)} exited {done.returncode}:\n{done.stdout[-8000:]}\n" + (done.stderr[-4000:])
        )
        yield done.stdout, seconds
    finally:
        with contextlib.suppress(Exception):
            from airflow_ml_provider.operators.mlflow_deploy import remove_endpoint

            remove_endpoint(ENDPOINT)


def test_make_demo_runs_the_script() -> None:
    """``make demo`` runs scripts/demo.py; ``make demo-markdown`` the markdown_pricing demo."""
    for target, script in (("demo", "scripts/demo.py"), ("demo-markdown", "scripts/demo_markdown.py")):
        recipe = subprocess.run(["make", "-n", "-W", "pyproject.toml", target], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout  # fmt: skip
        assert re.search(rf"python\S* {re.escape(script)}\s*$", recipe, re.M), recipe


def test_demo_output_matches_what_it_made(demo: tuple[str, float]) -> None:
    out, seconds = demo
    print(f"demo wall time: {seconds:.0f} s")
    progress = re.findall(r"^\s+\[\s*[\d.]+ s\] (\S+?)(?:\[[^\]]*\])?\s+(\w+)$", out, re.M)
    final = dict(progress)
    assert set(final) == set(TASKS), out
    docker_skipped = re.search(r"^demo: no Docker engine for the deploy step \((.*)\)", out, re.M)
    assert {t: s for t, s in final.items() if t != "deploy"} == {t: "success" for t in TASKS if t != "deploy"}, out
    assert final["deploy"] == ("skipped" if docker_skipped else "success"), out
    assert re.search(r"^demo: run \S+ ended success$", out, re.M), out
    assert re.search(r"^demo: done in \d+ s$", out, re.M), out

    # the ERP: what it printed is what the table holds, one row per source row, all of this run's model
    erp, source = BASE / "erp.db", BASE / "source.db"
    printed = dict(re.findall(r"^  ([A-Z]{2})  (\d+)$", out, re.M))
    with contextlib.closing(sqlite3.connect(source)) as db:
        per_country = dict(db.execute("SELECT country, COUNT(*) FROM sales GROUP BY country").fetchall())
    with contextlib.closing(sqlite3.connect(erp)) as db:
        rows = db.execute(
            "SELECT country, COUNT(*), MIN(model_uri), MAX(model_uri), COUNT(DISTINCT run_id), "
            "SUM(predicted_units IS NULL) FROM ml_pipeline_predictions GROUP BY country"
        ).fetchall()
    assert {c: int(n) for c, n in printed.items()} == {c: n for c, n, *_ in rows} == per_country, (printed, rows)
    assert sorted(per_country) == ["DE", "ES", "FR", "IT"]
    assert {(low, high, runs, nulls) for _, _, low, high, runs, nulls in rows} == {
        ("models:/ml_pipeline_units/1", "models:/ml_pipeline_units/1", 1, 0)
    }

    report = re.search(r"^EDA report: (\S+)$", out, re.M)
    assert report, out
    assert Path(report.group(1)).is_file()
    assert "<html" in Path(report.group(1)).read_text().lower()
    assert re.search(r"scripts/demo\.py --dir \S+ mlflow-ui", out), out

    # nothing left running but the endpoint's containers
    assert _processes_mentioning(str(BASE)) == []
    if docker_skipped:
        assert re.search(r"^Deploy: skipped: ", out, re.M), out
        service_unavailable(f"the demo ran without Docker: {docker_skipped.group(1)}")


def test_the_printed_curl_request_works(demo: tuple[str, float]) -> None:
    out, _ = demo
    curl = re.search(r"^  (curl -s -X POST .*)$", out, re.M)
    if curl is None:
        service_unavailable("the demo deployed nothing (no Docker engine): no curl request to try")
    answer = subprocess.run(shlex.split(curl.group(1)), capture_output=True, text=True, timeout=60, check=True)
    predictions = json.loads(answer.stdout)["predictions"]
    assert len(predictions) == 1, answer.stdout
    assert re.search(rf"docker rm -f \$\(docker ps -aq --filter label=airflow-ml-provider.endpoint={ENDPOINT}\)", out)


def test_the_printed_ui_command_serves_the_run(demo: tuple[str, float]) -> None:
    """The UI command (on another port) serves the demo's run; the printed login works."""
    out, _ = demo
    command = re.search(r"^  (.*scripts/demo\.py --dir \S+ ui)$", out, re.M)
    login = re.search(r"log in as (\w+) / (\S+)$", out, re.M)
    assert command, out
    assert login, out
    port = free_port()
    server = subprocess.Popen(
        [*shlex.split(command.group(1)), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, "the UI command exited"
                assert time.monotonic() < deadline, "the UI did not answer within 120 s"
                time.sleep(0.5)
        body = json.dumps({"username": login.group(1), "password": login.group(2)}).encode()
        req = urllib.request.Request(f"{base_url}/auth/token", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            token = json.load(resp)["access_token"]
        req = urllib.request.Request(
            f"{base_url}/api/v2/dags/ml_pipeline/dagRuns", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            runs = json.load(resp)["dag_runs"]
        assert [(r["run_type"], r["state"]) for r in runs] == [("manual", "success")], runs
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    deadline = time.monotonic() + 15
    while _processes_mentioning(str(BASE)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_mentioning(str(BASE)) == []
