"""The Spark training spec (airflow_ml_provider.jobs.spark_spec, spark_params): every rule, the round
trip, the column checks against a schema, and the parameter tables against the installed pyspark.
No Spark session: pyspark's Param objects are class attributes, read without a JVM."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest

from airflow_ml_provider.jobs.common import BadInputError
from airflow_ml_provider.jobs.spark_params import LIGHTGBM_ALIASES, LIGHTGBM_PARAMS, SPARK_ESTIMATORS, SPARK_PARAMS
from airflow_ml_provider.jobs.spark_spec import (
    Columns,
    SpecError,
    TrainSpec,
    check_counts,
    parse_spec,
    resolve_columns,
)
from tests.conftest import ROOT

BASE: dict[str, Any] = {
    "input": "/data/sales",
    "label": "units_sold",
    "algorithm": "linear",
    "mlflow": {"experiment": "sales"},
}
#: The synthetic sales dataset's columns as resolve_columns sees them (country from country=XX).
SALES = {
    "country": "string",
    "sku": "string",
    "week": "date",
    "week_of_year": "integer",
    "base_price": "float",
    "discount": "float",
    "stock": "integer",
    "days_to_season_end": "integer",
    "units_sold": "integer",
    "promo": "boolean",
}


def spec(**changes: Any) -> dict[str, Any]:
    """BASE with ``changes`` (a value of ``...`` removes the key)."""
    out = {**BASE, **changes}
    return {k: v for k, v in out.items() if v is not ...}


def refused(obj: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(obj)
    return info.value


# --------------------------------------------------------------------------- parsing and defaults


def test_minimal_spec_gets_the_defaults() -> None:
    parsed = parse_spec(BASE)
    assert parsed == TrainSpec(input="/data/sales", label="units_sold", algorithm="linear", mlflow=parsed.mlflow)
    assert (parsed.task, parsed.metric, parsed.folds, parsed.holdout_fraction, parsed.seed) == (
        "regression",
        "rmse",
        3,
        0.2,
        42,
    )
    assert parsed.features is None
    assert parsed.categorical == ()
    assert parsed.exclude == ()
    assert parsed.params == {}
    assert parsed.param_grid == {}
    assert parsed.group_column is None
    assert parsed.min_group_rows == 50
    assert parsed.mlflow.experiment == "sales"
    assert parsed.mlflow.run_name is None
    assert parsed.mlflow.tags == {}
    assert parsed.mlflow.submission_tag is None
    assert parsed.estimator == "LinearRegression"
    assert parsed.input_url == "file:///data/sales"


def test_classification_defaults_to_area_under_roc_and_picks_the_classifier() -> None:
    parsed = parse_spec(spec(task="classification", algorithm="gbt"))
    assert parsed.metric == "areaUnderROC"
    assert parsed.estimator == "GBTClassifier"
    assert parse_spec(spec(task="classification", algorithm="linear")).estimator == "LogisticRegression"
    assert parse_spec(spec(algorithm="random_forest")).estimator == "RandomForestRegressor"
    assert parse_spec(spec(algorithm="lightgbm_per_group", group_column="country")).estimator is None


FULL_SPECS = [
    spec(
        input="hdfs://namenode:8020/lake/sales",
        features=["discount", "stock"],
        categorical=["segment"],
        exclude=["sku"],
        params={"maxIter": 20, "elasticNetParam": 0.5},
        param_grid={"regParam": [0.0, 0.1]},
        folds=4,
        holdout_fraction=0.25,
        seed=7,
        metric="mae",
        mlflow={"experiment": "e", "run_name": "r", "tags": {"team": "pricing"}, "submission_tag": "abc-1"},
    ),
    spec(
        input="hdfs://namenode:8020/lake/sales",
        algorithm="lightgbm_per_group",
        task="classification",
        label="sold_out",
        group_column="country",
        categorical=["segment"],
        params={"num_iterations": 50, "monotone_constraints": [1, 0], "extra_trees": True},
        param_grid={"num_leaves": [7, 15], "learning_rate": [0.05, 0.1]},
        metric="f1",
        min_group_rows=5,
    ),
    spec(input="file:///lake/sales", algorithm="random_forest", features=[], categorical=["country"]),
]


@pytest.mark.parametrize("obj", FULL_SPECS)
def test_to_json_round_trips(obj: dict[str, Any]) -> None:
    parsed = parse_spec(obj)
    text = parsed.to_json()
    assert parse_spec(text) == parsed
    assert parse_spec(json.loads(text)) == parsed
    assert list(json.loads(text)) == sorted(json.loads(text))  # sorted keys, defaults written out
    assert set(json.loads(text)) == {*BASE, *obj, "task", "features", "categorical", "exclude", "params",
                                     "param_grid", "folds", "holdout_fraction", "seed", "metric", "group_column",
                                     "min_group_rows", "on_schema_change"}  # fmt: skip


def test_spec_is_frozen() -> None:
    parsed = parse_spec(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.label = "other"  # type: ignore[misc]


def test_errors_are_bad_input_value_errors_with_the_field() -> None:
    error = refused(spec(folds=1))
    assert isinstance(error, BadInputError)
    assert isinstance(error, ValueError)
    assert error.field == "folds"
    assert str(error).startswith("spec field 'folds': ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "is not valid JSON"),
        ('{"input": NaN}', "NaN is not JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
    ],
)
def test_json_text_that_is_not_an_object(text: str, expected: str) -> None:
    error = refused(text)
    assert error.field == "spec"
    assert expected in str(error)


def test_unknown_keys_are_named_with_the_valid_ones() -> None:
    error = refused(spec(lable="x", epochs=3))
    assert "['epochs', 'lable']" in str(error)
    assert "'label'" in str(error)
    assert "'param_grid'" in str(error)


@pytest.mark.parametrize(
    ("key", "expected"),
    [("input", "is required"), ("label", "is required"), ("algorithm", "must be one of"), ("mlflow", "is required")],
)
def test_required_fields(key: str, expected: str) -> None:
    error = refused(spec(**{key: ...}))
    assert error.field == key
    assert expected in str(error)


@pytest.mark.parametrize(
    "value",
    ["/data/sales", "file:///data/sales", "hdfs://nn:8020/lake/x", "hdfs://ha-nameservice/lake"],
)
def test_input_locations_accepted(value: str) -> None:
    assert parse_spec(spec(input=value)).input == value


@pytest.mark.parametrize("value", ["data/sales", "s3://bucket/x", "hdfs:///lake/x", "http://host/x", "", 3])
def test_input_locations_refused_with_the_forms_that_work(value: Any) -> None:
    error = refused(spec(input=value))
    assert error.field == "input"
    assert "absolute local path" in str(error) or "non-empty string" in str(error)


def test_webhdfs_input_is_refused_saying_why_and_what_works() -> None:
    """Spark 4's shaded Hadoop client fails on every WebHDFS answer (tests/integration/test_spark_hdfs_real.py)."""
    error = refused(spec(input="webhdfs://nn:9870/x"))
    assert error.field == "input"
    assert "cannot read webhdfs://" in str(error)
    assert "hdfs://namenode:8020/" in str(error)


