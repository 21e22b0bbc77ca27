"""Score a Parquet dataset with an MLflow model and write the predictions as Parquet.

DAG files import this module; it imports neither mlflow, pandas, pyarrow nor hdfs, and the
constructor does no I/O: the model, the connections and the files are touched only when the
task runs.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlsplit

from airflow.sdk import BaseOperator

from airflow_ml_provider.exceptions import HdfsAccessError, HdfsUnavailableError, InvalidSpecError, MlProviderError

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context
    from hdfs import Client
    from mlflow.pyfunc import PyFuncModel

#: Same as ``MlflowHook.default_conn_name``; a literal so DAG files need not import the hook module.
DEFAULT_MLFLOW_CONN_ID = "ml_mlflow_default"
#: Same as ``HdfsHook.default_conn_name``; used for ``hdfs://`` paths when no ``hdfs_conn_id`` is given.
DEFAULT_HDFS_CONN_ID = "ml_hdfs_default"
DEFAULT_CHUNK_ROWS = 100_000
ENGINES = ("pandas", "spark")
DEFAULT_SPARK_MASTER = "local[2]"
MARKER = "_SUCCESS"
#: Read buffer per column chunk: pages stream through it instead of whole column chunks.
_READ_BUFFER = 1 << 20
#: Dictionary page limit of the output: a column with more distinct values (random floats, ids)
#: falls back to plain encoding after 128 KiB instead of 1 MiB. With chunk-sized row groups the
#: 1 MiB default dictionary-encodes whole high-cardinality columns: 4x the write time, 25% larger.
_DICTIONARY_LIMIT = 128 * 1024
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
_HDFS_SCHEMES = frozenset({"hdfs", "webhdfs", "swebhdfs"})
_MODEL_URI_EXAMPLE = "'models:/churn@champion', 'models:/churn/3' or 'runs:/<run_id>/model'"


def _is_templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, (list, tuple)):
        return any(_is_templated(v) for v in value)
    return not isinstance(value, (int, float, bool, type(None)))  # XComArg and friends


class _Path(NamedTuple):
    """A validated data path: on the local disk (``hdfs=False``) or on an HDFS connection."""

    hdfs: bool
    path: str

    def __str__(self) -> str:
        return f"hdfs://{self.path}" if self.hdfs else self.path


def parse_data_path(value: Any, arg: str, hdfs_conn_id: str | None) -> _Path:
    """Parse ``input_path``/``output_path``.

    ``file:///x`` is local; ``hdfs://ns/x`` is on HDFS (the authority is ignored: the connection
    says where the NameNodes are); a plain absolute ``/x`` is on HDFS when ``hdfs_conn_id`` is
    set, on the local disk otherwise.

    :raises InvalidSpecError: naming ``arg`` for empty, relative, ``..`` or unknown-scheme paths.
    """
    example = "'/data/scores/2026-11-23', 'file:///data/x' or 'hdfs:///data/x'"
    if not isinstance(value, str) or not value.strip():
        raise InvalidSpecError(f"{arg}={value!r} is not a path; give an absolute path, e.g. {example}.")
    text = value.strip()
    hdfs = hdfs_conn_id is not None
    if "://" in text:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme == "file":
            hdfs = False
        elif scheme in _HDFS_SCHEMES:
            hdfs = True
        else:
            raise InvalidSpecError(f"{arg}={value!r} has the unsupported scheme {parts.scheme!r}; use e.g. {example}.")
        text = unquote(parts.path)
    if not text.startswith("/"):
        raise InvalidSpecError(f"{arg}={value!r} is not absolute; give an absolute path, e.g. {example}.")
    if ".." in text.split("/"):
        raise InvalidSpecError(f"{arg}={value!r} contains '..'; give the normalized absolute path, e.g. {example}.")
    normalized = "/" + posixpath.normpath(text).lstrip("/")
    if normalized == "/":
        raise InvalidSpecError(f"{arg}={value!r} is the root directory; give a dataset path, e.g. {example}.")
    return _Path(hdfs, normalized)


def check_model_uri(value: Any) -> str:
    """Accept ``models:/name@alias``, ``models:/name/<version>``, ``runs:/<id>/<path>`` or a URL."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidSpecError(f"model_uri={value!r} is empty; give e.g. {_MODEL_URI_EXAMPLE}.")
    text = value.strip()
    if text.startswith("models:/"):
        rest = text.removeprefix("models:/").strip("/")
        name, at, alias = rest.partition("@")
        if at:
            ok = bool(name) and bool(alias) and "/" not in name
        else:
            ok = len(rest.split("/")) == 2 and all(rest.split("/"))
        if not ok:
            raise InvalidSpecError(
                f"model_uri={value!r} is not a registry URI; use 'models:/<name>@<alias>' or "
                "'models:/<name>/<version>', e.g. 'models:/churn@champion'."
            )
    elif text.startswith("runs:/"):
        parts = text.removeprefix("runs:/").strip("/").split("/")
        if len(parts) < 2 or not all(parts):
            raise InvalidSpecError(f"model_uri={value!r} lacks the artifact path; use 'runs:/<run_id>/model'.")
    elif "://" not in text and not text.startswith("/"):
        raise InvalidSpecError(f"model_uri={value!r} is not a model URI; give e.g. {_MODEL_URI_EXAMPLE}.")
    return text


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


