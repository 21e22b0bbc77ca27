"""``lightgbm_per_group``: one LightGBM model per group, trained in parallel on the Spark executors.

The driver runs ``df.groupBy(group).applyInPandas(train_group, RESULT_SCHEMA)``: each executor task
gets one group's rows as a pandas DataFrame and :func:`train_group` trains there with LightGBM's
core API (``lightgbm.train``, no scikit-learn): a seeded holdout, k-fold cross-validation over the
grid inside the group, the best parameters refit on the training part and scored on the holdout.
It returns one row: the booster as ``model_to_string()``, the rows, the holdout metrics, the best
parameters and the holdout's sufficient statistics (regression: n, sums of squared and absolute
errors, of y and y²; classification: the confusion matrix and, for two classes, 1000-bin score
histograms per class), so :func:`overall_metrics` computes the overall holdout metrics on the
driver from small rows without collecting predictions. The overall ``areaUnderROC`` comes from the
histograms (scores binned to 0.001); each group's is exact. ``f1`` is weighted by class support,
as Spark's ``MulticlassClassificationEvaluator`` computes it.

LightGBM uses ``num_threads=1`` unless the spec sets it: Spark runs one task per core. Checked with
pandas 3.1.1 and pyspark 4.2.0: applyInPandas works (pyspark warns that pandas >= 3 is not fully
supported; the conversions this module uses, numeric, string and category columns, are exact).

The MLflow model is :func:`grouped_model`: a ``PythonModel`` holding every group's booster as
text and dispatching rows by the group column. Its class is defined inside the function, so
cloudpickle serializes it by value (a class not importable by name), and its methods import only
numpy, pandas and lightgbm: loading the model needs neither this repository nor the training
script (``mlflow.pyfunc.load_model`` in any process with mlflow, lightgbm and pandas).

Executor side: numpy, pandas and lightgbm (imported when training). mlflow only in :func:`grouped_model`.
"""

from __future__ import annotations

import itertools
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from airflow_ml_provider.jobs.common import BadInputError
from airflow_ml_provider.jobs.spark_spec import LARGER_IS_BETTER

#: The label column the driver prepares (regression: the label as double; classification: the class index).
LABEL = "__spark_train_label"
RESULT_SCHEMA = (
    "group string, skipped string, model string, rows_train long, rows_holdout long, "
    "metrics string, best_params string, cv_metric double, stats string"
)
AUC_BINS = 1000
DEFAULT_ROUNDS = 100