def test_hdfs_input_is_passed_to_spark_as_is() -> None:
    assert parse_spec(spec(input="hdfs://nn:8020/x")).input_url == "hdfs://nn:8020/x"


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"task": "ranking"}, "task", "['regression', 'classification']"),
        ({"algorithm": "xgboost"}, "algorithm", "'lightgbm_per_group'"),
        ({"metric": "areaUnderROC"}, "metric", "['rmse', 'mae', 'r2'] for task 'regression'"),
        ({"task": "classification", "metric": "rmse"}, "metric", "['areaUnderROC', 'accuracy', 'f1']"),
        ({"folds": 1}, "folds", "whole number >= 2, got 1 (default 3)"),
        ({"folds": True}, "folds", "whole number >= 2"),
        ({"folds": 2.5}, "folds", "whole number >= 2"),
        ({"holdout_fraction": 0}, "holdout_fraction", "0 < x < 0.5, got 0 (default 0.2)"),
        ({"holdout_fraction": 0.5}, "holdout_fraction", "0 < x < 0.5"),
        ({"holdout_fraction": "0.2"}, "holdout_fraction", "0 < x < 0.5"),
        ({"holdout_fraction": True}, "holdout_fraction", "0 < x < 0.5"),
        ({"seed": -1}, "seed", "0 to 2147483647"),
        ({"seed": False}, "seed", "0 to 2147483647"),
        ({"min_group_rows": 4}, "min_group_rows", "whole number >= 5"),
        ({"label": ""}, "label", "non-empty string"),
        ({"features": "discount"}, "features", "list of column names"),
        ({"features": ["discount", ""]}, "features", "list of column names"),
        ({"categorical": ["a", "b", "a"]}, "categorical", "names ['a'] more than once"),
        ({"exclude": [1]}, "exclude", "list of column names"),
        ({"features": []}, "features", "name at least one feature"),
    ],
)
def test_field_rules(changes: dict[str, Any], field: str, expected: str) -> None:
    error = refused(spec(**changes))
    assert error.field == field
    assert expected in str(error)


