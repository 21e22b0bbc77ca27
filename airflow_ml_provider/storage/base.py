"""The storage contract: datasets and marker files on one file system (local disk or HDFS).

Every operator and sensor that touches data goes through a :class:`Storage`; nothing else
opens files on HDFS or renames datasets. Paths are absolute POSIX paths in the backend's own
namespace (``/data/x``); :func:`airflow_ml_provider.storage.paths.parse_path` turns what a
DAG author writes (``hdfs://…``, ``file://…``, ``/…``) into one, and
:meth:`airflow_ml_provider.hooks.webhdfs.HdfsHook.storage_for` picks the backend.

Reads (block; idempotent; "does not exist" is ``None``, never an error)

``stat(path) -> FileInfo | None``
    One path's status. One request.
``list_dir(path) -> dict[str, FileInfo] | None``
    The entries directly under a directory, by name. One request however many entries. A path
    that is a *file* raises :class:`StorageRefusedError` (nothing can ever appear under it).
``list_dataset(path) -> list[DataFile] | None``
    A dataset's data files, recursively, sorted, with their Hive partitions (``country=DE``
    directories between ``path`` and the file). Names starting with ``_`` or ``.`` (``_SUCCESS``,
    ``_temporary``, ``.crc``) are skipped, as Spark and Hive do. A path that is a file is a
    one-file dataset.
``read_schema(file) -> pyarrow.Schema``
    A Parquet file's schema from its footer alone. ``ValueError``/``OSError`` if it is not Parquet.
``iter_batches(file, columns, batch_size, scratch) -> Iterator[pyarrow.RecordBatch]``
    Stream a file's record batches (memory bounded by ``batch_size``), partition keys appended as
    string columns when asked for and not stored in the file. On HDFS the file is first copied into
    ``scratch`` (WebHDFS streams cannot seek) and removed afterwards.

Writes (block)

``staged(final) -> Staging`` (a context manager)
    A new temporary sibling ``<final>.tmp-<id>``; ``Staging.part(name)`` yields a local path to
    write one part file to, which is put into the staging directory when the block ends (in place
    on local disk, uploaded on HDFS). If the ``with`` block raises, the staging directory is
    deleted and nothing is visible.
``Staging.publish(marker="_SUCCESS")``
    Atomically replace ``final`` with the staging directory: a previous version is renamed aside,
    the staging directory renamed into place (the old one is put back if that fails), the old one
    deleted, and the marker written **last**, so a reader that waits for the marker never sees a
    half-written dataset.
``delete(path)``
    Remove a file or a directory tree; a missing path is not an error.

Errors (the same two for every backend, so callers tell "not yet" from "never"; see
:mod:`airflow_ml_provider.storage.errors` for which failure is which)

* :class:`~airflow_ml_provider.exceptions.StorageRefusedError` -- the system answered and refused
  (permission denied, bad credentials, a file where a directory is needed, disk full). Permanent;
  the message names the path, the file system and the fix.
* :class:`~airflow_ml_provider.exceptions.StorageUnavailableError` -- nothing answered in time (no
  active NameNode, a timeout, an I/O error). Transient; a sensor pokes again, a task may retry.

How an operator writes a dataset::

    storage = HdfsHook(conn_id).storage_for(parse_path(output_path))  # or LocalStorage()
    with storage.staged("/data/scores/2026-11-23") as staging:
        with staging.part("part-00000.parquet") as local_path:
            pyarrow.parquet.write_table(table, local_path)
        staging.publish()  # readers see the whole dataset, then _SUCCESS; or nothing at all

Why hand-written: pyarrow.dataset reads Hive-partitioned local data well, but our HDFS access is
WebHDFS with NameNode HA failover and an honest refused/unavailable split (HdfsCLI). fsspec's
WebHDFS file system has no HA failover and reports permission errors as generic ``OSError``s, and
pyarrow's ``HadoopFileSystem`` needs libhdfs and a JVM on every worker. Listing, partitions and
publishing are therefore written once here, on top of a few primitives per backend, so local and
HDFS datasets follow exactly the same rules; pyarrow does all the Parquet reading and writing.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import unquote

from airflow_ml_provider.exceptions import MlProviderError
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    import pyarrow as pa

FileKind = Literal["FILE", "DIRECTORY", "SYMLINK"]
MARKER = "_SUCCESS"
#: Read buffer per column chunk: pages stream through it instead of whole column chunks.
READ_BUFFER = 1 << 20


class FileInfo(NamedTuple):
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


class DataFile(NamedTuple):
    """One data file of a dataset.

    :param path: absolute path in the backend's namespace.
    :param size: length in bytes.
    :param partitions: Hive ``key=value`` directories between the dataset root and the file.
    """

    path: str
    size: int
    partitions: tuple[tuple[str, str], ...] = ()


def is_hidden(name: str) -> bool:
    """Files and directories a dataset reader skips: ``_SUCCESS``, ``_temporary``, ``.crc``, ``.tmp-…``."""
    return name.startswith(("_", "."))


def hive_partitions(root: str, path: str) -> tuple[tuple[str, str], ...]:
    """The ``key=value`` directories between ``root`` and the file ``path``, URL-decoded."""
    relative = posixpath.relpath(posixpath.dirname(path), root)
    found = []
    for segment in relative.split("/"):
        key, eq, value = segment.partition("=")
        if eq and key:
            found.append((unquote(key), unquote(value)))
    return tuple(found)


class Storage(abc.ABC):
    """The contract in this module's docstring: a few primitives per backend, the rest shared."""

    # -- primitives each backend implements -------------------------------------------------

    @abc.abstractmethod
    def describe(self) -> str:
        """Name the file system for messages (e.g. its NameNode URLs)."""

    @abc.abstractmethod
    def location(self, path: str) -> str:
        """Name one path for messages, file system included."""

    @abc.abstractmethod
    def stat(self, path: str) -> FileInfo | None:
        """Return the status of ``path``, or ``None`` if it does not exist."""

    @abc.abstractmethod
    def list_dir(self, path: str) -> dict[str, FileInfo] | None:
        """Return the entries directly under ``path`` by name, or ``None`` if it does not exist."""

    @abc.abstractmethod
    def _walk_files(self, path: str) -> Iterator[FileInfo]:
        """Every file under the directory ``path``, not descending into hidden directories."""

    @abc.abstractmethod
    def read_schema(self, file: DataFile) -> pa.Schema:
        """The Parquet schema of ``file`` from its footer; ``ValueError``/``OSError`` if not Parquet."""

    @abc.abstractmethod
    def _local_copy(self, file: DataFile, scratch: str) -> contextlib.AbstractContextManager[str]:
        """A local, seekable path holding ``file``'s bytes for the duration of the block."""

    @abc.abstractmethod
    def _write_part(self, staging: str, name: str, scratch: str) -> contextlib.AbstractContextManager[str]:
        """A local path to write part ``name`` to; it is in ``staging`` after a clean exit."""

    @abc.abstractmethod
    def makedirs(self, path: str) -> None:
        """Create ``path`` and its parents; an existing directory is fine."""

    @abc.abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` (which must not exist) in one step."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Remove a file or a directory tree; a missing path is not an error."""

    @abc.abstractmethod
    def write_bytes(self, path: str, data: bytes) -> None:
        """Create or overwrite the file ``path`` with ``data`` (parents created; durably, for markers)."""

    # -- shared on top of them ---------------------------------------------------------------

    def readable_schema(self, file: DataFile, *, arg: str = "it", after: str = "") -> pa.Schema:
        """:meth:`read_schema`, or :class:`InvalidSpecError` naming the file and the fix when it is not Parquet.

        :param file: the data file.
        :param arg: how the fix refers to the input (``"input_path"``): "Remove it from ...".
        :param after: a sentence appended to the message (e.g. ``"Nothing was written."``).
        """
        from airflow_ml_provider.exceptions import InvalidSpecError
        from airflow_ml_provider.utils.messages import first_line

        try:
            return self.read_schema(file)
        except (ValueError, OSError) as e:
            where = "" if arg == "it" else f" from {arg}"
            raise InvalidSpecError(
                f"Input file {self.location(file.path)} is not a readable Parquet file: "
                f"{first_line(str(e), 300).rstrip('.')}. Remove it{where} or name it with a leading '_' so it is "
                f"skipped.{' ' + after if after else ''}"
            ) from None

    def read_bytes(self, path: str, scratch: str) -> bytes | None:
        """A small file's bytes (read whole: for markers and state files); ``None`` if it is not a file.

        :param path: the file.
        :param scratch: a local directory the backend may copy the file through.
        """
        info = self.stat(path)
        if info is None or info.kind != "FILE":
            return None
        with self._local_copy(DataFile(path, info.size), scratch) as local, open(local, "rb") as f:
            return f.read()

    def list_dataset(self, path: str) -> list[DataFile] | None:
        """The dataset's data files (see the module docstring), or ``None`` if ``path`` does not exist."""
        info = self.stat(path)
        if info is None:
            return None
        if info.kind != "DIRECTORY":
            return [DataFile(path, info.size)]
        files = [
            DataFile(f.path, f.size, hive_partitions(path, f.path))
            for f in self._walk_files(path)
            if not is_hidden(posixpath.basename(f.path))
        ]
        return sorted(files, key=lambda f: f.path)

    def iter_batches(
        self, file: DataFile, *, columns: Sequence[str] | None, batch_size: int, scratch: str
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``file``'s record batches with ``columns`` (``None``: all stored columns).

        A requested column that is not in the file but is one of its partition keys is appended
        as a constant string column. Files with no rows yield nothing.
        """
        with requires_extra("mlflow"):
            import pyarrow as pa
            import pyarrow.parquet as pq

        partitions = dict(file.partitions)
        with (
            self._local_copy(file, scratch) as local,
            pq.ParquetFile(local, buffer_size=READ_BUFFER, pre_buffer=False) as pf,
        ):
            stored = pf.schema_arrow.names
            wanted = list(columns) if columns is not None else list(stored)
            read = [c for c in wanted if c in stored]
            if pf.metadata.num_rows == 0:
                return
            for batch in pf.iter_batches(batch_size=batch_size, columns=read, use_threads=True):
                arrays = []
                for name in wanted:
                    if name in stored:
                        arrays.append(batch.column(name))
                    elif name in partitions:
                        arrays.append(pa.repeat(pa.scalar(partitions[name], pa.string()), batch.num_rows))
                    else:
                        raise ValueError(f"{self.location(file.path)} has no column {name!r}")
                yield pa.RecordBatch.from_arrays(arrays, names=wanted)

    @contextlib.contextmanager
    def staged(self, final: str, *, log: Any = None) -> Iterator[Staging]:
        """A staging directory beside ``final`` (see the module docstring); deleted if the block raises."""
        staging = Staging(self, final, f"{final.rstrip('/')}.tmp-{uuid.uuid4().hex[:12]}", log)
        self.makedirs(posixpath.dirname(staging.path))
        self.makedirs(staging.path)
        try:
            with tempfile.TemporaryDirectory(prefix="ml-storage-") as scratch:
                staging.scratch = scratch
                yield staging
        except BaseException:
            if not staging.published:
                with contextlib.suppress(Exception):
                    self.delete(staging.path)
            raise


class Staging:
    """A dataset being written (see :meth:`Storage.staged`).

    :param storage: the backend it is written to.
    :param final: where the dataset is published.
    :param path: the staging directory.
    :param log: where to warn about an old version that could not be deleted.
    """

    def __init__(self, storage: Storage, final: str, path: str, log: Any = None) -> None:
        self.storage = storage
        self.final = final
        self.path = path
        self.scratch = ""
        self.parts: list[str] = []
        self.published = False
        self._log = log

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[str]:
        """A local path to write the part file ``name`` to; it is in the staging directory afterwards.

        :param name: a file name, or a relative path such as ``country=DE/part-0.parquet`` (its
            directories are created); no segment may be empty, hidden (``_x``, ``.x``) or ``..``.
        """
        segments = name.split("/")
        if any(not seg or seg == ".." or is_hidden(seg) for seg in segments):
            raise MlProviderError(
                f"Part file name {name!r} must be a file name or a relative path of non-hidden names."
            )
        directory = posixpath.join(self.path, *segments[:-1])
        if len(segments) > 1:
            self.storage.makedirs(directory)
        with self.storage._write_part(directory, segments[-1], self.scratch) as local:
            yield local
        self.parts.append(name)

    def publish(self, marker: str | None = MARKER) -> None:
        """Put the staging directory in place of ``final`` (an old version aside, then deleted), marker last."""
        storage, final = self.storage, self.final
        aside = None
        if storage.stat(final) is not None:
            aside = f"{final.rstrip('/')}.old-{uuid.uuid4().hex[:12]}"
            storage.rename(final, aside)
        try:
            storage.rename(self.path, final)
        except BaseException:
            if aside is not None:
                with contextlib.suppress(Exception):
                    storage.rename(aside, final)
            raise
        self.published = True
        if aside is not None:
            try:
                storage.delete(aside)
            except MlProviderError as e:
                if self._log is not None:
                    self._log.warning("The new version is in place but the old one at %s was not deleted: %s", aside, e)
        if marker:
            storage.write_bytes(posixpath.join(final, marker), b"")


def local_path_of(root: str, path: str) -> str:
    """``path`` (absolute, in a backend rooted at ``root``) as a path on this machine."""
    return path if root == "/" else os.path.join(root, path.lstrip("/"))
