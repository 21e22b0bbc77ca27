"""Errors raised by airflow-ml-provider.

Everything we raise derives from :class:`MlProviderError`, so a DAG author can catch the whole
family with one ``except``. The leaves say what to do about them:

* :class:`InvalidSpecError` -- an argument is wrong (a malformed path, an unknown unit). Raised as
  early as possible, at DAG parse time when the value is static. Never safe to retry.
* :class:`ConnectionConfigError` -- an Airflow Connection is missing or malformed. Fix the
  connection; retrying does not help.
* :class:`HdfsAccessError` -- the file system answered and refused (permission denied, bad
  credentials, a marker that is a directory). Fails the task at once, without retries, and is
  *not* turned into a skip by ``soft_fail``: a misconfiguration must never look like "no data".
* :class:`HdfsUnavailableError` -- no NameNode answered (connection refused, timeout, every
  NameNode in standby). Transient: sensors log it and poke again; safe to retry.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class MlProviderError(AirflowException):
    """Root of every error raised by airflow-ml-provider."""


class InvalidSpecError(MlProviderError, ValueError):
    """An operator or sensor argument is invalid; the message names it and shows a valid example."""


class ConnectionConfigError(MlProviderError, AirflowFailException):
    """An Airflow Connection is malformed; the message names the connection and the field to fix."""


class HdfsAccessError(MlProviderError, AirflowFailException):
    """The file system refused the request; permanent, so the task fails without retrying.

    :param message: what went wrong, naming the path and the NameNode.
    :param remote_exception: the server's exception class (e.g. ``AccessControlException``), if any.
    """

    def __init__(self, message: str, *, remote_exception: str | None = None) -> None:
        super().__init__(message)
        self.remote_exception = remote_exception


class HdfsUnavailableError(MlProviderError):
    """No NameNode could be reached or none was active; transient and safe to retry."""