@pytest.mark.parametrize(
    ("changes", "field", "first_role"),
    [
        ({"features": ["discount", "units_sold"]}, "features", "label"),
        ({"categorical": ["units_sold"]}, "categorical", "label"),
        ({"features": ["discount"], "categorical": ["discount"]}, "categorical", "features"),
        ({"categorical": ["segment"], "exclude": ["segment"]}, "exclude", "categorical"),
        ({"algorithm": "lightgbm_per_group", "group_column": "country", "features": ["country"]}, "features",
         "group_column"),
    ],
)  # fmt: skip
def test_a_column_has_one_role(changes: dict[str, Any], field: str, first_role: str) -> None:
    error = refused(spec(**changes))
    assert error.field == field
    assert f"already the spec's {first_role}" in str(error)


def test_group_column_required_for_lightgbm_only() -> None:
    error = refused(spec(algorithm="lightgbm_per_group"))
    assert error.field == "group_column"
    assert "required for lightgbm_per_group" in str(error)
    error = refused(spec(group_column="country"))
    assert error.field == "group_column"
    assert "list 'country' in categorical" in str(error)


# --------------------------------------------------------------------------- params and grid


def test_spark_param_typo_names_the_valid_names() -> None:
    error = refused(spec(params={"maxIters": 10}))
    assert error.field == "params.maxIters"
    assert "Spark ML LinearRegression has no parameter 'maxIters'" in str(error)
    assert "'maxIter'" in str(error)
    assert "'regParam'" in str(error)


@pytest.mark.parametrize(
    ("algorithm", "task", "params", "expected"),
    [
        ("linear", "regression", {"maxIter": "10"}, "'maxIter' must be a whole number, got '10'"),
        ("linear", "regression", {"maxIter": 1.5}, "must be a whole number"),
        ("linear", "regression", {"regParam": True}, "'regParam' must be a number, got True"),
        ("linear", "regression", {"regParam": float("nan")}, "must be a number"),
        ("linear", "regression", {"fitIntercept": 1}, "must be true or false"),
        ("linear", "regression", {"solver": "sgd"}, "one of ['auto', 'normal', 'l-bfgs']"),
        ("gbt", "regression", {"lossType": "logistic"}, "one of ['squared', 'absolute']"),
        ("gbt", "classification", {"lossType": "squared"}, "one of ['logistic']"),
        ("random_forest", "classification", {"impurity": "variance"}, "one of ['gini', 'entropy']"),
        ("linear", "classification", {"thresholds": [0.5, "x"]}, "must be a list of numbers"),
        ("linear", "regression", {"featuresCol": "f"}, "has no parameter 'featuresCol'"),
    ],
)
def test_spark_param_values_are_type_checked(algorithm: str, task: str, params: dict[str, Any], expected: str) -> None:
    assert expected in str(refused(spec(algorithm=algorithm, task=task, params=params)))


