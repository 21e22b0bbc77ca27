"""The Spark ML algorithms of the training application: ``linear``, ``gbt`` and ``random_forest``.

One Pipeline: StringIndexer (``handleInvalid="keep"``: an unseen or null category gets an index of
its own) and OneHotEncoder for the categorical columns, VectorAssembler, and the estimator of
:data:`~airflow_ml_provider.jobs.spark_params.SPARK_ESTIMATORS`. The rows are split with
``randomSplit([1 - h, h], seed)``; with a grid, CrossValidator (``parallelism`` up to 2) searches it on
the training part and refits the best point on the whole training part, else the pipeline is fit
once; the model is scored on the holdout. The spec's parameters are checked once more against the
estimator (``hasParam`` and the Param's type converter) before anything is fit.

Imports pyspark inside the functions (see the package docstring).
"""

from __future__ import annotations

from typing import Any

from airflow_ml_provider.jobs.common import BadInputError, job_logger
from airflow_ml_provider.jobs.spark_lightgbm import LABEL
from airflow_ml_provider.jobs.spark_spec import LARGER_IS_BETTER, METRICS, Columns, TrainSpec

LOG = job_logger("spark_train")
#: The assembled feature vector's column (the model's input is the raw columns).
FEATURES = "__spark_train_features"


def column(name: str) -> Any:
    """A Spark column by its name as it is (dots and backticks are not syntax)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _set_param(estimator: Any, name: str, value: Any, where: str) -> Any:
    """``value`` converted by the estimator's Param ``name``; a bad name or value is a BadInputError."""
    if not estimator.hasParam(name):
        valid = sorted(p.name for p in estimator.params)
        raise BadInputError(
            f"spec field {where!r}: {type(estimator).__name__} has no parameter {name!r}; valid: {valid}"
        )
    param = estimator.getParam(name)
    try:
        return param.typeConverter(value)
    except (TypeError, ValueError) as e:
        raise BadInputError(f"spec field {where!r}: {name}={value!r} is not valid: {e}") from None


def _evaluator(spec: TrainSpec, metric: str) -> Any:
    from pyspark.ml import evaluation as E

    metric_name: Any = metric  # one of METRICS[spec.task], checked by parse_spec
    if spec.task == "regression":
        return E.RegressionEvaluator(labelCol=LABEL, predictionCol="prediction", metricName=metric_name)
    if metric == "areaUnderROC":
        return E.BinaryClassificationEvaluator(labelCol=LABEL, rawPredictionCol="rawPrediction", metricName=metric_name)
    return E.MulticlassClassificationEvaluator(labelCol=LABEL, predictionCol="prediction", metricName=metric_name)


def train_spark_ml(df: Any, spec: TrainSpec, columns: Columns, n_classes: int) -> dict[str, Any]:
    """Pipeline, holdout split, cross-validation over the grid, holdout metrics (see the module docstring)."""
    from pyspark.ml import Pipeline, classification, regression
    from pyspark.ml.feature import OneHotEncoder, StringIndexer, VectorAssembler
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    module = regression if spec.task == "regression" else classification
    estimator = getattr(module, str(spec.estimator))(featuresCol=FEATURES, labelCol=LABEL)
    if estimator.hasParam("seed"):
        estimator.set(estimator.getParam("seed"), spec.seed)
    for name, value in spec.params.items():
        converted = _set_param(estimator, name, value, f"params.{name}")
        estimator.set(estimator.getParam(name), converted)
    grid = ParamGridBuilder()
    for name, values in spec.param_grid.items():
        converted_values = [_set_param(estimator, name, v, f"param_grid.{name}") for v in values]
        grid.addGrid(estimator.getParam(name), converted_values)
    grid_maps = grid.build() if spec.param_grid else []
    stages: list[Any] = []
    encoded = [f"__spark_train_onehot_{i}" for i in range(len(columns.categorical))]
    if columns.categorical:
        indexed = [f"__spark_train_index_{i}" for i in range(len(columns.categorical))]
        stages.append(StringIndexer(inputCols=list(columns.categorical), outputCols=indexed, handleInvalid="keep"))
        stages.append(OneHotEncoder(inputCols=indexed, outputCols=encoded))
    stages += [VectorAssembler(inputCols=[*columns.features, *encoded], outputCol=FEATURES), estimator]
    pipeline = Pipeline(stages=stages)
    data = df.select(*[column(c) for c in columns.inputs], LABEL).cache()
    train, holdout = data.randomSplit([1.0 - spec.holdout_fraction, spec.holdout_fraction], seed=spec.seed)
    rows = {"train": train.count(), "holdout": holdout.count()}
    if not rows["holdout"] or rows["train"] < (2 * spec.folds if grid_maps else 2):
        raise BadInputError(f"the input's {sum(rows.values())} rows split into {rows['train']} training and "
                            f"{rows['holdout']} holdout rows, too few to train (cross-validated with {spec.folds} "
                            "folds when there is a grid) and score a holdout: add rows or change holdout_fraction "
                            "or folds")  # fmt: skip
    search = f"{len(grid_maps)} grid point(s) x {spec.folds} folds" if grid_maps else "no grid: one fit"
    LOG.info("train rows=%d holdout rows=%d estimator=%s %s", rows["train"], rows["holdout"], spec.estimator, search)
    best_params = dict(spec.params)
    metrics: dict[str, float | None] = {}
    if grid_maps:
        cv = CrossValidator(estimator=pipeline, estimatorParamMaps=grid_maps, evaluator=_evaluator(spec, spec.metric),
                            numFolds=spec.folds, parallelism=min(2, len(grid_maps)), seed=spec.seed)  # fmt: skip
        cv_model = cv.fit(train)
        sign = 1.0 if LARGER_IS_BETTER[spec.metric] else -1.0
        i_best = max(range(len(grid_maps)), key=lambda i: sign * cv_model.avgMetrics[i])
        best_params |= {p.name: v for p, v in grid_maps[i_best].items()}
        metrics[f"cv_{spec.metric}"] = float(cv_model.avgMetrics[i_best])
        model = cv_model.bestModel
    else:
        model = pipeline.fit(train)
    scored = model.transform(holdout).cache()
    for name in METRICS[spec.task]:
        if name != "areaUnderROC" or n_classes == 2:
            metrics[name] = float(_evaluator(spec, name).evaluate(scored))
    sample = holdout.select(*[column(c) for c in columns.inputs]).limit(5)
    example: Any = sample.toPandas()
    predicted: Any = model.transform(sample).select("prediction").toPandas()
    predicted = predicted["prediction"]
    return {"model": model, "metrics": metrics, "best_params": best_params, "rows": rows, "example": example,
            "predicted": predicted}  # fmt: skip
