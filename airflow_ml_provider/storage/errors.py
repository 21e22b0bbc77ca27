"""The one error mapping of the storage layer: "refused" (permanent) vs "unavailable" (transient).

Both backends decide here which failures can heal by waiting, so a sensor never reads a
permission error as "not yet" on one file system and as "refused" on the other:

* Local disk: permission denied, a file where a directory is needed (or the reverse), a read-only
  file system and a full disk or quota are **refused**: someone has to act. Anything else (I/O
  errors, a stale NFS handle, interrupted calls) is **unavailable**.
* HDFS: HTTP 5xx answers, ``StandbyException``/``RetriableException``/``SafeModeException``,
  connection errors and timeouts are **unavailable**; every other answer (401, 403,
  ``AccessControlException``, a malformed request, TLS verification failures) is **refused**.

Messages always name the operation, the path and the file system, never a URL query (which may
hold a delegation token).
"""

from __future__ import annotations

import errno

from airflow_ml_provider.exceptions import StorageRefusedError, StorageUnavailableError

#: Local errno values that waiting does not fix.
_REFUSED_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST}
)
#: Remote exceptions that mean "ask again later" (a NameNode in standby or starting up).
TRANSIENT_REMOTE = frozenset({"StandbyException", "RetriableException", "SafeModeException"})
_LOCAL_HINTS = {
    errno.EACCES: "Grant the Airflow worker's user access to it.",
    errno.EPERM: "Grant the Airflow worker's user access to it.",
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


def remote_is_transient(status: int | None, exception: str | None) -> bool:
    """Whether an HDFS answer (HTTP status and RemoteException class) can heal by waiting."""
    return (status is not None and status >= 500) or (exception in TRANSIENT_REMOTE)