def test_spark_params_accepted() -> None:
    parsed = parse_spec(spec(algorithm="gbt", params={"maxIter": 5, "stepSize": 1, "lossType": "absolute"}))
    assert parsed.params == {"maxIter": 5, "stepSize": 1, "lossType": "absolute"}


LGBM = {"algorithm": "lightgbm_per_group", "group_column": "country"}


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("n_estimators", "num_iterations"), ("subsample", "bagging_fraction"), ("reg_lambda", "lambda_l2"),
     ("seed", "the spec's seed field"), ("random_state", "the spec's seed field")],
)  # fmt: skip
def test_lightgbm_alias_names_the_canonical_parameter(alias: str, canonical: str) -> None:
    error = refused(spec(**LGBM, params={alias: 1}))
    assert f"LightGBM has no parameter {alias!r}" in str(error)
    assert f"use {canonical} instead" in str(error)
    assert "'num_leaves'" in str(error)


def test_lightgbm_objective_only_for_regression() -> None:
    assert parse_spec(spec(**LGBM, params={"objective": "poisson"})).params == {"objective": "poisson"}
    assert "one of ['regression'" in str(refused(spec(**LGBM, params={"objective": "binary"})))
    error = refused(spec(**LGBM, task="classification", params={"objective": "binary"}))
    assert "follows from the label (binary or multiclass)" in str(error)


def test_lightgbm_list_params() -> None:
    assert parse_spec(spec(**LGBM, params={"monotone_constraints": [1, 0, -1]})).params["monotone_constraints"]
    assert "list of whole numbers" in str(refused(spec(**LGBM, params={"monotone_constraints": [1, 0.5]})))


@pytest.mark.parametrize(
    ("grid", "field", "expected"),
    [
        ({"regParam": []}, "param_grid.regParam", "non-empty list of values"),
        ({"regParam": 0.1}, "param_grid.regParam", "non-empty list of values"),
        ({"regParam": [0.1, "high"]}, "param_grid.regParam", "must be a number, got 'high'"),
        ({"regParm": [0.1]}, "param_grid.regParm", "has no parameter 'regParm'"),
        ([1], "param_grid", "object of parameter name -> list"),
    ],
)
def test_param_grid_rules(grid: Any, field: str, expected: str) -> None:
    error = refused(spec(param_grid=grid))
    assert error.field == field
    assert expected in str(error)


def test_a_parameter_is_fixed_or_searched_not_both() -> None:
    error = refused(spec(params={"regParam": 0.1}, param_grid={"regParam": [0.0, 0.1]}))
    assert error.field == "param_grid.regParam"
    assert "also in params" in str(error)


def test_params_must_be_an_object() -> None:
    assert refused(spec(params=[("maxIter", 3)])).field == "params"


# --------------------------------------------------------------------------- mlflow


@pytest.mark.parametrize(
    ("value", "field", "expected"),
    [
        ("sales", "mlflow", 'an object like {"experiment": "sales"}'),
        ({}, "mlflow.experiment", "is required"),
        ({"experiment": " "}, "mlflow.experiment", "non-empty string"),
        ({"experiment": "e", "tracking_uri": "http://x"}, "mlflow", "MLFLOW_TRACKING_URI"),
        ({"experiment": "e", "tags": {"a": 1}}, "mlflow.tags", "string -> string"),
        ({"experiment": "e", "tags": ["a"]}, "mlflow.tags", "string -> string"),
        ({"experiment": "e", "submission_tag": ""}, "mlflow.submission_tag", "non-empty string"),
        ({"experiment": "e", "run_name": 5}, "mlflow.run_name", "non-empty string"),
    ],
)
def test_mlflow_rules(value: Any, field: str, expected: str) -> None:
    error = refused(spec(mlflow=value))
    assert error.field == field
    assert expected in str(error)


