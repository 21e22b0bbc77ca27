"""The result of a :class:`~airflow_ml_provider.operators.spark_train.SparkTrainOperator` training.

In client deploy mode the application writes its result file on this machine (:func:`read_result`);
in cluster deploy mode the file stays on the cluster, so the result is rebuilt from the MLflow run,
found by its submission tag (:func:`result_from_mlflow`). :func:`application_id` reads the Spark
application id from the driver's output when the result has none. Imports no mlflow at module level.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import Any

from airflow_ml_provider.exceptions import MlProviderError
from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.jobs.spark_spec import ERROR_TAG, METRICS, SUBMISSION_TAG, TrainSpec
from airflow_ml_provider.operators.spark_train_submit import APPLICATION, redact

_APP_ID = re.compile(r"\b(app-\d{14}-\d{4,}|application_\d+_\d+|local-\d{13})\b")


def read_result(path: str, output: list[str], master: str, secrets: list[str]) -> dict[str, Any]:
    """The result file the application wrote (client mode).

    :raises MlProviderError: it is missing (quoting the output's last lines), not JSON, or has no run id.
    """
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except FileNotFoundError:
        tail = "\n".join(f"  {redact(line, secrets)}" for line in output[-10:])
        raise MlProviderError(
            f"spark-submit of {os.path.basename(APPLICATION)} on {master} exited 0 but the application wrote no "
            f"result file; its output ends with:\n{tail}"
        ) from None
    except ValueError as e:
        raise MlProviderError(f"The training's result file {path} is not JSON: {e}") from None
    if not isinstance(result, dict) or not result.get("run_id"):
        raise MlProviderError(f"The training's result file {path} has no run_id: {str(result)[:300]}")
    return result


def application_id(lines: Iterable[str]) -> str | None:
    """The Spark application id the driver's output names (``app-…``, ``application_…``, ``local-…``)."""
    found = None
    for line in lines:
        match = _APP_ID.search(line)
        if match:
            found = match.group(1)
    return found


def find_run(client: Any, experiment: str, tag: str) -> Any:
    """The MLflow run whose ``airflow_ml_provider.submission`` tag is ``tag``, in ``experiment``.

    :raises MlProviderError: no such experiment or run, more than one run, or the run did not finish.
    """
    experiment_entity = client.get_experiment_by_name(experiment)
    where = f"MLflow experiment {experiment!r}"
    if experiment_entity is None:
        raise MlProviderError(f"{where} does not exist: the driver never reached MLflow (see the task log).")
    runs = client.search_runs(
        [experiment_entity.experiment_id], filter_string=f"tags.`{SUBMISSION_TAG}` = '{tag}'", max_results=2
    )
    if len(runs) != 1:
        found = "no run" if not runs else f"{len(runs)} runs"
        raise MlProviderError(f"{where} has {found} tagged {SUBMISSION_TAG}={tag!r}; the driver logged no training.")
    run = runs[0]
    if run.info.status != "FINISHED":
        error = run.data.tags.get(ERROR_TAG, "no error recorded")
        raise MlProviderError(f"MLflow run {run.info.run_id} ended {run.info.status}: {error}")
    return run


def _artifact(client: Any, run_id: str, name: str, scratch: str) -> Any:
    try:
        path = client.download_artifacts(run_id, name, scratch)
    except Exception:  # noqa: BLE001  # absent (a Spark ML run has no groups.json): the result says so
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def result_from_mlflow(hook: MlflowHook, spec: TrainSpec, tag: str) -> dict[str, Any]:
    """The training's result (the fields the application writes in client mode) rebuilt from its MLflow run.

    The run is found by its submission tag (:func:`find_run`); metrics, ``param.*``/``best.*``
    params and the ``columns.json``/``groups.json`` artifacts give the rest.

    :param hook: the ``ml_mlflow`` connection the driver logged to.
    :param spec: the submitted spec.
    :param tag: the submission tag.
    """
    import tempfile

    with hook.scoped(), tempfile.TemporaryDirectory(prefix="ml-spark-train-run-") as scratch:
        client = hook.get_client()
        run = find_run(client, spec.mlflow.experiment, tag)
        run_id = run.info.run_id
        columns = _artifact(client, run_id, "columns.json", scratch) or {}
        grouped = _artifact(client, run_id, "groups.json", scratch) or {}
    data = run.data
    metrics = {k: v for k, v in data.metrics.items() if k in METRICS[spec.task] or k == f"cv_{spec.metric}"}
    groups = grouped.get("groups") or {}
    if groups:
        best_params: dict[str, Any] = {key: g.get("best_params") for key, g in groups.items()}
    else:
        best_params = {k.split(".", 1)[1]: json.loads(v) for k, v in data.params.items() if k.startswith("param.")}
        best_params |= {k.split(".", 1)[1]: json.loads(v) for k, v in data.params.items() if k.startswith("best.")}
    outputs = getattr(getattr(run, "outputs", None), "model_outputs", None) or []
    return {
        "run_id": run_id,
        "experiment_id": run.info.experiment_id,
        "model_uri": f"runs:/{run_id}/model",
        "model_id": outputs[0].model_id if outputs else None,
        "algorithm": spec.algorithm,
        "task": spec.task,
        "metric": spec.metric,
        "metrics": metrics,
        "best_params": best_params,
        "rows": {"train": int(data.metrics.get("rows_train", 0)), "holdout": int(data.metrics.get("rows_holdout", 0))},
        "columns": columns,
        "classes": columns.get("classes"),
        "groups": groups,
        "skipped_groups": grouped.get("skipped") or {},
    }