class _InputFile(NamedTuple):
    path: str  # on its file system
    size: int
    partitions: tuple[tuple[str, str], ...]  # hive key=value directories between the input root and the file


def _partitions(root: str, path: str) -> tuple[tuple[str, str], ...]:
    relative = posixpath.relpath(posixpath.dirname(path), root)
    found = []
    for segment in relative.split("/"):
        key, eq, val = segment.partition("=")
        if eq and key:
            found.append((unquote(key), unquote(val)))
    return tuple(found)


def _hidden(name: str) -> bool:
    """Hidden files and directories: _SUCCESS, _temporary, .crc and .spark-staging files."""
    return name.startswith(("_", "."))


def _tail_schema(size: int, read: Any) -> pa.Schema:
    """Schema from a Parquet footer alone: ``read(offset, length)`` returns bytes of the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tail = read(max(0, size - 65536), min(size, 65536))
    if len(tail) < 12 or tail[-4:] != b"PAR1":
        raise ValueError("not a Parquet file (no PAR1 footer)")
    footer = int.from_bytes(tail[-8:-4], "little")
    if footer + 8 > len(tail):
        if footer + 8 > size:
            raise ValueError("footer longer than the file")
        tail = read(size - footer - 8, footer + 8)
    schema: pa.Schema = pq.read_schema(pa.BufferReader(b"PAR1" + tail[-(footer + 8) :]))
    return schema


class _LocalFs:
    """The local disk (or an ``ml_hdfs`` connection pointing at a local directory, via ``root``)."""

    def __init__(self, root: str = "/") -> None:
        self.root = root

    def real(self, path: str) -> str:
        return path if self.root == "/" else os.path.join(self.root, path.lstrip("/"))

    def describe(self, path: str) -> str:
        return self.real(path)

    def list_files(self, path: str) -> list[_InputFile] | None:
        real = self.real(path)
        if os.path.isfile(real):
            return [_InputFile(path, os.path.getsize(real), ())]
        if not os.path.isdir(real):
            return None
        files = []
        for dirpath, dirnames, filenames in os.walk(real):
            dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
            for name in sorted(filenames):
                if not _hidden(name):
                    full = os.path.join(dirpath, name)
                    virtual = posixpath.join(path, os.path.relpath(full, real).replace(os.sep, "/"))
                    files.append(_InputFile(virtual, os.path.getsize(full), _partitions(path, virtual)))
        return files

    def schema(self, file: _InputFile) -> pa.Schema:
        import pyarrow.parquet as pq

        schema: pa.Schema = pq.read_schema(self.real(file.path))
        return schema

    @contextlib.contextmanager
    def fetch(self, file: _InputFile, scratch: str) -> Iterator[str]:
        yield self.real(file.path)

    def exists(self, path: str) -> str | None:
        """``"FILE"``, ``"DIRECTORY"`` or ``None``."""
        real = self.real(path)
        return "DIRECTORY" if os.path.isdir(real) else "FILE" if os.path.lexists(real) else None

    def staging_part(self, staging: str, name: str, scratch: str) -> str:
        """Where to write a part file (written in place, nothing to upload)."""
        return os.path.join(self.real(staging), name)

    def begin(self, staging: str) -> None:
        os.makedirs(os.path.dirname(self.real(staging)), exist_ok=True)
        os.mkdir(self.real(staging))

    def finish_part(self, local: str, staging: str, name: str) -> None:
        pass

    def rename(self, src: str, dst: str) -> None:
        os.rename(self.real(src), self.real(dst))

    def delete(self, path: str) -> None:
        real = self.real(path)
        if os.path.isdir(real) and not os.path.islink(real):
            shutil.rmtree(real, ignore_errors=True)
        elif os.path.lexists(real):
            os.remove(real)

    def touch(self, path: str) -> None:
        with open(self.real(path), "wb") as f:
            f.flush()
            os.fsync(f.fileno())


class _HdfsFs:
    """HDFS over WebHDFS: inputs are downloaded one at a time, parts uploaded as they are done."""

    def __init__(self, client: Client, namenodes: Sequence[str]) -> None:
        self.client = client
        self.where = "NameNode " + " / ".join(namenodes)

    def describe(self, path: str) -> str:
        return f"hdfs://{path} ({self.where})"

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import requests
        from hdfs.util import HdfsError

        try:
            yield
        except HdfsError as e:
            exception = getattr(e, "exception", None)
            message = str(e).strip().splitlines()[0][:400] if str(e).strip() else type(e).__name__
            if exception is None or exception in ("StandbyException", "RetriableException"):
                raise HdfsUnavailableError(f"{what} on {self.where} failed: {message}") from None
            raise HdfsAccessError(
                f"{what} on {self.where} failed: {exception}: {message}", remote_exception=exception
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise HdfsUnavailableError(
                f"{what}: no NameNode or DataNode answered ({self.where}): {type(e).__name__}"
            ) from None

    def list_files(self, path: str) -> list[_InputFile] | None:
        with self._errors(f"Listing {path!r}"):
            status = self.client.status(path, strict=False)
            if status is None:
                return None
            if status["type"] != "DIRECTORY":
                return [_InputFile(path, int(status["length"]), ())]
            files = []
            for dirpath, dirs, names in self.client.walk(path, status=True):
                dirs[:] = sorted((d for d in dirs if not _hidden(d[0])), key=lambda d: d[0])
                for name, st in sorted(names, key=lambda n: n[0]):
                    if not _hidden(name):
                        full = posixpath.join(dirpath[0], name)
                        files.append(_InputFile(full, int(st["length"]), _partitions(path, full)))
            return files

    def schema(self, file: _InputFile) -> pa.Schema:
        def read(offset: int, length: int) -> bytes:
            with self.client.read(file.path, offset=offset, length=length) as reader:
                data: bytes = reader.read()
                return data

        with self._errors(f"Reading the Parquet footer of {file.path!r}"):
            return _tail_schema(file.size, read)

    @contextlib.contextmanager
    def fetch(self, file: _InputFile, scratch: str) -> Iterator[str]:
        local = os.path.join(scratch, "input.parquet")
        try:
            with (
                self._errors(f"Downloading {file.path!r}"),
                open(local, "wb") as out,
                self.client.read(file.path, chunk_size=1 << 20) as reader,
            ):
                for block in reader:
                    out.write(block)
            yield local
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(local)

    def exists(self, path: str) -> str | None:
        with self._errors(f"Checking {path!r}"):
            status = self.client.status(path, strict=False)
        return None if status is None else str(status["type"])

    def staging_part(self, staging: str, name: str, scratch: str) -> str:
        return os.path.join(scratch, name)

    def begin(self, staging: str) -> None:
        with self._errors(f"Creating {staging!r}"):
            self.client.makedirs(staging)

    def finish_part(self, local: str, staging: str, name: str) -> None:
        try:
            with self._errors(f"Uploading {name} to {staging!r}"), open(local, "rb") as f:
                self.client.write(posixpath.join(staging, name), data=f, overwrite=False)
        finally:
            os.remove(local)

    def rename(self, src: str, dst: str) -> None:
        with self._errors(f"Renaming {src!r} to {dst!r}"):
            self.client.rename(src, dst)

    def delete(self, path: str) -> None:
        with self._errors(f"Deleting {path!r}"):
            self.client.delete(path, recursive=True)

    def touch(self, path: str) -> None:
        with self._errors(f"Writing {path!r}"):
            self.client.write(path, data=b"", overwrite=True)


_Fs = _LocalFs | _HdfsFs


class _Plan(NamedTuple):
    file: _InputFile
    passthrough: list[str]  # output columns copied from the input
    inputs: list[str] | None  # the model's input columns; None: all columns (no signature)


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
       is written.

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
        the same model download and signature check, then a SparkSession scores the dataset with
        ``mlflow.pyfunc.spark_udf`` (``env_manager="local"``: the workers use this Python), writes
        Parquet into ``<output_path>.tmp-<uuid>``, checks the predictions with one aggregate
        (NaN, infinite or null fail the task and nothing is written), and publishes it like the
        pandas engine (rename, ``_SUCCESS`` last). Local paths only (``/x`` without
        ``hdfs_conn_id``, ``file:///x``); HDFS paths need the pandas engine. ``chunk_rows`` does not
        apply (Spark sizes its own batches).
    :param spark_master: the Spark master of the session the spark engine creates, e.g.
        ``"local[8]"`` or ``"spark://host:7077"`` (then the paths must be on a file system all
        executors share). Templated, e.g. ``"{{ var.value.spark_master }}"``.
    :param spark_conf: extra Spark settings for that session, e.g.
        ``{"spark.driver.memory": "4g"}``; they override the engine's defaults (UTC session time
        zone, 4 shuffle partitions, no UI, partition values read as strings). If a SparkSession
        already runs in the process, it is used as it is and left running.
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
        mlflow_conn_id: str = DEFAULT_MLFLOW_CONN_ID,
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

    def _validate(self, parse_time: bool = False) -> tuple[_Path, _Path] | None:
        skip = _is_templated if parse_time else (lambda _: False)
        if not skip(self.model_uri):
            check_model_uri(self.model_uri)
        if not skip(self.passthrough_columns):
            _check_columns_arg(self.passthrough_columns, self.prediction_column)
        if skip(self.input_path) or skip(self.output_path):
            return None
        src = parse_data_path(self.input_path, "input_path", self.hdfs_conn_id)
        dst = parse_data_path(self.output_path, "output_path", self.hdfs_conn_id)
        if self.engine == "spark" and (src.hdfs or dst.hdfs):
            which = " and ".join(n for n, p in (("input_path", src), ("output_path", dst)) if p.hdfs)
            raise InvalidSpecError(
                f"{which} ({', '.join(str(p) for p in (src, dst) if p.hdfs)}) is on HDFS, which engine='spark' "
                "does not support yet: it reads and writes local paths ('/data/x' without hdfs_conn_id, or "
                "'file:///data/x'). Use engine='pandas' for HDFS paths."
            )
        if src.hdfs == dst.hdfs and (
            src.path == dst.path or dst.path.startswith(src.path + "/") or src.path.startswith(dst.path + "/")
        ):
            raise InvalidSpecError(
                f"output_path={self.output_path!r} overlaps input_path={self.input_path!r}; write the "
                "predictions elsewhere, e.g. '/data/scores/2026-11-23'."
            )
        return src, dst

    # -- execution ------------------------------------------------------------------------------

    def _fs(self, hdfs: bool) -> _Fs:
        if not hdfs:
            return _LocalFs()
        from airflow_ml_provider.hooks.webhdfs import HdfsHook

        hook = HdfsHook(self.hdfs_conn_id or DEFAULT_HDFS_CONN_ID)
        if hook.config.local_root is not None:
            return _LocalFs(hook.config.local_root)
        return _HdfsFs(hook.get_conn(), hook.config.namenodes)

    def _load_model(self, model_dir: str) -> PyFuncModel:
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException

        from airflow_ml_provider.hooks.mlflow import MlflowHook

        hook = MlflowHook(self.mlflow_conn_id)
        os.makedirs(model_dir, exist_ok=True)
        with hook.scoped():
            try:
                model = mlflow.pyfunc.load_model(self.model_uri, dst_path=model_dir)
            except MlflowException as e:
                where = f"the MLflow registry at {hook.config.registry_uri}"
                not_found = e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or (
                    e.error_code == "INVALID_PARAMETER_VALUE" and "not found" in e.message.lower()
                )
                if not_found:
                    raise InvalidSpecError(
                        f"model_uri={self.model_uri!r} was not found in {where}: {_first_line(e.message)}. "
                        "Check the model name and the alias or version in the MLflow UI (or set the alias, "
                        "e.g. MlflowClient().set_registered_model_alias(name, 'champion', version))."
                    ) from None
                raise MlProviderError(
                    f"Loading model_uri={self.model_uri!r} from {where} failed: "
                    f"{e.error_code}: {_first_line(e.message)}"
                ) from e
            except Exception as e:  # a missing flavor library, an unreadable artifact, a pickling error
                raise MlProviderError(
                    f"Loading model_uri={self.model_uri!r} failed: {type(e).__name__}: {_first_line(str(e))}"
                ) from e
        return model

    def execute(self, context: Context) -> dict[str, Any]:
        """Load the model, check every input's columns, score chunk by chunk, publish atomically."""
        if self.engine == "spark":
            return self._execute_spark()
        started = time.monotonic()
        paths = self._validate()
        assert paths is not None
        src, dst = paths
        src_fs = self._fs(src.hdfs)
        dst_fs = src_fs if dst.hdfs == src.hdfs else self._fs(dst.hdfs)
        files = self._input_files(src_fs, src, dst_fs, dst)

        with tempfile.TemporaryDirectory(prefix="ml-batch-predict-") as scratch:
            model = self._load_model(os.path.join(scratch, "model"))
            plans = self._plan(model, src_fs, files)
            staging = f"{dst.path}.tmp-{uuid.uuid4().hex[:12]}"
            try:
                try:
                    dst_fs.begin(staging)
                    rows, parts = self._score(model, src_fs, dst_fs, plans, staging, scratch)
                    self._publish(dst_fs, staging, dst.path)
                except OSError as e:  # local disk: permissions, space
                    raise MlProviderError(
                        f"Scoring into {dst_fs.describe(dst.path)} failed: {type(e).__name__}: {e}. "
                        "Nothing was written."
                    ) from e
            except BaseException:
                with contextlib.suppress(Exception):
                    dst_fs.delete(staging)
                raise
        return self._finished(rows, len(files), parts, dst_fs.describe(dst.path), started)

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

    def _input_files(self, src_fs: _Fs, src: _Path, dst_fs: _Fs, dst: _Path) -> list[_InputFile]:
        """The input's data files; fails on a missing or empty input and on an output that is a file."""
        files = src_fs.list_files(src.path)
        if files is None:
            raise InvalidSpecError(f"input_path={self.input_path!r} does not exist ({src_fs.describe(src.path)}).")
        if not files:
            raise InvalidSpecError(
                f"input_path={self.input_path!r} holds no data files ({src_fs.describe(src.path)}); "
                "files whose names start with '_' or '.' are skipped."
            )
        if dst_fs.exists(dst.path) == "FILE":
            raise InvalidSpecError(f"output_path={self.output_path!r} is a file; give a directory path.")
        return files

    def _plan(self, model: PyFuncModel, fs: _Fs, files: list[_InputFile]) -> list[_Plan]:
        """Per file: the columns to read and the model's input columns (``None``: all), checked before scoring."""
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
            try:
                file_schema = fs.schema(file)
            except (ValueError, OSError) as e:
                raise InvalidSpecError(
                    f"Input file {fs.describe(file.path)} is not a readable Parquet file: {_first_line(str(e))}. "
                    "Remove it from input_path or name it with a leading '_' so it is skipped."
                ) from None
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
                    f"Input file {fs.describe(file.path)} {' and '.join(what)}; it has {present}. "
                    "Fix the data upstream, or score with a model whose signature matches. Nothing was written."
                )
            passthrough = list(self.passthrough_columns) if self.passthrough_columns is not None else present
            if self.prediction_column in passthrough:
                raise InvalidSpecError(
                    f"Input file {fs.describe(file.path)} already has a column {self.prediction_column!r}; set "
                    "prediction_column to another name (e.g. 'score') or list passthrough_columns without it."
                )
            inputs = [c for c in model_inputs if c in present] if model_inputs is not None else None
            extra = [c for c in present if model_inputs is not None and c not in model_inputs and c not in passthrough]
            if extra:
                self.log.info("%s: columns %s are neither model inputs nor passed through; not read.", file.path, extra)
            plans.append(_Plan(file, passthrough, inputs))
        return plans

    def _score(
        self,
        model: PyFuncModel,
        src_fs: _Fs,
        dst_fs: _Fs,
        plans: list[_Plan],
        staging: str,
        scratch: str,
    ) -> tuple[int, int]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        total = 0
        parts = 0
        for file, passthrough, inputs in plans:
            partition_values = dict(file.partitions)
            with (
                src_fs.fetch(file, scratch) as local,
                pq.ParquetFile(local, buffer_size=_READ_BUFFER, pre_buffer=False) as pf,
            ):
                on_disk = set(pf.schema_arrow.names)
                wanted = list(dict.fromkeys([*passthrough, *(inputs or pf.schema_arrow.names)]))
                read = [c for c in wanted if c in on_disk]
                if pf.metadata.num_rows == 0:
                    continue
                name = f"part-{parts:05d}.parquet"
                part_path = dst_fs.staging_part(staging, name, scratch)
                writer: pq.ParquetWriter | None = None
                try:
                    file_row = 0
                    for batch in pf.iter_batches(batch_size=self.chunk_rows, columns=read, use_threads=True):
                        table = pa.Table.from_batches([batch])
                        for key, value in partition_values.items():
                            if key not in on_disk:
                                constant = pa.repeat(pa.scalar(value, pa.string()), table.num_rows)
                                table = table.append_column(key, constant)
                        span = (
                            f"rows {total}-{total + table.num_rows - 1} of the dataset (rows {file_row}-"
                            f"{file_row + table.num_rows - 1} of {src_fs.describe(file.path)})"
                        )
                        features = table.select(inputs) if inputs is not None else table
                        predictions = self._predict(model, features, span)
                        out = table.select(passthrough)
                        for col_name, col in predictions:
                            out = out.append_column(col_name, col)
                        if writer is None:
                            writer = pq.ParquetWriter(
                                part_path, out.schema, dictionary_pagesize_limit=_DICTIONARY_LIMIT
                            )
                        elif out.schema != writer.schema:
                            out = out.cast(writer.schema)
                        writer.write_table(out)
                        total += table.num_rows
                        file_row += table.num_rows
                finally:
                    if writer is not None:
                        writer.close()
            if writer is not None:
                dst_fs.finish_part(part_path, staging, name)
                parts += 1
        return total, parts

    def _predict(self, model: PyFuncModel, features: pa.Table, span: str) -> list[tuple[str, pa.Array]]:
        """Score one chunk; return the output column(s); fail on errors and NaN/inf/null values."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa
        from mlflow.exceptions import MlflowException

        frame = features.to_pandas()
        try:
            raw = model.predict(frame)
        except MlflowException as e:
            raise InvalidSpecError(
                f"The model {self.model_uri} rejected {span}: {_first_line(e.message)}. Fix the input's column "
                "types to match the model signature. Nothing was written."
            ) from e
        except Exception as e:
            raise MlProviderError(
                f"The model {self.model_uri} failed on {span}: {type(e).__name__}: {_first_line(str(e))}. "
                "Nothing was written."
            ) from e

        n = len(frame)
        columns: list[tuple[str, Any]]
        if isinstance(raw, pd.DataFrame):
            if raw.shape[1] == 1:
                columns = [(self.prediction_column, raw.iloc[:, 0].to_numpy())]
            else:
                columns = [(f"{self.prediction_column}_{c}", raw[c].to_numpy()) for c in raw.columns]
        else:
            values = raw.to_numpy() if isinstance(raw, pd.Series) else np.asarray(raw)
            if values.ndim == 2 and values.shape[1] == 1:
                values = values[:, 0]
            columns = [(self.prediction_column, values)]
        result = []
        for name, values in columns:
            if len(values) != n:
                raise MlProviderError(
                    f"The model {self.model_uri} returned {len(values)} predictions for the {n} {span}. "
                    "Nothing was written."
                )
            if isinstance(values, np.ndarray) and values.ndim == 2:
                flat = np.ascontiguousarray(values).ravel()
                array: pa.Array = pa.FixedSizeListArray.from_arrays(pa.array(flat), values.shape[1])
                bad = ~np.isfinite(values).all(axis=1) if values.dtype.kind in "fc" else pd.isna(values).any(axis=1)
            else:
                bad = ~np.isfinite(values) if values.dtype.kind in "fc" else np.asarray(pd.isna(values))
                try:
                    array = pa.array(values, from_pandas=True)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                    raise MlProviderError(
                        f"The model {self.model_uri} returned predictions that are not a table column for {span}: {e}"
                    ) from None
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise MlProviderError(
                    f"The model {self.model_uri} returned {int(bad.sum())} NaN, infinite or empty prediction(s) "
                    f"in {name!r} for {span}; the first is the chunk's row {first}. Nothing was written. Check "
                    "those rows for missing or out-of-range features, or fix the model."
                )
            result.append((name, array))
        return result

    # -- the spark engine -----------------------------------------------------------------------

    def _execute_spark(self) -> dict[str, Any]:
        """Like :meth:`execute`, with Spark scoring: same model download, checks and publication."""
        started = time.monotonic()
        paths = self._validate()
        assert paths is not None
        src, dst = paths
        fs = _LocalFs()
        files = self._input_files(fs, src, fs, dst)

        with tempfile.TemporaryDirectory(prefix="ml-batch-predict-") as scratch:
            model_dir = os.path.join(scratch, "model")
            model = self._load_model(model_dir)
            plans = self._plan(model, fs, files)  # every footer checked before Spark starts
            result_type, outputs = self._spark_outputs(model)
            passthrough = list(dict.fromkeys(c for plan in plans for c in plan.passthrough))
            inputs = None if plans[0].inputs is None else list(dict.fromkeys(c for p in plans for c in p.inputs or ()))
            staging = f"{dst.path}.tmp-{uuid.uuid4().hex[:12]}"
            spark, created = self._spark_session()
            try:
                try:
                    os.makedirs(os.path.dirname(staging), exist_ok=True)
                    rows, parts = self._score_spark(
                        spark, _model_root(model_dir), src, files, passthrough, inputs, result_type, outputs, staging
                    )
                    self._publish(fs, staging, dst.path)
                except OSError as e:  # local disk: permissions, space
                    raise MlProviderError(
                        f"Scoring into {fs.describe(dst.path)} failed: {type(e).__name__}: {e}. Nothing was written."
                    ) from e
            except BaseException:
                with contextlib.suppress(Exception):
                    fs.delete(staging)
                raise
            finally:
                if created:
                    spark.stop()
        return self._finished(
            rows, len(files), parts, f"{fs.describe(dst.path)} on Spark ({self.spark_master})", started
        )

    def _spark_outputs(self, model: PyFuncModel) -> tuple[str, list[tuple[str, str | None, str]]]:
        """The ``spark_udf`` result type for the model's output schema, and the output columns as
        ``(column, struct field or None, Spark type)``: ``double`` for one floating-point output (or
        no output schema), ``bigint`` for one integer output, a struct for several named columns."""
        from mlflow.types import DataType

        pred = self.prediction_column
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
            f"The model {self.model_uri} returns {schema}, which engine='spark' does not map to Spark columns "
            "(it handles numeric, boolean and string columns and 1-d numeric tensors); use engine='pandas'."
        )

    def _spark_session(self) -> tuple[Any, bool]:
        """A SparkSession and whether this call created it (a session already running is reused as is)."""
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        if SparkContext._active_spark_context is not None:
            self.log.warning(
                "A SparkSession already runs in this process: using it as it is (spark_master and spark_conf "
                "are ignored) and leaving it running."
            )
            return SparkSession.builder.getOrCreate(), False
        conf = {
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.shuffle.partitions": "4",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            # key=value directories are string columns, as with the pandas engine
            "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        } | {k: str(v) for k, v in (self.spark_conf or {}).items()}
        builder = SparkSession.builder.master(self.spark_master).appName(f"airflow-ml-batch-predict-{self.task_id}")
        for key, value in conf.items():
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
                f"Starting Spark with spark_master={self.spark_master!r} failed: {type(e).__name__}: "
                f"{_first_line(str(e))}. Check that Java is installed and the master is reachable."
            ) from e
        finally:
            if own_python:
                os.environ.pop("PYSPARK_PYTHON", None)
        return spark, True

    def _score_spark(
        self,
        spark: Any,
        model_path: str,
        src: _Path,
        files: list[_InputFile],
        passthrough: list[str],
        inputs: list[str] | None,
        result_type: str,
        outputs: list[tuple[str, str | None, str]],
        staging: str,
    ) -> tuple[int, int]:
        """Score into ``staging`` (our part names, no Spark ``_SUCCESS``), then check the predictions
        with one aggregate over the written Parquet; return (rows, part files)."""
        from functools import reduce

        import mlflow.pyfunc
        from pyspark.sql import functions as F

        reader = spark.read.option("mergeSchema", "true")
        if os.path.isdir(src.path):
            reader = reader.option("basePath", "file://" + src.path)
        try:
            df = reader.parquet(*["file://" + f.path for f in files])
            udf = mlflow.pyfunc.spark_udf(spark, model_uri=model_path, env_manager="local", result_type=result_type)
            features = F.struct(*[F.col(_quote(c)) for c in (inputs if inputs is not None else df.columns)])
            scored = df.withColumn(self.prediction_column, udf(features))
            if outputs[0][1] is not None:  # a struct: one column per field
                scored = scored.select(
                    *[F.col(_quote(c)) for c in passthrough],
                    *[F.col(_quote(self.prediction_column)).getField(f).alias(c) for c, f, _ in outputs],
                )
            else:
                scored = scored.select(*[F.col(_quote(c)) for c in [*passthrough, self.prediction_column]])
            scored.write.mode("errorifexists").parquet("file://" + staging)
        except MlProviderError:
            raise
        except Exception as e:
            raise self._spark_error(e) from e

        # Spark's _SUCCESS and .crc files go; ours is written after the rename. Parts get the pandas engine's names.
        parts = 0
        for name in sorted(os.listdir(staging)):
            if _hidden(name):
                os.remove(os.path.join(staging, name))
            elif name.startswith("part-") and name.endswith(".parquet"):
                os.rename(os.path.join(staging, name), os.path.join(staging, f"part-{parts:05d}.parquet"))
                parts += 1

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
            raise self._spark_error(e) from e
        if bad_rows:
            raise MlProviderError(
                f"The model {self.model_uri} returned {bad_rows} NaN, infinite or empty prediction(s) in "
                f"{[c for c, _, _ in outputs]} out of {rows} rows; e.g. the row with "
                f"{example.asDict() if example else {}}. "
                "Nothing was written. Check those rows for missing or out-of-range features, or fix the model."
            )
        return rows, parts

    def _spark_error(self, e: Exception) -> MlProviderError:
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
            cause = _first_line(rejected.group(1).rsplit("Error: ", 1)[-1]).rstrip(".") or cause
            return InvalidSpecError(
                f"The model {self.model_uri} rejected the input on Spark: {cause}. Fix the input's column types to "
                "match the model signature. Nothing was written."
            )
        return MlProviderError(
            f"Scoring with {self.model_uri} on Spark failed: {type(e).__name__}: {cause}. Nothing was written."
        )

    def _publish(self, fs: _Fs, staging: str, final: str) -> None:
        """Rename ``staging`` to ``final`` (an old ``final`` aside, deleted afterwards), then ``_SUCCESS``."""
        aside = None
        if fs.exists(final) is not None:
            aside = f"{final}.old-{uuid.uuid4().hex[:12]}"
            fs.rename(final, aside)
        try:
            fs.rename(staging, final)
        except BaseException:
            if aside is not None:
                with contextlib.suppress(Exception):
                    fs.rename(aside, final)
            raise
        if aside is not None:
            try:
                fs.delete(aside)
            except MlProviderError as e:
                self.log.warning("The new output is in place but the old one at %s was not deleted: %s", aside, e)
        fs.touch(posixpath.join(final, MARKER))


def _quote(name: str) -> str:
    """A column name for Spark expressions and DDL, dots and all."""
    return "`" + name.replace("`", "``") + "`"


def _model_root(model_dir: str) -> str:
    """The directory holding ``MLmodel`` under where :meth:`_load_model` downloaded the model."""
    for dirpath, dirnames, filenames in os.walk(model_dir):
        dirnames.sort()
        if "MLmodel" in filenames:
            return dirpath
    raise MlProviderError(f"The downloaded model in {model_dir} has no MLmodel file.")


def _first_line(text: str) -> str:
    stripped = (text or "").strip()
    return stripped.splitlines()[0][:500] if stripped else ""
