"""The HDFS backend of the storage contract, over WebHDFS with HdfsCLI.

HdfsCLI fails over between HA NameNodes on connection errors, timeouts and ``StandbyException``;
we use it for every request. Status and listing go through its raw ``GETFILESTATUS`` /
``LISTSTATUS`` handlers with ``strict=False`` so that we, not HdfsCLI, decide what an answer
means: its public ``status(strict=False)`` returns ``None`` for a 403 as well as a 404, which
would read "permission denied" as "not yet". Which failures are permanent is decided in
:mod:`airflow_ml_provider.storage.errors`. Importing this module imports neither ``hdfs`` nor
``requests``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import posixpath
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import ConnectionConfigError, StorageRefusedError, StorageUnavailableError
from airflow_ml_provider.storage.base import DataFile, FileInfo, Storage, is_hidden
from airflow_ml_provider.storage.errors import (
    CREDENTIALS_HINT,
    TRANSIENT_REMOTE,
    is_auth_failure,
    not_a_directory,
    remote_is_transient,
    request_error,
)
from airflow_ml_provider.utils.messages import first_line
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    import pyarrow as pa
    import requests
    from hdfs import Client

#: Server exceptions that mean "the path is not there (yet)". Nothing else does.
_NOT_FOUND = frozenset({"FileNotFoundException"})
#: Server exceptions about who is asking rather than what is asked for.
_CREDENTIAL_ERRORS = frozenset(
    {"SecurityException", "InvalidToken", "AuthenticationException", "AuthorizationException"}
)
#: What to do when something other than a NameNode's WebHDFS answered (an RPC or DataNode port, a web page).
WRONG_PORT_HINT = (
    "Set the connection's host and port to the NameNode's WebHDFS HTTP address (dfs.namenode.http-address, "
    "9870 on Hadoop 3, 50070 on Hadoop 2), not its RPC port (8020) or a DataNode's."
)
#: Bytes read from a file's end to find the Parquet footer in one request.
_FOOTER_PROBE = 65536


def _origin(url: str) -> str:
    """Scheme, host and port of a URL: never its query, which may hold a delegation token."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class WebHdfsStorage(Storage):
    """Storage on HDFS through WebHDFS.

    :param client: an HdfsCLI client whose URL lists the NameNodes.
    :param namenodes: the same NameNode URLs, for messages.
    """

    def __init__(self, client: Client, namenodes: Sequence[str]) -> None:
        self.client = client
        self.namenodes = tuple(namenodes)
        # HdfsCLI's errors for answers without a RemoteException (a 401, an HTML error page) carry
        # no status code: remember the last failed answer per thread to tell 5xx from the rest.
        self._failed = threading.local()
        session = getattr(client, "_session", None)
        hooks = getattr(session, "hooks", None)
        if isinstance(hooks, dict):
            hooks.setdefault("response", []).append(self._note_failure)

    def _note_failure(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if not response.ok:
            self._failed.status = response.status_code

    def describe(self) -> str:
        """Name the NameNode(s) for messages."""
        return "NameNode " + " / ".join(self.namenodes)

    def location(self, path: str) -> str:
        """``hdfs://<path> (NameNode …)``."""
        return f"hdfs://{path} ({self.describe()})"

    # -- status and listing: raw handlers, our own reading of the answer -----------------------

    def stat(self, path: str) -> FileInfo | None:
        """GETFILESTATUS ``path``; ``None`` if it does not exist."""
        body = self._call("GETFILESTATUS", path)
        return None if body is None else _file_info(path, body["FileStatus"])

    def list_dir(self, path: str) -> dict[str, FileInfo] | None:
        """LISTSTATUS ``path``; ``None`` if it does not exist."""
        body = self._call("LISTSTATUS", path)
        if body is None:
            return None
        statuses = body["FileStatuses"]["FileStatus"]
        if len(statuses) == 1 and statuses[0].get("pathSuffix") == "" and statuses[0].get("type") != "DIRECTORY":
            raise not_a_directory(path, self.describe())
        prefix = path.rstrip("/")
        return {s["pathSuffix"]: _file_info(f"{prefix}/{s['pathSuffix']}", s) for s in statuses}

    def _call(self, op: str, path: str) -> dict[str, Any] | None:
        import requests

        with requires_extra("hdfs"):
            from hdfs.util import HdfsError

        handler = self.client._get_file_status if op == "GETFILESTATUS" else self.client._list_status
        tried = ", ".join(self.namenodes)
        try:
            response: requests.Response = handler(path, strict=False)
        except HdfsError as e:  # with strict=False: a 401, or a retriable error once every host failed
            if e.exception in TRANSIENT_REMOTE:
                raise StorageUnavailableError(
                    f"No active NameNode answered {op} {path!r} (tried {tried}): {e.exception}: {first_line(e.message)}"
                ) from None
            raise _hdfs_refusal(e, f"{op} {path!r} on {tried}") from None
        # requests' error texts hold the full URL, query (and so a delegation token) included:
        # the messages carry a redacted first line and the chain is cut (``from None``).
        except requests.exceptions.RequestException as e:
            raise request_error(e, f"{op} {path!r}", tried, plain_http=self._plain_http()) from None
        if response.ok:
            key = "FileStatus" if op == "GETFILESTATUS" else "FileStatuses"
            try:
                result: dict[str, Any] = response.json()
                if not isinstance(result, dict) or key not in result:
                    raise ValueError(key)
            except ValueError:
                raise _not_webhdfs(f"{op} {path!r}", response) from None
            return result
        self._refusal(op, path, response)  # returns only for "not found"
        return None

    def _plain_http(self) -> bool:
        return any(url.startswith("http://") for url in self.namenodes)

    def _refusal(self, op: str, path: str, response: requests.Response) -> None:
        exception, message = _remote_exception(response)
        message = message.rstrip(".")
        if response.status_code == 404 and exception in _NOT_FOUND:
            return None
        where = f"{op} {path!r} on NameNode {_origin(response.url)}"
        if exception == "IllegalArgumentException" and message.startswith(f"Invalid operation {op}"):
            # Every NameNode serves GETFILESTATUS/LISTSTATUS; a DataNode's WebHDFS serves only data.
            raise ConnectionConfigError(
                f"{where} was answered {message!r}, as a DataNode's HTTP port answers, so the port is "
                f"probably wrong. {WRONG_PORT_HINT}"
            )
        if response.status_code == 404 and exception is None:
            # Not WebHDFS's "not found": a Hadoop RPC port ("…Hadoop IPC port") or another server.
            raise ConnectionConfigError(
                f"{where} failed with HTTP 404 ({message}): the URL did not reach WebHDFS, so the port is "
                f"probably wrong. {WRONG_PORT_HINT}"
            )
        if remote_is_transient(response.status_code, exception):
            raise StorageUnavailableError(
                f"{where} failed with HTTP {response.status_code} {exception or ''}: {message}".rstrip()
            )
        if response.status_code == 401 or exception in _CREDENTIAL_ERRORS:
            hint = CREDENTIALS_HINT
        elif response.status_code == 403:
            hint = self._denied_hint(path, message)
        else:
            hint = "The NameNode rejected the request."
        raise StorageRefusedError(
            f"{where} failed with HTTP {response.status_code} {exception or ''}: {message}. {hint}",
            remote_exception=exception,
        )

    def _denied_hint(self, path: str, message: str) -> str:
        """What to grant after a 403, naming the directory that denies traversal when it can be found.

        Hadoop 2.7 names the *requested* path in "Permission denied: … access=EXECUTE,
        inode=…" even when a parent directory is the one the user cannot traverse, which reads as
        if the marker itself were denied. For a traversal denial, the ancestors' status is asked
        top down (one request per level, only on this failure path): the parent of the first
        refused one is the culprit, and its owner and mode are shown.
        """
        generic = (
            "Permission denied; grant the connection's user read access on the path and execute (x) on "
            "every directory above it, or use another user."
        )
        if "access=EXECUTE" not in message:
            return generic
        blocker = self._first_untraversable(path)
        if blocker is None:
            return generic + " Hadoop names the requested path even when a directory above it denies access."
        where, status = blocker
        return (
            f"The directory {where!r} (owner {status.get('owner')}, group {status.get('group')}, permission "
            f"{status.get('permission')}) does not let the connection's user traverse it; Hadoop's text names "
            f"the requested path instead. Grant execute (x) on {where!r} to that user, or use another user."
        )

    def _first_untraversable(self, path: str) -> tuple[str, dict[str, Any]] | None:
        """The deepest ancestor of ``path`` whose status is readable but whose child's is refused."""
        parts = [p for p in path.split("/") if p]
        previous: tuple[str, dict[str, Any]] | None = None
        for depth in range(len(parts) + 1):
            prefix = "/" + "/".join(parts[:depth])
            try:
                response = self.client._get_file_status(prefix, strict=False)
                if response.status_code == 403:
                    return previous
                if not response.ok:
                    return None
                previous = (prefix, dict(response.json()["FileStatus"]))
            except Exception:  # noqa: BLE001  # only a better hint is at stake: keep the original error
                return None
        return None

    # -- everything else: HdfsCLI's own calls, errors mapped the same way ----------------------

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import requests

        with requires_extra("hdfs"):
            from hdfs.util import HdfsError

        self._failed.status = None
        try:
            yield
        except HdfsError as e:
            exception = getattr(e, "exception", None)
            message = first_line(str(e)) or type(e).__name__
            status = getattr(self._failed, "status", None)
            # No RemoteException: a 401, an answer that is not WebHDFS's (status noted by the
            # hook) or HdfsCLI's own check ("already exists"); only a 5xx can heal by waiting.
            transient = remote_is_transient(status, None) if exception is None else remote_is_transient(None, exception)
            if transient:
                raise StorageUnavailableError(f"{what} on {self.describe()} failed: {message}") from None
            if exception is None:
                raise _hdfs_refusal(e, f"{what} on {self.describe()}") from None
            raise StorageRefusedError(
                f"{what} on {self.describe()} was refused: {exception}: {message}", remote_exception=exception
            ) from None
        except requests.exceptions.JSONDecodeError:
            raise ConnectionConfigError(
                f"{what} on {self.describe()}: the answer was not WebHDFS JSON, so the port is probably "
                f"wrong. {WRONG_PORT_HINT}"
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise request_error(
                e, what, ", ".join(self.namenodes), plain_http=self._plain_http(), nobody="No NameNode or DataNode"
            ) from None

    def _walk_files(self, path: str) -> Iterator[FileInfo]:
        with self._errors(f"Listing {path!r}"):
            for dirpath, dirs, names in self.client.walk(path, status=True):
                dirs[:] = [d for d in dirs if not is_hidden(d[0])]
                for name, status in names:
                    yield _file_info(posixpath.join(dirpath[0], name), status)

    def read_schema(self, file: DataFile) -> pa.Schema:
        """The Parquet schema from the footer, read with one or two ranged requests."""
        with requires_extra("mlflow"):
            import pyarrow as pa
            import pyarrow.parquet as pq

        def read(offset: int, length: int) -> bytes:
            with self.client.read(file.path, offset=offset, length=length) as reader:
                data: bytes = reader.read()
                return data

        with self._errors(f"Reading the Parquet footer of {file.path!r}"):
            size = file.size
            tail = read(max(0, size - _FOOTER_PROBE), min(size, _FOOTER_PROBE))
            if len(tail) < 12 or tail[-4:] != b"PAR1":
                raise ValueError("not a Parquet file (no PAR1 footer)")
            footer = int.from_bytes(tail[-8:-4], "little")
            if footer + 8 > len(tail):
                if footer + 8 > size:
                    raise ValueError("footer longer than the file")
                tail = read(size - footer - 8, footer + 8)
            schema: pa.Schema = pq.read_schema(pa.BufferReader(b"PAR1" + tail[-(footer + 8) :]))
            return schema

    @contextlib.contextmanager
    def _local_copy(self, file: DataFile, scratch: str) -> Iterator[str]:
        local = os.path.join(scratch, "input.parquet")
        try:
            with (
                self._errors(f"Downloading {file.path!r}"),
                open(local, "wb") as out,
                self.client.read(file.path, chunk_size=1 << 20) as reader,
            ):
                for block in reader:
                    out.write(block)
            yield local
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(local)

    @contextlib.contextmanager
    def _write_part(self, staging: str, name: str, scratch: str) -> Iterator[str]:
        local = os.path.join(scratch, name)
        try:
            yield local
            with self._errors(f"Uploading {name} to {staging!r}"), open(local, "rb") as f:
                self.client.write(posixpath.join(staging, name), data=f, overwrite=False)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(local)

    def makedirs(self, path: str) -> None:
        """MKDIRS ``path``."""
        with self._errors(f"Creating {path!r}"):
            self.client.makedirs(path)

    def rename(self, src: str, dst: str) -> None:
        """RENAME ``src`` to ``dst``."""
        with self._errors(f"Renaming {src!r} to {dst!r}"):
            self.client.rename(src, dst)

    def delete(self, path: str) -> None:
        """DELETE ``path`` recursively; a missing path is fine."""
        with self._errors(f"Deleting {path!r}"):
            self.client.delete(path, recursive=True)

    def write_bytes(self, path: str, data: bytes) -> None:
        """CREATE ``path`` with ``data``, overwriting."""
        with self._errors(f"Writing {path!r}"):
            self.client.write(path, data=data, overwrite=True)


def _hdfs_refusal(error: Exception, where: str) -> StorageRefusedError:
    """An HdfsCLI error without a transient RemoteException: a 401 gets the credentials hint."""
    if is_auth_failure(error):
        return StorageRefusedError(
            f"{where} failed with HTTP 401 Unauthorized. {CREDENTIALS_HINT}", remote_exception="AuthenticationException"
        )
    message = first_line(str(getattr(error, "message", error))) or type(error).__name__
    exception = getattr(error, "exception", None)
    return StorageRefusedError(
        f"{where} was refused: {exception + ': ' if exception else ''}{message}", remote_exception=exception
    )


def _not_webhdfs(what: str, response: requests.Response) -> ConnectionConfigError:
    """A 2xx answer that is not WebHDFS JSON: something else listens on the configured port."""
    kind = response.headers.get("Content-Type") or "no content type"
    snippet = first_line(response.text[:120]) or "an empty body"
    return ConnectionConfigError(
        f"{what}: {_origin(response.url)} answered HTTP {response.status_code} ({kind}: {snippet!r}), "
        f"which is not WebHDFS JSON, so the port is probably wrong. {WRONG_PORT_HINT}"
    )


def _remote_exception(response: requests.Response) -> tuple[str | None, str]:
    try:
        remote = response.json()["RemoteException"]
        return str(remote.get("exception")), first_line(str(remote.get("message", "")))
    except (ValueError, KeyError, TypeError):
        return None, first_line(response.text[:300]) or response.reason


def _file_info(path: str, status: dict[str, Any]) -> FileInfo:
    kind = status.get("type", "FILE")
    return FileInfo(
        path=path,
        kind=kind if kind in ("FILE", "DIRECTORY", "SYMLINK") else "FILE",
        modification_time=dt.datetime.fromtimestamp(int(status["modificationTime"]) / 1000, tz=dt.timezone.utc),
        size=int(status.get("length", 0)),
    )
