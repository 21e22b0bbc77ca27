"""The one parser of user-given paths: ``hdfs://…``, ``file://…`` and plain absolute paths.

Every operator and sensor argument that names data goes through :func:`parse_path`, so the same
text means the same place everywhere:

* ``file:///data/x`` (or ``file:/data/x``) is the local disk of the worker.
* ``hdfs://nameservice/data/x`` (also ``webhdfs://``, ``swebhdfs://``) is on the HDFS connection;
  the authority is ignored because the connection says where the NameNodes are.
* a plain ``/data/x`` is on the connection's file system, or on the local disk when the caller
  has no connection (``default_local=True``).

This module is imported by DAG files: it is pure string handling.
"""

from __future__ import annotations

import posixpath
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from airflow_ml_provider.exceptions import InvalidSpecError

#: URL schemes that name a path on the HDFS connection.
HDFS_SCHEMES = frozenset({"hdfs", "webhdfs", "swebhdfs"})
_EXAMPLE = "'/data/2026-11-23', 'hdfs:///data/2026-11-23' or 'file:///data/2026-11-23'"


class StoragePath(NamedTuple):
    """A validated absolute path, and on which file system it lives.

    :param local: ``True`` for the worker's local disk, ``False`` for the storage connection's
        file system (HDFS, or the local directory an ``ml_hdfs`` connection points at).
    :param path: normalized absolute POSIX path (no ``..``, no trailing ``/``).
    """

    local: bool
    path: str

    def __str__(self) -> str:
        return f"file://{self.path}" if self.local else f"hdfs://{self.path}"

    def join(self, *names: str) -> StoragePath:
        """The same file system, ``names`` appended."""
        return StoragePath(self.local, posixpath.join(self.path, *names))


def parse_path(value: Any, *, arg: str = "path", default_local: bool = False, allow_root: bool = True) -> StoragePath:
    """Parse a user-given path or URL into a :class:`StoragePath`.

    :param value: the path as written in the DAG (after rendering).
    :param arg: the argument's name, for the error message (e.g. ``"input_path"``).
    :param default_local: where a plain ``/x`` lives: the local disk (``True``) or the connection.
    :param allow_root: whether ``/`` itself is acceptable (not for a dataset that gets replaced).
    :raises InvalidSpecError: naming ``arg``, for empty, relative, ``..``, unknown-scheme paths and
        ``file://`` URLs with a host part (``file://tmp/x`` would silently mean ``/x``).
    """
    if not isinstance(value, str):
        raise InvalidSpecError(f"{arg}={value!r} is not a path; give an absolute path, e.g. {_EXAMPLE}.")
    if not value.strip():
        raise InvalidSpecError(f"{arg}={value!r} is empty; give an absolute path, e.g. {_EXAMPLE}.")
    text = value.strip()
    local = default_local
    if ":" in text.split("/", 1)[0]:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise InvalidSpecError(
                    f"{arg}={value!r} puts {parts.netloc!r} in the host part of a file:// URL, so the path would "
                    f"be {parts.path or '/'!r}; write a local path with three slashes, e.g. "
                    f"'file:///{parts.netloc}{parts.path}'."
                )
            local = True
        elif scheme in HDFS_SCHEMES:
            local = False
        else:
            raise InvalidSpecError(f"{arg}={value!r} has the unsupported scheme {parts.scheme!r}; use e.g. {_EXAMPLE}.")
        text = unquote(parts.path)
    if not text.startswith("/"):
        raise InvalidSpecError(f"{arg}={value!r} is not absolute; give an absolute path, e.g. {_EXAMPLE}.")
    if ".." in text.split("/"):
        raise InvalidSpecError(f"{arg}={value!r} contains '..'; give the normalized absolute path, e.g. {_EXAMPLE}.")
    normalized = "/" + posixpath.normpath(text).lstrip("/")  # POSIX keeps a leading '//'; HDFS does not
    if normalized == "/" and not allow_root:
        raise InvalidSpecError(f"{arg}={value!r} is the root directory; give a dataset path, e.g. {_EXAMPLE}.")
    return StoragePath(local, normalized)


def overlaps(a: StoragePath, b: StoragePath) -> bool:
    """Whether one path is the other or lies under it, on the same file system."""
    if a.local != b.local:
        return False
    first, second = a.path.rstrip("/") + "/", b.path.rstrip("/") + "/"
    return first.startswith(second) or second.startswith(first)
