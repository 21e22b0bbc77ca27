"""The model side of the Spark engine: download an MLflow model, and score Spark ML models natively.

The Spark engine never loads the model as a Python object on the driver: ``mlflow.pyfunc.spark_udf``
loads it on the executors, and loading a ``spark``-flavored model with ``mlflow.pyfunc.load_model``
would start a ``local[1]`` SparkSession of MLflow's own before ours (with the wrong master). So the
model is only downloaded here and its ``MLmodel`` read (signature, flavors).

Models logged with ``mlflow.spark.log_model`` (Spark ML ``PipelineModel``\\s) cannot go through
``spark_udf`` (its Python workers would need a SparkSession of their own); they are loaded with
``PipelineModel.load`` and applied with ``transform`` in the job's own session. ``mlflow.spark.load_model``
is not used for that: it copies the model to ``fs.defaultFS`` only when that is a distributed file
system (and otherwise hands the executors a path on the driver's disk); here the model is copied,
with the session's Hadoop client, into the job's staging directory on the output's file system,
which every executor reads and which goes away with the staging directory.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.utils.messages import first_line
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    from mlflow.models import Model

#: The ``MLmodel`` flavor of ``mlflow.spark.log_model``.
SPARK_FLAVOR = "spark"
#: The output column of Spark ML predictors (``predictionCol``), which MLflow's spark flavor predicts with.
SPARK_PREDICTION = "prediction"


class FetchedModel(NamedTuple):
    """A downloaded MLflow model.

    :param metadata: its ``MLmodel`` (signature via ``get_input_schema``/``get_output_schema``, ``flavors``).
    :param root: the local directory holding ``MLmodel``.
    """

    metadata: Model
    root: str

    @property
    def is_spark_ml(self) -> bool:
        """Whether the model was logged with the ``spark`` flavor (a Spark ML ``PipelineModel``)."""
        return SPARK_FLAVOR in self.metadata.flavors


def fetch_model(model_uri: str, mlflow_conn_id: str, model_dir: str) -> FetchedModel:
    """Download ``model_uri`` into ``model_dir`` with the connection's credentials and read its ``MLmodel``.

    :param model_uri: ``models:/…``, ``runs:/…`` or an artifact URL.
    :param mlflow_conn_id: the ``ml_mlflow`` connection; its credentials reach MLflow for the download only.
    :param model_dir: an empty local directory.
    :raises InvalidSpecError: the model does not exist (naming the fix).
    :raises MlProviderError: the server was unreachable or the download failed.
    """
    with requires_extra("mlflow"):
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException
        from mlflow.models import Model

    from airflow_ml_provider.hooks.mlflow import MlflowHook, connection_failure
    from airflow_ml_provider.scoring.model import model_root

    hook = MlflowHook(mlflow_conn_id)
    os.makedirs(model_dir, exist_ok=True)
    with hook.scoped():
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=model_dir)
        except MlflowException as e:
            where = f"the MLflow registry at {hook.config.registry_uri}"
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or (
                e.error_code == "INVALID_PARAMETER_VALUE" and "not found" in e.message.lower()
            ):
                raise InvalidSpecError(
                    f"model_uri={model_uri!r} was not found in {where}: {first_line(e.message, 500).rstrip('.')}. "
                    "Check the model name and the alias or version in the MLflow UI."
                ) from None
            unreachable = connection_failure(e)
            if unreachable is not None:
                raise MlProviderError(
                    f"Downloading model_uri={model_uri!r}: {where} was unreachable ({unreachable}). Check that it "
                    f"is running and that connection {mlflow_conn_id!r} points at it."
                ) from e
            raise MlProviderError(
                f"Downloading model_uri={model_uri!r} from {where} failed: {e.error_code}: {first_line(e.message, 500)}"
            ) from e
        except Exception as e:  # an artifact store error, a full disk
            raise MlProviderError(
                f"Downloading model_uri={model_uri!r} failed: {type(e).__name__}: {first_line(str(e), 500)}"
            ) from e
    root = model_root(model_dir)
    return FetchedModel(Model.load(os.path.join(root, "MLmodel")), root)


def spark_ml_predictions(spark: Any, model: FetchedModel, frame: Any, dfs_dir: str) -> tuple[Any, Any, str]:
    """Apply a ``spark``-flavored model to ``frame``: (transformed frame, prediction column, Spark type).

    :param spark: the job's session.
    :param model: a model with :attr:`FetchedModel.is_spark_ml`.
    :param frame: the input DataFrame (the pipeline picks its own input columns).
    :param dfs_dir: a URL that does not exist yet, on a file system every executor reads (the
        staging directory's ``_model``): the model is copied there and loaded from it.

    The prediction is the pipeline's ``prediction`` column (as ``mlflow.spark``'s pyfunc predicts;
    a last stage with ``outputCol`` is pointed at it). Vectors become ``array<double>``, whole
    numbers ``bigint`` and other numbers ``double``.
    """
    with requires_extra("spark"):
        from pyspark.ml import PipelineModel
        from pyspark.ml.functions import vector_to_array
        from pyspark.ml.linalg import VectorUDT
        from pyspark.sql import types as T

    data = model.metadata.flavors[SPARK_FLAVOR].get("model_data", "sparkml")
    local = os.path.join(model.root, data)
    if not os.path.isdir(local):
        raise MlProviderError(f"The downloaded Spark ML model has no {data!r} directory under {model.root}.")
    jvm = spark.sparkContext._jvm
    target = jvm.org.apache.hadoop.fs.Path(dfs_dir)
    fs = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    fs.copyFromLocalFile(False, False, jvm.org.apache.hadoop.fs.Path("file://" + os.path.abspath(local)), target)
    pipeline = PipelineModel.load(dfs_dir)
    scored = pipeline.transform(frame)
    last: Any = pipeline.stages[-1] if pipeline.stages else None
    if SPARK_PREDICTION not in scored.columns and last is not None and last.hasParam("outputCol"):
        last.setOutputCol(SPARK_PREDICTION)
        scored = pipeline.transform(frame)
    if SPARK_PREDICTION not in scored.columns:
        added = sorted(set(scored.columns) - set(frame.columns))
        raise InvalidSpecError(
            f"The Spark ML model adds no {SPARK_PREDICTION!r} column (it adds {added}); log a pipeline whose last "
            "stage predicts into 'prediction', or use a pyfunc model."
        )
    column = scored[SPARK_PREDICTION]
    kind = scored.schema[SPARK_PREDICTION].dataType
    if isinstance(kind, VectorUDT):
        return scored, vector_to_array(column).cast("array<double>"), "array<double>"
    if isinstance(kind, T.IntegralType):
        return scored, column.cast("bigint"), "bigint"
    if isinstance(kind, T.NumericType):
        return scored, column.cast("double"), "double"
    return scored, column, kind.simpleString()
