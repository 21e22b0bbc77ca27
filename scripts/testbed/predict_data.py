"""A local MLflow store with small real models, and Parquet datasets, for the batch-predict tests.

Shared by ``tests/unit/test_batch_predict.py``, ``tests/integration/test_batch_predict_real.py``
and ``bench/batch_predict.py``. The tracking URI is only ever set inside
:meth:`~airflow_ml_provider.hooks.mlflow.MlflowHook.scoped`: nothing here leaves an ``MLFLOW_*``
variable behind.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.pyfunc import PythonModel

FEATURES = ("a", "b", "c")
CONN_ENV = "AIRFLOW_CONN_ML_MLFLOW_DEFAULT"
#: Given explicitly: MLflow would otherwise infer them in a subprocess per model (seconds each).
PIP = ["mlflow", "scikit-learn", "pandas"]


def mlflow_conn_json(store: Path) -> str:
    """The ``ml_mlflow`` connection (for ``AIRFLOW_CONN_…``) of a local SQLite store under ``store``."""
    return json.dumps({"conn_type": "ml_mlflow", "host": f"sqlite:///{store / 'mlflow.db'}"})


@contextlib.contextmanager
def local_mlflow_conn(store: Path) -> Iterator[None]:
    """``ml_mlflow_default`` (:data:`CONN_ENV`) on the local store under ``store`` for the block; the
    previous value (or its absence) is restored afterwards."""
    saved = os.environ.get(CONN_ENV)
    os.environ[CONN_ENV] = mlflow_conn_json(store)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(CONN_ENV, None)
        else:
            os.environ[CONN_ENV] = saved


def mlflow_env_snapshot() -> dict[str, str]:
    """Every ``MLFLOW_*`` variable of the process, to compare before and after."""
    return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}


class NanModel(PythonModel):
    """Predicts 1.0, except NaN where ``a > threshold``."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        out = np.ones(len(model_input))
        out[model_input["a"].to_numpy() > self.threshold] = np.nan
        return out


@dataclass
class LocalModels:
    """Models registered in a local store: ``lin`` (sklearn, signature a,b,c; alias champion),
    ``nan`` (a pyfunc model returning NaN for a > 0.9; alias champion) and ``nosig`` (sklearn,
    no signature, version 1)."""

    store: Path
    conn_json: str
    sklearn_model: Any
    run_uri: str


def make_frame(rows: int, seed: int = 0, start_id: int = 0, extra_features: int = 0) -> Any:
    """A DataFrame with ``id`` and features a, b, c (and ``f0``… when asked), uniform in [0, 1)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {"id": np.arange(start_id, start_id + rows, dtype=np.int64)}
    for name in FEATURES:
        data[name] = rng.random(rows)
    for i in range(extra_features):
        data[f"f{i}"] = rng.random(rows)
    return pd.DataFrame(data)


def write_parquet(frame: Any, path: Path, row_group_size: int | None = None) -> Path:
    """Write ``frame`` to ``path`` (parents created) without the pandas index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)
    return path


def dataset(root: Path, sizes: dict[str, int]) -> Any:
    """Hive-partitioned input ``root/country=XX/part-0.parquet`` (plus a ``_SUCCESS`` to skip);
    returns the frames in scoring order (countries sorted), with their ``country`` column."""
    import pandas as pd

    frames = []
    start = 0
    for i, (country, rows) in enumerate(sorted(sizes.items())):
        frame = make_frame(rows, seed=i, start_id=start)
        write_parquet(frame, root / f"country={country}" / "part-0.parquet", row_group_size=70)
        frames.append(frame.assign(country=country))
        start += rows
    (root / "_SUCCESS").touch()
    return pd.concat(frames, ignore_index=True)


def read_output(path: Path, sort_by_id: bool = False) -> Any:
    """The ``part-*.parquet`` files of an output directory as one frame, in file order (or by ``id``)."""
    import pandas as pd
    import pyarrow.parquet as pq

    parts = sorted(path.glob("part-*.parquet"))
    frame = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    return frame.sort_values("id", ignore_index=True) if sort_by_id else frame


def log_local_models(store: Path) -> LocalModels:
    """Create the SQLite store and register the three models; the caller sets ``CONN_ENV``.

    Must be called with ``AIRFLOW_CONN_ML_MLFLOW_DEFAULT`` set to :func:`mlflow_conn_json` of ``store``.
    """
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    from airflow_ml_provider.hooks.mlflow import MlflowHook

    store.mkdir(parents=True, exist_ok=True)
    train = make_frame(200, seed=42)
    x = train[list(FEATURES)]
    y = 3 * x["a"] - 2 * x["b"] + 0.5 * x["c"] + 1
    model = LinearRegression().fit(x, y)
    with MlflowHook().scoped():
        client = MlflowClient()
        experiment = client.create_experiment("batch-predict", artifact_location=(store / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(x, model.predict(x)),
                registered_model_name="lin",
                pip_requirements=PIP,
            )
            mlflow.pyfunc.log_model(
                name="nan",
                python_model=NanModel(0.9),
                signature=infer_signature(x, np.ones(len(x))),
                registered_model_name="nan",
                pip_requirements=PIP,
            )
            mlflow.sklearn.log_model(model, name="nosig", registered_model_name="nosig", pip_requirements=PIP)
        client.set_registered_model_alias("lin", "champion", "1")
        client.set_registered_model_alias("nan", "champion", "1")
    return LocalModels(store, mlflow_conn_json(store), model, f"runs:/{run.info.run_id}/model")


#: Run before the peak is reset: everything imported and the model loaded once, so the growth is what
#: scoring the data costs (import-time peaks excluded).
_PEAK_SETUP = """
import os
mode, conn_json, model_uri, src, dst, chunk, env_name = sys.argv[1:8]
os.environ[env_name] = conn_json
import mlflow.pyfunc, numpy, pandas, pyarrow.parquet, sklearn
from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator
with MlflowHook().scoped():
    model = mlflow.pyfunc.load_model(model_uri)
"""
_PEAK_MEASURED = """
if mode == "operator":
    MlflowBatchPredictOperator(task_id="score", model_uri=model_uri, input_path=src, output_path=dst,
                               chunk_rows=int(chunk)).execute({})
else:  # the script the operator replaces: read everything, predict, write
    frame = pandas.read_parquet(src)
    frame["prediction"] = model.predict(frame)
    os.makedirs(dst, exist_ok=True)
    frame.to_parquet(os.path.join(dst, "part-00000.parquet"), index=False)
"""


def peak_rss_growth(mode: str, conn_json: str, model_uri: str, src: str, dst: str, chunk_rows: int) -> dict[str, float]:
    """Peak RSS growth (bytes) of scoring ``src`` in a fresh interpreter; ``mode`` is ``operator`` or ``naive``.

    Returns ``{"baseline", "peak", "growth", "seconds"}``.
    """
    from scripts.testbed.peak_rss import peak_rss_growth as measure

    return measure(_PEAK_SETUP, _PEAK_MEASURED, [mode, conn_json, model_uri, src, dst, str(chunk_rows), CONN_ENV])
