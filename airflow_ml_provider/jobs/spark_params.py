"""The estimator parameters a Spark training spec may set: names and value types, standard library only.

:mod:`airflow_ml_provider.jobs.spark_spec` checks ``params`` and ``param_grid`` against these tables
when a DAG is parsed, where pyspark and lightgbm are not installed, so the names are written out
here instead of read from the libraries:

* :data:`SPARK_PARAMS`: the Spark ML (pyspark 4.x) estimators' parameters by name, as
  ``Param.name`` spells them; a unit test compares the table with the installed pyspark's
  ``Param`` objects and their type converters. The Spark application checks again with
  ``estimator.hasParam`` and the Param's converter.
* :data:`LIGHTGBM_PARAMS`: the LightGBM parameters this application passes to ``lightgbm.train``
  (canonical names, https://lightgbm.readthedocs.io/en/stable/Parameters.html). A known alias
  (``n_estimators``, ``subsample``...) is refused with the canonical name to use.

Kinds: ``int``, ``float``, ``bool``, ``str``, ``floats`` (a list of numbers), ``ints`` (a list of
whole numbers) or ``str:a|b`` (one of those strings).
"""

from __future__ import annotations

import math
from typing import Any

#: Spark ML estimator class per (algorithm, task).
SPARK_ESTIMATORS = {
    ("linear", "regression"): "LinearRegression",
    ("linear", "classification"): "LogisticRegression",
    ("gbt", "regression"): "GBTRegressor",
    ("gbt", "classification"): "GBTClassifier",
    ("random_forest", "regression"): "RandomForestRegressor",
    ("random_forest", "classification"): "RandomForestClassifier",
}

# Kinds: int, float, bool, str, floats (list of numbers), ints (list of whole numbers), or
# "str:a|b" (one of the strings).
_LINEAR = {"aggregationDepth": "int", "elasticNetParam": "float", "fitIntercept": "bool", "maxBlockSizeInMB": "float",
           "maxIter": "int", "regParam": "float", "standardization": "bool", "tol": "float"}  # fmt: skip
_TREE = {"cacheNodeIds": "bool", "checkpointInterval": "int", "featureSubsetStrategy": "str", "maxBins": "int",
         "maxDepth": "int", "maxMemoryInMB": "int", "minInfoGain": "float", "minInstancesPerNode": "int",
         "minWeightFractionPerNode": "float", "seed": "int", "subsamplingRate": "float"}  # fmt: skip
