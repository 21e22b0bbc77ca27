"""The Spark engine of batch prediction: ``mlflow.pyfunc.spark_udf`` over a SparkSession.

Spark reads the local Parquet dataset (Hive partitions as string columns), scores it with the
model on its Python workers (``env_manager="local"``: this interpreter), and writes Parquet into
the staging directory; one aggregate over the written output then checks every prediction
(NaN, infinite or null fail the task). Publishing is the storage layer's, as for the pandas engine.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.storage.base import is_hidden
from airflow_ml_provider.utils.messages import first_line
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

    from airflow_ml_provider.storage.base import DataFile

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
    model: PyFuncModel, *, model_uri: str, prediction_column: str
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


def spark_session(master: str, conf: dict[str, Any] | None, app_name: str, log: Any) -> tuple[Any, bool]:
    """A SparkSession and whether this call created it (a session already running is reused as is)."""
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
    own_python = "PYSPARK_PYTHON" not in os.environ
    if own_python:
        os.environ["PYSPARK_PYTHON"] = sys.executable
    try:
        spark = builder.getOrCreate()
    except Exception as e:
        raise MlProviderError(
            f"Starting Spark with spark_master={master!r} failed: {type(e).__name__}: "
            f"{first_line(str(e), 500).rstrip('.')}. Check that Java is installed and the master is reachable."
        ) from e
    finally:
        if own_python:
            os.environ.pop("PYSPARK_PYTHON", None)
    return spark, True


def score_spark(
    spark: Any,
    model_path: str,
    src: str,
    files: Sequence[DataFile],
    passthrough: list[str],
    inputs: list[str] | None,
    result_type: str,
    outputs: list[tuple[str, str | None, str]],
    staging: str,
    *,
    model_uri: str,
    prediction_column: str,
) -> tuple[int, int]:
    """Score into the existing local directory ``staging`` (our part names, no Spark ``_SUCCESS``;
    Spark itself writes into a hidden subdirectory, as it refuses an existing one), then check the predictions
    with one aggregate over the written Parquet; return (rows, part files)."""
    from functools import reduce

    with requires_extra("mlflow"):
        import mlflow.pyfunc
    with requires_extra("spark"):
        from pyspark.sql import functions as F

    spark_out = os.path.join(staging, "_spark")
    reader = spark.read.option("mergeSchema", "true")
    if os.path.isdir(src):
        reader = reader.option("basePath", "file://" + src)
    try:
        df = reader.parquet(*["file://" + f.path for f in files])
        udf = mlflow.pyfunc.spark_udf(spark, model_uri=model_path, env_manager="local", result_type=result_type)
        features = F.struct(*[F.col(_quote(c)) for c in (inputs if inputs is not None else df.columns)])
        scored = df.withColumn(prediction_column, udf(features))
        if outputs[0][1] is not None:  # a struct: one column per field
            scored = scored.select(
                *[F.col(_quote(c)) for c in passthrough],
                *[F.col(_quote(prediction_column)).getField(f).alias(c) for c, f, _ in outputs],
            )
        else:
            scored = scored.select(*[F.col(_quote(c)) for c in [*passthrough, prediction_column]])
        scored.write.mode("errorifexists").parquet("file://" + spark_out)
    except MlProviderError:
        raise
    except Exception as e:
        raise spark_error(e, model_uri) from e

    # Parts move up into the staging directory with the pandas engine's names; Spark's _SUCCESS and
    # .crc files stay behind and go with its output directory (ours is written after publishing).
    parts = 0
    for name in sorted(os.listdir(spark_out)):
        if not is_hidden(name) and name.startswith("part-") and name.endswith(".parquet"):
            os.rename(os.path.join(spark_out, name), os.path.join(staging, f"part-{parts:05d}.parquet"))
            parts += 1
    shutil.rmtree(spark_out)

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
        written = spark.read.parquet("file://" + staging)
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
