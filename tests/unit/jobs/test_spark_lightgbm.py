"""lightgbm_per_group's pandas side (airflow_ml_provider.jobs.spark_lightgbm) without Spark: one group's
training as an executor runs it, the metrics from sufficient statistics, and the grouped pyfunc model,
including that its pickle loads in a process where airflow_ml_provider cannot be imported."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_ml_provider.jobs import spark_lightgbm as lgbm
from airflow_ml_provider.jobs.synthetic import make_country_frame

FEATURES = ("discount", "base_price", "stock", "days_to_season_end", "week_of_year")


def job(**changes: Any) -> lgbm.GroupJob:
    settings: dict[str, Any] = {
        "group": "country",
        "features": FEATURES,
        "categorical": ("segment",),
        "task": "regression",
        "n_classes": 0,
        "params": {"num_iterations": 20},
        "grid": {},
        "folds": 2,
        "holdout_fraction": 0.2,
        "seed": 42,
        "metric": "rmse",
        "min_group_rows": 50,
    }
    return lgbm.GroupJob(**(settings | changes))


def group_frame(country: str, rows: int, classification: bool = False) -> pd.DataFrame:
    frame = make_country_frame(country, "2026-11-23", rows, seed=5)
    frame["country"] = country
    frame["segment"] = np.where(frame["base_price"] < 40, "low", "high")
    label = (frame["units_sold"] > frame["units_sold"].median()) if classification else frame["units_sold"]
    frame[lgbm.LABEL] = label.astype("float64")
    return frame


def trained(frame: pd.DataFrame, settings: lgbm.GroupJob) -> dict[str, Any]:
    out = lgbm.train_group(frame, settings)
    assert list(out.columns) == [c.split()[0] for c in lgbm.RESULT_SCHEMA.split(", ")]
    assert len(out) == 1
    return dict(out.iloc[0])


# --------------------------------------------------------------------------- metrics


def test_grid_points() -> None:
    assert lgbm.grid_points({}) == [{}]
    assert lgbm.grid_points({"b": (1, 2), "a": ("x",)}) == [{"a": "x", "b": 1}, {"a": "x", "b": 2}]


def test_regression_metrics_from_stats_match_direct_computation_and_combine() -> None:
    rng = np.random.default_rng(0)
    y1, y2 = rng.normal(10, 3, 50), rng.normal(20, 5, 70)
    p1, p2 = y1 + rng.normal(0, 1, 50), y2 + rng.normal(0, 2, 70)
    stats = [lgbm.group_stats("regression", 0, y1, p1), lgbm.group_stats("regression", 0, y2, p2)]
    y, p = np.concatenate([y1, y2]), np.concatenate([p1, p2])
    combined = lgbm.metrics_from_stats("regression", stats)
    assert combined["rmse"] == pytest.approx(np.sqrt(np.mean((p - y) ** 2)))
    assert combined["mae"] == pytest.approx(np.mean(np.abs(p - y)))
    assert combined["r2"] == pytest.approx(1 - np.sum((p - y) ** 2) / np.sum((y - y.mean()) ** 2))
    assert json.loads(json.dumps(stats)) == stats  # what the executor sends back is JSON


def test_r2_of_a_constant_holdout_is_undefined() -> None:
    metrics = lgbm.metrics_from_stats("regression", [lgbm.group_stats("regression", 0, np.ones(3), np.ones(3) * 2)])
    assert metrics["r2"] is None
    assert metrics["rmse"] == pytest.approx(1.0)


def test_classification_metrics_match_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400).astype("float64")
    score = np.clip(0.3 * y + rng.uniform(0, 0.7, 400), 0, 1)
    halves = [slice(0, 150), slice(150, 400)]
    stats = [lgbm.group_stats("classification", 2, y[h], score[h]) for h in halves]
    combined = lgbm.metrics_from_stats("classification", stats)
    predicted = (score > 0.5).astype(float)
    assert combined["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert combined["f1"] == pytest.approx(f1_score(y, predicted, average="weighted"))
    assert combined["areaUnderROC"] == pytest.approx(roc_auc_score(y, score), abs=2e-3)  # 1000 score bins
    one = lgbm.metrics_from_stats("classification", stats[:1])
    assert one["areaUnderROC"] == pytest.approx(roc_auc_score(y[halves[0]], score[halves[0]]))  # exact per group


def test_multiclass_metrics_match_scikit_learn() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300).astype("float64")
    probs = rng.dirichlet([1, 1, 1], 300)
    probs[np.arange(300), y.astype(int)] += 0.3
    metrics = lgbm.metrics_from_stats("classification", [lgbm.group_stats("classification", 3, y, probs)])
    assert "areaUnderROC" not in metrics
    assert metrics["f1"] == pytest.approx(f1_score(y, probs.argmax(axis=1), average="weighted"))


# --------------------------------------------------------------------------- one group


def test_train_group_regression_holds_out_and_cross_validates() -> None:
    frame = group_frame("DE", 400)
    row = trained(frame, job(grid={"num_leaves": (3, 15)}, params={"num_iterations": 30}))
    assert row["group"] == "DE"
    assert row["skipped"] is None
    assert (row["rows_train"], row["rows_holdout"]) == (320, 80)
    metrics = json.loads(row["metrics"])
    assert metrics["rmse"] > 0
    assert metrics["r2"] > 0.2  # the discount, stock and season carry signal
    assert json.loads(row["best_params"])["num_leaves"] in (3, 15)
    assert row["cv_metric"] > 0
    assert row["model"].startswith("tree")
    first, again = trained(frame, job()), trained(frame, job())
    assert (first["model"], first["metrics"]) == (again["model"], again["metrics"])  # seeded: the same model
    assert np.isnan(first["cv_metric"])  # no grid, no cross-validation


def test_train_group_skips_small_groups_and_one_class() -> None:
    assert trained(group_frame("LU", 30), job())["skipped"] == "30 rows, fewer than min_group_rows=50"
    one_class = group_frame("MT", 80, classification=True)
    one_class[lgbm.LABEL] = 1.0
    row = trained(one_class, job(task="classification", n_classes=2, metric="f1"))
    assert row["skipped"] == "the training part (64 rows) holds one class only"
    assert row["model"] is None
    too_few = trained(group_frame("CY", 12), job(min_group_rows=5, folds=6, grid={"num_leaves": (3, 7)}))
    assert "too few for 6-fold cross-validation" in too_few["skipped"]


def test_train_group_classification() -> None:
    row = trained(
        group_frame("FR", 300, classification=True), job(task="classification", n_classes=2, metric="areaUnderROC")
    )
    metrics = json.loads(row["metrics"])
    assert set(metrics) == {"accuracy", "f1", "areaUnderROC"}
    assert metrics["areaUnderROC"] > 0.6
    assert "hist_pos" in json.loads(row["stats"])


# --------------------------------------------------------------------------- the pyfunc model


@pytest.fixture(scope="module")
def regression_model() -> tuple[Any, pd.DataFrame, dict[str, str]]:
    frames = [group_frame(c, 200) for c in ("DE", "FR")]
    boosters = {str(f["country"].iloc[0]): trained(f, job())["model"] for f in frames}
    model = lgbm.grouped_model(boosters, "country", FEATURES, ("segment",), None)
    rows = pd.concat([frames[0].head(3), frames[1].head(2), frames[0].tail(1)], ignore_index=True)
    return model, rows[["country", *FEATURES, "segment"]], boosters


def test_grouped_model_dispatches_rows_to_their_groups_booster(
    regression_model: tuple[Any, pd.DataFrame, dict[str, str]],
) -> None:
    import lightgbm

    model, rows, boosters = regression_model
    predicted = model.predict(None, rows)
    assert predicted.name == "prediction"
    assert list(predicted.index) == list(rows.index)
    for key in ("DE", "FR"):
        mine = rows[rows["country"] == key]
        direct = lightgbm.Booster(model_str=boosters[key]).predict(lgbm.model_frame(mine, FEATURES, ["segment"]))
        np.testing.assert_allclose(predicted[mine.index].to_numpy(), direct)


def test_grouped_model_names_an_unknown_group_and_the_known_ones(
    regression_model: tuple[Any, pd.DataFrame, dict[str, str]],
) -> None:
    model, rows, _ = regression_model
    rows = rows.assign(country=["DE", "IT", "DE", "FR", "IT", "DE"])
    with pytest.raises(ValueError, match=r"no model for country=\['IT'\]: this model knows country \['DE', 'FR'\]"):
        model.predict(None, rows)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['segment'\]"):
        model.predict(None, rows.drop(columns="segment"))


def test_grouped_classifier_returns_the_labels_classes_and_probability() -> None:
    frame = group_frame("DE", 300, classification=True)
    booster = trained(frame, job(task="classification", n_classes=2, metric="f1"))["model"]
    model = lgbm.grouped_model({"DE": booster}, "country", FEATURES, ("segment",), ["low", "high"])
    out = model.predict(None, frame.head(20))
    assert list(out.columns) == ["prediction", "probability"]
    assert set(out["prediction"]) <= {"low", "high"}
    assert ((out["probability"] >= 0.5) & (out["probability"] <= 1.0)).all()


LOADER = """
import importlib.abc, json, pickle, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "airflow_ml_provider":
            raise ImportError("airflow_ml_provider is not importable here: " + name)