@dataclass(frozen=True)
class GroupJob:
    """What :func:`train_group` needs (pickled to the executors with the function).

    :param group: the group column.
    :param features: numeric feature columns.
    :param categorical: categorical columns (pandas ``category`` for LightGBM).
    :param task: ``regression`` or ``classification``.
    :param n_classes: the number of classes (classification), else 0.
    :param params: fixed LightGBM parameters.
    :param grid: parameter -> values to cross-validate.
    :param folds: cross-validation folds.
    :param holdout_fraction: the holdout share of each group.
    :param seed: the random seed (the holdout of a group also depends on its name).
    :param metric: the metric that picks the best grid point.
    :param min_group_rows: smaller groups are skipped.
    """

    group: str
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    task: str
    n_classes: int
    params: dict[str, Any]
    grid: dict[str, tuple[Any, ...]]
    folds: int
    holdout_fraction: float
    seed: int
    metric: str
    min_group_rows: int


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values (``[{}]`` for no grid)."""
    names = sorted(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def model_frame(frame: pd.DataFrame, features: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """The LightGBM input: the features as they are, the categorical columns as ``category``."""
    out = frame[[*features, *categorical]].copy()
    for name in categorical:
        out[name] = out[name].astype("category")
    return out


def _lgb_params(job: GroupJob, point: dict[str, Any]) -> tuple[dict[str, Any], int]:
    params: dict[str, Any] = {"verbose": -1, "seed": job.seed, "num_threads": 1, **job.params, **point}
    if job.task == "classification":
        params["objective"] = "binary" if job.n_classes == 2 else "multiclass"
        if job.n_classes > 2:
            params["num_class"] = job.n_classes
    rounds = int(params.pop("num_iterations", DEFAULT_ROUNDS))
    return params, rounds


def _fit(x: pd.DataFrame, y: np.ndarray, job: GroupJob, point: dict[str, Any]) -> Any:
    import lightgbm as lgb

    params, rounds = _lgb_params(job, point)
    data = lgb.Dataset(x, label=y, categorical_feature=list(job.categorical) or "auto", params={"verbose": -1})
    return lgb.train(params, data, num_boost_round=rounds)


def group_stats(task: str, n_classes: int, y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """The sufficient statistics of holdout predictions (see the module docstring).

    :param task: ``regression`` or ``classification``.
    :param n_classes: classes (classification).
    :param y: the true labels (class indexes for classification).
    :param pred: regression: predictions; binary: P(class 1); multiclass: (n, k) probabilities.
    """
    if task == "regression":
        err = pred - y
        return {"n": len(y), "sse": float(err @ err), "sae": float(np.abs(err).sum()), "sum_y": float(y.sum()),
                "sum_y2": float(y @ y)}  # fmt: skip
    probs = np.column_stack([1.0 - pred, pred]) if pred.ndim == 1 else pred
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (y.astype(np.int64), probs.argmax(axis=1)), 1)
    stats: dict[str, Any] = {"n": len(y), "confusion": confusion.tolist()}
    if n_classes == 2:
        bins = np.minimum((probs[:, 1] * AUC_BINS).astype(np.int64), AUC_BINS - 1)
        stats["hist_pos"] = np.bincount(bins[y == 1], minlength=AUC_BINS).tolist()
        stats["hist_neg"] = np.bincount(bins[y == 0], minlength=AUC_BINS).tolist()
        stats["auc"] = _exact_auc(y, probs[:, 1])
    return stats


def _exact_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if not pos or not neg:
        return None
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def metrics_from_stats(task: str, stats: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Holdout metrics from one or more groups' :func:`group_stats` (``None`` where undefined)."""
    n = sum(s["n"] for s in stats)
    if not n:
        return {}
    if task == "regression":
        sse, sae = sum(s["sse"] for s in stats), sum(s["sae"] for s in stats)
        sum_y, sum_y2 = sum(s["sum_y"] for s in stats), sum(s["sum_y2"] for s in stats)
        sst = sum_y2 - sum_y * sum_y / n
        return {"rmse": math.sqrt(sse / n), "mae": sae / n, "r2": 1.0 - sse / sst if sst > 1e-12 else None}
    confusion = np.sum([np.asarray(s["confusion"]) for s in stats], axis=0)
    support = confusion.sum(axis=1)
    tp = np.diag(confusion)
    denom = support + confusion.sum(axis=0)
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)
    out: dict[str, float | None] = {"accuracy": float(tp.sum() / n), "f1": float(f1 @ support / n)}
    if "hist_pos" in stats[0]:
        if len(stats) == 1:
            out["areaUnderROC"] = stats[0]["auc"]
        else:
            pos = np.sum([s["hist_pos"] for s in stats], axis=0)[::-1].astype("float64")
            neg = np.sum([s["hist_neg"] for s in stats], axis=0)[::-1].astype("float64")
            negs_above = np.cumsum(neg) - neg  # bins in descending score order
            total = pos.sum() * neg.sum()
            out["areaUnderROC"] = (
                float((pos * (neg.sum() - negs_above - neg) + 0.5 * pos * neg).sum() / total) if total else None
            )
    return out


def _predict(booster: Any, x: pd.DataFrame) -> np.ndarray:
    return np.asarray(booster.predict(x), dtype="float64")


def _score(job: GroupJob, y: np.ndarray, pred: np.ndarray) -> float:
    value = metrics_from_stats(job.task, [group_stats(job.task, job.n_classes, y, pred)]).get(job.metric)
    return math.nan if value is None else float(value)


def _row(key: str, skipped: str | None = None, **values: Any) -> pd.DataFrame:
    row = {"group": key, "skipped": skipped, "model": None, "rows_train": 0, "rows_holdout": 0, "metrics": None,
           "best_params": None, "cv_metric": math.nan, "stats": None} | values  # fmt: skip
    return pd.DataFrame([row]).astype({"rows_train": "int64", "rows_holdout": "int64", "cv_metric": "float64"})


