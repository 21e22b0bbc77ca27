"""Score a Parquet dataset with an MLflow model and write the predictions as Parquet.

This module holds the operator: its arguments, their validation, the column plan and the
orchestration. Scoring lives in :mod:`airflow_ml_provider.scoring` and reading/publishing
datasets in :mod:`airflow_ml_provider.storage`. DAG files import this module; it imports neither
mlflow, pandas, pyarrow nor hdfs, and the constructor does no I/O.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.hooks.webhdfs import HdfsHook
from airflow_ml_provider.scoring.model import check_model_uri
from airflow_ml_provider.storage.paths import StoragePath, overlaps, parse_path
from airflow_ml_provider.utils.templating import is_templated

if TYPE_CHECKING:
    from airflow.sdk import Context
    from mlflow.pyfunc import PyFuncModel

    from airflow_ml_provider.scoring.pandas_engine import Plan
    from airflow_ml_provider.scoring.spark_model import FetchedModel
    from airflow_ml_provider.storage.base import DataFile, Staging, Storage
    from airflow_ml_provider.storage.spark_urls import SparkFileSystem

DEFAULT_CHUNK_ROWS = 100_000
ENGINES = ("pandas", "spark")
DEFAULT_SPARK_MASTER = "local[2]"


def _check_columns_arg(passthrough_columns: Any, prediction_column: Any) -> None:
    if not isinstance(prediction_column, str) or not prediction_column:
        raise InvalidSpecError(f"prediction_column={prediction_column!r} must be a column name, e.g. 'prediction'.")
    if passthrough_columns is None:
        return
    if isinstance(passthrough_columns, str) or not all(isinstance(c, str) and c for c in passthrough_columns):
        raise InvalidSpecError(
            f"passthrough_columns={passthrough_columns!r} must be a list of column names, e.g. ['customer_id'], "
            "or None for all input columns."
        )
    if prediction_column in passthrough_columns:
        raise InvalidSpecError(
            f"passthrough_columns lists {prediction_column!r}, the prediction column's name; rename one, "
            "e.g. prediction_column='score'."
        )


class MlflowBatchPredictOperator(BaseOperator):
    """Score a Parquet dataset with an MLflow model, chunk by chunk, and write Parquet predictions.

    What happens when the task runs:

    1. The model is loaded with ``mlflow.pyfunc.load_model`` inside
       :meth:`~airflow_ml_provider.hooks.mlflow.MlflowHook.scoped`, so the connection's
       credentials reach MLflow for that call only (the model's own code never sees them).
    2. Every input file's Parquet footer is checked against the model signature before anything
       is scored: missing required inputs (and missing ``passthrough_columns``) fail the task,
       naming them. Extra columns are fine. A model without a signature is scored with all
       columns, with a warning.
    3. Each file is read ``chunk_rows`` rows at a time (``ParquetFile.iter_batches``), so memory
       stays bounded by the chunk size, not the dataset size. HDFS files are downloaded to local
       scratch one at a time (WebHDFS streams cannot seek). A NaN, infinite or null prediction
       fails the task, naming the row range.
    4. One output part per input file (``part-00000.parquet``, …; one row group per chunk) is
       written into ``<output_path>.tmp-<uuid>``, which is then renamed to ``output_path``; an
       existing output is first renamed aside and deleted only after the new one is in place.
       ``_SUCCESS`` is written last. On any error the temporary directory is removed and nothing
       is written. An input whose files have no rows gives one empty part with the output columns
       and types (passthrough columns, then the prediction column(s) typed by the model's output
       schema, ``float64`` without one), with a warning.

    :param model_uri: templated; ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or
        ``runs:/<run_id>/<path>``.
    :param input_path: templated; a Parquet file or a directory of them (searched recursively;
        ``_``/``.`` files such as ``_SUCCESS`` are skipped; ``key=value`` directories become
        string columns). ``file:///x`` and, without ``hdfs_conn_id``, ``/x`` are local;
        ``hdfs://…`` and, with ``hdfs_conn_id``, ``/x`` are on HDFS.
    :param output_path: templated; the output directory, same rules as ``input_path``.
    :param chunk_rows: rows scored per ``predict`` call (>= 1).
    :param prediction_column: name of the output column holding the predictions. A model
        returning several columns gives ``<prediction_column>_<name>`` columns.
    :param passthrough_columns: templated; input columns copied to the output (e.g. ids);
        ``None`` copies all input columns.
    :param mlflow_conn_id: the ``ml_mlflow`` connection (tracking and registry URIs, auth).
    :param hdfs_conn_id: the ``ml_hdfs`` connection for HDFS paths; ``hdfs://`` URLs use
        ``ml_hdfs_default`` when this is ``None``.
    :param engine: ``"pandas"`` (the steps above, in this process) or ``"spark"`` for large data:
        the model is downloaded (not loaded in this process) and the signature checked the same way,
        then a SparkSession reads the dataset where it is, scores it and writes Parquet into
        ``<output_path>.tmp-<uuid>``, checks the predictions with one aggregate (NaN, infinite or
        null fail the task and nothing is written), and the output is published like the pandas
        engine's (rename, ``_SUCCESS`` last). Pyfunc models score with ``mlflow.pyfunc.spark_udf``
        (``env_manager="local"``: the workers use this Python), Spark ML models (``mlflow.spark``
        flavor) with ``transform`` in the same session, ``prediction`` renamed to
        ``prediction_column``. Spark reaches HDFS over NameNode RPC (``hdfs://<namenode>:<rpc_port>``,
        the connection's ``rpc_port`` extra, default 8020) as the connection's Login: see
        :mod:`airflow_ml_provider.storage.spark_urls`. ``chunk_rows`` does not apply.
    :param spark_master: the Spark master of the session the spark engine creates, e.g.
        ``"local[8]"`` or ``"spark://host:7077"`` (then local paths must be on a file system all
        executors share; HDFS paths are). Templated, e.g. ``"{{ var.value.spark_master }}"``.
    :param spark_conf: extra Spark settings for that session, e.g.
        ``{"spark.driver.memory": "4g"}``; they override the engine's defaults (UTC session time
        zone, 4 shuffle partitions, no UI, partition values read as strings). If a SparkSession
        already runs in the process, it is used as it is (only the HDFS connection's Hadoop settings
        are added to it) and left running; it must act as the connection's HDFS user.
    :param kwargs: the other :class:`~airflow.sdk.BaseOperator` arguments.

    XCom: ``{"output_path", "rows", "files", "model_uri", "seconds"}`` where ``files`` is the
    number of part files written.
    """

    template_fields: Sequence[str] = ("model_uri", "input_path", "output_path", "passthrough_columns", "spark_master")
    ui_color = "#e8daef"

    def __init__(
        self,
        *,
        model_uri: str,
        input_path: str,
        output_path: str,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        prediction_column: str = "prediction",
        passthrough_columns: Sequence[str] | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        hdfs_conn_id: str | None = None,
        engine: str = "pandas",
        spark_master: str = DEFAULT_SPARK_MASTER,
        spark_conf: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_uri = model_uri
        self.input_path = input_path
        self.output_path = output_path
        self.chunk_rows = chunk_rows
        self.prediction_column = prediction_column
        self.passthrough_columns = passthrough_columns
        self.mlflow_conn_id = mlflow_conn_id
        self.hdfs_conn_id = hdfs_conn_id
        self.engine = engine
        self.spark_master = spark_master
        self.spark_conf = spark_conf
        if engine not in ENGINES:
            raise InvalidSpecError(f"engine={engine!r} is not one of {list(ENGINES)}; e.g. engine='spark'.")
        if not isinstance(spark_master, str) or not spark_master.strip():
            raise InvalidSpecError(f"spark_master={spark_master!r} must be a Spark master URL, e.g. 'local[4]'.")
        if spark_conf is not None and (
            not isinstance(spark_conf, dict) or not all(isinstance(k, str) and k for k in spark_conf)
        ):
            raise InvalidSpecError(
                f"spark_conf={spark_conf!r} must be a dict of Spark settings, e.g. {{'spark.driver.memory': '4g'}}."
            )
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise InvalidSpecError(f"chunk_rows={chunk_rows!r} must be a whole number >= 1, e.g. chunk_rows=100_000.")
        if not isinstance(mlflow_conn_id, str) or not mlflow_conn_id:
            raise InvalidSpecError(
                f"mlflow_conn_id={mlflow_conn_id!r} must name a connection, e.g. 'ml_mlflow_default'."
            )
        if hdfs_conn_id is not None and (not isinstance(hdfs_conn_id, str) or not hdfs_conn_id):
            raise InvalidSpecError(
                f"hdfs_conn_id={hdfs_conn_id!r} must name a connection, e.g. 'ml_hdfs_default', or be None."
            )
        # Fail at DAG parse time for what is already known; templated values are checked after rendering.
        self._validate(parse_time=True)

    def _validate(self, parse_time: bool = False) -> tuple[StoragePath, StoragePath] | None:
        skip = is_templated if parse_time else (lambda _: False)
        if not skip(self.model_uri):
            check_model_uri(self.model_uri)
        if not skip(self.passthrough_columns):
            _check_columns_arg(self.passthrough_columns, self.prediction_column)
        if skip(self.input_path) or skip(self.output_path):
            return None
        local = self.hdfs_conn_id is None
        src = parse_path(self.input_path, arg="input_path", default_local=local, allow_root=False)
        dst = parse_path(self.output_path, arg="output_path", default_local=local, allow_root=False)
        if overlaps(src, dst):
            raise InvalidSpecError(
                f"output_path={self.output_path!r} overlaps input_path={self.input_path!r}; write the "
                "predictions elsewhere, e.g. '/data/scores/2026-11-23'."
            )
        return src, dst

    # -- execution ------------------------------------------------------------------------------

    def _storage(self, path: StoragePath) -> Storage:
        return HdfsHook(self.hdfs_conn_id or HdfsHook.default_conn_name).storage_for(path)

    def execute(self, context: Context) -> dict[str, Any]:
        """Load the model, check every input's columns, score, publish atomically (``_SUCCESS`` last)."""
        from airflow_ml_provider.scoring import spark_model
        from airflow_ml_provider.scoring.model import load_model

        started = time.monotonic()
        paths = self._validate()
        assert paths is not None
        src, dst = paths
        source, target = self._storage(src), self._storage(dst)
        # how Spark reaches both paths, checked before anything is read (e.g. a token-auth connection)
        spark_fs = None
        if self.engine == "spark":
            from airflow_ml_provider.scoring.spark_engine import filesystem_for

            spark_fs = (filesystem_for(src, self.hdfs_conn_id), filesystem_for(dst, self.hdfs_conn_id))
        files = self._input_files(source, src, target, dst)
        with tempfile.TemporaryDirectory(prefix="ml-batch-predict-") as scratch:
            model_dir = os.path.join(scratch, "model")
            model: PyFuncModel | FetchedModel
            if self.engine == "spark":  # downloaded only: Spark loads it (see scoring.spark_model)
                model = spark_model.fetch_model(self.model_uri, self.mlflow_conn_id, model_dir)
            else:
                model = load_model(self.model_uri, self.mlflow_conn_id, model_dir)
            plans = self._plan(model, source, files)  # every footer checked before anything is scored
            try:
                with target.staged(dst.path, log=self.log) as staging:
                    if isinstance(model, spark_model.FetchedModel):  # engine='spark'
                        assert spark_fs is not None
                        rows, parts = self._score_spark(model, src, spark_fs, files, plans, staging)
                    else:
                        rows, parts = self._score_pandas(model, source, plans, staging), len(staging.parts)
                    staging.publish()
            except OSError as e:  # a part written by pyarrow or Spark to local disk: permissions, space
                raise MlProviderError(
                    f"Scoring into {target.location(dst.path)} failed: {type(e).__name__}: {str(e).rstrip('.')}. "
                    "Nothing was written."
                ) from e
        if rows == 0:
            self.log.warning(
                "input_path=%r (%s) has no rows in its %d file(s): %s holds one empty Parquet file with the "
                "output columns. Check the upstream task if data was expected.",
                self.input_path,
                source.location(src.path),
                len(files),
                target.location(dst.path),
            )
        where = f" on Spark ({self.spark_master})" if self.engine == "spark" else ""
        return self._finished(rows, len(files), parts, target.location(dst.path) + where, started)

    def _score_pandas(self, model: PyFuncModel, source: Storage, plans: list[Plan], staging: Any) -> int:
        from airflow_ml_provider.scoring.pandas_engine import score_plans

        return score_plans(
            model,
            source,
            staging,
            plans,
            chunk_rows=self.chunk_rows,
            model_uri=self.model_uri,
            prediction_column=self.prediction_column,
        )

    def _score_spark(
        self,
        model: FetchedModel,
        src: StoragePath,
        filesystems: tuple[SparkFileSystem, SparkFileSystem],
        files: list[DataFile],
        plans: list[Plan],
        staging: Staging,
    ) -> tuple[int, int]:
        """Score with Spark into ``staging`` (local or HDFS); (rows, part files).

        :param filesystems: how Spark reaches the input and the output (``spark_engine.filesystem_for``).
        """
        from airflow_ml_provider.scoring import spark_engine
        from airflow_ml_provider.storage.spark_urls import merge_settings

        src_fs, dst_fs = filesystems
        conf, env = merge_settings(src_fs, dst_fs)
        udf_outputs = None
        if not model.is_spark_ml:  # an output schema Spark cannot hold fails before Spark starts
            udf_outputs = spark_engine.spark_outputs(
                model, model_uri=self.model_uri, prediction_column=self.prediction_column
            )
        passthrough = list(dict.fromkeys(c for plan in plans for c in plan.passthrough))
        inputs = None if plans[0].inputs is None else list(dict.fromkeys(c for p in plans for c in p.inputs or ()))
        one_file = len(files) == 1 and files[0].path == src.path
        job = spark_engine.SparkJob(
            files=[src_fs.url(f.path) for f in files],
            base=None if one_file else src_fs.url(src.path),
            target=staging.storage,
            staging=staging.path,
            staging_url=dst_fs.url(staging.path),
        )
        spark, created = spark_engine.spark_session(
            self.spark_master,
            conf | (self.spark_conf or {}),
            f"airflow-ml-batch-predict-{self.task_id}",
            self.log,
            env=env,
        )
        try:
            spark_engine.prepare_session(spark, conf, env, created=created)
            return spark_engine.score_spark(
                spark,
                model,
                job,
                passthrough,
                inputs,
                udf_outputs,
                model_uri=self.model_uri,
                prediction_column=self.prediction_column,
            )
        finally:
            if created:
                spark.stop()

    def _finished(self, rows: int, inputs: int, parts: int, where: str, started: float) -> dict[str, Any]:
        """Log the throughput and build the XCom (both engines)."""
        seconds = time.monotonic() - started
        self.log.info(
            "Scored %d rows from %d file(s) with %s into %s in %.1fs (%.0f rows/s)",
            rows,
            inputs,
            self.model_uri,
            where,
            seconds,
            rows / seconds if seconds else 0,
        )
        return {
            "output_path": str(self.output_path),
            "rows": rows,
            "files": parts,
            "model_uri": self.model_uri,
            "seconds": round(seconds, 3),
        }

    def _input_files(self, source: Storage, src: StoragePath, target: Storage, dst: StoragePath) -> list[DataFile]:
        """The input's data files; fails on a missing or empty input and on an output that is a file."""
        files = source.list_dataset(src.path)
        if files is None:
            raise InvalidSpecError(f"input_path={self.input_path!r} does not exist ({source.location(src.path)}).")
        if not files:
            raise InvalidSpecError(
                f"input_path={self.input_path!r} holds no data files ({source.location(src.path)}); "
                "files whose names start with '_' or '.' are skipped."
            )
        existing = target.stat(dst.path)
        if existing is not None and existing.kind != "DIRECTORY":
            raise InvalidSpecError(f"output_path={self.output_path!r} is a file; give a directory path.")
        return files

    def _plan(self, model: PyFuncModel | FetchedModel, storage: Storage, files: list[DataFile]) -> list[Plan]:
        """Per file: the columns to read and the model's input columns (``None``: all), checked before scoring."""
        from airflow_ml_provider.scoring.pandas_engine import Plan

        schema = model.metadata.get_input_schema()
        model_inputs: list[str] | None = None
        required: list[str] = []
        if schema is None:
            self.log.warning(
                "Model %s has no signature: its inputs cannot be checked; scoring with all columns.", self.model_uri
            )
        elif not schema.has_input_names():
            self.log.warning("Model %s has an unnamed (tensor) signature; scoring with all columns.", self.model_uri)
        else:
            model_inputs = list(schema.input_names())
            required = list(schema.required_input_names())

        plans = []
        for file in files:
            file_schema = storage.readable_schema(file, arg="input_path")
            present = [n for n in file_schema.names] + [k for k, _ in file.partitions if k not in file_schema.names]
            missing = [c for c in required if c not in present]
            missing_passthrough = [c for c in self.passthrough_columns or () if c not in present]
            if missing or missing_passthrough:
                what = []
                if missing:
                    what.append(
                        f"lacks the model's required input column(s) {missing} "
                        f"(the signature of {self.model_uri} expects {model_inputs})"
                    )
                if missing_passthrough:
                    what.append(f"lacks passthrough_columns {missing_passthrough}")
                raise InvalidSpecError(
                    f"Input file {storage.location(file.path)} {' and '.join(what)}; it has {present}. "
                    "Fix the data upstream, or score with a model whose signature matches. Nothing was written."
                )
            passthrough = list(self.passthrough_columns) if self.passthrough_columns is not None else present
            if self.prediction_column in passthrough:
                raise InvalidSpecError(
                    f"Input file {storage.location(file.path)} already has a column {self.prediction_column!r}; set "
                    "prediction_column to another name (e.g. 'score') or list passthrough_columns without it."
                )
            inputs = [c for c in model_inputs if c in present] if model_inputs is not None else None
            extra = [c for c in present if model_inputs is not None and c not in model_inputs and c not in passthrough]
            if extra:
                self.log.info("%s: columns %s are neither model inputs nor passed through; not read.", file.path, extra)
            plans.append(Plan(file, passthrough, inputs, file_schema))
        return plans