sys.meta_path.insert(0, Block())
import pandas as pd

model = pickle.loads(open(sys.argv[1], "rb").read())
print(json.dumps(model.predict(None, pd.read_json(sys.argv[2], orient="split")).tolist()))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("airflow_ml_provider"))))
"""


def test_grouped_model_pickle_loads_without_this_repository(
    regression_model: tuple[Any, pd.DataFrame, dict[str, str]], tmp_path: Path
) -> None:
    """What mlflow.pyfunc.log_model stores: cloudpickle of the instance, loaded by plain pickle."""
    import cloudpickle

    model, rows, _ = regression_model
    (tmp_path / "model.pkl").write_bytes(cloudpickle.dumps(model))
    (tmp_path / "rows.json").write_text(rows.to_json(orient="split"))
    (tmp_path / "load.py").write_text(textwrap.dedent(LOADER))
    out = subprocess.run(
        [sys.executable, "-I", "load.py", "model.pkl", "rows.json"],  # -I: no PYTHONPATH, no cwd on the path
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    predictions, loaded = (json.loads(line) for line in out.stdout.splitlines())
    np.testing.assert_allclose(predictions, model.predict(None, rows).to_numpy())
    assert loaded == []
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        pickle.dumps(model)  # the class is not importable by name: only cloudpickle (by value) stores it


PYFUNC_LOADER = """
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "airflow_ml_provider":
            raise ImportError("airflow_ml_provider is not importable here: " + name)

