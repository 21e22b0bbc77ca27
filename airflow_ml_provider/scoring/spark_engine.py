"""The Spark engine of batch prediction: a SparkSession scores a Parquet dataset with an MLflow model.

Spark reads the dataset where it lives (local disk, or HDFS over NameNode RPC: see
:mod:`airflow_ml_provider.storage.spark_urls`; Hive partitions as string columns), scores it
(pyfunc models with ``mlflow.pyfunc.spark_udf`` on the Python workers, ``env_manager="local"``:
this interpreter; Spark ML models logged with the ``spark`` flavor natively with ``transform``, see
:mod:`.spark_model`), and writes Parquet into the staging directory; one aggregate over the written
output then checks every prediction (NaN, infinite or null fail the task). Publishing is the
storage layer's, as for the pandas engine.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.scoring.spark_model import FetchedModel, spark_ml_predictions
from airflow_ml_provider.storage.base import is_hidden
from airflow_ml_provider.storage.spark_urls import glob_escape
from airflow_ml_provider.utils.messages import first_line
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    from airflow_ml_provider.storage.base import Storage
    from airflow_ml_provider.storage.paths import StoragePath
    from airflow_ml_provider.storage.spark_urls import SparkFileSystem

#: spark_udf result types per output dtype kind (tensor outputs) and per MLflow column type.
_SPARK_KINDS = {"f": "double", "i": "bigint", "u": "bigint", "b": "boolean"}
_SPARK_TYPES = {
    "double": "double",
    "float": "double",
    "long": "bigint",
    "integer": "bigint",
    "boolean": "boolean",
    "string": "string",
}


def _quote(name: str) -> str:
    """A column name for Spark expressions and DDL, dots and all."""
    return "`" + name.replace("`", "``") + "`"


def spark_outputs(
    model: FetchedModel, *, model_uri: str, prediction_column: str
) -> tuple[str, list[tuple[str, str | None, str]]]:
    """The ``spark_udf`` result type for the model's output schema, and the output columns as
    ``(column, struct field or None, Spark type)``: ``double`` for one floating-point output (or
    no output schema), ``bigint`` for one integer output, a struct for several named columns."""
    with requires_extra("mlflow"):
        from mlflow.types import DataType

    pred = prediction_column
    schema = model.metadata.get_output_schema()
    if schema is None:
        return "double", [(pred, None, "double")]
    specs = schema.inputs
    if schema.is_tensor_spec():
        if len(specs) == 1:
            base = _SPARK_KINDS.get(specs[0].type.kind)
            shape = specs[0].shape
            if base is not None and (len(shape) <= 1 or (len(shape) == 2 and shape[1] == 1)):
                return base, [(pred, None, base)]
            if base in ("double", "bigint"):
                return f"array<{base}>", [(pred, None, f"array<{base}>")]
    else:
        types = [_SPARK_TYPES.get(s.type.name) if isinstance(s.type, DataType) else None for s in specs]
        if all(types) and len(specs) == 1:
            return str(types[0]), [(pred, None, str(types[0]))]
        if all(types) and schema.has_input_names():
            fields = [(f"{pred}_{s.name}", s.name, str(t)) for s, t in zip(specs, types, strict=True)]
            return ", ".join(f"{_quote(f)} {t}" for _, f, t in fields), fields
    raise InvalidSpecError(
        f"The model {model_uri} returns {schema}, which engine='spark' does not map to Spark columns "
        "(it handles numeric, boolean and string columns and 1-d numeric tensors); use engine='pandas'."
    )


def spark_session(
    master: str, conf: dict[str, Any] | None, app_name: str, log: Any, *, env: Mapping[str, str] | None = None
) -> tuple[Any, bool]:
    """A SparkSession and whether this call created it (a session already running is reused as is).

    :param master: the Spark master URL, e.g. ``local[2]`` or ``spark://host:7077``.
    :param conf: Spark settings; they override the engine's defaults (UTC, 4 shuffle partitions, no UI).
    :param app_name: the application's name (shown by the master).
    :param log: where to warn about a reused session.
    :param env: environment variables for the driver JVM (e.g. ``HADOOP_USER_NAME`` from
        :func:`~airflow_ml_provider.storage.spark_urls.spark_location`): set while the session
        starts and restored afterwards; they reach the JVM only if this call launches it.
    """
    with requires_extra("spark"):
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

    if SparkContext._active_spark_context is not None:
        log.warning(
            "A SparkSession already runs in this process: using it as it is (spark_master and spark_conf "
            "are ignored) and leaving it running."
        )
        return SparkSession.builder.getOrCreate(), False
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # key=value directories are string columns, as with the pandas engine
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    } | {k: str(v) for k, v in (conf or {}).items()}
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    # The Python workers run the model: by default this interpreter, which has mlflow and the model's
    # libraries (SparkContext reads PYSPARK_PYTHON when it starts; the variable is restored afterwards).
    variables = dict(env or {})
    if "PYSPARK_PYTHON" not in os.environ:
        variables.setdefault("PYSPARK_PYTHON", sys.executable)
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        spark = builder.getOrCreate()
    except Exception as e:
        raise MlProviderError(
            f"Starting Spark with spark_master={master!r} failed: {type(e).__name__}: "
            f"{first_line(str(e), 500).rstrip('.')}. Check that Java is installed and the master is reachable."
        ) from e
    finally:
        for name, previous in saved.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
    return spark, True


def filesystem_for(path: StoragePath, hdfs_conn_id: str | None) -> SparkFileSystem:
    """How Spark reaches ``path``: ``file://``, or the ``ml_hdfs`` connection over NameNode RPC.

    :param path: a parsed input or output path.
    :param hdfs_conn_id: the connection of non-local paths (``None``: ``ml_hdfs_default``); read
        only for them, once as the hook's config and once for its Spark-only extras (``rpc_port``,
        ``nameservice``: :class:`~airflow_ml_provider.storage.spark_urls.SparkHdfs`).
    :raises ConnectionConfigError: the connection cannot be mapped (e.g. ``auth = token``).
    """
    from airflow_ml_provider.hooks.webhdfs import HdfsHook
    from airflow_ml_provider.storage.spark_urls import SparkHdfs, spark_filesystem

    if path.local:
        return spark_filesystem(None)
    conn_id = hdfs_conn_id or HdfsHook.default_conn_name
    hook = HdfsHook(conn_id)
    return spark_filesystem(hook.config, SparkHdfs.from_connection(hook.get_connection(conn_id)))


class SparkJob(NamedTuple):
    """Where one scoring job reads and writes.

    :param files: the input files' Spark URLs.
    :param base: the input dataset's root URL (Hive partitions below it become columns); ``None``
        for a one-file input.
    :param target: the storage of the output (it renames the parts and publishes).
    :param staging: the staging directory, in ``target``'s namespace (it exists).
    :param staging_url: the same directory as a Spark URL.
    """

    files: list[str]
    base: str | None
    target: Storage
    staging: str
    staging_url: str


def score_spark(
    spark: Any,
    model: FetchedModel,
    job: SparkJob,
    passthrough: list[str],
    inputs: list[str] | None,
    udf_outputs: tuple[str, list[tuple[str, str | None, str]]] | None,
    *,
    model_uri: str,
    prediction_column: str,
) -> tuple[int, int]:
    """Score into the existing staging directory, then check the predictions; return (rows, part files).

    Spark writes into ``<staging>/_spark`` (it refuses an existing directory); its part files are
    then renamed into the staging directory with the pandas engine's names (``part-00000.parquet``)
    by ``job.target`` and the rest (Spark's ``_SUCCESS``, ``.crc`` files, a Spark ML model's copy
    in ``<staging>/_model``) deleted; ``_SUCCESS`` is the storage layer's, written when it publishes.
    One aggregate over the written Parquet checks every prediction (NaN, infinite or null fail).

    :param spark: the session.
    :param model: the downloaded model: ``spark_udf`` for pyfunc models, ``transform`` for Spark ML ones.
    :param job: the input files and the staging directory.
    :param passthrough: input columns copied to the output.
    :param inputs: the model's input columns (``None``: every input column), for ``spark_udf``.
    :param udf_outputs: for pyfunc models, :func:`spark_outputs` (computed before Spark starts, so
        an output schema Spark cannot hold fails first); ``None`` for Spark ML models.
    :param model_uri: for messages.
    :param prediction_column: the output column (``<prediction_column>_<name>`` for several outputs).
    """
    from functools import reduce

    with requires_extra("mlflow"):
        import mlflow.pyfunc
    with requires_extra("spark"):
        from pyspark.sql import functions as F

    spark_out, model_copy = f"{job.staging}/_spark", f"{job.staging}/_model"
    reader = spark.read.option("mergeSchema", "true")
    if job.base is not None:
        reader = reader.option("basePath", job.base)
    try:
        df = reader.parquet(*[glob_escape(url) for url in job.files])
        if udf_outputs is None:
            scored, prediction, kind = spark_ml_predictions(spark, model, df, f"{job.staging_url}/_model")
            outputs: list[tuple[str, str | None, str]] = [(prediction_column, None, kind)]
            scored = scored.select(*[F.col(_quote(c)) for c in passthrough], prediction.alias(prediction_column))
        else:
            result_type, outputs = udf_outputs
            udf = mlflow.pyfunc.spark_udf(spark, model_uri=model.root, env_manager="local", result_type=result_type)
            features = F.struct(*[F.col(_quote(c)) for c in (inputs if inputs is not None else df.columns)])
            scored = df.withColumn(prediction_column, udf(features))
            if outputs[0][1] is not None:  # a struct: one column per field
                scored = scored.select(
                    *[F.col(_quote(c)) for c in passthrough],
                    *[F.col(_quote(prediction_column)).getField(f).alias(c) for c, f, _ in outputs],
                )
            else:
                scored = scored.select(*[F.col(_quote(c)) for c in [*passthrough, prediction_column]])
        scored.write.mode("errorifexists").parquet(f"{job.staging_url}/_spark")
    except MlProviderError:
        raise
    except Exception as e:
        raise spark_error(e, model_uri) from e

    parts = 0
    for name in sorted(job.target.list_dir(spark_out) or {}):
        if not is_hidden(name) and name.startswith("part-") and name.endswith(".parquet"):
            job.target.rename(f"{spark_out}/{name}", f"{job.staging}/part-{parts:05d}.parquet")
            parts += 1
    job.target.delete(spark_out)
    job.target.delete(model_copy)

    def bad_value(column: str, spark_type: str) -> Any:
        col = F.col(_quote(column))
        if spark_type == "double":
            return col.isNull() | F.isnan(col) | (F.abs(col) == F.lit(float("inf")))
        if spark_type == "array<double>":
            return col.isNull() | F.exists(col, lambda x: x.isNull() | F.isnan(x) | (F.abs(x) == float("inf")))
        if spark_type.startswith("array<"):
            return col.isNull() | F.exists(col, lambda x: x.isNull())
        return col.isNull()

    try:
        written = spark.read.parquet(glob_escape(job.staging_url))
        bad = reduce(lambda a, b: a | b, [bad_value(c, t) for c, _, t in outputs])
        counts = written.agg(F.count(F.lit(1)).alias("rows"), F.count(F.when(bad, 1)).alias("bad")).first()
        rows, bad_rows = int(counts["rows"]), int(counts["bad"])
        example = None
        if bad_rows:
            example = written.filter(bad).select(*[F.col(_quote(c)) for c in passthrough[:5]]).first()
    except Exception as e:
        raise spark_error(e, model_uri) from e
    if bad_rows:
        raise MlProviderError(
            f"The model {model_uri} returned {bad_rows} NaN, infinite or empty prediction(s) in "
            f"{[c for c, _, _ in outputs]} out of {rows} rows; e.g. the row with "
            f"{example.asDict() if example else {}}. "
            "Nothing was written. Check those rows for missing or out-of-range features, or fix the model."
        )
    return rows, parts


def spark_error(e: Exception, model_uri: str) -> MlProviderError:
    """A Spark or model failure as one readable line (the Python exception, not the JVM stack)."""
    text = str(e)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    python_lines = [
        line
        for line in lines
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception): ", line)
        and not line.startswith(("org.", "java.", "scala.", "py4j."))
    ]
    cause = (python_lines or lines or [type(e).__name__])[-1][:500]
    rejected = re.search(r"MlflowException: (.*?)(?:\n\s*\n|\nJVM stacktrace|\Z)", text, re.S)
    if rejected:
        # "Failed to enforce schema of data '<the rows>' with schema '<…>'. Error: <what is wrong>"
        cause = first_line(rejected.group(1).rsplit("Error: ", 1)[-1]).rstrip(".") or cause
        return InvalidSpecError(
            f"The model {model_uri} rejected the input on Spark: {cause}. Fix the input's column types to "
            "match the model signature. Nothing was written."
        )
    return MlProviderError(
        f"Scoring with {model_uri} on Spark failed: {type(e).__name__}: {cause.rstrip('.')}. Nothing was written."
    )


def prepare_session(spark: Any, conf: Mapping[str, str], env: Mapping[str, str], *, created: bool) -> None:
    """Make ``spark`` reach the storage connection, and check it acts as the connection's HDFS user.

    :param spark: the session.
    :param conf: the connection's Spark settings (:attr:`SparkLocation.conf`); on a session this
        call did not create, its ``spark.hadoop.*`` entries are set on the running context's Hadoop
        configuration (they reach the executors with each job), e.g. the HA nameservice.
    :param env: the connection's environment (:attr:`SparkLocation.env`).
    :param created: whether the session was started with ``conf`` and ``env`` already.
    :raises MlProviderError: the driver JVM acts as another HDFS user than the connection's: Hadoop
        fixes the user when the JVM starts, and this process started it before with another one.
    """
    if not created:
        hadoop = spark.sparkContext._jsc.hadoopConfiguration()
        for key, value in conf.items():
            if key.startswith("spark.hadoop."):
                hadoop.set(key.removeprefix("spark.hadoop."), value)
    expected = env.get("HADOOP_PROXY_USER") or env.get("HADOOP_USER_NAME")
    if not expected:
        return
    ugi = spark.sparkContext._jvm.org.apache.hadoop.security.UserGroupInformation.getCurrentUser()
    actual = {str(ugi.getShortUserName()), str(spark.sparkContext.sparkUser())}
    if actual != {expected}:
        raise MlProviderError(
            f"The Spark driver of this process acts as HDFS user {' / '.join(sorted(actual))!r}, not the "
            f"connection's {expected!r}: Hadoop takes the user from HADOOP_USER_NAME when the driver JVM starts, "
            "and a JVM started earlier in this process with another one. Run the task in a fresh process, or "
            f"start the process with HADOOP_USER_NAME={expected}. Nothing was written."
        )
