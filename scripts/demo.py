"""`make demo`: the ``ml_pipeline`` DAG end to end on embedded defaults, through a real scheduler.

What it does, all on this machine, everything under ``.demo/`` (the previous demo's files replaced; ignored by git):

1. seeds a SQLite source database (``.demo/source.db``, table ``sales``) with synthetic weekly
   sales and creates the ERP table in a SQLite ERP database (``.demo/erp.db``);
2. starts the Docker engine if needed and builds the model-serving image if missing (the deploy
   step's); when no Docker engine can run, the demo goes on and the run skips the deploy, saying why;
3. starts a local ``mlflow server`` (SQLite store and artifacts under ``.demo/mlflow``) and a real
   Airflow 3 (api-server, scheduler, dag-processor, triggerer; SQLite metadata in
   ``.demo/airflow/home``) on this repository's ``dags/``;
4. triggers ``ml_pipeline`` through the REST API with ``storage_root`` under ``.demo/lake``
   (Spark ``local[*]``) and prints one line per task state change until the run ends;
5. prints where to look: the command that serves the Airflow UI on the demo's home (address and
   login), the MLflow UI command, the EDA report, the ERP rows per country, the endpoint with a
   sample ``curl`` request (tried once here), the time per task and in all.

Then it stops Airflow and MLflow: only the endpoint's containers keep running (and the Docker engine).

``python scripts/demo.py ui [--port 8080]`` serves the Airflow UI on the demo's home afterwards;
``python scripts/demo.py mlflow-ui [--port 5000]`` the MLflow UI on its store. Options: ``--dir DIR``
(instead of ``.demo``), ``--no-docker`` (act as a machine without Docker: the run skips the deploy),
``--endpoint NAME`` and ``--endpoint-port N`` (the DAG's ``ml-pipeline`` on 8790 by default). The
DAG's schedule is off in the demo's Airflow (``use_job_schedule``): unpausing would otherwise start
a run at once with the DAG's default params, outside ``.demo``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shlex
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

# Only the demo's own lines (and warnings): no INFO lines of the hooks it calls to set up Docker.
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.testbed.demo_stack import (  # noqa: E402  # after the sys.path line: `python scripts/demo.py` works
    DAG_ID,
    DAGS_FOLDER,
    ENDPOINT_NAME,
    ENDPOINT_PORT,
    ERP_TABLE,
    SCHEDULER_SETTINGS,
    DemoStack,
    erp_counts,
    invocation_body,
    sample_row,
    task_times,
    watch_run,
    xcom,
)

DEMO = ROOT / ".demo"
RUN_TIMEOUT = 1800.0


def say(line: str) -> None:
    """One progress line, at once."""
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the demo (or serve one of its UIs); the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="run", choices=["run", "ui", "mlflow-ui"])
    parser.add_argument("--dir", type=Path, default=DEMO, help="the demo's directory (default .demo)")
    parser.add_argument("--port", type=int, help="ui: 8080, mlflow-ui: 5000")
    parser.add_argument(
        "--no-docker", action="store_true", help="act as a machine without Docker (the run skips the deploy)"
    )
    parser.add_argument(
        "--endpoint", default=ENDPOINT_NAME, help=f"the deploy's endpoint name (default {ENDPOINT_NAME})"
    )
    parser.add_argument(
        "--endpoint-port", type=int, default=ENDPOINT_PORT, help=f"the endpoint's port (default {ENDPOINT_PORT})"
    )
    args = parser.parse_args(argv)
    base = args.dir.resolve()
    if args.command == "ui":
        return serve_ui(base, args.port or 8080)
    if args.command == "mlflow-ui":
        return serve_mlflow_ui(base, args.port or 5000)
    stack = DemoStack(
        base, say=say, endpoint_name=args.endpoint, endpoint_port=args.endpoint_port, no_docker=args.no_docker
    )
    return run_demo(stack)


def run_demo(stack: DemoStack) -> int:
    """Set up ``stack``, run ``ml_pipeline`` once, print the summary; 0 when the run succeeded."""
    t0 = time.monotonic()
    stack.reset()
    try:
        stack.seed()
        stack.docker()
        stack.start_mlflow()
        bed = stack.start_airflow()
        run_id = stack.trigger()
        say(f"demo: triggered {DAG_ID} run {run_id}; one line per task state change:")
        state = watch_run(bed, run_id, timeout=RUN_TIMEOUT, say=say, started=time.monotonic())
        say(f"demo: run {run_id} ended {state}")
        times = task_times(bed, run_id)
        decision = xcom(bed, run_id, "deploy_gate", "decision")
        deployed = xcom(bed, run_id, "deploy")
        home = bed.home
        password = bed.password
        failed = {task: t for task, t in times.items() if t["state"] not in ("success", "skipped")}
        if state != "success":
            for task in failed:
                say(f"demo: {task} ended {failed[task]['state']}; its log:")
                with contextlib.suppress(Exception):
                    task_id, _, rest = task.partition("[")
                    index = int(rest.rstrip("]")) if rest.rstrip("]").isdigit() else -1
                    say(bed.task_log(DAG_ID, run_id, task_id, times[task]["try_number"] or 1, index)[-3000:])
    except Exception as e:  # noqa: BLE001  # a set-up step failed: say which, no traceback
        say(f"demo: FAILED: {type(e).__name__}: {e}")
        return 1
    finally:
        stack.stop()
    summary(stack, home, password, times, decision, deployed)
    say(f"demo: {'done' if state == 'success' else 'FAILED'} in {time.monotonic() - t0:.0f} s")
    return 0 if state == "success" else 1


def summary(
    stack: DemoStack,
    home: Path,
    password: str,
    times: dict[str, dict[str, Any]],
    decision: Any,
    deployed: Any,
) -> None:
    """Print where to look after the run."""
    say("\ndemo: seconds per task (start to end of its last try):")
    for t in sorted(times.values(), key=lambda t: t["start"] or "~"):
        secs = f"{t['seconds']:7.1f}" if t["seconds"] is not None else "      -"
        say(f"  {t['label']:<28} {t['state'] or '-':<10} {secs}")
    demo_cmd = f"{shlex.quote(sys.executable)} scripts/demo.py"
    if stack.base != DEMO:
        demo_cmd += f" --dir {shlex.quote(str(stack.base))}"
    say("\nAirflow UI (the run, its task logs and XComs): serve it with")
    say(f"  {demo_cmd} ui")
    say(f"  then open http://127.0.0.1:8080/dags/{DAG_ID} and log in as admin / {password}")
    say(f"  (the password is in {home / 'passwords.json'})")
    say("MLflow UI (experiments ml_pipeline and ml_pipeline-eda, model ml_pipeline_units):")
    say(f"  {demo_cmd} mlflow-ui   then open http://127.0.0.1:5000")
    report = stack.eda_report
    say(f"EDA report: {report}" + ("" if report.is_file() else " (missing: see the eda task's log)"))
    counts = erp_counts(stack.erp_db)
    say(f"ERP rows per country (table {ERP_TABLE} in {stack.erp_db}):")
    for country, n in counts.items():
        say(f"  {country}  {n}")
    if isinstance(deployed, dict) and deployed.get("endpoint"):
        url = f"{deployed['endpoint']}/invocations"
        row = sample_row(stack.source_db)
        body = invocation_body(row)
        name = stack.endpoint_name
        say(f"Endpoint {name}: {deployed['endpoint']} (model version {deployed.get('version')}); try:")
        say(f"  curl -s -X POST {url} -H 'Content-Type: application/json' -d {shlex.quote(body)}")
        say(f"  answer now: {invoke(url, body)} (that row sold {row['units_sold']} units)")
        say(
            "  the endpoint's containers keep running; remove them with: docker rm -f $(docker ps -aq --filter "
            f"label=airflow-ml-provider.endpoint={name})"
        )
    else:
        # deploy_gate's XCom "decision" is "skipped: <why>" (or "deploying …" when the deploy failed)
        say(f"Deploy: {decision or 'skipped (see the deploy_gate task)'}")
        if stack.docker_blocker:
            say(f"  (the demo's Docker set-up: {stack.docker_blocker})")


def invoke(url: str, body: str) -> str:
    """POST ``body`` to the endpoint (``http://host:port/invocations``); its answer (or the error) as text."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
    try:
        conn.request("POST", parts.path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace").strip()
        return text if resp.status == 200 else f"HTTP {resp.status}: {text}"
    except Exception as e:  # noqa: BLE001  # shown to the user as is
        return f"failed: {type(e).__name__}: {e}"
    finally:
        conn.close()


def ui_env(base: Path, port: int) -> dict[str, str]:
    """The environment of an api-server on the demo's Airflow home, on 127.0.0.1:``port``."""
    from scripts.testbed.airflow_bed import AirflowBed

    stack = DemoStack(base)
    bed = AirflowBed(stack.airflow_home, DAGS_FOLDER, env={**stack.task_env(), **SCHEDULER_SETTINGS})
    url = f"http://127.0.0.1:{port}"
    return {
        **bed.env,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
    }


def serve_ui(base: Path, port: int) -> int:
    """Run an api-server on the demo's home until Ctrl-C (read-only use: no scheduler runs)."""
    home = DemoStack(base).airflow_home
    passwords = home / "passwords.json"
    if not passwords.is_file():
        say(f"demo ui: no demo Airflow home at {home}: run `make demo` first")
        return 2
    login = json.loads(passwords.read_text())
    user, password = next(iter(login.items()))
    say(f"demo ui: http://127.0.0.1:{port}/dags/{DAG_ID} (log in as {user} / {password}); Ctrl-C stops it")
    env = ui_env(base, port)
    return _serve([str(Path(sys.executable).parent / "airflow"), "api-server"], env)


def serve_mlflow_ui(base: Path, port: int) -> int:
    """Run ``mlflow server`` on the demo's store until Ctrl-C."""
    from scripts.testbed.mlflow_bed import server_command

    store = DemoStack(base).mlflow_dir
    if not (store / "mlflow.db").is_file():
        say(f"demo mlflow-ui: no MLflow store at {store}: run `make demo` first")
        return 2
    command = server_command(store, port)
    say(f"demo mlflow-ui: http://127.0.0.1:{port}; Ctrl-C stops it\n  {shlex.join(command)}")
    return _serve(command, dict(os.environ))


def _serve(command: list[str], env: dict[str, str]) -> int:
    """Replace this process with the server (so Ctrl-C and kill reach it, and no child is orphaned)."""
    os.execve(command[0], command, env)  # noqa: S606  # an absolute path and fixed arguments


if __name__ == "__main__":
    raise SystemExit(main())
