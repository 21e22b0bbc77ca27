"""Profile a Parquet dataset: a JSON summary and an HTML report next to the data, and a quality gate.

DAG files import this module; it imports neither numpy, pandas, pyarrow nor mlflow, and the
constructor does no I/O. The statistics live in :mod:`airflow_ml_provider.eda`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import posixpath
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_ml_provider.eda.gate import check_thresholds
from airflow_ml_provider.exceptions import DataQualityGateError, InvalidSpecError, MlProviderError
from airflow_ml_provider.hooks.webhdfs import HdfsHook
from airflow_ml_provider.storage.paths import StoragePath, overlaps, parse_path
from airflow_ml_provider.utils.templating import is_templated

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ml_provider.storage.base import DataFile, Storage

SUMMARY_FORMAT = "airflow-ml-provider/eda/1"
REPORT_DIR = "_eda"
HTML_NAME, JSON_NAME = "report.html", "summary.json"
__all__ = ["DataQualityGateError", "EdaReportOperator"]


def _whole(name: str, value: Any, minimum: int, example: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidSpecError(f"{name}={value!r} must be a whole number >= {minimum}, e.g. {name}={example}.")


def default_output(src: StoragePath, is_file: bool) -> StoragePath:
    """``<dataset>/_eda`` for a directory, ``<dir>/_eda_<name>`` for a one-file dataset (hidden from readers)."""
    if is_file:
        return StoragePath(
            src.local, posixpath.join(posixpath.dirname(src.path), f"{REPORT_DIR}_{posixpath.basename(src.path)}")
        )
    return src.join(REPORT_DIR)


class EdaReportOperator(BaseOperator):
    """Profile a Parquet dataset (local disk or HDFS) into a JSON summary and an HTML report, and gate on it.

    What happens when the task runs:

    1. The dataset's files are listed (recursively; ``_``/``.`` names are skipped; ``key=value``
       directories are Hive partitions) and every Parquet footer is read: the profiled columns,
       their kinds and a type conflict between files are known before any data is read.
    2. Every file is streamed ``chunk_rows`` rows at a time (HDFS files are copied to local scratch
       one at a time); each batch is summarized once per column and merged into the column's
       overall statistics and its partition's. Memory is bounded by the sketch sizes, not the rows.
    3. Per column, overall and per partition: rows, nulls, NaN, null rate, distinct count, min,
       max, mean, std, p05/p25/p50/p75/p95, a histogram (numbers, dates) or the most frequent
       values (strings, booleans, partition keys). Exact: counts, min, max, mean, std; distinct
       counts exact below ``distinct_cap`` distinct values, then estimated; quantiles and histograms
       exact up to ``sample_size`` values, then from a uniform sample of that size (the report's
       "How accurate" section gives the error bounds; estimates are marked ≈).
    4. ``summary.json`` and ``report.html`` (self-contained: inline CSS and SVG, no script) are
       published together into ``output_path`` (staged, then renamed into place).
    5. With ``mlflow_conn_id``, both files are logged as artifacts (``eda/``) of one run per task
       instance in ``mlflow_experiment`` (a retry logs into the same run), with the row count and
       each column's null rate, distinct count and mean as metrics.
    6. The thresholds are checked. A failed check raises :class:`DataQualityGateError` naming the
       column or partition, the value and the threshold, after the report is written (so it can be
       read); with ``fail_on_gate=False`` the failure is only logged as a warning.

    :param input_path: templated; a Parquet file or a directory of them. ``file:///x`` and,
        without ``hdfs_conn_id``, ``/x`` are local; ``hdfs://…`` and, with ``hdfs_conn_id``,
        ``/x`` are on HDFS.
    :param output_path: templated; the directory receiving ``report.html`` and ``summary.json``
        (replaced as a whole). Default: ``<input_path>/_eda`` (``<dir>/_eda_<file>`` for one
        file), which dataset readers skip. It may not contain the input, nor lie inside it unless
        under a ``_`` or ``.`` directory.
    :param columns: templated; the columns (stored ones or partition keys) to profile; ``None``: all.
    :param hdfs_conn_id: the ``ml_hdfs`` connection for HDFS paths; ``hdfs://`` URLs use
        ``ml_hdfs_default`` when this is ``None``.
    :param chunk_rows: rows per record batch read (>= 1); bounds the memory of one batch.
    :param sample_size: values per column kept for quantiles and histograms (>= 100).
    :param distinct_cap: distinct values per column counted exactly before estimating (>= 100).
    :param top_k: most frequent values shown per categorical column (>= 1).
    :param max_partitions: partitions that get per-column statistics, in path order (later ones
        get row counts only, which keeps memory bounded).
    :param min_rows: gate: the dataset must have at least this many rows; ``None``: no check.
    :param min_partition_rows: gate: every partition must have at least this many rows.
    :param max_null_rate: gate: ``{column: fraction}``, e.g. ``{"units_sold": 0.05}``: the column's
        null rate (nulls and NaN over rows) may not exceed the fraction; a missing column fails.
    :param fail_on_gate: raise when a check fails (default); ``False`` logs a warning and succeeds.
    :param mlflow_conn_id: an ``ml_mlflow`` connection to log the report to; ``None``: no logging.
    :param mlflow_experiment: templated; the MLflow experiment's name (created when missing).
    :param title: templated; the report's heading (default: the dataset path).
    :param kwargs: the other :class:`~airflow.sdk.BaseOperator` arguments.

    XCom: ``{"report_html", "summary_json", "rows", "files", "partitions", "columns",
    "gate": {"status": "passed" | "failed", "passed", "reasons"}, "mlflow_run_id"}`` (paths as
    ``file://`` or ``hdfs://`` URLs).
    """

    template_fields: Sequence[str] = ("input_path", "output_path", "columns", "mlflow_experiment", "title")
    ui_color = "#d5f5e3"

    def __init__(
        self,
        *,
        input_path: str,
        output_path: str | None = None,
        columns: Sequence[str] | None = None,
        hdfs_conn_id: str | None = None,
        chunk_rows: int = 100_000,
        sample_size: int = 16_384,
        distinct_cap: int = 16_384,
        top_k: int = 20,
        max_partitions: int = 1_000,
        min_rows: int | None = None,
        min_partition_rows: int | None = None,
        max_null_rate: Mapping[str, float] | None = None,
        fail_on_gate: bool = True,
        mlflow_conn_id: str | None = None,
        mlflow_experiment: str = "eda",
        title: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_path = input_path
        self.output_path = output_path
        self.columns = columns
        self.hdfs_conn_id = hdfs_conn_id
        self.chunk_rows = chunk_rows
        self.sample_size = sample_size
        self.distinct_cap = distinct_cap
        self.top_k = top_k
        self.max_partitions = max_partitions
        self.min_rows = min_rows
        self.min_partition_rows = min_partition_rows
        self.max_null_rate = dict(max_null_rate) if max_null_rate is not None else None
        self.fail_on_gate = fail_on_gate
        self.mlflow_conn_id = mlflow_conn_id
        self.mlflow_experiment = mlflow_experiment
        self.title = title
        _whole("chunk_rows", chunk_rows, 1, 100_000)
        _whole("sample_size", sample_size, 100, 16_384)
        _whole("distinct_cap", distinct_cap, 100, 16_384)
        _whole("top_k", top_k, 1, 20)
        _whole("max_partitions", max_partitions, 0, 1_000)
        check_thresholds(min_rows, min_partition_rows, max_null_rate)
        if not isinstance(fail_on_gate, bool):
            raise InvalidSpecError(f"fail_on_gate={fail_on_gate!r} must be True or False.")
        for name, conn in (("hdfs_conn_id", hdfs_conn_id), ("mlflow_conn_id", mlflow_conn_id)):
            if conn is not None and (not isinstance(conn, str) or not conn):
                raise InvalidSpecError(f"{name}={conn!r} must name a connection, e.g. 'ml_hdfs_default', or be None.")
        self._validate(parse_time=True)

    def _validate(self, parse_time: bool = False) -> tuple[StoragePath, StoragePath | None] | None:
        skip = is_templated if parse_time else (lambda _: False)
        if (
            not skip(self.columns)
            and self.columns is not None
            and (isinstance(self.columns, str) or not all(isinstance(c, str) and c for c in self.columns))
        ):
            raise InvalidSpecError(
                f"columns={self.columns!r} must be a list of column names, e.g. ['units_sold', 'price'], or None."
            )
        if not skip(self.mlflow_experiment) and (
            not isinstance(self.mlflow_experiment, str) or not self.mlflow_experiment.strip()
        ):
            raise InvalidSpecError(f"mlflow_experiment={self.mlflow_experiment!r} must be a name, e.g. 'eda'.")
        if skip(self.input_path) or (self.output_path is not None and skip(self.output_path)):
            return None
        local = self.hdfs_conn_id is None
        src = parse_path(self.input_path, arg="input_path", default_local=local, allow_root=False)
        if self.output_path is None:
            return src, None
        dst = parse_path(self.output_path, arg="output_path", default_local=local, allow_root=False)
        self._check_output(src, dst)
        return src, dst

    def _check_output(self, src: StoragePath, dst: StoragePath) -> None:
        if not overlaps(src, dst):
            return
        inside = dst.path != src.path and dst.path.startswith(src.path.rstrip("/") + "/")
        below = dst.path[len(src.path) :].strip("/").split("/") if inside else []
        if not any(part.startswith(("_", ".")) for part in below):
            raise InvalidSpecError(
                f"output_path={self.output_path!r} overlaps input_path={self.input_path!r}: publishing the report "
                "would replace or mix with the data. Leave output_path unset (the report goes to "
                f"'{src.path}/{REPORT_DIR}', which dataset readers skip) or write it elsewhere."
            )

    # -- execution ------------------------------------------------------------------------------

    def _storage(self, path: StoragePath) -> Storage:
        return HdfsHook(self.hdfs_conn_id or HdfsHook.default_conn_name).storage_for(path)

    def _files(self, source: Storage, src: StoragePath) -> list[DataFile]:
        files = source.list_dataset(src.path)
        if files is None:
            raise InvalidSpecError(f"input_path={self.input_path!r} does not exist ({source.location(src.path)}).")
        if not files:
            raise InvalidSpecError(
                f"input_path={self.input_path!r} holds no data files ({source.location(src.path)}); files whose "
                "names start with '_' or '.' are skipped."
            )
        return files

    def execute(self, context: Context) -> dict[str, Any]:
        """Profile the dataset, publish the report, log it to MLflow, then apply the gate."""
        from airflow_ml_provider.eda.gate import evaluate
        from airflow_ml_provider.eda.profile import PARTITION_CAPS, accuracy, profile_dataset
        from airflow_ml_provider.eda.report import render_html
        from airflow_ml_provider.eda.stats import Caps

        paths = self._validate()
        assert paths is not None
        src, dst = paths
        source = self._storage(src)
        files = self._files(source, src)
        if dst is None:
            dst = default_output(src, is_file=len(files) == 1 and files[0].path == src.path)
        caps = Caps(sample=self.sample_size, distinct=self.distinct_cap, top=max(1_000, self.top_k))
        partition_caps = Caps(
            sample=min(PARTITION_CAPS.sample, self.sample_size),
            distinct=min(PARTITION_CAPS.distinct, self.distinct_cap),
            top=max(PARTITION_CAPS.top, min(self.top_k, 5)),
        )
        with tempfile.TemporaryDirectory(prefix="ml-eda-") as scratch:
            profile = profile_dataset(
                source,
                files,
                columns=self.columns,
                chunk_rows=self.chunk_rows,
                scratch=scratch,
                caps=caps,
                partition_caps=partition_caps,
                max_partitions=self.max_partitions,
            )
            summary: dict[str, Any] = {
                "format": SUMMARY_FORMAT,
                "title": self.title or str(src),
                "dataset": str(src),
                "report": {"html": str(dst.join(HTML_NAME)), "json": str(dst.join(JSON_NAME))},
                "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                **profile.to_dict(self.top_k),
                "accuracy": accuracy(caps, partition_caps),
                "thresholds": {
                    "min_rows": self.min_rows,
                    "min_partition_rows": self.min_partition_rows,
                    "max_null_rate": self.max_null_rate,
                    "fail_on_gate": self.fail_on_gate,
                },
            }
            summary["gate"] = evaluate(
                summary,
                min_rows=self.min_rows,
                min_partition_rows=self.min_partition_rows,
                max_null_rate=self.max_null_rate,
            )
            local = self._write_local(scratch, summary, render_html(summary, max_null_rate=self.max_null_rate))
            self._publish(dst, local)
            run_id = self._log_mlflow(context, summary, local) if self.mlflow_conn_id else None
        return self._finish(summary, dst, run_id)

    @staticmethod
    def _write_local(scratch: str, summary: Mapping[str, Any], html: str) -> list[str]:
        folder = os.path.join(scratch, "report")
        os.makedirs(folder)
        written = []
        for name, text in ((HTML_NAME, html), (JSON_NAME, json.dumps(summary, indent=1, allow_nan=False) + "\n")):
            path = os.path.join(folder, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            written.append(path)
        return written

    def _publish(self, dst: StoragePath, local: list[str]) -> None:
        target = self._storage(dst)
        try:
            with target.staged(dst.path, log=self.log) as staging:
                for path in local:
                    with open(path, "rb") as f, staging.part(os.path.basename(path)) as part, open(part, "wb") as out:
                        out.write(f.read())
                staging.publish(marker=None)
        except OSError as e:
            raise MlProviderError(
                f"Writing the report into {target.location(dst.path)} failed: {type(e).__name__}: {e}"
            ) from e

    def _log_mlflow(self, context: Context, summary: Mapping[str, Any], local: list[str]) -> str:
        from airflow_ml_provider.eda.mlflow_log import log_report

        ti = context.get("ti")
        tags: dict[str, str] = {}
        if ti is not None:
            tags = {
                "airflow.dag_id": str(ti.dag_id),
                "airflow.task_id": str(ti.task_id),
                "airflow.run_id": str(ti.run_id),
                "airflow.map_index": str(getattr(ti, "map_index", -1)),
            }
        name = f"eda {posixpath.basename(str(summary['dataset']).rstrip('/'))}"
        assert self.mlflow_conn_id is not None
        run_id = log_report(self.mlflow_conn_id, self.mlflow_experiment, local, summary, tags, name)
        self.log.info("Logged the report to MLflow run %s of experiment %r.", run_id, self.mlflow_experiment)
        return run_id

    def _finish(self, summary: Mapping[str, Any], dst: StoragePath, run_id: str | None) -> dict[str, Any]:
        gate = summary["gate"]
        html_url = str(dst.join(HTML_NAME))
        self.log.info(
            "Profiled %d rows, %d columns, %d files, %d partitions of %s in %.1fs; report: %s",
            summary["rows"],
            len(summary["columns"]),
            summary["files"],
            len(summary["partition_rows"]),
            summary["dataset"],
            summary["seconds"],
            html_url,
        )
        if not gate["passed"]:
            message = (
                f"The data-quality gate failed for {summary['dataset']}: " + "; ".join(gate["reasons"]) + ". "
                f"The report is at {html_url}."
            )
            if self.fail_on_gate:
                raise DataQualityGateError(message, reasons=gate["reasons"])
            self.log.warning("%s fail_on_gate=False: continuing.", message)
        return {
            "report_html": html_url,
            "summary_json": str(dst.join(JSON_NAME)),
            "rows": summary["rows"],
            "files": summary["files"],
            "partitions": len(summary["partition_rows"]),
            "columns": len(summary["columns"]),
            "gate": {"status": gate["status"], "passed": gate["passed"], "reasons": list(gate["reasons"])},
            "mlflow_run_id": run_id,
        }