sys.meta_path.insert(0, Block())
import mlflow.pyfunc
from mlflow.models import Model

model = mlflow.pyfunc.load_model(sys.argv[1])
example = Model.load(sys.argv[1]).load_input_example(sys.argv[1])
print(json.dumps(model.predict(example).to_dict(orient="list")))
print(json.dumps([[c.name, c.type.name] for c in model.metadata.get_input_schema().inputs]))
"""


def test_grouped_classifier_saved_as_an_mlflow_model_loads_without_this_repository(tmp_path: Path) -> None:
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    frame = group_frame("DE", 300, classification=True)
    booster = trained(frame, job(task="classification", n_classes=2, metric="f1"))["model"]
    model = lgbm.grouped_model({"DE": booster}, "country", FEATURES, ("segment",), [False, True])
    example = frame[[*FEATURES, "segment", "country"]].head(4)
    expected = model.predict(None, example)
    mlflow.pyfunc.save_model(
        str(tmp_path / "model"),
        python_model=model,
        signature=infer_signature(example, expected),
        input_example=example,
        pip_requirements=["lightgbm", "pandas"],
    )
    (tmp_path / "load.py").write_text(textwrap.dedent(PYFUNC_LOADER))
    out = subprocess.run(
        [sys.executable, "-I", "load.py", str(tmp_path / "model")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    predicted, inputs = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert predicted["prediction"] == expected["prediction"].tolist()
    np.testing.assert_allclose(predicted["probability"], expected["probability"])
    assert inputs[-2:] == [["segment", "string"], ["country", "string"]]
    assert [name for name, _ in inputs] == [*FEATURES, "segment", "country"]


def test_monotone_constraints_need_one_value_per_feature() -> None:
    from airflow_ml_provider.jobs.common import BadInputError

    with pytest.raises(BadInputError, match=r"has 2 value\(s\) for LightGBM's 6 features \['discount'"):
        lgbm.train_groups(None, job(params={"monotone_constraints": [1, 0]}))  # refused before Spark is used
