"""Train a model on Spark with ``spark-submit`` and track it in MLflow: :class:`SparkTrainOperator`.

This module holds the operator: its arguments, the training spec built from them (checked with
:func:`airflow_ml_provider.jobs.spark_spec.parse_spec`, standard library only, when the DAG is parsed
and again after rendering), the submission and the result. The Spark application is
:mod:`airflow_ml_provider.jobs.spark_train`; the submission goes through the apache-spark provider's
``SparkSubmitHook`` (see :mod:`airflow_ml_provider.operators.spark_train_submit`). DAG files import
this module; it imports neither pyspark, mlflow, pandas, pyarrow nor the provider's hook, and the
constructor does no I/O.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.jobs.spark_spec import SUBMISSION_TAG, SpecError, TrainSpec, parse_spec
from airflow_ml_provider.operators import spark_train_checks as checks
from airflow_ml_provider.operators import spark_train_result as train_result
from airflow_ml_provider.operators import spark_train_submit as submit
from airflow_ml_provider.utils.templating import is_templated

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_SPARK_CONN_ID = "spark_default"
#: Spec fields -> the operator's argument names, for messages.
_ARGUMENT = {"input": "input_path", "label": "label_column", "params": "estimator_params",
             "mlflow.experiment": "experiment_name", "mlflow.run_name": "run_name", "mlflow.tags": "mlflow_tags",
             "spec": "the arguments"}  # fmt: skip
#: Stand-ins for templated values while checking the spec at parse time.
_PLACEHOLDER: dict[str, Any] = {"input": "/templated", "params": {}, "param_grid": {}}


class SparkTrainOperator(BaseOperator):
    """Train a Spark ML or per-group LightGBM model on a Parquet dataset with ``spark-submit``; log it to MLflow.

    What happens when the task runs:

    1. The arguments become a training spec (:class:`~airflow_ml_provider.jobs.spark_spec.TrainSpec`),
       checked field by field; a wrong one fails the task at once naming the argument and the fix.
       Static arguments are checked when the DAG file is parsed.
    2. ``spark-submit`` runs the application ``airflow_ml_provider/jobs/spark_train.py --spec <JSON>
       --result <file>`` with ``--py-files`` a zip of ``airflow_ml_provider.jobs`` (the application
       needs neither Airflow nor the provider on the cluster). The apache-spark provider's
       ``SparkSubmitHook`` builds and logs the command (Spark properties whose names contain
       ``secret`` or ``password`` masked), streams the driver's output into the task log and passes
       the environment per deploy mode. The master is ``master`` if given, else the Spark
       connection's, else ``local[*]`` when ``spark_conn_id`` does not exist (the hook alone would
       fall back to ``yarn``). ``spark-submit`` is the connection's ``spark-binary`` if it names
       one, else the ``spark-submit`` next to this Python (pip's pyspark puts it in the
       virtualenv's ``bin``, which need not be on ``PATH``), else ``spark-submit`` on ``PATH``.
    3. The driver gets the ``ml_mlflow`` connection as ``MLFLOW_*`` environment variables
       (tracking URI, registry URI, credentials, TLS, timeouts; registered with Airflow's secrets
       masker; other ``MLFLOW_*`` variables of the worker are not passed on). In client mode
       (the default) they reach the driver process's environment only, never a command line. In
       ``cluster`` deploy mode (YARN, Kubernetes) the hook turns them into
       ``spark.yarn.appMasterEnv.*`` / ``spark.kubernetes.driverEnv.*`` properties, i.e. onto
       spark-submit's command line; use a connection without credentials there and give the
       driver its credentials from the cluster (e.g. ``spark.kubernetes.driver.secretKeyRef.*``
       in ``spark_conf``). Spark standalone runs Python applications in client mode only.
    4. In client mode the driver (this machine) also gets ``PYSPARK_DRIVER_PYTHON`` = this Python,
       and on a ``local`` master ``PYSPARK_PYTHON`` too, unless the environment or ``spark_conf``
       names one. On a cluster the executors use ``spark.pyspark.python`` (set it in
       ``spark_conf``) or the cluster's default; they need pandas, pyarrow and, for
       ``lightgbm_per_group``, lightgbm.
    5. The application trains, evaluates on a holdout, logs the run and the model to MLflow with
       the tag ``airflow_ml_provider.submission=<dag>/<run>/<task>/<map index>/<try>/<random>``
       and writes its result file (client mode). In cluster mode the run is found by that tag.
    6. A failed ``spark-submit`` fails the task with the application, the master, the exit code
       and the driver's lines that explain it (a Python exception, ``ERROR`` lines); secrets
       are cut out. Bad input (exit code 2: a column missing, a label with nulls) fails without
       retries. Killing the task (``on_kill``) kills spark-submit and the driver it started (in
       cluster mode the hook kills the YARN application or the driver pod).

    Spec arguments (see :func:`~airflow_ml_provider.jobs.spark_spec.parse_spec`; ``None`` means
    the spec's default):

    :param input_path: templated; the Parquet dataset: an absolute local path (every executor must
        see it), ``file:///…`` or ``hdfs://namenode:8020/…`` (NameNode RPC; Spark 4's Hadoop client
        cannot read ``webhdfs://``), or a path on the ``hdfs_conn_id`` connection.
        ``key=value`` directories (``country=DE``) become string columns.
    :param label_column: the column to predict (the spec's ``label``).
    :param algorithm: ``"linear"``, ``"gbt"``, ``"random_forest"`` (Spark ML) or
        ``"lightgbm_per_group"`` (one LightGBM model per ``group_column`` value, trained in
        parallel on the executors, logged as one MLflow model).
    :param experiment_name: templated; the MLflow experiment (created when missing).
    :param task: ``"regression"`` (default) or ``"classification"``.
    :param features: numeric feature columns; ``None``: every numeric column but the label, the
        group column, ``categorical`` and ``exclude``.
    :param categorical: columns used as categories (one-hot for Spark ML, ``category`` for LightGBM).
    :param exclude: columns never used as features (ids, dates).
    :param estimator_params: templated; the spec's ``params``: fixed estimator parameters, e.g.
        ``{"maxIter": 50}`` (Spark ML names) or ``{"num_leaves": 15}`` (LightGBM names); checked by
        name and type.
    :param param_grid: templated; parameter -> list of values, cross-validated with ``folds`` folds.
    :param folds: cross-validation folds (>= 2, default 3).
    :param holdout_fraction: rows held out for the reported metrics (0 < x < 0.5, default 0.2).
    :param seed: the random seed of the split, folds and estimators (default 42).
    :param metric: ``rmse`` (default), ``mae`` or ``r2`` for regression; ``areaUnderROC``
        (default), ``accuracy`` or ``f1`` for classification.
    :param group_column: the group of ``lightgbm_per_group`` (required there, refused elsewhere).
    :param min_group_rows: groups with fewer rows are skipped (a warning in the task log, the run's
        tag ``airflow_ml_provider.skipped_groups`` and the result) while the others train (>= 5, default 50).
    :param on_schema_change: ``"fail"`` (default) or ``"allow"``: what to do when the input's
        columns or their types differ from the last finished run's with the same column arguments
        in the experiment (a column gone, new or retyped upstream); ``allow`` trains and records
        the change on the run (see :mod:`airflow_ml_provider.jobs.spark_drift`).
    :param hdfs_conn_id: the ``ml_hdfs`` connection ``input_path`` is on. Then ``input_path`` is
        written as for the provider's other operators (``/data/sales`` or ``hdfs:///data/sales``;
        a URL's host is ignored) and Spark reads it over NameNode RPC
        (``hdfs://<namenode>:<rpc_port>``, HA nameservices generated) as the connection's Login
        (``HADOOP_USER_NAME`` in the driver's environment): see
        :mod:`airflow_ml_provider.storage.spark_urls`. ``None``: ``input_path`` goes to Spark as it is.
    :param run_name: templated; the MLflow run's name (MLflow picks one when ``None``).
    :param mlflow_tags: templated; extra tags of the run (string -> string).

    Submission arguments:

    :param spark_conn_id: the apache-spark provider's ``spark`` connection (master in host/port,
        extras ``deploy-mode``, ``spark-binary``, ``queue``, ``namespace``...). When it does not
        exist the training runs on ``local[*]``.
    :param master: templated; the master to use instead of the connection's, e.g. ``"local[4]"``,
        ``"spark://host:7077"``, ``"yarn"``.
    :param spark_conf: templated; Spark properties, e.g. ``{"spark.sql.shuffle.partitions": "8"}``.
    :param driver_memory: ``--driver-memory``, e.g. ``"2g"``.
    :param executor_memory: ``--executor-memory``, e.g. ``"4g"``.
    :param executor_cores: ``--executor-cores``.
    :param num_executors: ``--num-executors`` (YARN, Kubernetes).
    :param spark_binary: the ``spark-submit`` to run (a path, or a name on ``PATH``) instead of the
        one chosen as in step 2.
    :param spark_log_level: Spark's log level once the session starts (``spark.log.level``; a
        ``spark_conf`` entry wins): ``"WARN"`` (default) keeps the task log to warnings, the
        application's own lines and errors; ``"INFO"`` or ``None`` (Spark's default) shows Spark's
        progress too (about a thousand lines per training).
    :param mlflow_conn_id: the ``ml_mlflow`` connection the run is logged to.
    :param kwargs: the other :class:`~airflow.sdk.BaseOperator` arguments.

    XCom (the return value): the application's result ``{"run_id", "experiment_id", "model_uri",
    "algorithm", "task", "metric", "metrics", "best_params", "rows", "groups", "skipped_groups"}``
    plus ``"master"``, ``"deploy_mode"``, ``"application_id"`` (when the driver's output names it),
    ``"submission_tag"`` and ``"seconds"``. ``model_uri`` feeds ``MlflowRegisterModelOperator``.
    """

    template_fields: Sequence[str] = (
        "input_path",
        "experiment_name",
        "run_name",
        "mlflow_tags",
        "estimator_params",
        "param_grid",
        "master",
        "spark_conf",
    )
    ui_color = "#f9e79f"

    def __init__(
        self,
        *,
        input_path: str,
        label_column: str,
        algorithm: str,
        experiment_name: str,
        task: str = "regression",
        features: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        estimator_params: dict[str, Any] | None = None,
        param_grid: dict[str, list[Any]] | None = None,
        folds: int | None = None,
        holdout_fraction: float | None = None,
        seed: int | None = None,
        metric: str | None = None,
        group_column: str | None = None,
        min_group_rows: int | None = None,
        on_schema_change: str | None = None,
        hdfs_conn_id: str | None = None,
        run_name: str | None = None,
        mlflow_tags: dict[str, str] | None = None,
        spark_conn_id: str = DEFAULT_SPARK_CONN_ID,
        master: str | None = None,
        spark_conf: dict[str, Any] | None = None,
        driver_memory: str | None = None,
        executor_memory: str | None = None,
        executor_cores: int | None = None,
        num_executors: int | None = None,
        spark_binary: str | None = None,
        spark_log_level: str | None = "WARN",
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_path = input_path
        self.label_column = label_column
        self.algorithm = algorithm
        self.experiment_name = experiment_name
        self.task = task
        self.features = None if features is None else list(features)
        self.categorical = None if categorical is None else list(categorical)
        self.exclude = None if exclude is None else list(exclude)
        self.estimator_params = estimator_params
        self.param_grid = param_grid
        self.folds = folds
        self.holdout_fraction = holdout_fraction
        self.seed = seed
        self.metric = metric
        self.group_column = group_column
        self.min_group_rows = min_group_rows
        self.on_schema_change = on_schema_change
        self.hdfs_conn_id = hdfs_conn_id
        self.run_name = run_name
        self.mlflow_tags = mlflow_tags
        self.spark_conn_id = spark_conn_id
        self.master = master
        self.spark_conf = spark_conf
        self.driver_memory = driver_memory
        self.executor_memory = executor_memory
        self.executor_cores = executor_cores
        self.num_executors = num_executors
        self.spark_binary = spark_binary
        self.spark_log_level = spark_log_level
        self.mlflow_conn_id = mlflow_conn_id
        self._hook: submit.TrainingHook | None = None
        self._input_url = ""
        checks.check_arguments(self, DEFAULT_SPARK_CONN_ID)
        # Fail at DAG parse time for what is already known; templated values are checked after rendering.
        checks.check_master_and_conf(self.master, self.spark_conf, parse_time=True)
        self._spec(submission=None, parse_time=True)

    # -- the spec -----------------------------------------------------------------------------------

    def spec_dict(self, submission: str | None, parse_time: bool = False) -> dict[str, Any]:
        """The spec as JSON types (templated values replaced by stand-ins when ``parse_time``).

        :param submission: the run tag that identifies this submission (``None`` at parse time).
        :param parse_time: replace values that are not rendered yet by valid stand-ins, so the
            rest of the spec can be checked when the DAG is parsed.
        """

        def value(field: str, current: Any) -> Any:
            if parse_time and is_templated(current):
                return _PLACEHOLDER.get(field, "templated")
            return current

        tags = self.mlflow_tags
        if parse_time and is_templated(tags) and not isinstance(tags, Mapping):  # an XComArg
            tags = None
        optional = {
            "features": self.features,
            "categorical": self.categorical,
            "exclude": self.exclude,
            "params": value("params", self.estimator_params),
            "param_grid": value("param_grid", self.param_grid),
            "folds": self.folds,
            "holdout_fraction": self.holdout_fraction,
            "seed": self.seed,
            "metric": self.metric,
            "group_column": self.group_column,
            "min_group_rows": self.min_group_rows,
            "on_schema_change": self.on_schema_change,
        }
        mlflow: dict[str, Any] = {"experiment": value("experiment", self.experiment_name)}
        if self.run_name is not None:
            mlflow["run_name"] = value("run_name", self.run_name)
        if tags is not None:
            mlflow["tags"] = tags
        if submission is not None:
            mlflow["submission_tag"] = submission
        spec = {
            "input": self._spec_input(parse_time),
            "label": self.label_column,
            "algorithm": self.algorithm,
            "task": self.task,
            **{k: v for k, v in optional.items() if v is not None},
            "mlflow": mlflow,
        }
        return spec

    def _spec(self, submission: str | None, parse_time: bool = False) -> TrainSpec:
        try:
            return parse_spec(self.spec_dict(submission, parse_time))
        except SpecError as e:
            head, dot, rest = e.field.partition(".")  # params.maxIter -> estimator_params.maxIter
            argument = _ARGUMENT.get(e.field) or (f"{_ARGUMENT[head]}{dot}{rest}" if head == "params" else e.field)
            reason = str(e).split(": ", 1)[1] if ": " in str(e) else str(e)
            raise InvalidSpecError(f"{type(self).__name__} {self.task_id!r}: {argument}: {reason}.") from None

    # -- execution ----------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        """Check the rendered spec, run spark-submit, return the training's result (see the class docstring)."""
        from airflow.sdk.log import mask_secret

        started = time.monotonic()
        checks.check_master_and_conf(self.master, self.spark_conf)
        tag = submit.submission_tag(context["ti"])
        hdfs_conf, hdfs_env = self._map_input()
        spec = self._spec(tag)
        config = MlflowHook(self.mlflow_conn_id).config
        with tempfile.TemporaryDirectory(prefix="ml-spark-train-") as scratch:
            result_path = os.path.join(scratch, "result.json")
            hook = submit.submit_hook_class()(
                master=self.master,
                conn_id=self.spark_conn_id,
                conf=hdfs_conf | self._conf(),
                py_files=submit.write_py_files(scratch),
                driver_memory=self.driver_memory,
                executor_memory=self.executor_memory,
                executor_cores=self.executor_cores,
                num_executors=self.num_executors,
                spark_binary=self.spark_binary,
                name=f"airflow-ml-train-{self.task_id}",
                application_args=["--spec", spec.to_json(), "--result", result_path],
            )
            cluster = hook.deploy_mode == "cluster"
            checks.check_deploy_mode(self.spark_conn_id, hook.master, cluster)
            env = hdfs_env | submit.driver_env(
                config, cluster=cluster, master=hook.master, spark_conf=self.spark_conf or {}
            )
            secrets = submit.secret_values(env)
            for secret in secrets:
                mask_secret(secret)
            hook.set_env(env)
            if hook.connection_missing and self.master is None:
                self.log.info("Spark connection %r does not exist: training on %s.", self.spark_conn_id, hook.master)
            self.log.info(
                "Training %s (%s) on %s in %s mode with %s; MLflow run tag %s=%s",
                spec.algorithm,
                spec.task,
                hook.master,
                hook.deploy_mode,
                hook.binary,
                SUBMISSION_TAG,
                tag,
            )
            self._hook = hook
            try:
                hook.submit(application=submit.APPLICATION)
            except Exception as e:  # noqa: BLE001  # the hook raises AirflowException; Popen an OSError
                raise submit.failure(hook, e, secrets) from None
            finally:
                self._hook = None
            output = list(hook.output)
            if cluster:
                result = train_result.result_from_mlflow(MlflowHook(self.mlflow_conn_id), spec, tag)
            else:
                result = train_result.read_result(result_path, output, hook.master, secrets)
        result.setdefault("application_id", train_result.application_id(output))
        result.update(
            master=hook.master,
            deploy_mode=hook.deploy_mode,
            submission_tag=tag,
            seconds=round(time.monotonic() - started, 3),
        )
        self.log.info(
            "Trained %s: %s=%s on the holdout; MLflow run %s, model %s (%.1fs)",
            spec.algorithm,
            spec.metric,
            (result.get("metrics") or {}).get(spec.metric),
            result.get("run_id"),
            result.get("model_uri"),
            result["seconds"],
        )
        return result

    def _spec_input(self, parse_time: bool) -> Any:
        """The spec's ``input``: ``input_path``, or with ``hdfs_conn_id`` its Spark URL (a stand-in at
        parse time, after checking the path's form)."""
        if not self.hdfs_conn_id:
            return _PLACEHOLDER["input"] if parse_time and is_templated(self.input_path) else self.input_path
        if not parse_time:
            return self._input_url
        if not is_templated(self.input_path):
            from airflow_ml_provider.storage.paths import parse_path

            parse_path(self.input_path, arg="input_path", allow_root=False)
        return _PLACEHOLDER["input"]

    def _map_input(self) -> tuple[dict[str, str], dict[str, str]]:
        """With ``hdfs_conn_id``: ``input_path`` as Spark reaches it (kept for the spec), and the Spark
        settings and driver environment that needs (HA client settings; ``HADOOP_USER_NAME``)."""
        if not self.hdfs_conn_id:
            return {}, {}
        from airflow_ml_provider.scoring.spark_engine import filesystem_for
        from airflow_ml_provider.storage.paths import parse_path

        path = parse_path(self.input_path, arg="input_path", allow_root=False)
        location = filesystem_for(path, self.hdfs_conn_id).location(path.path)
        self._input_url = location.url
        self.log.info(
            "input_path %s on connection %s: Spark reads %s", self.input_path, self.hdfs_conn_id, location.url
        )
        return location.conf, location.env

    def _conf(self) -> dict[str, str]:
        conf = {k: str(v) for k, v in (self.spark_conf or {}).items()}
        if self.spark_log_level:
            conf.setdefault("spark.log.level", self.spark_log_level)
        return conf

    def on_kill(self) -> None:
        """Kill the submission: spark-submit and its driver (client mode), the driver or YARN application
        (cluster mode), through the hook's ``on_kill``."""
        hook = self._hook
        if hook is not None:
            self.log.info("Killing the Spark training (%s on %s)", os.path.basename(submit.APPLICATION), hook.master)
            hook.on_kill()
