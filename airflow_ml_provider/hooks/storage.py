"""The storage-backend contract used to look for marker files, and the local-disk backend.

A *storage backend* answers two questions about paths in one file system. Both calls block
(they do network or disk I/O) and are idempotent reads; neither changes anything.

``stat(path) -> FileInfo | None``
    The status of one path, or ``None`` when it does not exist. One request.

``list_dir(path) -> dict[str, FileInfo] | None``
    The entries directly under a directory, by name, or ``None`` when the directory does not
    exist. One request however many entries there are. A path that is a *file* raises
    :class:`~airflow_ml_provider.exceptions.HdfsAccessError` (nothing can ever appear under it).

Both raise only two kinds of error, so callers can tell "not yet" from "never":

* :class:`~airflow_ml_provider.exceptions.HdfsAccessError` -- the system answered and refused
  (permission denied, bad credentials, a malformed request). Permanent.
* :class:`~airflow_ml_provider.exceptions.HdfsUnavailableError` -- nothing answered in time.
  Transient.

"Does not exist" is never an error: it is ``None``. ``describe()`` names the backend for
messages (e.g. the NameNode URLs). Backends: :class:`LocalStorage` here,
:class:`~airflow_ml_provider.hooks.webhdfs.WebHdfsStorage` for HDFS.
"""

from __future__ import annotations

import datetime as dt
import os
import stat as stat_mod
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal, Protocol

from airflow_ml_provider.exceptions import HdfsAccessError, HdfsUnavailableError

FileKind = Literal["FILE", "DIRECTORY", "SYMLINK"]


@dataclass(frozen=True)
class FileInfo:
    """What a backend knows about one path.

    :param path: absolute path in the backend's namespace.
    :param kind: ``FILE``, ``DIRECTORY`` or ``SYMLINK``.
    :param modification_time: last modification, timezone-aware UTC.
    :param size: length in bytes (0 for directories).
    """

    path: str
    kind: FileKind
    modification_time: dt.datetime
    size: int


class StorageBackend(Protocol):
    """The contract described in this module's docstring."""

    def stat(self, path: str) -> FileInfo | None:
        """Return the status of ``path``, or ``None`` if it does not exist."""
        ...

    def list_dir(self, path: str) -> dict[str, FileInfo] | None:
        """Return the entries directly under ``path`` by name, or ``None`` if it does not exist."""
        ...

    def describe(self) -> str:
        """Name the backend (e.g. its URLs) for log and error messages."""
        ...


class LocalStorage:
    """Backend over the local file system, optionally rooted at a directory.

    :param root: directory that absolute paths are resolved under (``/data/x`` with root
        ``/tmp/lake`` is ``/tmp/lake/data/x``); ``/`` means paths are taken as they are.
    """

    def __init__(self, root: str = "/") -> None:
        self.root = root

    def describe(self) -> str:
        """Name the backend for messages."""
        return f"local file system (root {self.root})"

    def _real(self, path: str) -> str:
        relative = PurePosixPath(path).relative_to("/") if path.startswith("/") else PurePosixPath(path)
        return os.path.join(self.root, str(relative))

    def _info(self, path: str, st: os.stat_result) -> FileInfo:
        if stat_mod.S_ISDIR(st.st_mode):
            kind: FileKind = "DIRECTORY"
        elif stat_mod.S_ISLNK(st.st_mode):
            kind = "SYMLINK"
        else:
            kind = "FILE"
        mtime = dt.datetime.fromtimestamp(st.st_mtime, tz=dt.timezone.utc)
        return FileInfo(path=path, kind=kind, modification_time=mtime, size=st.st_size)

    def _denied(self, verb: str, path: str, e: PermissionError) -> HdfsAccessError:
        return HdfsAccessError(
            f"Permission denied {verb} {path!r} on the {self.describe()}: {e.strerror}. "
            "Grant the Airflow worker's user read access to it.",
            remote_exception="PermissionError",
        )

    def stat(self, path: str) -> FileInfo | None:
        """Return the status of ``path``, or ``None`` if it does not exist."""
        try:
            return self._info(path, os.stat(self._real(path)))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except PermissionError as e:
            raise self._denied("reading", path, e) from e
        except OSError as e:
            raise HdfsUnavailableError(f"Could not stat {path!r} on the {self.describe()}: {e}") from e

    def list_dir(self, path: str) -> dict[str, FileInfo] | None:
        """Return the entries directly under ``path``, or ``None`` if it does not exist."""
        real = self._real(path)
        try:
            entries: dict[str, FileInfo] = {}
            with os.scandir(real) as it:
                for entry in it:
                    child = str(PurePosixPath(path) / entry.name)
                    try:
                        entries[entry.name] = self._info(child, entry.stat(follow_symlinks=True))
                    except FileNotFoundError:
                        continue  # removed while listing, or a dangling link: not there
            return entries
        except FileNotFoundError:
            return None
        except NotADirectoryError as e:
            raise HdfsAccessError(
                f"{path!r} on the {self.describe()} is a file, not a directory, so no marker can "
                "appear under it. Point the sensor at the directory that receives the marker.",
                remote_exception="NotADirectoryError",
            ) from e
        except PermissionError as e:
            raise self._denied("listing", path, e) from e
        except OSError as e:
            raise HdfsUnavailableError(f"Could not list {path!r} on the {self.describe()}: {e}") from e