def test_credentials_never_come_from_the_spec() -> None:
    error = refused(spec(mlflow={"experiment": "e", "token": "s3cr3t"}))
    assert "never from the spec" in str(error)


# --------------------------------------------------------------------------- columns against the data


def test_features_default_to_every_numeric_column_but_label_group_categorical_and_excluded() -> None:
    parsed = parse_spec(spec(**LGBM, categorical=["sku"], exclude=["stock"]))
    columns = resolve_columns(parsed, SALES)
    assert columns == Columns(
        label="units_sold",
        features=("week_of_year", "base_price", "discount", "days_to_season_end"),  # no date, string, boolean
        categorical=("sku",),
        group="country",
    )
    assert columns.inputs == ("week_of_year", "base_price", "discount", "days_to_season_end", "sku", "country")


def test_named_features_keep_their_order_and_may_be_boolean() -> None:
    columns = resolve_columns(parse_spec(spec(features=["promo", "discount"])), SALES)
    assert columns.features == ("promo", "discount")
    assert columns.inputs == ("promo", "discount")


def column_error(changes: dict[str, Any], schema: dict[str, str] = SALES) -> str:
    with pytest.raises(BadInputError) as info:
        resolve_columns(parse_spec(spec(**changes)), schema)
    return str(info.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"label": "revenue"}, "label column 'revenue' is not in the input (the input's columns are ['base_price'"),
        ({"label": "sku"}, "label column 'sku' is string, not integer or float: regression needs a numeric label"),
        ({"features": ["discount", "price"]}, "feature column 'price' is not in the input"),
        ({"features": ["sku"]}, "feature column 'sku' is string, not integer or float or boolean: list it in categ"),
        ({"features": ["week"]}, "feature column 'week' is date, not integer or float or boolean: cast it upstream"),
        ({"categorical": ["base_price"]}, "categorical column 'base_price' is float, not string or integer or boolean"),
        ({"categorical": ["segment"]}, "categorical column 'segment' is not in the input"),
        ({"exclude": ["sku_old"]}, "excluded column 'sku_old' is not in the input"),
        ({**LGBM, "group_column": "base_price"}, "group column 'base_price' is float, not string or integer"),
        ({**LGBM, "group_column": "region"}, "group column 'region' is not in the input"),
    ],
)  # fmt: skip
def test_column_problems_name_the_column_and_the_fix(changes: dict[str, Any], expected: str) -> None:
    assert expected in column_error(changes)


def test_classification_label_may_be_a_string_or_boolean() -> None:
    for label in ("sku", "promo", "stock"):
        assert resolve_columns(parse_spec(spec(task="classification", label=label)), SALES).label == label


def test_every_column_problem_in_one_message() -> None:
    message = column_error({"label": "revenue", "features": ["price", "sku"]})
    assert "'revenue'" in message
    assert "'price'" in message
    assert "'sku'" in message


def test_no_numeric_feature_is_an_error() -> None:
    message = column_error({}, {"units_sold": "integer", "sku": "string"})
    assert "there is no numeric feature column" in message
    assert "name features or categorical columns" in message


def test_only_categorical_features_is_fine() -> None:
    columns = resolve_columns(parse_spec(spec(categorical=["sku"])), {"units_sold": "integer", "sku": "string"})
    assert columns.features == ()
    assert columns.categorical == ("sku",)


def counts_error(algorithm_changes: dict[str, Any], rows: int, nulls: dict[str, int]) -> str:
    parsed = parse_spec(spec(**algorithm_changes))
    columns = resolve_columns(parsed, SALES)
    with pytest.raises(BadInputError) as info:
        check_counts(parsed, columns, rows, nulls)
    return str(info.value)


