"""The training spec of :mod:`airflow_ml_provider.jobs.spark_train`: typed, parsed and checked up front.

A spec is a JSON object (see :func:`parse_spec` for every field). The Airflow operator parses it
when a DAG file is loaded, so a typo fails there, not minutes later on a cluster; the Spark
application parses the same JSON again (``--spec``) and checks it against the data
(:func:`resolve_columns`, :func:`check_counts`). **Standard library only** (it imports only
:mod:`~airflow_ml_provider.jobs.common` and :mod:`~airflow_ml_provider.jobs.spark_params`, both
stdlib-only): this is the one module of the package that code running at DAG parse time may import.

Estimator parameters are checked by name and type against the tables of
:mod:`airflow_ml_provider.jobs.spark_params` (also standard library only); the Spark application
checks the Spark ones once more with ``estimator.hasParam`` and the Param's type converter.
Errors are :class:`SpecError` (a :class:`~airflow_ml_provider.jobs.common.BadInputError`, so a
``ValueError``) naming the field and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_ml_provider.jobs.common import BadInputError
from airflow_ml_provider.jobs.spark_params import SPARK_ESTIMATORS, allowed_params, param_problem

TASKS = ("regression", "classification")
ALGORITHMS = ("linear", "gbt", "random_forest", "lightgbm_per_group")
#: Holdout metrics per task; the first is the default ``metric``.
METRICS = {"regression": ("rmse", "mae", "r2"), "classification": ("areaUnderROC", "accuracy", "f1")}
LARGER_IS_BETTER = {"rmse": False, "mae": False, "r2": True, "areaUnderROC": True, "accuracy": True, "f1": True}
#: The MLflow run tag that carries ``mlflow.submission_tag``.
SUBMISSION_TAG = "airflow_ml_provider.submission"
#: The MLflow run tag with the error of a failed training (the operator reads it in cluster deploy mode).
ERROR_TAG = "airflow_ml_provider.error"
_SPEC_KEYS = ("input", "label", "task", "features", "categorical", "exclude", "algorithm", "params", "param_grid",
              "folds", "holdout_fraction", "seed", "metric", "group_column", "min_group_rows", "on_schema_change",
              "mlflow")  # fmt: skip
_MLFLOW_KEYS = ("experiment", "run_name", "tags", "submission_tag")
_URL = re.compile(r"^(file|hdfs)://([^/?#]*)(/[^?#]*)$")


class SpecError(BadInputError):
    """A spec field is wrong; the message names the field and the fix.

    :ivar field: the field, e.g. ``folds`` or ``mlflow.experiment`` (``spec`` for the whole object).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"spec field {field!r}: {message}")
        self.field = field


@dataclass(frozen=True)
class MlflowSpec:
    """Where the run goes; the tracking URI and credentials come from the environment.

    :param experiment: the experiment name (created when missing).
    :param run_name: the run's name (MLflow picks one when ``None``).
    :param tags: extra run tags.
    :param submission_tag: set as the run tag :data:`SUBMISSION_TAG`, so the operator finds the run.
    """

    experiment: str
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    submission_tag: str | None = None


@dataclass(frozen=True)
class TrainSpec:
    """A checked training spec (frozen; :meth:`to_json` gives JSON that :func:`parse_spec` reads back
    into an equal spec). Every field is described in :func:`parse_spec`."""

    input: str
    label: str
    algorithm: str
    mlflow: MlflowSpec
    task: str = "regression"
    features: tuple[str, ...] | None = None
    categorical: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    param_grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    folds: int = 3
    holdout_fraction: float = 0.2
    seed: int = 42
    metric: str = "rmse"
    group_column: str | None = None
    min_group_rows: int = 50
    on_schema_change: str = "fail"

    @property
    def estimator(self) -> str | None:
        """The Spark ML estimator class name, ``None`` for ``lightgbm_per_group``."""
        return SPARK_ESTIMATORS.get((self.algorithm, self.task))

    @property
    def input_url(self) -> str:
        """:attr:`input` as Spark reads it: a local path as ``file://`` URL."""
        return "file://" + self.input if self.input.startswith("/") else self.input

    def to_dict(self) -> dict[str, Any]:
        """Every field, defaults included, as JSON types."""
        out = {k: getattr(self, k) for k in _SPEC_KEYS if k != "mlflow"}
        out.update(features=None if self.features is None else list(self.features),
                   categorical=list(self.categorical), exclude=list(self.exclude),
                   param_grid={k: list(v) for k, v in self.param_grid.items()})  # fmt: skip
        out["mlflow"] = {k: getattr(self.mlflow, k) for k in _MLFLOW_KEYS}
        return out

    def to_json(self) -> str:
        """The spec as JSON (sorted keys, defaults written out)."""
        return json.dumps(self.to_dict(), sort_keys=True)


