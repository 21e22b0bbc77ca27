"""The submission of :class:`~airflow_ml_provider.operators.spark_train.SparkTrainOperator`: hook, files, result.

The submission itself is the apache-spark provider's ``SparkSubmitHook`` (its command masking, its
per-deploy-mode ``env_vars``, its driver tracking and ``on_kill``). This module adds what that hook
does not do, in a small subclass (:func:`submit_hook_class`) whose overrides are the only places
that know the hook's internals (``_resolve_connection``, ``_process_spark_submit_log``,
``_submit_sp``, ``_env_vars``, ``_connection``; checked against provider 6.3.4 by the unit tests):

* a ``master`` override, and ``local[*]`` when the Spark connection does not exist (the hook
  itself then falls back to ``yarn``, which fails on a machine without Hadoop);
* ``spark-submit`` from next to this Python when the connection names no ``spark-binary``
  (pip's ``pyspark`` installs it into the virtualenv's ``bin``, which is often not on ``PATH``);
* the driver's whole output kept (the hook keeps 20 lines, which Spark's shutdown messages fill
  after a Python traceback), so a failure can quote the lines that explain it (:func:`explain`);
* stray ``MLFLOW_*`` variables of the worker kept out of the driver's environment;
* ``on_kill`` also ends what ``spark-submit`` started (the Python driver), not only the JVM.

It also builds the application's files: the ``--py-files`` zip of ``airflow_ml_provider.jobs``
(:func:`write_py_files`) and the driver's environment (:func:`driver_env`); reading the result is
:mod:`airflow_ml_provider.operators.spark_train_result`'s. Importing this module imports neither the
provider's hook (which imports requests), pyspark nor mlflow.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from airflow_ml_provider.exceptions import InvalidSpecError, MlProviderError
from airflow_ml_provider.hooks.mlflow import SCOPED_VARIABLES, MlflowConfig, scoped_environment
from airflow_ml_provider.utils.messages import first_line
from airflow_ml_provider.utils.optional_deps import requires_extra

#: The master when the Spark connection does not exist: every core of this machine.
LOCAL_MASTER = "local[*]"
#: Lines of driver output kept for error messages.
OUTPUT_LINES = 2000
#: The package directory whose ``jobs`` subpackage is zipped for ``--py-files``.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: The Spark application (``spark-submit <this file> --spec … --result …``).
APPLICATION = str(PACKAGE_DIR / "jobs" / "spark_train.py")
#: The application's exit code for bad input (a spec or data problem): the task fails without retries.
BAD_INPUT_EXIT = 2

_LOG4J = re.compile(r"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) ")
_ERROR_LINE = re.compile(r"(^|\s)(ERROR|FATAL)\s|Exception in thread|\b\w*(Error|Exception):")
#: The application's own verdict line (``spark_train: error: …``, see jobs/spark_train.py).
_VERDICT = re.compile(r"^[\w.]+: error: ")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")
_SUBMISSION_UNSAFE = re.compile(r"[^A-Za-z0-9_.:+@-]")


def venv_spark_submit() -> str | None:
    """``spark-submit`` next to this Python (a virtualenv's ``bin``), if it is there."""
    candidate = Path(sys.executable).parent / "spark-submit"
    return str(candidate) if os.access(candidate, os.X_OK) else None


def is_local(master: str) -> bool:
    """Whether ``master`` runs the executors inside the driver (``local``, ``local[4]``...)."""
    return master == "local" or master.startswith("local[") or master.startswith("local-cluster[")


def submission_tag(ti: Any) -> str:
    """A tag unique to this try: ``<dag>/<run>/<task>/<map index>/<try>/<random>``.

    The application sets it on its MLflow run, so the run can be found when the driver runs on the
    cluster. The random part keeps two submissions apart that share a try number (``dag.test()``
    twice); characters MLflow's filter syntax would need quoted become ``_``.
    """
    parts = [ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1), getattr(ti, "try_number", 0)]
    text = "/".join(_SUBMISSION_UNSAFE.sub("_", str(p)) for p in parts)
    return f"{text}/{uuid.uuid4().hex[:8]}"


def write_py_files(directory: str) -> str:
    """Write ``<directory>/airflow_ml_provider_jobs.zip``: the ``jobs`` package and an empty package init.

    The Spark application imports only its siblings in ``airflow_ml_provider.jobs``, so the driver
    and the executors need exactly these files, not the provider (nor Airflow) installed.
    """
    path = os.path.join(directory, "airflow_ml_provider_jobs.zip")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("airflow_ml_provider/__init__.py", "")
        for module in sorted((PACKAGE_DIR / "jobs").glob("*.py")):
            zf.write(module, f"airflow_ml_provider/jobs/{module.name}")
    return path


