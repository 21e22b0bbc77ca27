"""The Spark training application: train a model from a JSON spec, log it to MLflow, write a result.

Command line (``SparkTrainOperator`` runs it through ``SparkSubmitHook``; the ``airflow_ml_provider/jobs``
package comes along as a ``--py-files`` zip)::

    spark-submit [conf] .../airflow_ml_provider/jobs/spark_train.py --spec '<JSON>' --result /local/result.json

``--spec``: the spec (:func:`airflow_ml_provider.jobs.spark_spec.parse_spec`). ``--result``: a
local path on the driver (its directory must exist); written atomically (temporary file, then
rename) on success only::

    {"run_id", "experiment_id", "model_uri": "runs:/<run_id>/model", "algorithm", "task",
     "metric", "metrics": {...}, "best_params": {...}, "rows": {"train": n, "holdout": n},
     "columns": {"features": [...], "categorical": [...], "group": str|null, "label": str},
     "classes": [...]|null, "groups": {...}, "skipped_groups": {group: reason},
     "application_id": "app-…"|"local-…", "seconds": s}

``groups`` and ``skipped_groups`` are empty but for ``lightgbm_per_group``. ``classes`` (classification)
are the label's values in index order: a Spark ML model predicts the index (the label itself for
0/1 labels), the LightGBM model the class. The last stdout line is ``spark_train: result {JSON}``.

Exit codes: 0 done; 2 bad input (arguments, spec, ``MLFLOW_TRACKING_URI`` unset, the data: no
rows, a missing column, a label with nulls, a non-numeric feature, too few rows, no group large
enough), with a ``spark_train: error: ...`` line naming it; 1 any other failure (MLflow, Spark,
training). A run started before the failure ends FAILED with the message in its tag
``airflow_ml_provider.error``; nothing is logged as a model.

MLflow: the tracking URI and credentials come from the environment (``MLFLOW_TRACKING_URI``,
``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``). The run gets the spec's tags
and ``airflow_ml_provider.submission`` (``mlflow.submission_tag``), so the operator finds it in
cluster deploy mode; params: the spec's fields, ``param.<name>`` (fixed) and ``best.<name>``
(chosen by cross-validation); metrics: the holdout's (regression ``rmse``, ``mae``, ``r2``;
classification ``accuracy``, ``f1``, two classes ``areaUnderROC``), ``cv_<metric>``, row counts,
and for LightGBM ``<metric>.<group>``; artifacts ``spec.json``, ``columns.json`` (and
``groups.json``); the model ``model`` with a signature over the raw input columns (features,
categorical, group) and an input example.

Training: :mod:`airflow_ml_provider.jobs.spark_ml` (``linear``, ``gbt``, ``random_forest``: one
Pipeline, a seeded holdout, CrossValidator over the grid) and
:mod:`airflow_ml_provider.jobs.spark_lightgbm` (``lightgbm_per_group``). This module reads and
checks the input, adds the label column, and does the MLflow run and the result.

The session: ``SparkSession.builder.appName(...)`` without a master (spark-submit sets it),
``spark.sql.session.timeZone=UTC``, and ``key=value`` directories read as string columns.
Imports only the standard library, pyspark, pandas, numpy, mlflow and lightgbm.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from airflow_ml_provider.jobs import spark_lightgbm as lgbm
from airflow_ml_provider.jobs.common import BadInputError, job_logger
from airflow_ml_provider.jobs.spark_drift import check_drift
from airflow_ml_provider.jobs.spark_ml import column, train_spark_ml
from airflow_ml_provider.jobs.spark_spec import (
    ERROR_TAG,
    SUBMISSION_TAG,
    Columns,
    TrainSpec,
    check_counts,
    parse_spec,
    resolve_columns,
)

LOG = job_logger("spark_train")
LABEL = lgbm.LABEL
MAX_CLASSES = 100
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit 2 itself; report it like any bad input
        raise BadInputError(f"{message}; usage: spark_train.py --spec '<JSON>' --result /local/path.json")


def _kind(data_type: Any) -> str:
    from pyspark.sql import types as T

    if isinstance(data_type, (T.ByteType, T.ShortType, T.IntegerType, T.LongType)):
        return "integer"
    if isinstance(data_type, (T.FloatType, T.DoubleType, T.DecimalType)):
        return "float"
    return {T.BooleanType: "boolean", T.StringType: "string"}.get(type(data_type), data_type.simpleString())


def _first_line(e: BaseException, limit: int = 600) -> str:
    """One line for a failure: the last Python exception in the text (a Python worker's), else the first
    JVM exception (a Py4JJavaError starts with "An error occurred while calling o90.fit"), else line one;
    credentials in URLs masked."""
    lines = [line.strip().lstrip(": ") for line in str(e).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[A-Za-z_][\w.$]*(Error|Exception): ", line)]
    python = [line for line in raised if not line.startswith(("org.", "java.", "scala.", "py4j."))]
    line = python[-1] if python else raised[0] if raised else (lines or [""])[0]
    line = re.sub(r"://[^/@\s]+@", "://***@", line)  # no user:password of a URL in the log or a run tag
    return f"{type(e).__name__}: {line[:limit]}"


def read_input(spark: Any, spec: TrainSpec) -> Any:
    """The input dataset (``key=value`` directories as string columns; hidden files ignored).

    :raises BadInputError: it does not exist or holds no Parquet data.
    """
    from pyspark.errors import AnalysisException

    try:
        return spark.read.parquet(spec.input_url)
    except AnalysisException as e:
        text = str(e)
        if "PATH_NOT_FOUND" in text or "does not exist" in text:
            raise BadInputError(
                f"input {spec.input} does not exist: check the path and that the data was written"
            ) from None
        if "UNABLE_TO_INFER_SCHEMA" in text:
            raise BadInputError(f"input {spec.input} holds no Parquet data files (an empty dataset?)") from None
        raise BadInputError(f"cannot read input {spec.input} as Parquet: {_first_line(e)}") from None


def load_checked(spark: Any, spec: TrainSpec) -> tuple[Any, Columns, int]:
    """Read the input and check it against the spec: its columns and one count of rows and nulls."""
    from pyspark.sql import functions as F

    df = read_input(spark, spec)
    kinds = {f.name: _kind(f.dataType) for f in df.schema.fields}
    LOG.info("read %s: columns %s", spec.input, kinds)
    columns = resolve_columns(spec, kinds)
    checked = [columns.label, *([columns.group] if columns.group else []), *columns.features]
    exprs = [F.count(F.lit(1)).alias("rows")]
    for i, name in enumerate(checked):
        missing = column(name).isNull() | (F.isnan(column(name)) if kinds[name] == "float" else F.lit(False))
        exprs.append(F.sum(F.when(missing, 1).otherwise(0)).alias(f"n{i}"))
    counts = df.agg(*exprs).first()
    rows = int(counts["rows"])
    check_counts(spec, columns, rows, {name: int(counts[f"n{i}"] or 0) for i, name in enumerate(checked)})
    LOG.info("rows=%d label=%s features=%s categorical=%s group=%s", rows, columns.label, list(columns.features),
             list(columns.categorical), columns.group)  # fmt: skip
    return df, columns, rows


def add_label(df: Any, spec: TrainSpec, columns: Columns) -> tuple[Any, list[Any] | None]:
    """``df`` with :data:`LABEL` (double: the label, or the class index), and the classes.

    :raises BadInputError: fewer than 2 or more than :data:`MAX_CLASSES` classes, or a binary-only
        metric or algorithm for more than two.
    """
    from pyspark.sql import functions as F

    if spec.task == "regression":
        return df.withColumn(LABEL, column(columns.label).cast("double")), None
    found = df.select(column(columns.label)).distinct().limit(MAX_CLASSES + 1).collect()
    classes = sorted(row[0] for row in found)
    name = columns.label
    if len(classes) < 2 or len(classes) > MAX_CLASSES:
        raise BadInputError(f"classification label {name!r} has {len(classes)} distinct value(s) {classes[:5]}; "
                            f"it needs 2 to {MAX_CLASSES} classes (or use task regression)")  # fmt: skip
    if len(classes) > 2 and spec.metric == "areaUnderROC":
        raise BadInputError(
            f"metric areaUnderROC needs 2 classes, label {name!r} has {len(classes)}: use accuracy or f1"
        )
    if len(classes) > 2 and spec.algorithm == "gbt":
        raise BadInputError(f"Spark's GBTClassifier takes 2 classes, label {name!r} has {len(classes)}: use "
                            "random_forest, linear or lightgbm_per_group")  # fmt: skip
    index = F.array_position(F.array(*[F.lit(c) for c in classes]), column(name)) - 1
    LOG.info("classes=%s", classes)
    return df.withColumn(LABEL, index.cast("double")), classes


def _model_name_kwargs(log_model: Any) -> dict[str, str]:
    """``name="model"`` where the installed mlflow's ``log_model`` takes it, else ``artifact_path``."""
    import inspect

    return {"name": "model"} if "name" in inspect.signature(log_model).parameters else {"artifact_path": "model"}


def _finite(values: dict[str, Any]) -> dict[str, float | None]:
    """Metrics as JSON numbers: NaN or infinite (e.g. r2 of a constant label) become ``None``."""
    return {k: float(v) if v is not None and math.isfinite(v) else None for k, v in values.items()}


def _metric_key(name: str) -> str:
    return re.sub(r"[^\w\-. :/]", "_", name)


def log_and_result(spec: TrainSpec, columns: Columns, classes: list[Any] | None, df: Any) -> dict[str, Any]:
    """Train with the spec's algorithm and log params, metrics and the model to the active run."""
    import mlflow
    from mlflow.models import infer_signature

    mlflow.log_dict(spec.to_dict(), "spec.json")
    columns_json = {"label": columns.label, "features": list(columns.features),
                    "categorical": list(columns.categorical), "group": columns.group, "classes": classes}  # fmt: skip
    mlflow.log_dict(columns_json, "columns.json")
    params = {"algorithm": spec.algorithm, "task": spec.task, "label": spec.label, "input": spec.input,
              "metric": spec.metric, "folds": spec.folds, "holdout_fraction": spec.holdout_fraction, "seed": spec.seed,
              "features": ",".join(columns.features)[:5000], "categorical": ",".join(columns.categorical)[:5000],
              "group_column": columns.group, "estimator": spec.estimator or "lightgbm",
              "grid_size": len(lgbm.grid_points(dict(spec.param_grid))) if spec.param_grid else 0}  # fmt: skip
    params = {k: v for k, v in params.items() if v is not None}
    mlflow.log_params(params | {f"param.{k}": json.dumps(v) for k, v in spec.params.items()})
    groups: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    if spec.algorithm == "lightgbm_per_group":
        job = lgbm.GroupJob(group=str(columns.group), features=columns.features, categorical=columns.categorical,
                            task=spec.task, n_classes=len(classes or ()), params=dict(spec.params),
                            grid=dict(spec.param_grid), folds=spec.folds, holdout_fraction=spec.holdout_fraction,
                            seed=spec.seed, metric=spec.metric, min_group_rows=spec.min_group_rows)  # fmt: skip
        trained = lgbm.train_groups(df.select(*[column(c) for c in columns.inputs], LABEL), job)
        groups, skipped, metrics = trained.groups, trained.skipped, trained.metrics
        for key, reason in skipped.items():
            LOG.warning("warning: group %s=%s skipped: %s", columns.group, key, reason)
        if skipped:  # on the run's page, beside groups.json
            mlflow.set_tag("airflow_ml_provider.skipped_groups", json.dumps(skipped)[:4000])
        if not groups:
            raise BadInputError(f"no group of {columns.group!r} was trained ({len(skipped)} skipped: "
                                f"{dict(list(skipped.items())[:5])}): lower min_group_rows or add rows")  # fmt: skip
        rows = {"train": sum(g["rows_train"] for g in groups.values()),
                "holdout": sum(g["rows_holdout"] for g in groups.values())}  # fmt: skip
        best_params = {key: g["best_params"] for key, g in groups.items()}
        for key, group in groups.items():
            LOG.info("group %s=%s rows=%d best=%s metrics=%s", columns.group, key, group["rows_train"],
                     group["best_params"], group["metrics"])  # fmt: skip
            for name, value in group["metrics"].items():
                if value is not None:
                    mlflow.log_metric(_metric_key(f"{name}.{key}"), value)
        mlflow.log_metrics({"groups_trained": len(groups), "groups_skipped": len(skipped)})
        mlflow.log_dict({"groups": groups, "skipped": skipped}, "groups.json")
        example = df.select(*[column(c) for c in columns.inputs]).where(column(str(columns.group)).isin(list(groups)))
        example = example.limit(5).toPandas()
        model = lgbm.grouped_model(trained.boosters, str(columns.group), columns.features, columns.categorical, classes)
        signature = infer_signature(example, model.predict(None, example))
        import lightgbm
        import pandas

        mlflow.pyfunc.log_model(python_model=model, signature=signature, input_example=example,
                                       pip_requirements=[f"lightgbm=={lightgbm.__version__}",
                                                         f"pandas=={pandas.__version__}"],
                                       **_model_name_kwargs(mlflow.pyfunc.log_model))  # fmt: skip
    else:
        import mlflow.spark
        import pyspark

        fitted = train_spark_ml(df, spec, columns, len(classes or ()))
        metrics, best_params, rows = fitted["metrics"], fitted["best_params"], fitted["rows"]
        LOG.info("best params=%s", best_params)
        mlflow.log_params({f"best.{k}": json.dumps(v) for k, v in best_params.items() if k not in spec.params})
        signature = infer_signature(fitted["example"], fitted["predicted"])
        mlflow.spark.log_model(fitted["model"], signature=signature, input_example=fitted["example"],
                                      pip_requirements=[f"pyspark=={pyspark.__version__}"],
                                      **_model_name_kwargs(mlflow.spark.log_model))  # fmt: skip
    metrics = _finite(metrics)
    mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
    mlflow.log_metrics({"rows_train": rows["train"], "rows_holdout": rows["holdout"]})
    LOG.info("holdout metrics=%s", metrics)
    run = mlflow.active_run()
    assert run is not None
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
            "model_uri": f"runs:/{run.info.run_id}/model",
            "algorithm": spec.algorithm, "task": spec.task, "metric": spec.metric, "metrics": metrics,
            "best_params": best_params, "rows": rows, "columns": columns_json, "classes": classes, "groups": groups,
            "skipped_groups": skipped}  # fmt: skip