def _param(where: str, owner: str, kinds: dict[str, str], name: Any, value: Any) -> None:
    problem = param_problem(owner, kinds, name, value)
    if problem:
        raise SpecError(where, problem)


def _str(obj: Mapping[str, Any], key: str, required: bool = False, where: str | None = None) -> str | None:
    value = obj.get(key)
    where = where or key
    if value is None:
        if required:
            raise SpecError(where, "is required: give a non-empty string")
        return None
    if not isinstance(value, str) or not value.strip():
        raise SpecError(where, f"must be a non-empty string, got {value!r}")
    return value


def _names(obj: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SpecError(key, f"must be a list of column names (non-empty strings), got {value!r}")
    dupes = sorted({v for v in value if value.count(v) > 1})
    if dupes:
        raise SpecError(key, f"names {dupes} more than once; list each column once")
    return tuple(value)


def _int(obj: Mapping[str, Any], key: str, default: int, low: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(key, f"must be a whole number >= {low}, got {value!r} (default {default})")
    return value


def _input(value: Any) -> str:
    text = _str({"input": value}, "input", required=True)
    assert text is not None
    if text.startswith("/"):
        return text
    if text.startswith("webhdfs://"):
        raise SpecError("input", f"{text!r}: Spark 4's Hadoop client cannot read webhdfs:// (its shaded Jersey "
                        "misses a class); use the NameNode's RPC address, hdfs://namenode:8020/…")  # fmt: skip
    match = _URL.match(text)
    if not match or (match.group(1) != "file" and not match.group(2)):
        raise SpecError(
            "input",
            f"{text!r} is not a dataset location: give an absolute local path (/data/sales), file:///data/sales, "
            "or hdfs://namenode:8020/data/sales (NameNode RPC)",
        )
    return text


def _mlflow(value: Any) -> MlflowSpec:
    if not isinstance(value, Mapping):
        raise SpecError("mlflow", f'is required: an object like {{"experiment": "sales"}}, got {value!r}')
    unknown = sorted(set(value) - set(_MLFLOW_KEYS))
    if unknown:
        raise SpecError(
            "mlflow",
            f"unknown key(s) {unknown}; valid: {list(_MLFLOW_KEYS)} (the tracking URI and credentials come "
            "from MLFLOW_TRACKING_URI etc. in the environment, never from the spec)",
        )
    tags = value.get("tags") or {}
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in tags.items()
    ):
        raise SpecError("mlflow.tags", f"must be an object of string -> string, got {tags!r}")
    return MlflowSpec(
        experiment=str(_str(value, "experiment", True, "mlflow.experiment")),
        run_name=_str(value, "run_name", where="mlflow.run_name"),
        tags=dict(tags),
        submission_tag=_str(value, "submission_tag", where="mlflow.submission_tag"),
    )


def parse_spec(obj: Mapping[str, Any] | str) -> TrainSpec:
    """Check a spec and return it typed.

    Fields: ``input`` (required: an absolute local path, ``file://``, ``hdfs://host:port/…`` or
    not ``webhdfs://``, which Spark 4 cannot read; a Parquet dataset; ``key=value`` directories become string columns),
    ``label`` (required), ``task`` (``regression`` or ``classification``), ``algorithm``
    (required: one of :data:`ALGORITHMS`), ``features`` (column names, or ``null``: every numeric
    column but the label, the group column, ``categorical`` and ``exclude``), ``categorical``
    (columns one-hot encoded for Spark ML, ``category`` for LightGBM), ``exclude``, ``params``
    (fixed estimator parameters), ``param_grid`` (name -> non-empty list, cross-validated),
    ``folds`` (>= 2, default 3), ``holdout_fraction`` (0 < x < 0.5, default 0.2), ``seed``
    (default 42), ``metric`` (one of :data:`METRICS` of the task), ``group_column`` (required for
    and only for ``lightgbm_per_group``), ``min_group_rows`` (>= 5, default 50: smaller groups
    are skipped), ``on_schema_change`` (``fail``, the default, or ``allow``: what to do when the
    model's input columns or their types differ from the last finished run's of the same label in the
    experiment, see :mod:`~airflow_ml_provider.jobs.spark_drift`) and ``mlflow`` (:class:`MlflowSpec`'s fields).

    :param obj: the spec as a mapping or as JSON text.
    :raises SpecError: the first wrong field, named, with the fix.
    """
    if isinstance(obj, str):
        try:
            obj = json.loads(obj, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not JSON")))
        except ValueError as e:
            raise SpecError("spec", f"is not valid JSON ({e}); pass one JSON object") from None
    if not isinstance(obj, Mapping):
        raise SpecError("spec", f"must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_SPEC_KEYS))
    if unknown:
        raise SpecError("spec", f"unknown key(s) {unknown}; valid keys: {list(_SPEC_KEYS)}")
    task = obj.get("task", "regression")
    if task not in TASKS:
        raise SpecError("task", f"must be one of {list(TASKS)}, got {task!r}")
    algorithm = obj.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise SpecError("algorithm", f"must be one of {list(ALGORITHMS)}, got {algorithm!r}")
    label = str(_str(obj, "label", required=True))
    features, categorical, exclude = _names(obj, "features"), _names(obj, "categorical"), _names(obj, "exclude")
    group = _str(obj, "group_column")
    if algorithm == "lightgbm_per_group" and group is None:
        raise SpecError("group_column", "is required for lightgbm_per_group: the column to train one model per "
                        'value of, e.g. "country"')  # fmt: skip
    if algorithm != "lightgbm_per_group" and group is not None:
        raise SpecError("group_column", f"applies only to lightgbm_per_group; for {algorithm} leave it out and "
                        f"list {group!r} in categorical to use it as a feature")  # fmt: skip
    roles = [("label", [label]), ("group_column", [group] if group else []), ("features", list(features or ())),
             ("categorical", list(categorical or ())), ("exclude", list(exclude or ()))]  # fmt: skip
    for i, (role, names) in enumerate(roles):
        for other, other_names in roles[i + 1 :]:
            both = sorted(set(names) & set(other_names))
            if both:
                raise SpecError(other, f"names {both}, which is already the spec's {role}; give each column one role")
    if features is not None and not features and not categorical:
        raise SpecError("features", "is empty and there is no categorical column: name at least one feature, or "
                        "null for every numeric column")  # fmt: skip
    metric = obj.get("metric", METRICS[task][0])
    if metric not in METRICS[task]:
        raise SpecError("metric", f"must be one of {list(METRICS[task])} for task {task!r}, got {metric!r}")
    holdout = obj.get("holdout_fraction", 0.2)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 < holdout < 0.5:
        raise SpecError("holdout_fraction", f"must be a number with 0 < x < 0.5, got {holdout!r} (default 0.2)")
    seed = obj.get("seed", 42)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise SpecError("seed", f"must be a whole number from 0 to 2147483647, got {seed!r} (default 42)")
    on_change = obj.get("on_schema_change", "fail")
    if on_change not in ("fail", "allow"):
        raise SpecError("on_schema_change", f"must be 'fail' (default) or 'allow', got {on_change!r}")
    owner, kinds = allowed_params(algorithm, task)
    params = obj.get("params") or {}
    if not isinstance(params, Mapping):
        raise SpecError("params", f"must be an object of parameter name -> value, got {params!r}")
    for name, value in params.items():
        _param(f"params.{name}", owner, kinds, name, value)
    grid = obj.get("param_grid") or {}
    if not isinstance(grid, Mapping):
        raise SpecError("param_grid", f"must be an object of parameter name -> list of values, got {grid!r}")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"param_grid.{name}", f"must be a non-empty list of values to try, got {values!r}")
        if name in params:
            raise SpecError(f"param_grid.{name}", "is also in params; set a parameter in one of them")
        for value in values:
            _param(f"param_grid.{name}", owner, kinds, name, value)
    return TrainSpec(
        input=_input(obj.get("input")),
        label=label,
        algorithm=algorithm,
        mlflow=_mlflow(obj.get("mlflow")),
        task=task,
        features=features,
        categorical=categorical or (),
        exclude=exclude or (),
        params=dict(params),
        param_grid={k: tuple(v) for k, v in grid.items()},
        folds=_int(obj, "folds", 3, 2),
        holdout_fraction=float(holdout),
        seed=seed,
        metric=metric,
        group_column=group,
        min_group_rows=_int(obj, "min_group_rows", 50, 5),
        on_schema_change=on_change,
    )


#: Column kinds :func:`resolve_columns` reads: Spark types map to these (any other type by its name).
NUMERIC = ("integer", "float")


@dataclass(frozen=True)
class Columns:
    """The columns a training uses, resolved against the input's schema.

    :param label: the label column.
    :param features: numeric (or boolean) feature columns, in order.
    :param categorical: categorical feature columns, in order.
    :param group: the group column of ``lightgbm_per_group``, else ``None``.
    """

    label: str
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    group: str | None

    @property
    def inputs(self) -> tuple[str, ...]:
        """The model's input columns: features, categorical, then the group column."""
        return (*self.features, *self.categorical, *((self.group,) if self.group else ()))


def resolve_columns(spec: TrainSpec, schema: Mapping[str, str]) -> Columns:
    """The spec's columns checked against the input: every named column exists and has a usable type.

    :param spec: the spec.
    :param schema: column name -> kind: ``integer``, ``float``, ``boolean``, ``string`` or another
        type's name (``date``, ``timestamp``, ``array<int>``...).
    :raises BadInputError: every problem found, each naming the column and the fix, in one message.
    """
    problems: list[str] = []
    have = f"the input's columns are {sorted(schema)}"

    def check(role: str, name: str, kinds: Sequence[str], fix: str) -> None:
        if name not in schema:
            problems.append(f"{role} column {name!r} is not in the input ({have})")
        elif schema[name] not in kinds:
            problems.append(f"{role} column {name!r} is {schema[name]}, not {' or '.join(kinds)}: {fix}")

    label_kinds = NUMERIC if spec.task == "regression" else (*NUMERIC, "boolean", "string")
    check("label", spec.label, label_kinds, "regression needs a numeric label (cast it upstream)")
    if spec.group_column:
        check("group", spec.group_column, ("string", "integer"), "group by a string or whole-number column")
    for name in spec.categorical:
        check("categorical", name, ("string", "integer", "boolean"), "cast it to string upstream or exclude it")
    for name in spec.exclude:
        check("excluded", name, tuple(schema.values()), "")
    if spec.features is not None:
        for name in spec.features:
            fix = "list it in categorical" if schema.get(name) == "string" else "cast it upstream or leave it out"
            check("feature", name, (*NUMERIC, "boolean"), fix)
        features = spec.features
    else:
        taken = {spec.label, spec.group_column, *spec.categorical, *spec.exclude}
        features = tuple(c for c, kind in schema.items() if kind in NUMERIC and c not in taken)
        if not features and not spec.categorical:
            problems.append(f"there is no numeric feature column ({have}); name features or categorical columns")
    if problems:
        raise BadInputError("; ".join(problems))
    return Columns(label=spec.label, features=features, categorical=spec.categorical, group=spec.group_column)


def check_counts(spec: TrainSpec, columns: Columns, rows: int, nulls: Mapping[str, int]) -> None:
    """Refuse an empty input and missing values the training cannot take.

    Label and group must be complete; Spark ML features too (LightGBM takes missing values;
    a null category is a category of its own). A feature null in every row fails for every algorithm.

    :param spec: the spec.
    :param columns: the resolved columns.
    :param rows: the input's rows.
    :param nulls: column -> count of null (or NaN) values, for the label, group and features.
    :raises BadInputError: every problem found, in one message.
    """
    if rows == 0:
        raise BadInputError(f"the input {spec.input} has no rows: check the path and that the data was written")
    problems = []
    if nulls.get(columns.label):
        problems.append(f"label {columns.label!r} has {nulls[columns.label]} null or NaN value(s) in {rows} rows: "
                        "drop or fill them upstream")  # fmt: skip
    if columns.group and nulls.get(columns.group):
        problems.append(f"group column {columns.group!r} has {nulls[columns.group]} null value(s): fill them upstream")
    for name in columns.features:
        if nulls.get(name, 0) >= rows:
            problems.append(f"feature {name!r} is null in all {rows} rows, so no model can learn from it: fix it "
                            "upstream or list it in exclude")  # fmt: skip
    if spec.algorithm != "lightgbm_per_group":
        for name in columns.features:
            if nulls.get(name, 0) >= rows:
                continue
            if nulls.get(name):
                problems.append(f"feature {name!r} has {nulls[name]} null or NaN value(s) in {rows} rows, which Spark "
                                "ML cannot train on: fill them upstream, exclude the column, or use "
                                "lightgbm_per_group (LightGBM takes missing values)")  # fmt: skip
    if problems:
        raise BadInputError("; ".join(problems))