def driver_env(config: MlflowConfig, *, cluster: bool, master: str, spark_conf: Mapping[str, Any]) -> dict[str, str]:
    """The environment the driver gets (through the hook's ``env_vars``).

    The MLflow connection's ``MLFLOW_*`` variables (tracking and registry URI, credentials, TLS,
    timeouts). In client mode also ``PYSPARK_DRIVER_PYTHON`` = this Python (the driver runs here
    and needs pyspark and mlflow) and, on a ``local`` master, ``PYSPARK_PYTHON`` too, unless the
    worker's environment or ``spark_conf`` (``spark.pyspark.driver.python``, ``spark.pyspark.python``)
    already says which Python to use.

    :param config: the ``ml_mlflow`` connection.
    :param cluster: the driver runs on the cluster (``deploy-mode`` ``cluster``).
    :param master: the Spark master.
    :param spark_conf: the Spark properties of the submission.
    """
    env = {"MLFLOW_TRACKING_URI": config.tracking_uri, "MLFLOW_REGISTRY_URI": config.registry_uri, **config.env()}
    if cluster:
        return env
    chosen = "spark.pyspark.driver.python" in spark_conf or "spark.pyspark.python" in spark_conf
    if not chosen and "PYSPARK_DRIVER_PYTHON" not in os.environ:
        env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    if is_local(master) and "spark.pyspark.python" not in spark_conf and "PYSPARK_PYTHON" not in os.environ:
        env["PYSPARK_PYTHON"] = sys.executable
    return env


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values of ``env`` that are credentials (to mask, and to cut out of messages)."""
    return [v for k, v in env.items() if v and ("PASSWORD" in k or "TOKEN" in k or "SECRET" in k)]


def redact(line: str, secrets: Iterable[str]) -> str:
    """``line`` without ``secrets`` and without credentials in URL queries (``token=…``)."""
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return first_line(line, limit=1000) if line.strip() else ""


def _traceback(lines: list[str]) -> list[str]:
    """The last Python traceback's innermost frame and exception lines (empty without a traceback)."""
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if not starts:
        return []
    block: list[str] = []
    for line in lines[starts[-1] + 1 :]:
        if _LOG4J.match(line) or _VERDICT.match(line):
            break
        block.append(line)
    frames = [i for i, line in enumerate(block) if line.startswith('File "')]
    if not frames:
        return [line for line in block if line]
    rest = block[frames[-1] + 1 :]
    exception = [i for i, line in enumerate(rest) if _EXCEPTION.match(line)]
    # the frame's source line and ^^^ markers come first; the exception (maybe several lines) after
    return [block[frames[-1]], *[line for line in rest[exception[0] if exception else 0 :] if line]]


def explain(lines: list[str], limit: int = 12) -> list[str]:
    """The lines of the driver's output that say why it failed.

    The last Python traceback (innermost frame and exception) and the application's own verdict
    (``spark_train: error: …``); without either, the last lines naming an error (``ERROR`` log
    lines, ``Exception in thread``, ``…Error:``); else the last lines.

    :param lines: the output, one stripped line each.
    :param limit: the most lines returned (the last ones).
    """
    found = _traceback(lines) + [line for line in lines if _VERDICT.match(line)]
    if not found:
        found = [line for line in lines if _ERROR_LINE.search(line)]
    if not found:
        found = [line for line in lines if line]
    return list(dict.fromkeys(found))[-limit:]


def failure(hook: TrainingHook, error: Exception, secrets: list[str]) -> MlProviderError:
    """The error for a failed submission: application, master, exit code and the lines that explain it.

    Exit code 2 (the application's bad input) gives an :class:`InvalidSpecError` (no retries).
    ``secrets`` are cut out of the quoted lines.
    """
    where = f"{os.path.basename(APPLICATION)} on {hook.master} ({hook.deploy_mode} mode)"
    if isinstance(error, OSError):
        return MlProviderError(
            f"Could not start {hook.binary!r} for {where}: {type(error).__name__}: {error}. Install the provider's "
            'spark extra (pip install "airflow-ml-provider[spark]"), or name the command in spark_binary or in the '
            "Spark connection's spark-binary extra."
        )
    code = hook.returncode
    lines = [redact(line, secrets) for line in explain(list(hook.output))]
    why = "\n".join(f"  {line}" for line in lines if line) or "  (spark-submit printed nothing)"
    if code is not None and code < 0:
        status = f"was killed by signal {-code}"
    else:
        status = f"exited with code {code}" if code is not None else f"failed ({type(error).__name__})"
    message = f"spark-submit of {where} {status}. The driver's output ends with:\n{why}"
    if code == BAD_INPUT_EXIT:
        return InvalidSpecError(message + "\nFix the input or the arguments; a retry would fail the same way.")
    return MlProviderError(message + "\nThe whole driver output is in the task log above.")