def train_group(pdf: pd.DataFrame, job: GroupJob) -> pd.DataFrame:
    """Train one group's model (runs on an executor); one row of :data:`RESULT_SCHEMA`.

    A group is skipped (``skipped`` says why, no model) with fewer than ``min_group_rows`` rows,
    too few training rows for the folds, or (classification) one class in its training part.

    :param pdf: the group's rows: the group column, features, categorical columns and :data:`LABEL`.
    :param job: the settings.
    """
    key = str(pdf[job.group].iloc[0])
    n = len(pdf)
    if n < job.min_group_rows:
        return _row(key, f"{n} rows, fewer than min_group_rows={job.min_group_rows}")
    x = model_frame(pdf, job.features, job.categorical)
    y = pdf[LABEL].to_numpy(dtype="float64")
    order = np.random.default_rng([job.seed, zlib.crc32(key.encode())]).permutation(n)
    n_hold = max(1, round(n * job.holdout_fraction))
    hold, train = order[:n_hold], order[n_hold:]
    if job.task == "classification" and len(np.unique(y[train])) < 2:
        return _row(key, f"the training part ({len(train)} rows) holds one class only")
    points = grid_points(job.grid)
    best, cv_value = points[0], math.nan
    if job.grid:
        if len(train) < 2 * job.folds:
            return _row(key, f"{len(train)} training rows are too few for {job.folds}-fold cross-validation")
        parts = np.array_split(train, job.folds)
        scores = []
        for point in points:
            values = []
            for i, part in enumerate(parts):
                rest = np.concatenate([p for j, p in enumerate(parts) if j != i])
                model = _fit(x.iloc[rest], y[rest], job, point)
                values.append(_score(job, y[part], _predict(model, x.iloc[part])))
            scores.append(float(np.nanmean(values)) if not np.isnan(values).all() else math.nan)
        sign = 1.0 if LARGER_IS_BETTER[job.metric] else -1.0
        ranked = [i for i in range(len(points)) if not math.isnan(scores[i])]
        if ranked:
            i_best = max(ranked, key=lambda i: sign * scores[i])
            best, cv_value = points[i_best], scores[i_best]
    booster = _fit(x.iloc[train], y[train], job, best)
    stats = group_stats(job.task, job.n_classes, y[hold], _predict(booster, x.iloc[hold]))
    metrics = {
        k: v if v is None or math.isfinite(v) else None for k, v in metrics_from_stats(job.task, [stats]).items()
    }
    return _row(key, model=booster.model_to_string(), rows_train=len(train), rows_holdout=len(hold),
                metrics=json.dumps(metrics), best_params=json.dumps({**job.params, **best}), cv_metric=cv_value,
                stats=json.dumps(stats))  # fmt: skip


def grouped_model(
    boosters: dict[str, str], group: str, features: Sequence[str], categorical: Sequence[str], classes: list[Any] | None
) -> Any:
    """The MLflow ``PythonModel`` of the trained groups (see the module docstring for its packaging).

    ``predict`` takes a DataFrame with ``group``, ``features`` and ``categorical``; it returns a
    ``prediction`` Series (regression), or for classification a DataFrame with ``prediction``
    (the class, as in the label) and ``probability`` (of the predicted class). A row whose group has
    no model is an error naming the group and the known groups.

    :param boosters: group value (as text) -> LightGBM ``model_to_string()``.
    :param group: the group column.
    :param features: numeric feature columns.
    :param categorical: categorical columns.
    :param classes: the label's classes in index order (classification), else ``None``.
    """
    from mlflow.pyfunc import PythonModel

    class GroupedLightGBM(PythonModel):
        """One LightGBM booster per value of a group column; self-contained (pickled by value)."""

        def __init__(self) -> None:
            self.boosters, self.group, self.classes = dict(boosters), group, classes
            self.features, self.categorical = list(features), list(categorical)
            self._loaded: dict[str, Any] = {}

        def load_context(self, context: Any) -> None:
            import lightgbm as lgb

            self._loaded = {key: lgb.Booster(model_str=text) for key, text in self.boosters.items()}

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
            import numpy as np
            import pandas as pd

            if not self._loaded:
                self.load_context(context)
            frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
            missing = [c for c in [self.group, *self.features, *self.categorical] if c not in frame.columns]
            if missing:
                raise ValueError(f"the input lacks the column(s) {missing} this model needs")
            keys = frame[self.group].astype(str).to_numpy()
            unknown = sorted(set(keys) - set(self._loaded))
            if unknown:
                raise ValueError(
                    f"no model for {self.group}={unknown[:10]}: this model knows {self.group} "
                    f"{sorted(self._loaded)}; score only those groups or retrain with the new ones"
                )
            x = frame[self.features + self.categorical].copy()
            for name in self.categorical:
                x[name] = x[name].astype("category")
            k = len(self.classes or ())
            out = np.zeros((len(frame), k if k > 2 else 1))
            for key in np.unique(keys):
                rows = np.flatnonzero(keys == key)
                pred = np.asarray(self._loaded[key].predict(x.iloc[rows]), dtype="float64")
                out[rows] = pred.reshape(len(rows), -1)
            if self.classes is None:
                return pd.Series(out[:, 0], name="prediction", index=frame.index)
            probs = np.column_stack([1.0 - out[:, 0], out[:, 0]]) if k == 2 else out
            best = probs.argmax(axis=1)
            labels = np.asarray(self.classes, dtype=object)[best]
            return pd.DataFrame({"prediction": list(labels), "probability": probs[np.arange(len(best)), best]})

    return GroupedLightGBM()


