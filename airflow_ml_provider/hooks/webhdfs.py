"""HDFS over WebHDFS (HdfsCLI), with HA NameNodes, explicit timeouts and honest errors.

The hook reads an ``ml_hdfs`` connection (see :data:`CONN_TYPE`); it never reads ``webhdfs``
connections, which belong to the apache-hdfs provider. Importing this module imports neither
``hdfs`` nor ``requests``: they load on first use.

Connection fields:

* **Host**: NameNode host(s), comma-separated for HA (``nn1.corp,nn2.corp``), each optionally a
  full URL (``https://nn1.corp:9871``). ``file:///some/dir`` selects the local disk instead,
  rooted at that directory (for laptops and the demo).
* **Port**: WebHDFS HTTP port for hosts given without one (default 9870).
* **Login**: the HDFS user for simple auth (sent as ``user.name``).
* **Password**: a delegation token, with ``auth = token``.
* **Extra**: ``auth`` (``simple`` | ``token`` | ``kerberos``), ``use_ssl`` (https for bare hosts),
  ``verify`` (TLS verification, default true), ``ca_bundle`` (path to a CA file),
  ``timeout`` (seconds per HTTP request, default 30), ``proxy_user`` (``doas``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from airflow_ml_provider.exceptions import ConnectionConfigError, HdfsAccessError, HdfsUnavailableError
from airflow_ml_provider.hooks.storage import FileInfo, LocalStorage, StorageBackend
from airflow_ml_provider.utils.markers import Location, MarkerReport, check_markers

if TYPE_CHECKING:
    import datetime as dt

    import requests
    from airflow.sdk import Connection
    from hdfs import Client

CONN_TYPE = "ml_hdfs"
DEFAULT_CONN_ID = "ml_hdfs_default"
DEFAULT_PORT = 9870
DEFAULT_TIMEOUT = 30.0
AuthKind = Literal["simple", "token", "kerberos"]

#: Server exceptions that mean "the path is not there (yet)". Nothing else does.
_NOT_FOUND = frozenset({"FileNotFoundException"})
#: Server exceptions about who is asking rather than what is asked for.
_CREDENTIAL_ERRORS = frozenset(
    {"SecurityException", "InvalidToken", "AuthenticationException", "AuthorizationException"}
)


@dataclass(frozen=True)
class HdfsConfig:
    """A validated ``ml_hdfs`` connection.

    :param conn_id: the connection it came from, for messages.
    :param namenodes: WebHDFS base URLs in failover order; empty for the local backend.
    :param local_root: set instead of ``namenodes`` when the connection points at a local directory.
    :param user: HDFS user for simple auth.
    :param auth: ``simple``, ``token`` or ``kerberos``.
    :param token: delegation token (never shown in ``repr``).
    :param verify: ``True``/``False`` or a CA bundle path.
    :param timeout: seconds per HTTP request.
    :param proxy_user: user to impersonate (``doas``).
    """

    conn_id: str
    namenodes: tuple[str, ...] = ()
    local_root: str | None = None
    user: str | None = None
    auth: AuthKind = "simple"
    token: str | None = field(default=None, repr=False)
    verify: bool | str = True
    timeout: float = DEFAULT_TIMEOUT
    proxy_user: str | None = None

    @classmethod
    def from_connection(cls, conn: Connection) -> HdfsConfig:
        """Validate a Connection; raise :class:`ConnectionConfigError` naming the bad field."""
        conn_id = conn.conn_id
        extra = conn.extra_dejson or {}
        host = (conn.host or "").strip()

        def bad(what: str) -> ConnectionConfigError:
            return ConnectionConfigError(f"Connection {conn_id!r} (type {CONN_TYPE}): {what}")

        if not host:
            raise bad("Host is empty; set it to the NameNode host(s), e.g. 'nn1.corp,nn2.corp'.")
        if host.startswith("file://"):
            root = urlsplit(host).path or "/"
            return cls(conn_id=conn_id, local_root=root)

        auth = str(extra.get("auth") or "simple").lower()
        if auth not in ("simple", "token", "kerberos"):
            raise bad(f"extra 'auth' is {auth!r}; use 'simple', 'token' or 'kerberos'.")
        token = conn.password or None
        if auth == "token" and not token:
            raise bad("auth is 'token' but Password is empty; put the delegation token in Password.")

        use_ssl = _as_bool(extra.get("use_ssl", False), conn_id, "use_ssl")
        port = int(conn.port) if conn.port else DEFAULT_PORT
        namenodes = tuple(_namenode_url(item, port, use_ssl, bad) for item in re.split(r"[,;\s]+", host) if item)

        verify: bool | str = _as_bool(extra.get("verify", True), conn_id, "verify")
        if extra.get("ca_bundle"):
            verify = str(extra["ca_bundle"]) if verify else False
        try:
            timeout = float(extra.get("timeout", DEFAULT_TIMEOUT))
        except (TypeError, ValueError):
            raise bad(f"extra 'timeout' is {extra.get('timeout')!r}; give seconds, e.g. 30.") from None
        if timeout <= 0:
            raise bad(f"extra 'timeout' is {timeout}; it must be positive, e.g. 30.")
        return cls(
            conn_id=conn_id,
            namenodes=namenodes,
            user=conn.login or None,
            auth=auth,  # type: ignore[arg-type]  # checked above
            token=token if auth == "token" else None,
            verify=verify,
            timeout=timeout,
            proxy_user=extra.get("proxy_user") or None,
        )


def _as_bool(value: Any, conn_id: str, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConnectionConfigError(f"Connection {conn_id!r}: extra {name!r} is {value!r}; use true or false.")


def _namenode_url(item: str, port: int, use_ssl: bool, bad: Any) -> str:
    text = item if "://" in item else f"{'https' if use_ssl else 'http'}://{item}"
    parts = urlsplit(text)
    try:
        parsed_port = parts.port
    except ValueError:
        raise bad(f"NameNode {item!r} has an invalid port; use host:port, e.g. 'nn1.corp:9870'.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad(f"NameNode {item!r} is not a valid http(s) URL or host name; e.g. 'nn1.corp:9870'.")
    if parts.path not in ("", "/") or parts.query:
        raise bad(f"NameNode {item!r} must not have a path or query; give 'host:port' only.")
    return f"{parts.scheme}://{parts.hostname}:{parsed_port or port}"


def _origin(url: str) -> str:
    """Scheme, host and port of a URL: never its query, which may hold a delegation token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class WebHdfsStorage:
    """Storage backend (see :mod:`airflow_ml_provider.hooks.storage`) over WebHDFS.

    Uses HdfsCLI's raw ``GETFILESTATUS``/``LISTSTATUS`` handlers with ``strict=False``: HdfsCLI
    still fails over between NameNodes on connection errors, timeouts and ``StandbyException``,
    but hands back every other answer so that we, not HdfsCLI, decide what it means. (Its
    public ``status(strict=False)`` returns ``None`` for a 403 as well as a 404, which would
    read "permission denied" as "not yet".)

    :param client: an HdfsCLI client whose URL lists the NameNodes.
    :param namenodes: the same NameNode URLs, for messages.
    """

    def __init__(self, client: Client, namenodes: Sequence[str]) -> None:
        self.client = client
        self.namenodes = tuple(namenodes)

    def describe(self) -> str:
        """Name the NameNode(s) for messages."""
        return "NameNode " + " / ".join(self.namenodes)

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
            raise HdfsAccessError(
                f"{path!r} on {self.describe()} is a file, not a directory, so no marker can appear "
                "under it. Point the sensor at the directory that receives the marker.",
                remote_exception="NotADirectory",
            )
        prefix = path.rstrip("/")
        return {s["pathSuffix"]: _file_info(f"{prefix}/{s['pathSuffix']}", s) for s in statuses}

    def _call(self, op: str, path: str) -> dict[str, Any] | None:
        import requests
        from hdfs.util import HdfsError

        handler = self.client._get_file_status if op == "GETFILESTATUS" else self.client._list_status
        tried = ", ".join(self.namenodes)
        try:
            response: requests.Response = handler(path, strict=False)
        except HdfsError as e:  # HdfsCLI raises only retriable server errors once every host failed
            raise HdfsUnavailableError(
                f"No active NameNode answered {op} {path!r} (tried {tried}): "
                f"{e.exception or 'error'}: {_first_line(e.message)}"
            ) from e
        # requests' error texts hold the full URL, query (and so a delegation token) included:
        # the messages below carry a redacted first line and the chain is cut (``from None``).
        except requests.exceptions.SSLError as e:
            raise HdfsAccessError(
                f"TLS verification failed for {op} {path!r} on {tried}: {_first_line(str(e))}. "
                "Set the connection's extra 'ca_bundle' to the cluster's CA file.",
                remote_exception="SSLError",
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise HdfsUnavailableError(
                f"No NameNode answered {op} {path!r} (tried {tried}): {type(e).__name__}: {_first_line(str(e))}"
            ) from None
        except requests.exceptions.RequestException as e:
            raise HdfsAccessError(
                f"Request {op} {path!r} to {tried} is malformed: {_first_line(str(e))}. "
                "Check the connection's host and port."
            ) from None
        if response.ok:
            result: dict[str, Any] = response.json()
            return result
        self._refusal(op, path, response)  # returns only for "not found"
        return None

    def _refusal(self, op: str, path: str, response: requests.Response) -> None:
        namenode = _origin(response.url)
        exception, message = _remote_exception(response)
        if response.status_code == 404 and exception in _NOT_FOUND:
            return None
        where = f"{op} {path!r} on NameNode {namenode}"
        if response.status_code >= 500:
            raise HdfsUnavailableError(
                f"{where} failed with HTTP {response.status_code} {exception or ''}: {message}".rstrip()
            )
        if response.status_code == 401 or exception in _CREDENTIAL_ERRORS:
            hint = (
                "The NameNode rejected the connection's identity; check its user, delegation token, "
                "Kerberos ticket or proxy user (doas)."
            )
        elif response.status_code == 403:
            hint = (
                "Permission denied; grant the connection's user read and execute access on the path "
                "and its parents, or use another user."
            )
        elif response.status_code == 404:
            hint = (
                "The URL did not reach WebHDFS; check that the connection's host and port are "
                "the NameNode's HTTP address."
            )
        else:
            hint = "The NameNode rejected the request."
        raise HdfsAccessError(
            f"{where} failed with HTTP {response.status_code} {exception or ''}: {message}. {hint}",
            remote_exception=exception,
        )


def _remote_exception(response: requests.Response) -> tuple[str | None, str]:
    try:
        remote = response.json()["RemoteException"]
        return str(remote.get("exception")), _first_line(str(remote.get("message", "")))
    except (ValueError, KeyError, TypeError):
        return None, _first_line(response.text[:300]) or response.reason


_SECRET_PARAM = re.compile(r"(delegation|token|password)=[^&\s'\"]+", re.IGNORECASE)


def _first_line(text: str) -> str:
    """First line of a message, shortened, with credentials in URL queries redacted."""
    line = text.strip().splitlines()[0][:400] if text.strip() else ""
    return _SECRET_PARAM.sub(r"\1=***", line)


def _file_info(path: str, status: dict[str, Any]) -> FileInfo:
    import datetime as dt

    kind = status.get("type", "FILE")
    return FileInfo(
        path=path,
        kind=kind if kind in ("FILE", "DIRECTORY", "SYMLINK") else "FILE",
        modification_time=dt.datetime.fromtimestamp(int(status["modificationTime"]) / 1000, tz=dt.timezone.utc),
        size=int(status.get("length", 0)),
    )


class HdfsHook(BaseHook):
    """Talk to HDFS through WebHDFS (or to a local directory) using an ``ml_hdfs`` connection.

    :param hdfs_conn_id: the connection to use (default ``ml_hdfs_default``).
    """

    conn_name_attr = "hdfs_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "HDFS (WebHDFS, airflow-ml-provider)"

    def __init__(self, hdfs_conn_id: str = DEFAULT_CONN_ID, *, config: HdfsConfig | None = None) -> None:
        super().__init__()
        self.hdfs_conn_id = hdfs_conn_id
        self._config = config

    @classmethod
    async def async_from_conn_id(cls, hdfs_conn_id: str) -> HdfsHook:
        """Build a hook from an async context (a trigger) without blocking the event loop."""
        aget = getattr(BaseHook, "aget_connection", None)
        if aget is not None:
            conn = await aget(hdfs_conn_id)
        else:  # Airflow < 3.2: no async connection API
            conn = await asyncio.to_thread(BaseHook.get_connection, hdfs_conn_id)
        return cls(hdfs_conn_id, config=cls._config_from(conn))

    @staticmethod
    def _config_from(conn: Connection) -> HdfsConfig:
        config = HdfsConfig.from_connection(conn)
        if config.token:
            from airflow.sdk.log import mask_secret

            mask_secret(config.token)
        return config

    @property
    def config(self) -> HdfsConfig:
        """The validated connection, read on first use (never at DAG parse time)."""
        if self._config is None:
            self._config = self._config_from(self.get_connection(self.hdfs_conn_id))
        return self._config

    def get_conn(self) -> Client:
        """Return a new HdfsCLI client over all the connection's NameNodes (failover in order)."""
        config = self.config
        if config.local_root is not None:
            raise ConnectionConfigError(
                f"Connection {config.conn_id!r} points at the local directory {config.local_root!r}; "
                "there is no WebHDFS client for it."
            )
        session = _session(config.verify)
        url = ";".join(config.namenodes)
        common: dict[str, Any] = {"session": session, "timeout": config.timeout, "proxy": config.proxy_user}
        if config.auth == "kerberos":
            try:
                from hdfs.ext.kerberos import KerberosClient
            except ImportError as e:
                raise ConnectionConfigError(
                    f"Connection {config.conn_id!r} uses Kerberos; install 'airflow-ml-provider[kerberos]'."
                ) from e
            return KerberosClient(url, **common)
        from hdfs import InsecureClient, TokenClient

        if config.auth == "token":
            return TokenClient(url, config.token, **common)
        return InsecureClient(url, user=config.user, **common)

    @cached_property
    def storage(self) -> StorageBackend:
        """The storage backend for paths on this connection (one client, reused across calls)."""
        config = self.config
        if config.local_root is not None:
            return LocalStorage(config.local_root)
        return WebHdfsStorage(self.get_conn(), config.namenodes)

    def check_markers(self, markers: Sequence[Location], newer_than: dt.datetime | None = None) -> MarkerReport:
        """Check marker files; ``file://`` ones on the local disk, the others on this connection.

        The connection is only read if some marker is not local.
        """
        report = MarkerReport()
        local = [m.path for m in markers if m.local]
        remote = [m.path for m in markers if not m.local]
        if local:
            report.merge(check_markers(LocalStorage("/"), local, newer_than))
        if remote:
            report.merge(check_markers(self.storage, remote, newer_than))
        return report

    def test_connection(self) -> tuple[bool, str]:
        """Ask every NameNode for the status of ``/`` and say which one is active."""
        try:
            config = self.config
            if config.local_root is not None:
                info = LocalStorage(config.local_root).stat("/")
                return (info is not None, f"local directory {config.local_root}")
            answers = []
            for url in config.namenodes:
                single = HdfsHook(self.hdfs_conn_id, config=replace(config, namenodes=(url,)))
                try:
                    single.storage.stat("/")
                    answers.append(f"{url}: active")
                except HdfsUnavailableError as e:
                    answers.append(f"{url}: unavailable ({e})")
            ok = any(a.endswith(": active") for a in answers)
            return ok, "; ".join(answers)
        except Exception as e:  # noqa: BLE001  # test_connection reports, it does not raise
            return False, str(e)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the standard connection form fields (mirrors provider_info)."""
        from airflow_ml_provider.provider_info import HDFS_UI_FIELD_BEHAVIOUR

        return HDFS_UI_FIELD_BEHAVIOUR


def _session(verify: bool | str) -> requests.Session:
    """A requests session whose TLS verification is the connection's, whatever the environment says.

    Plain ``Session.verify`` loses to ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` from the environment
    (requests merges environment settings over session settings), which would silently ignore the
    connection's ``ca_bundle`` or ``verify`` on any worker that sets those variables.
    """
    import requests

    class _ConnectionTlsSession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = self.verify
            return settings

    session = _ConnectionTlsSession()
    session.verify = verify
    return session