def end_processes(processes: list[Any], grace: float = 10.0) -> None:
    """SIGTERM ``processes`` (psutil), SIGKILL those still alive after ``grace`` seconds."""
    import psutil

    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)


class TrainingHook(Protocol):
    """What the operator uses of the hook :func:`submit_hook_class` builds."""

    connection_missing: bool
    output: deque[str]

    @property
    def master(self) -> str: ...
    @property
    def deploy_mode(self) -> str: ...
    @property
    def binary(self) -> str: ...
    @property
    def returncode(self) -> int | None: ...
    def set_env(self, env: dict[str, str]) -> None: ...
    def submit(self, application: str = "", **kwargs: Any) -> str | None: ...
    def on_kill(self) -> None: ...


@functools.cache
def submit_hook_class() -> Callable[..., TrainingHook]:
    """``SparkSubmitHook`` with the additions listed in the module docstring (built on first use)."""
    with requires_extra("spark"):
        from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    class TrainingSubmitHook(SparkSubmitHook):
        """:param master: the master to use instead of the connection's (``None``: the connection's, or
        ``local[*]`` when it does not exist). Every other argument is ``SparkSubmitHook``'s."""

        def __init__(self, *, master: str | None = None, **kwargs: Any) -> None:
            self._master_override = master
            self.connection_missing = False
            self.output: deque[str] = deque(maxlen=OUTPUT_LINES)
            super().__init__(**kwargs)

        def _resolve_connection(self) -> dict[str, Any]:
            try:
                conn = self.get_connection(self._conn_id)
            except AirflowNotFoundException:
                conn = None
            self.connection_missing = conn is None
            if not self.spark_binary and (conn is None or not conn.extra_dejson.get("spark-binary")):
                self.spark_binary = venv_spark_submit()
            data: dict[str, Any] = super()._resolve_connection()
            if self._master_override or conn is None:
                data["master"] = self._master_override or LOCAL_MASTER
                data["rest_endpoint"] = None
            return data

        @property
        def master(self) -> str:
            """The master ``spark-submit`` gets."""
            return str(self._connection["master"])

        @property
        def deploy_mode(self) -> str:
            """``client`` or ``cluster`` (the connection's ``deploy-mode``; ``client`` when unset)."""
            return str(self._connection["deploy_mode"] or "client")

        @property
        def binary(self) -> str:
            """The ``spark-submit`` command run."""
            return str(self._connection["spark_binary"])

        @property
        def returncode(self) -> int | None:
            """``spark-submit``'s exit code, once it has exited."""
            return None if self._submit_sp is None else self._submit_sp.returncode

        def set_env(self, env: dict[str, str]) -> None:
            """The driver's environment variables (the hook's ``env_vars``; set once the mode is known)."""
            self._env_vars = env

        def _process_spark_submit_log(self, itr: Iterator[Any]) -> None:
            def keep() -> Iterator[Any]:
                for line in itr:
                    self.output.append(str(line).strip())
                    yield line

            super()._process_spark_submit_log(keep())

        def submit(self, application: str = "", **kwargs: Any) -> str | None:
            # The hook starts spark-submit with os.environ plus env_vars; MLFLOW_* variables of the
            # worker that our connection does not set must not reach the driver.
            stray = tuple(n for n in SCOPED_VARIABLES if n in os.environ and n not in (self._env_vars or {}))
            if not stray or self.deploy_mode == "cluster":
                return super().submit(application, **kwargs)
            with scoped_environment({}, clear=stray):
                return super().submit(application, **kwargs)

        def on_kill(self) -> None:
            import psutil

            children: list[Any] = []
            proc = self._submit_sp
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    children = psutil.Process(proc.pid).children(recursive=True)
            super().on_kill()
            if children:  # the Python driver of client mode: it outlives a killed JVM while it computes
                end_processes(children)

    return TrainingSubmitHook
