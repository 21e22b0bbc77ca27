"""The local-disk backend of the storage contract (see :mod:`airflow_ml_provider.storage.base`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import posixpath
import shutil
import stat as stat_mod
from collections.abc import Iterator
from typing import TYPE_CHECKING

from airflow_ml_provider.storage.base import DataFile, FileInfo, FileKind, Storage, is_hidden, local_path_of
from airflow_ml_provider.storage.errors import local_error, not_a_directory
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    import pyarrow as pa


class LocalStorage(Storage):
    """The local file system, optionally rooted at a directory.

    :param root: directory that absolute paths are resolved under (``/data/x`` with root
        ``/tmp/lake`` is ``/tmp/lake/data/x``); ``/`` means paths are taken as they are.
    """

    def __init__(self, root: str = "/") -> None:
        self.root = root

    def describe(self) -> str:
        """Name the backend for messages."""
        return "local file system" if self.root == "/" else f"local file system (root {self.root})"

    def location(self, path: str) -> str:
        """The path on this machine."""
        return self.real(path)

    def real(self, path: str) -> str:
        """``path`` as a path on this machine."""
        return local_path_of(self.root, path)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise local_error(e, what, self.describe()) from e

    @staticmethod
    def _info(path: str, st: os.stat_result) -> FileInfo:
        if stat_mod.S_ISDIR(st.st_mode):
            kind: FileKind = "DIRECTORY"
        elif stat_mod.S_ISLNK(st.st_mode):
            kind = "SYMLINK"
        else:
            kind = "FILE"
        mtime = dt.datetime.fromtimestamp(st.st_mtime, tz=dt.timezone.utc)
        return FileInfo(path=path, kind=kind, modification_time=mtime, size=st.st_size)

    def stat(self, path: str) -> FileInfo | None:
        """Return the status of ``path``, or ``None`` if it does not exist."""
        try:
            st = os.stat(self.real(path))
        except (FileNotFoundError, NotADirectoryError):
            return None  # not there; a parent that is a file too, as HDFS answers (404)
        except OSError as e:
            raise local_error(e, f"Reading {path!r}", self.describe()) from e
        return self._info(path, st)

    def list_dir(self, path: str) -> dict[str, FileInfo] | None:
        """Return the entries directly under ``path``, or ``None`` if it does not exist."""
        entries: dict[str, FileInfo] = {}
        try:
            with os.scandir(self.real(path)) as it:
                for entry in it:
                    try:
                        entries[entry.name] = self._info(posixpath.join(path, entry.name), entry.stat())
                    except FileNotFoundError:
                        continue  # removed while listing, or a dangling link: not there
        except FileNotFoundError:
            return None
        except NotADirectoryError as e:
            if not os.path.exists(self.real(path)):
                return None  # a parent is a file: not there, as HDFS answers (404)
            raise not_a_directory(path, self.describe()) from e
        except OSError as e:
            raise local_error(e, f"Listing {path!r}", self.describe()) from e
        return entries

    def _walk_files(self, path: str) -> Iterator[FileInfo]:
        real = self.real(path)

        def failed(e: OSError) -> None:
            raise local_error(e, f"Listing {path!r}", self.describe()) from e

        for dirpath, dirnames, filenames in os.walk(real, onerror=failed):
            dirnames[:] = [d for d in dirnames if not is_hidden(d)]
            for name in filenames:
                full = os.path.join(dirpath, name)
                virtual = posixpath.join(path, os.path.relpath(full, real).replace(os.sep, "/"))
                try:
                    yield self._info(virtual, os.stat(full))
                except FileNotFoundError:
                    continue

    def read_schema(self, file: DataFile) -> pa.Schema:
        """The Parquet schema from the file's footer."""
        with requires_extra("mlflow"):
            import pyarrow.parquet as pq

        schema: pa.Schema = pq.read_schema(self.real(file.path))
        return schema

    @contextlib.contextmanager
    def _local_copy(self, file: DataFile, scratch: str) -> Iterator[str]:
        yield self.real(file.path)

    @contextlib.contextmanager
    def _write_part(self, staging: str, name: str, scratch: str) -> Iterator[str]:
        yield self.real(posixpath.join(staging, name))  # written in place: nothing to move

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its parents."""
        with self._errors(f"Creating {path!r}"):
            os.makedirs(self.real(path), exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` in one step (same file system)."""
        with self._errors(f"Renaming {src!r} to {dst!r}"):
            os.rename(self.real(src), self.real(dst))

    def delete(self, path: str) -> None:
        """Remove a file or a directory tree; a missing path is fine."""
        real = self.real(path)
        with self._errors(f"Deleting {path!r}"):
            if os.path.isdir(real) and not os.path.islink(real):
                shutil.rmtree(real)
            elif os.path.lexists(real):
                os.remove(real)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` (parents created, as on HDFS) and fsync it."""
        real = self.real(path)
        with self._errors(f"Writing {path!r}"):
            os.makedirs(os.path.dirname(real), exist_ok=True)
            with open(real, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
