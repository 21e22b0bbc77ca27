"""Model endpoint: the router's latency cost and what a redeploy costs clients, each against a baseline.

Everything is real and started here: an ``mlflow server`` (``scripts/testbed/mlflow_bed.py``), the
serving image (``scripts/testbed/serve_image.py``) and containers on the local Docker engine (host
networking). A LinearRegression on two columns is logged, registered and deployed with
``MlflowDeployModelOperator`` (one worker, 1 CPU, 1 GiB).

* **latency p50 / p99**: single-row ``POST /invocations`` (``dataframe_split``), sequential, on one
  keep-alive connection: ``REQUESTS`` counted after ``WARMUP``. Ours goes through the router's
  stable port; the baseline goes straight to the model container's own port (same container, same
  run, the two interleaved in blocks of 50 so drift hits both alike).
* **redeploy**: version 2 is registered and the alias moved while two clients call the endpoint
  steadily (one keep-alive connection, one new connection per request, every 10 ms each). Ours:
  the operator's blue/green deploy. Baseline: *stop-and-replace* behind the same router, i.e.
  remove the serving container and start the new version on the same port (what a deploy without
  a second container does). Figures: failed requests, and the longest gap between two successful
  answers (ms), over the load window (1 s before the deploy to 1 s after it).

Run alone: ``python -m bench.endpoint`` (about 2-3 minutes on a 2-CPU VM).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import Row, run_alone
from scripts.testbed.request_load import RequestLoad, free_port_pair

WARMUP = 50
REQUESTS = 1000
BLOCK = 50
BODY = json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}})
CTX: Any = {"ti": None}


def _post(conn: http.client.HTTPConnection) -> float:
    conn.request("POST", "/invocations", body=BODY, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
    return float(json.loads(data)["predictions"][0])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _latencies(router_port: int, model_port: int) -> tuple[list[float], list[float]]:
    conns = {p: http.client.HTTPConnection("127.0.0.1", p, timeout=10) for p in (router_port, model_port)}
    times: dict[int, list[float]] = {router_port: [], model_port: []}
    try:
        for conn in conns.values():
            for _ in range(WARMUP):
                _post(conn)
        for block in range(REQUESTS // BLOCK):
            order = (router_port, model_port) if block % 2 == 0 else (model_port, router_port)
            for port in order:
                for _ in range(BLOCK):
                    t0 = time.perf_counter()
                    _post(conns[port])
                    times[port].append((time.perf_counter() - t0) * 1000)
    finally:
        for conn in conns.values():
            conn.close()
    return times[router_port], times[model_port]


def _log_and_promote(name: str, slope: float) -> str:
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from airflow_ml_provider.hooks.mlflow import MlflowHook
    from airflow_ml_provider.operators.mlflow_registry import MlflowRegisterModelOperator

    hook = MlflowHook()
    x = pd.DataFrame({"a": [float(i) for i in range(10)], "b": [float(i % 3) for i in range(10)]})
    with hook.scoped():
        client = hook.get_client()
        exp = client.get_experiment_by_name("bench-endpoint")
        exp_id = exp.experiment_id if exp else client.create_experiment("bench-endpoint")
        with mlflow.start_run(experiment_id=exp_id) as run:
            mlflow.sklearn.log_model(LinearRegression().fit(x, x["a"] * slope), name="model")

    class _TI:
        dag_id, task_id, run_id, map_index = "bench_endpoint", "register", f"bench-{uuid.uuid4().hex[:6]}", -1

    context: Any = {"ti": _TI()}
    result = MlflowRegisterModelOperator(
        task_id="register", name=name, model_uri=f"runs:/{run.info.run_id}/model"
    ).execute(context)
    with hook.scoped():
        hook.get_client().set_registered_model_alias(name, "champion", result["version"])
    return str(result["version"])


def _serving(endpoint: str) -> Any:
    import docker

    from airflow_ml_provider.serving.endpoint_docker import LABEL_ENDPOINT, LABEL_ROLE

    client = docker.from_env()
    try:
        (model,) = [
            c
            for c in client.containers.list(filters={"label": f"{LABEL_ENDPOINT}={endpoint}"})
            if c.labels[LABEL_ROLE] == "model"
        ]
        return model
    finally:
        client.close()


def _stop_and_replace(op: Any, version: str, old: Any) -> None:
    """The baseline redeploy: remove the serving container, start ``version`` on the same port."""
    from airflow_ml_provider.serving.endpoint_docker import LABEL_PORT, EndpointDocker
    from airflow_ml_provider.serving.model_server import await_healthy

    port = int(old.labels[LABEL_PORT])
    docker = EndpointDocker.from_connection(op.docker_conn_id)
    try:
        spec = op._model_spec(version, port)
        serving = docker.get(old.id)
        if serving is not None:
            docker.remove(serving)
        container = docker.start(spec)
        await_healthy(docker, container, spec, port, op.health_timeout)
    finally:
        docker.close()


def measure(workdir: Path) -> dict[str, Any]:
    """Start the MLflow bed, deploy, measure; every container and the server are removed after."""
    from airflow_ml_provider.operators.mlflow_deploy import MlflowDeployModelOperator, remove_endpoint
    from scripts.testbed import docker_bed, mlflow_bed
    from scripts.testbed.serve_image import ensure_serve_image

    docker_bed.ensure_base_image()
    ensure_serve_image()
    shutil.rmtree(workdir, ignore_errors=True)
    server = mlflow_bed.start_mlflow(workdir / "mlflow")
    saved = os.environ.get("AIRFLOW_CONN_ML_MLFLOW_DEFAULT")
    os.environ["AIRFLOW_CONN_ML_MLFLOW_DEFAULT"] = json.dumps({"conn_type": "ml_mlflow", "host": server.url})
    endpoint, port = f"bench-{uuid.uuid4().hex[:6]}", free_port_pair()
    name = f"bench-pricing-{uuid.uuid4().hex[:6]}"
    out: dict[str, Any] = {}
    try:

        def op() -> Any:
            return MlflowDeployModelOperator(
                task_id="deploy",
                name=name,
                endpoint_name=endpoint,
                port=port,
                resources={"cpus": 1, "memory": "1Gi"},
            )

        _log_and_promote(name, 2.0)
        t0 = time.monotonic()
        op().execute(CTX)
        out["first_deploy_s"] = time.monotonic() - t0
        from airflow_ml_provider.serving.endpoint_docker import LABEL_PORT

        model_port = int(_serving(endpoint).labels[LABEL_PORT])
        out["via_router"], out["direct"] = _latencies(port, model_port)

        v2 = _log_and_promote(name, 3.0)
        with RequestLoad(port, _post) as ours:
            time.sleep(1.0)
            t0 = time.monotonic()
            op().execute(CTX)
            out["blue_green_s"] = time.monotonic() - t0
            time.sleep(1.0)
        out["blue_green"] = ours

        v3 = _log_and_promote(name, 4.0)
        with RequestLoad(port, _post) as base:
            time.sleep(1.0)
            t0 = time.monotonic()
            _stop_and_replace(op(), v3, _serving(endpoint))
            out["replace_s"] = time.monotonic() - t0
            time.sleep(1.0)
        out["replace"] = base
        out["versions"] = (v2, v3)
    finally:
        remove_endpoint(endpoint)
        if saved is None:
            os.environ.pop("AIRFLOW_CONN_ML_MLFLOW_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_ML_MLFLOW_DEFAULT"] = saved
        server.stop()
    return out


def rows_from(m: dict[str, Any]) -> list[Row]:
    ours, direct = m["via_router"], m["direct"]
    bg, rep = m["blue_green"], m["replace"]
    n = f"{len(ours)} sequential single-row POST /invocations on one keep-alive connection"
    load = "2 clients (keep-alive + new conn per request) every 10 ms during the redeploy"
    return [
        Row("endpoint latency p50", statistics.median(ours), statistics.median(direct), "ms",
            "direct to the model container", f"{n}; through the router"),
        Row("endpoint latency p99", _percentile(ours, 0.99), _percentile(direct, 0.99), "ms",
            "direct to the model container", n),
        Row("redeploy: failed requests", len(bg.failed), len(rep.failed), "req", "stop-and-replace",
            f"{load}; ok: {len(bg.ok)} vs {len(rep.ok)}; deploy {m['blue_green_s']:.0f} s vs {m['replace_s']:.0f} s"),
        Row("redeploy: longest gap between successes", bg.longest_gap * 1000, rep.longest_gap * 1000, "ms",
            "stop-and-replace", load),
    ]  # fmt: skip


def run(workdir: Path) -> list[Row]:
    """The four endpoint rows (latency p50/p99 through the router; redeploy failures and gap)."""
    return rows_from(measure(workdir))


if __name__ == "__main__":  # python -m bench.endpoint
    sys.exit(run_alone(run, "endpoint"))
