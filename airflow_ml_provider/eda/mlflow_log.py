"""Log an EDA report to MLflow: the HTML and JSON as artifacts, headline figures as metrics.

One run per task instance: the run is tagged with the Airflow dag, task, run id and map index,
and a retry (or a clear) of the same task instance finds that run and logs into it again instead
of creating a second one. Every MLflow call runs inside :meth:`MlflowHook.scoped`, with the
connection's credentials, through an explicit ``MlflowClient`` (no fluent API, which keeps an
active run and an experiment in process-wide state).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import MlProviderError
from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.operators.mlflow_common import explain_mlflow_error
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    from mlflow import MlflowClient

ARTIFACT_DIR = "eda"
#: Tags that identify the task instance a run belongs to.
IDENTITY_TAGS = ("airflow.dag_id", "airflow.task_id", "airflow.run_id", "airflow.map_index")
_METRIC_KEY = re.compile(r"[^A-Za-z0-9_\-. /:]")
_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch


def metric_key(prefix: str, column: str) -> str:
    """``prefix/column`` with the characters MLflow refuses in metric names replaced by ``_``."""
    return _METRIC_KEY.sub("_", f"{prefix}/{column}")[:250]


def metrics_of(summary: Mapping[str, Any]) -> dict[str, float]:
    """The figures logged as metrics: rows, files, partitions, and per column null rate, distinct and mean."""
    found: dict[str, float] = {
        "eda.rows": float(summary["rows"]),
        "eda.files": float(summary["files"]),
        "eda.partitions": float(len(summary.get("partition_rows") or {})),
        "eda.gate_passed": 1.0 if summary.get("gate", {}).get("passed", True) else 0.0,
    }
    for column in summary["columns"]:
        for prefix, key in (("null_rate", "null_rate"), ("distinct", "distinct"), ("mean", "mean")):
            value = column.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                found.setdefault(metric_key(f"eda.{prefix}", column["name"]), float(value))
    return found


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return str(client.create_experiment(name))
        except Exception:  # created meanwhile by a parallel task: read it again
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return str(experiment.experiment_id)


def _existing_run(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    identity = {k: tags[k] for k in IDENTITY_TAGS if k in tags}
    if len(identity) < len(IDENTITY_TAGS) or any("'" in v for v in identity.values()):
        return None  # not run by Airflow (or a value the filter syntax cannot quote): always a new run
    query = " AND ".join(f"tags.`{k}` = '{v}'" for k, v in identity.items())
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1)
    return str(runs[0].info.run_id) if runs else None


def log_report(
    conn_id: str,
    experiment: str,
    files: Sequence[str],
    summary: Mapping[str, Any],
    tags: Mapping[str, str],
    run_name: str,
) -> str:
    """Log ``files`` (local paths) and the summary's metrics into the task instance's run; its run id.

    :param conn_id: the ``ml_mlflow`` connection.
    :param experiment: the experiment's name (created when missing, restored when deleted).
    :param files: local files to log under the ``eda/`` artifact directory.
    :param summary: the JSON summary (its figures become metrics, its gate status a tag).
    :param tags: run tags, including the Airflow identity tags when run by Airflow.
    :param run_name: the name of a newly created run.
    :raises ModelRegistryError: MLflow refused or could not be reached (retryable); the message
        names the experiment, the server and the connection.
    """
    with requires_extra("mlflow"):
        from mlflow.entities import Metric, RunTag

    hook = MlflowHook(conn_id)
    gate = summary.get("gate") or {}
    run_tags = {**tags, "eda.dataset": str(summary["dataset"]), "eda.gate": str(gate.get("status", "passed"))}
    try:
        with hook.scoped():
            client = hook.get_client()
            experiment_id = _experiment_id(client, experiment)
            run_id = _existing_run(client, experiment_id, tags)
            if run_id is None:
                run_id = str(client.create_run(experiment_id, run_name=run_name, tags=dict(run_tags)).info.run_id)
            else:
                client.update_run(run_id, status="RUNNING")
            for path in files:
                client.log_artifact(run_id, path, artifact_path=ARTIFACT_DIR)
            now = int(time.time() * 1000)
            metrics = [Metric(k, v, now, 0) for k, v in metrics_of(summary).items()]
            for start in range(0, len(metrics), _BATCH):
                client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in run_tags.items()])
            client.set_terminated(run_id, "FINISHED")
    except MlProviderError:
        raise
    except Exception as e:  # MLflow's own errors, and the HTTP/IO errors of an artifact upload
        raise explain_mlflow_error(
            e, f"Logging the EDA report to MLflow experiment {experiment!r}", hook.config.tracking_uri, conn_id
        ) from e
    return run_id