@dataclass
class GroupsResult:
    """What :func:`train_groups` collected on the driver.

    :ivar boosters: group -> LightGBM model text (trained groups only).
    :ivar groups: group -> ``{"rows_train", "rows_holdout", "metrics", "best_params", "cv_<metric>"}``.
    :ivar skipped: group -> why it was not trained.
    :ivar metrics: the overall holdout metrics (from every trained group's statistics) and
        ``cv_<metric>``, the trained groups' cross-validated metric weighted by their training rows.
    """

    boosters: dict[str, str]
    groups: dict[str, dict[str, Any]]
    skipped: dict[str, str]
    metrics: dict[str, float | None]


def train_groups(df: Any, job: GroupJob) -> GroupsResult:
    """Train every group on the executors (``groupBy(group).applyInPandas``) and collect the rows.

    :param df: a Spark DataFrame with the group column, the features, the categorical columns and
        :data:`LABEL`.
    :param job: the settings.
    :raises BadInputError: ``monotone_constraints`` without one value per feature.
    """
    inputs = [*job.features, *job.categorical]
    for point in [job.params, *grid_points(job.grid)]:
        constraints = point.get("monotone_constraints")
        if constraints is not None and len(constraints) != len(inputs):
            raise BadInputError(
                f"spec field 'params.monotone_constraints' has {len(constraints)} value(s) for LightGBM's "
                f"{len(inputs)} features {inputs}: give one -1, 0 or 1 per feature, in that order"
            )

    def train(pdf: pd.DataFrame) -> pd.DataFrame:  # a function, so pyspark reads its type hints
        return train_group(pdf, job)

    rows = df.groupBy(job.group).applyInPandas(train, RESULT_SCHEMA).collect()
    result = GroupsResult(boosters={}, groups={}, skipped={}, metrics={})
    stats, cv = [], []
    for row in sorted(rows, key=lambda r: r["group"]):
        if row["skipped"] is not None:
            result.skipped[row["group"]] = row["skipped"]
            continue
        result.boosters[row["group"]] = row["model"]
        cv_raw = row["cv_metric"]  # NaN (or null) without a grid
        cv_value = None if cv_raw is None or math.isnan(cv_raw) else float(cv_raw)
        result.groups[row["group"]] = {
            "rows_train": int(row["rows_train"]),
            "rows_holdout": int(row["rows_holdout"]),
            "metrics": json.loads(row["metrics"]),
            "best_params": json.loads(row["best_params"]),
            f"cv_{job.metric}": cv_value,
        }
        stats.append(json.loads(row["stats"]))
        if cv_value is not None:
            cv.append((cv_value, int(row["rows_train"])))
    if stats:
        result.metrics = metrics_from_stats(job.task, stats)
    if cv:
        result.metrics[f"cv_{job.metric}"] = sum(v * n for v, n in cv) / sum(n for _, n in cv)
    return result
