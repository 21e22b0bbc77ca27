"""Every error raised by airflow-ml-provider, in one place.

Everything we raise derives from :class:`MlProviderError`, so a DAG author can catch the whole
family with one ``except``. Each class says whether a retry can help (:attr:`retryable`), and the
permanent ones derive from :class:`PermanentError`, which is Airflow's ``AirflowFailException``:
the task fails at once, without using its retries, wherever the error is raised.

Permanent (fix something first; retrying cannot help):

* :class:`InvalidSpecError` -- an argument is wrong (a malformed path, an unknown unit, a column
  a model needs is missing). Raised as early as possible: at DAG parse time when the value is static.
* :class:`ConnectionConfigError` -- an Airflow Connection is missing or malformed; the message
  names the connection, the field and the accepted values.
* :class:`StorageRefusedError` -- a file system (local disk or HDFS) answered and refused:
  permission denied, bad credentials, a path that is a file where a directory is needed. Sensors
  never turn it into a skip: a misconfiguration must never look like "no data".
* :class:`JobResultError` -- a container job's result file is not valid JSON.
* :class:`MetronomeValidationError` -- Metronome refused a job definition (HTTP 422).
* :class:`ForeignJobError` -- the job under the task's key belongs to another Airflow installation
  (another namespace); it is left alone.
* :class:`DropGuardError` -- an ERP write would replace a key's rows with too few new ones (the
  drop guard); ``keys`` names the keys, for the failure notifiers.
* :class:`DataQualityGateError` -- the EDA report's thresholds failed (e.g. a label's null rate);
  ``reasons`` lists each failed check, and the report is written before it is raised.
* :class:`MissingExtraError` -- a Python module that one of the provider's extras installs is
  missing on this machine; the message names the module and the ``pip install`` command.

Transient (a retry can help):

* :class:`StorageUnavailableError` -- nothing answered in time (connection refused, timeout,
  every NameNode in standby, a disk I/O error). Sensors log it and poke again.
* :class:`BackendError` -- a container scheduler refused a request or could not be reached
  after its own retries.
* :class:`ContainerJobFailed` -- a container job ended unsuccessfully (the next try re-runs it).
* :class:`ModelRegistryError` -- the MLflow registry answered with an error.
* :class:`ModelDeployError` -- a new model version could not be put behind its endpoint (the old
  one still serves).
* :class:`JobExistsError` -- a job with the same key already exists (the operator re-attaches).
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class MlProviderError(AirflowException):
    """Root of every error raised by airflow-ml-provider."""

    #: Whether retrying the task can help; permanent errors say ``False``.
    retryable: bool = True


class PermanentError(MlProviderError, AirflowFailException):
    """An error no retry can fix: the task fails at once, whatever its ``retries``."""

    retryable = False


class InvalidSpecError(PermanentError, ValueError):
    """An operator or sensor argument is invalid; the message names it and shows a valid example."""


class ConnectionConfigError(PermanentError):
    """An Airflow Connection is missing or malformed; the message names the connection and the field."""


class StorageRefusedError(PermanentError):
    """The file system answered and refused the request; the message names the path and the cause.

    :param message: what went wrong, naming the path and the file system (NameNode or local disk).
    :param remote_exception: the server's exception class (e.g. ``AccessControlException``), or
        the local error's (``PermissionError``), if any.
    """

    def __init__(self, message: str, *, remote_exception: str | None = None) -> None:
        super().__init__(message)
        self.remote_exception = remote_exception


class StorageUnavailableError(MlProviderError):
    """The file system did not answer (no active NameNode, a timeout, an I/O error); transient."""


class BackendError(MlProviderError):
    """The container scheduler refused a request or could not be reached after retries."""


class MetronomeValidationError(BackendError, InvalidSpecError):
    """Metronome refused the job definition (HTTP 422); the message lists its details."""

    retryable = False


class JobExistsError(MlProviderError):
    """A job with this key already exists on the scheduler; the operator re-attaches to it instead."""


class ForeignJobError(PermanentError):
    """The job under this task's key carries another installation's namespace; it is never removed.

    The message names the job, its namespace and ours, and how to give the installations distinct ones.
    """


class JobResultError(PermanentError):
    """The job's result file exists but is not valid JSON; the message names the path."""


class ContainerJobFailed(MlProviderError):
    """The job ended unsuccessfully; the message has the exit code, OOM verdict and last log lines.

    :param exit_code: the job's exit code, if the scheduler reported one.
    :param oom_killed: the job exceeded its memory limit.
    """

    def __init__(self, message: str, *, exit_code: int | None = None, oom_killed: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.oom_killed = oom_killed


class ModelRegistryError(MlProviderError):
    """The registry refused the request or the model could not be found; the message says which."""


class ModelDeployError(MlProviderError):
    """The new model version could not be put behind the endpoint; the old one still serves."""


class MissingExtraError(PermanentError):
    """A module that one of the provider's extras installs is missing here (retrying cannot install it).

    Raised by :func:`airflow_ml_provider.utils.optional_deps.requires_extra`; the message names the
    module and the extra, e.g. ``pip install "airflow-ml-provider[hdfs]"``.

    :param message: what needs the module, which module is missing and the install command.
    :param module: the module that could not be imported (e.g. ``hdfs``).
    :param extra: the provider's extra that installs it (e.g. ``hdfs``).
    """

    def __init__(self, message: str, *, module: str = "", extra: str = "") -> None:
        super().__init__(message)
        self.module = module
        self.extra = extra


class DropGuardError(PermanentError):
    """A key's new row count fell below ``(1 - max_drop)`` of the rows it replaces; nothing was written.

    :param message: the table, each failing key with its old and new counts, and the fix.
    :param keys: the failing keys as text (read by the failure notifiers as ``exception.keys``).
    """

    def __init__(self, message: str, *, keys: list[str]) -> None:
        super().__init__(message)
        self.keys = list(keys)


class DataQualityGateError(PermanentError):
    """The EDA report's data-quality gate failed (the report was written first).

    :param message: the dataset, every failed check (column or partition, value, threshold) and the
        report's path.
    :param reasons: the failed checks, one sentence each.
    """

    def __init__(self, message: str, *, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = list(reasons)


class WebhookError(MlProviderError):
    """A webhook post got no 2xx answer after its retries; the message has no URL path or token."""