def _write_result(path: str, result: dict[str, Any]) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".spark_train-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(result, out, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Run the application; returns the exit code (0 done, 2 bad input, 1 other failure)."""
    started = time.monotonic()
    parser = _Parser(prog="spark_train.py", description="Train a model on Spark from a JSON spec; log it to MLflow.")
    parser.add_argument("--spec", required=True, help="the training spec, a JSON object")
    parser.add_argument("--result", required=True, help="where to write the JSON result (a local path on the driver)")
    try:
        args = parser.parse_args(argv)
        spec = parse_spec(args.spec)
        result_path = os.path.abspath(args.result)
        if not os.path.isdir(os.path.dirname(result_path)):
            raise BadInputError(f"--result {args.result}: its directory does not exist on the driver; create it")
        tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
        if not tracking:
            raise BadInputError("MLFLOW_TRACKING_URI is not set: set it (and any credentials) in the driver's "
                                "environment to the MLflow tracking server")  # fmt: skip
    except BadInputError as e:
        LOG.error("error: %s", e)
        return 2
    where = urlsplit(tracking)
    LOG.info("start algorithm=%s task=%s input=%s mlflow=%s://%s experiment=%s code=%s", spec.algorithm, spec.task,
             spec.input, where.scheme, where.hostname or "", spec.mlflow.experiment,
             os.path.dirname(lgbm.__file__ or "?"))  # fmt: skip
    try:
        import mlflow

        experiment = mlflow.set_experiment(spec.mlflow.experiment)
        tags = dict(spec.mlflow.tags) | (
            {SUBMISSION_TAG: spec.mlflow.submission_tag} if spec.mlflow.submission_tag else {}
        )
        run = mlflow.start_run(experiment_id=experiment.experiment_id, run_name=spec.mlflow.run_name, tags=tags)
    except Exception as e:  # noqa: BLE001 - the server, credentials: one line, exit 1
        LOG.error("error: starting the MLflow run failed: %s", _first_line(e))
        return 1
    LOG.info("mlflow run_id=%s experiment_id=%s", run.info.run_id, experiment.experiment_id)
    code, error, spark, result = 1, "interrupted", None, None
    try:
        import pandas
        import pyspark
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.appName(f"spark_train {spec.algorithm} {spec.mlflow.experiment}")
        for key, value in SESSION_CONF.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        LOG.info("spark %s master=%s pandas %s python %s", pyspark.__version__, spark.sparkContext.master,
                 pandas.__version__, sys.version.split()[0])  # fmt: skip
        df, columns, _ = load_checked(spark, spec)
        kinds = {f.name: _kind(f.dataType) for f in df.schema.fields}
        check_drift(spec, columns, kinds, run.info.run_id, experiment.experiment_id, LOG)
        df, classes = add_label(df, spec, columns)
        result = log_and_result(spec, columns, classes, df)
        result["application_id"] = spark.sparkContext.applicationId
        code, error = 0, ""
    except BadInputError as e:
        code, error = 2, str(e)
    except Exception as e:  # noqa: BLE001 - Spark, MLflow, training: one line here, the traceback on stderr
        traceback.print_exc()
        code, error = 1, _first_line(e)
    finally:
        if code:
            LOG.error("error: %s", error)
            try:
                mlflow.set_tag(ERROR_TAG, error[:4000])
            finally:
                mlflow.end_run("FAILED")
        else:
            mlflow.end_run("FINISHED")
        if spark is not None:
            spark.stop()
    if code or result is None:
        return code or 1
    result["seconds"] = round(time.monotonic() - started, 3)
    _write_result(result_path, result)
    LOG.info("result %s", json.dumps(result, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