_GBT = {**_TREE, "maxIter": "int", "stepSize": "float", "validationTol": "float", "impurity": "str:variance"}
#: Spark ML parameters a spec may set, per estimator. Left out: the column parameters (featuresCol,
#: labelCol, predictionCol, probabilityCol, rawPredictionCol, weightCol, leafCol,
#: validationIndicatorCol), which the application sets, and the coefficient bounds (matrices).
SPARK_PARAMS: dict[str, dict[str, str]] = {
    "LinearRegression": {**_LINEAR, "epsilon": "float", "loss": "str:squaredError|huber",
                         "solver": "str:auto|normal|l-bfgs"},
    "LogisticRegression": {**_LINEAR, "family": "str:auto|binomial|multinomial", "threshold": "float",
                           "thresholds": "floats"},
    "GBTRegressor": {**_GBT, "lossType": "str:squared|absolute"},
    "GBTClassifier": {**_GBT, "lossType": "str:logistic", "thresholds": "floats"},
    "RandomForestRegressor": {**_TREE, "bootstrap": "bool", "numTrees": "int", "impurity": "str:variance"},
    "RandomForestClassifier": {**_TREE, "bootstrap": "bool", "numTrees": "int", "impurity": "str:gini|entropy",
                               "thresholds": "floats"},
}  # fmt: skip
_REGRESSION_OBJECTIVES = "regression|regression_l1|huber|fair|poisson|quantile|mape|gamma|tweedie"
#: LightGBM parameters a spec may set (canonical names, https://lightgbm.readthedocs.io/en/stable/Parameters.html).
#: ``objective`` only for regression (classification is ``binary`` or ``multiclass`` by the label);
#: ``seed`` is the spec's ``seed``; ``num_threads`` defaults to 1 (one task per group runs on each core).
LIGHTGBM_PARAMS: dict[str, str] = {
    "objective": f"str:{_REGRESSION_OBJECTIVES}", "boosting": "str:gbdt|dart|rf", "num_iterations": "int",
    "learning_rate": "float", "num_leaves": "int", "max_depth": "int", "min_data_in_leaf": "int",
    "min_sum_hessian_in_leaf": "float", "bagging_fraction": "float", "bagging_freq": "int",
    "feature_fraction": "float", "lambda_l1": "float", "lambda_l2": "float", "min_gain_to_split": "float",
    "max_bin": "int", "extra_trees": "bool", "linear_tree": "bool", "path_smooth": "float",
    "max_cat_to_onehot": "int", "max_cat_threshold": "int", "cat_smooth": "float", "cat_l2": "float",
    "min_data_per_group": "int", "monotone_constraints": "ints", "alpha": "float", "fair_c": "float",
    "poisson_max_delta_step": "float", "tweedie_variance_power": "float", "num_threads": "int",
    "deterministic": "bool", "is_unbalance": "bool", "scale_pos_weight": "float",
}  # fmt: skip
#: Common aliases (LightGBM's and its scikit-learn API's) -> the canonical name to use instead.
LIGHTGBM_ALIASES = {
    "n_estimators": "num_iterations", "num_boost_round": "num_iterations", "num_trees": "num_iterations",
    "num_round": "num_iterations", "num_rounds": "num_iterations", "eta": "learning_rate",
    "shrinkage_rate": "learning_rate", "num_leaf": "num_leaves", "max_leaves": "num_leaves",
    "min_child_samples": "min_data_in_leaf", "min_child_weight": "min_sum_hessian_in_leaf",
    "subsample": "bagging_fraction", "subsample_freq": "bagging_freq", "colsample_bytree": "feature_fraction",
    "reg_alpha": "lambda_l1", "reg_lambda": "lambda_l2", "min_split_gain": "min_gain_to_split",
    "boosting_type": "boosting", "n_jobs": "num_threads", "nthread": "num_threads",
    "random_state": "the spec's seed field", "seed": "the spec's seed field", "random_seed": "the spec's seed field",
}  # fmt: skip


def _kind_text(kind: str) -> str:
    texts = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
             "floats": "a list of numbers", "ints": "a list of whole numbers"}  # fmt: skip
    return texts.get(kind, f"one of {kind[4:].split('|')}")


def fits(value: Any, kind: str) -> bool:
    """Whether a JSON value is of a parameter kind (see the module docstring)."""
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind in ("floats", "ints"):
        return isinstance(value, list) and all(fits(v, "int" if kind == "ints" else "float") for v in value)
    return isinstance(value, str) and value in kind[4:].split("|")


def allowed_params(algorithm: str, task: str) -> tuple[str, dict[str, str]]:
    """Who takes an algorithm's parameters (for messages, e.g. ``Spark ML GBTRegressor``) and their kinds.

    :param algorithm: one of the spec's algorithms.
    :param task: ``regression`` or ``classification``.
    """
    if algorithm == "lightgbm_per_group":
        kinds = dict(LIGHTGBM_PARAMS)
        if task == "classification":
            kinds.pop("objective")
        return "LightGBM", kinds
    name = SPARK_ESTIMATORS[(algorithm, task)]
    return f"Spark ML {name}", SPARK_PARAMS[name]


def param_problem(owner: str, kinds: dict[str, str], name: Any, value: Any) -> str | None:
    """What is wrong with one parameter (an unknown name, a value of the wrong type), or ``None``.

    :param owner: who takes the parameter, e.g. ``Spark ML GBTRegressor`` or ``LightGBM``.
    :param kinds: parameter name -> kind (from :func:`allowed_params`).
    :param name: the parameter name.
    :param value: its value.
    """
    if name not in kinds:
        hint = ""
        if owner == "LightGBM" and name in LIGHTGBM_ALIASES:
            hint = f"; use {LIGHTGBM_ALIASES[name]} instead"
        elif owner == "LightGBM" and name == "objective":
            hint = "; a classification objective follows from the label (binary or multiclass)"
        return f"{owner} has no parameter {name!r} this application takes{hint}; valid: {sorted(kinds)}"
    if not fits(value, kinds[name]):
        return f"{owner} parameter {name!r} must be {_kind_text(kinds[name])}, got {value!r}"
    return None
