"""The one error mapping of the storage layer: "refused" (permanent) vs "unavailable" (transient).

Both backends decide here which failures can heal by waiting, so a sensor never reads a
permission error as "not yet" on one file system and as "refused" on the other:

* Local disk: permission denied, a file where a directory is needed (or the reverse), a read-only
  file system and a full disk or quota are **refused**: someone has to act. Anything else (I/O
  errors, a stale NFS handle, interrupted calls) is **unavailable**.
* HDFS: HTTP 5xx answers, ``StandbyException``/``RetriableException``/``SafeModeException``,
  connection errors and timeouts are **unavailable**; every other answer (401, 403,
  ``AccessControlException``, a malformed request, TLS verification failures, TLS spoken to a
  plain-HTTP port) is **refused**. A 2xx answer that is not WebHDFS JSON is a connection error
  (the port is wrong). A connection reset on a plain-HTTP URL stays unavailable (it is also what a
  restarting NameNode gives) but the message says the port may need TLS.

Messages always name the operation, the path and the file system, never a URL query (which may
hold a delegation token).
"""

from __future__ import annotations

import errno

from airflow_ml_provider.exceptions import StorageRefusedError, StorageUnavailableError
from airflow_ml_provider.utils.messages import first_line

#: Local errno values that waiting does not fix.
_REFUSED_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST}
)
#: Remote exceptions that mean "ask again later" (a NameNode in standby or starting up).
TRANSIENT_REMOTE = frozenset({"StandbyException", "RetriableException", "SafeModeException"})
#: What to check when a NameNode rejects who is asking (HTTP 401, or a credentials exception).
CREDENTIALS_HINT = (
    "The NameNode rejected the connection's identity; check its user, delegation token, "
    "Kerberos ticket (kinit, keytab) or proxy user (doas)."
)
#: OpenSSL's words for "the server's first bytes were not TLS" (a plain-HTTP port).
_NOT_TLS = ("wrong_version_number", "wrong version number", "packet length too long", "record layer failure")
#: How a TLS port answers a plain-HTTP request: it drops the connection or sends TLS bytes.
_NOT_HTTP = ("connection reset", "remotedisconnected", "remote end closed", "badstatusline", "connection aborted")
#: Refusals that mean "this user may not" (a NameNode's, a local one), as opposed to "this cannot be".
_DENIED = frozenset({"AccessControlException", "PermissionError"})
_LOCAL_HINTS = {
    errno.EACCES: "Grant the Airflow worker's user access to it and search (x) on every directory above it.",
    errno.EPERM: "Grant the Airflow worker's user access to it and search (x) on every directory above it.",
    errno.EROFS: "The file system is read-only; write somewhere else.",
    errno.ENOSPC: "The disk is full; free space or write somewhere else.",
    errno.EDQUOT: "The disk quota is exhausted; free space or raise the quota.",
}


def local_error(error: OSError, what: str, where: str) -> StorageRefusedError | StorageUnavailableError:
    """Map a local ``OSError`` raised while doing ``what`` (naming the path) on ``where``."""
    cause = error.strerror or type(error).__name__
    if error.errno in _REFUSED_ERRNOS or isinstance(error, (PermissionError, NotADirectoryError, IsADirectoryError)):
        hint = _LOCAL_HINTS.get(error.errno or 0, "")
        return StorageRefusedError(
            f"{what} on the {where} was refused: {cause}. {hint}".rstrip(), remote_exception=type(error).__name__
        )
    return StorageUnavailableError(f"{what} on the {where} failed: {cause}")


def is_permission_denied(error: StorageRefusedError) -> bool:
    """Whether a refusal is a permission denial (another request, e.g. per file, may be allowed)."""
    return error.remote_exception in _DENIED


def remote_is_transient(status: int | None, exception: str | None) -> bool:
    """Whether an HDFS answer (HTTP status and RemoteException class) can heal by waiting."""
    return (status is not None and status >= 500) or (exception in TRANSIENT_REMOTE)


def is_auth_failure(error: Exception) -> bool:
    """Whether an HdfsCLI error is its "Authentication failure" for an HTTP 401 (it keeps no status)."""
    return getattr(error, "exception", None) is None and str(error).startswith("Authentication failure")


def request_error(
    error: Exception, what: str, tried: str, *, plain_http: bool, nobody: str = "No NameNode"
) -> StorageRefusedError | StorageUnavailableError:
    """Map a ``requests`` error raised while doing ``what`` against ``tried`` (NameNode URLs).

    The message keeps only the first line of the error, with credentials in URL queries redacted.

    :param plain_http: whether some NameNode URL is ``http://`` (a reset may then mean TLS is needed).
    :param nobody: who did not answer, for the message (``"No NameNode or DataNode"``).
    """
    import requests

    text = first_line(str(error)).rstrip(".")
    lowered = f"{text} {error!r}".lower()
    if isinstance(error, requests.exceptions.SSLError):
        if any(word in lowered for word in _NOT_TLS):
            return StorageRefusedError(
                f"{what} on {tried}: the port answered in plain HTTP, not TLS ({text}). Use http:// for "
                "this NameNode (extra 'use_ssl' false) or give its HTTPS port; 'ca_bundle' cannot help.",
                remote_exception="SSLError",
            )
        return StorageRefusedError(
            f"TLS verification failed for {what} on {tried}: {text}. "
            "Set the connection's extra 'ca_bundle' to the cluster's CA file.",
            remote_exception="SSLError",
        )
    if isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        hint = ""
        if plain_http and any(word in lowered for word in _NOT_HTTP):
            hint = (
                " The connection was dropped without an HTTP answer: if the port speaks TLS (HTTPS), set "
                "the connection's extra 'use_ssl' to true or write the host as https://host:port."
            )
        return StorageUnavailableError(
            f"{nobody} answered {what} (tried {tried}): {type(error).__name__}: {text}.{hint}"
        )
    return StorageRefusedError(f"Request {what} to {tried} is malformed: {text}. Check the connection's host and port.")


def not_a_directory(path: str, where: str) -> StorageRefusedError:
    """``path`` on ``where`` is a file where a directory is needed: nothing can ever appear under it."""
    return StorageRefusedError(
        f"{path!r} on the {where} is a file, not a directory, so nothing can appear under it. "
        "Give the directory that receives the files.",
        remote_exception="NotADirectory",
    )