def test_empty_input_is_named() -> None:
    assert "the input /data/sales has no rows" in counts_error({}, 0, {})


def test_label_and_group_nulls_are_refused() -> None:
    message = counts_error(LGBM, 100, {"units_sold": 3, "country": 2, "discount": 5})
    assert "label 'units_sold' has 3 null or NaN value(s) in 100 rows: drop or fill them upstream" in message
    assert "group column 'country' has 2 null value(s)" in message
    assert "discount" not in message  # LightGBM takes missing feature values


def test_spark_ml_feature_nulls_are_refused_with_the_ways_out() -> None:
    message = counts_error({}, 100, {"discount": 5, "units_sold": 0})
    assert "feature 'discount' has 5 null or NaN value(s) in 100 rows" in message
    assert "use lightgbm_per_group" in message


def test_complete_counts_pass() -> None:
    parsed = parse_spec(spec(categorical=["sku"]))
    check_counts(parsed, resolve_columns(parsed, SALES), 10, {"units_sold": 0, "discount": 0, "sku": 4})


# --------------------------------------------------------------------------- tables and imports

#: The column parameters the application sets itself, and the coefficient bounds (matrices).
MANAGED = {"featuresCol", "labelCol", "predictionCol", "probabilityCol", "rawPredictionCol", "weightCol", "leafCol",
           "validationIndicatorCol", "varianceCol", "lowerBoundsOnCoefficients", "upperBoundsOnCoefficients",
           "lowerBoundsOnIntercepts", "upperBoundsOnIntercepts"}  # fmt: skip
CONVERTERS = {"toInt": "int", "toFloat": "float", "toBoolean": "bool", "toString": "str", "toListFloat": "floats"}


@pytest.mark.parametrize("name", sorted(SPARK_PARAMS))
def test_spark_table_matches_the_installed_pyspark(name: str) -> None:
    from pyspark.ml import classification, regression
    from pyspark.ml.param import Param

    cls = getattr(regression, name, None) or getattr(classification, name)
    params = {p.name: p for p in (getattr(cls, a) for a in dir(cls)) if isinstance(p, Param)}
    assert set(SPARK_PARAMS[name]) == set(params) - MANAGED
    for param, kind in SPARK_PARAMS[name].items():
        assert CONVERTERS[params[param].typeConverter.__name__] == kind.split(":")[0], param


def test_every_estimator_has_a_table() -> None:
    assert set(SPARK_ESTIMATORS.values()) == set(SPARK_PARAMS)


def test_lightgbm_table_uses_the_installed_lightgbms_canonical_names_and_aliases() -> None:
    import lightgbm.basic

    canonical = lightgbm.basic._ConfigAliases._get_all_param_aliases()  # name -> its aliases, from the C library
    assert set(LIGHTGBM_PARAMS) <= set(canonical)
    alias_of = {alias: name for name, aliases in canonical.items() for alias in aliases}
    for alias, name in LIGHTGBM_ALIASES.items():
        assert alias_of[alias] == ("seed" if name == "the spec's seed field" else name), alias


def test_importing_the_spec_imports_no_heavy_library() -> None:
    code = (
        "import sys, airflow_ml_provider.jobs.spark_spec as s; "
        "s.parse_spec({'input': '/x', 'label': 'y', 'algorithm': 'gbt', 'mlflow': {'experiment': 'e'}}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'pyspark', 'pandas', 'numpy', 'pyarrow', 'mlflow', 'lightgbm', 'airflow', 'py4j'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("value", ["warn", "", None, True])
def test_on_schema_change_is_fail_or_allow(value: Any) -> None:
    assert parse_spec(spec()).on_schema_change == "fail"
    assert parse_spec(spec(on_schema_change="allow")).on_schema_change == "allow"
    if value is None:
        return
    error = refused(spec(on_schema_change=value))
    assert error.field == "on_schema_change"
    assert "'fail' (default) or 'allow'" in str(error)
