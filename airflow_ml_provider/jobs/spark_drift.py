"""Schema drift between training runs: this run's model inputs against the last finished run's.

A model trained on ``features=None`` (every numeric column) silently changes when the ingested
table gains, loses or retypes a column; so does one whose feature changed type upstream. Each run
of :mod:`airflow_ml_provider.jobs.spark_train` records, in the run tag :data:`INPUT_SCHEMA_TAG`,
its column selection (label, features, categorical, exclude, group column, as the spec says) and
the resolved model inputs with their kinds (``integer``, ``float``, ``string``…). Before training,
the last FINISHED run of the same experiment **with the same column selection** is looked up (so a
changed spec is not drift; changed data is); if its inputs differ, the spec's ``on_schema_change``
decides: ``fail`` (default) stops with an error listing every change and the fix, ``allow``
records the changes in the tag :data:`SCHEMA_CHANGE_TAG` and logs them, then trains. A first run
(nothing to compare) passes and records its schema.

MLflow's search filter cannot quote every column name, so the lookup filters on status and matches
the selection in the tag itself, among the experiment's most recent runs (:data:`LOOKBACK`).
Imports mlflow inside its functions only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airflow_ml_provider.jobs.common import BadInputError
from airflow_ml_provider.jobs.spark_spec import Columns, TrainSpec

INPUT_SCHEMA_TAG = "airflow_ml_provider.input_schema"
SCHEMA_CHANGE_TAG = "airflow_ml_provider.schema_change"
#: How many of the experiment's latest finished runs are searched for one with the same label.
LOOKBACK = 50


def selection(spec: TrainSpec) -> dict[str, Any]:
    """The spec's column selection: runs are compared only with runs that made the same one."""
    return {
        "label": spec.label,
        "features": None if spec.features is None else list(spec.features),
        "categorical": list(spec.categorical),
        "exclude": list(spec.exclude),
        "group_column": spec.group_column,
    }


def input_schema(columns: Columns, kinds: Mapping[str, str]) -> dict[str, str]:
    """The label and the model's input columns with their kinds.

    :param columns: the resolved columns of this run.
    :param kinds: column name -> kind for the whole input.
    """
    return {name: kinds[name] for name in (columns.label, *columns.inputs)}


def describe_drift(previous: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Every difference, one phrase each: columns gone, new, or of another kind.

    :param previous: the last finished run's schema.
    :param current: this run's schema.
    """
    changes = [f"{name!r} ({kind}) is gone" for name, kind in previous.items() if name not in current]
    changes += [f"{name!r} ({kind}) is new" for name, kind in current.items() if name not in previous]
    changes += [
        f"{name!r} was {previous[name]}, is {kind}"
        for name, kind in current.items()
        if name in previous and previous[name] != kind
    ]
    return changes


def previous_schema(experiment_id: str, chosen: Mapping[str, Any], run_id: str) -> tuple[str, dict[str, str]] | None:
    """The latest finished run of the experiment with the column selection ``chosen`` (not ``run_id``):
    its id and input schema.

    :param experiment_id: the experiment searched.
    :param chosen: the column selection (:func:`selection`) the run must have made.
    :param run_id: this run, left out.
    """
    from mlflow import MlflowClient

    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=LOOKBACK,
    )
    for run in runs:
        text = run.data.tags.get(INPUT_SCHEMA_TAG)
        if run.info.run_id == run_id or not text:
            continue
        try:
            recorded = json.loads(text)
        except ValueError:
            continue
        if isinstance(recorded, dict) and recorded.get("selection") == chosen:
            schema = recorded.get("schema")
            if isinstance(schema, dict):
                return run.info.run_id, {str(k): str(v) for k, v in schema.items()}
    return None


def check_drift(spec: TrainSpec, columns: Columns, kinds: Mapping[str, str], run_id: str, experiment_id: str,
                log: Any) -> list[str]:  # fmt: skip
    """Record this run's schema and compare it with the last finished run's; return the changes.

    :param spec: the spec (its ``on_schema_change`` decides).
    :param columns: the resolved columns.
    :param kinds: column name -> kind for the whole input.
    :param run_id: this MLflow run (active).
    :param experiment_id: its experiment.
    :param log: the job's logger.
    :raises BadInputError: the schema changed and ``on_schema_change`` is ``fail``.
    """
    import mlflow

    chosen, current = selection(spec), input_schema(columns, kinds)
    mlflow.set_tag(INPUT_SCHEMA_TAG, json.dumps({"selection": chosen, "schema": current})[:5000])
    found = previous_schema(experiment_id, chosen, run_id)
    if found is None:
        log.info("schema: no earlier finished run with these columns in the experiment; recorded %s", current)
        return []
    previous_run, previous = found
    changes = describe_drift(previous, current)
    if not changes:
        return []
    text = f"the input's columns changed since run {previous_run} (same spec): {'; '.join(changes)}"
    if spec.on_schema_change == "fail":
        raise BadInputError(
            f"{text}. If the change is intended, retrain once with on_schema_change='allow' (or name the "
            "features explicitly); else fix the data upstream"
        )
    mlflow.set_tag(SCHEMA_CHANGE_TAG, text[:4000])
    log.warning("schema: %s (allowed by on_schema_change='allow')", text)
    return changes
