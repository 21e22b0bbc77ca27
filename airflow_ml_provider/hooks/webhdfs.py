"""HDFS over WebHDFS (HdfsCLI), with HA NameNodes, explicit timeouts and honest errors.

The hook reads an ``ml_hdfs`` connection (see :data:`CONN_TYPE`); it never reads ``webhdfs``
connections, which belong to the apache-hdfs provider. Importing this module imports neither
``hdfs`` nor ``requests``: they load on first use, and without the ``hdfs`` extra (``kerberos`` for
``auth = kerberos``) that use fails at once with a
:class:`~airflow_ml_provider.exceptions.MissingExtraError` naming the ``pip install`` command.

Connection fields:

* **Host**: NameNode host(s), comma-separated for HA (``nn1.corp,nn2.corp``), each optionally a
  full URL (``https://nn1.corp:9871``). ``file:///some/dir`` selects the local disk instead,
  rooted at that directory (for laptops and the demo).
* **Port**: WebHDFS HTTP port for hosts given without one (default 9870).
* **Login**: the HDFS user for simple auth (sent as ``user.name``).
* **Password**: a delegation token, with ``auth = token``.
* **Extra**: ``auth`` (``simple`` | ``token`` | ``kerberos``), ``use_ssl`` (https for bare hosts),
  ``verify`` (TLS verification, default true), ``ca_bundle`` (path to a CA file),
  ``timeout`` (seconds per HTTP request, default 30), ``proxy_user`` (``doas``); for Spark only,
  ``rpc_port`` and ``nameservice`` (read by :mod:`airflow_ml_provider.storage.spark_urls`, since
  Spark reaches HDFS over NameNode RPC). An extra that is absent, null or ``""`` (a cleared form
  field) takes its default; one that cannot be read is an error.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from airflow_ml_provider.exceptions import ConnectionConfigError, StorageUnavailableError
from airflow_ml_provider.utils.optional_deps import connection_test_text, requires_extra

if TYPE_CHECKING:
    import datetime as dt

    from airflow.sdk import Connection
    from hdfs import Client

    from airflow_ml_provider.storage.base import Storage
    from airflow_ml_provider.storage.markers import MarkerReport
    from airflow_ml_provider.storage.paths import StoragePath

CONN_TYPE = "ml_hdfs"
DEFAULT_CONN_ID = "ml_hdfs_default"
DEFAULT_PORT = 9870
DEFAULT_TIMEOUT = 30.0
AuthKind = Literal["simple", "token", "kerberos"]


class HdfsConfig(NamedTuple):
    """A validated ``ml_hdfs`` connection (a NamedTuple: DAG files import this module, and building
    dataclasses costs import time).

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
    token: str | None = None
    verify: bool | str = True
    timeout: float = DEFAULT_TIMEOUT
    proxy_user: str | None = None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={'***' if k == 'token' and v else v!r}" for k, v in self._asdict().items())
        return f"HdfsConfig({fields})"

    @classmethod
    def from_connection(cls, conn: Connection) -> HdfsConfig:
        """Validate a Connection; raise :class:`ConnectionConfigError` naming the bad field."""
        from airflow_ml_provider.utils.conn_extras import (
            connection_extra,
            extra_bool,
            extra_choice,
            extra_number,
            extra_str,
            extra_tls_verify,
        )

        conn_id = conn.conn_id
        extra = connection_extra(conn)
        host = (conn.host or "").strip()

        def bad(what: str) -> ConnectionConfigError:
            return ConnectionConfigError(f"Connection {conn_id!r} (type {CONN_TYPE}): {what}")

        if not host:
            raise bad("Host is empty; set it to the NameNode host(s), e.g. 'nn1.corp,nn2.corp'.")
        if host.lower().startswith("file:"):
            from airflow_ml_provider.exceptions import InvalidSpecError
            from airflow_ml_provider.storage.paths import parse_path

            try:
                root = parse_path(host, arg="Host", default_local=True).path
            except InvalidSpecError as e:
                raise bad(str(e)) from None
            return cls(conn_id=conn_id, local_root=root)

        auth = extra_choice(extra, "auth", ("simple", "token", "kerberos"), "simple", conn_id=conn_id)
        token = conn.password or None
        if auth == "token" and not token:
            raise bad("auth is 'token' but Password is empty; put the delegation token in Password.")

        use_ssl = extra_bool(extra, "use_ssl", False, conn_id=conn_id)
        port = int(conn.port) if conn.port else DEFAULT_PORT
        namenodes = tuple(_namenode_url(item, port, use_ssl, bad) for item in re.split(r"[,;\s]+", host) if item)

        verify = extra_tls_verify(extra, conn_id=conn_id)
        timeout = extra_number(extra, "timeout", DEFAULT_TIMEOUT, conn_id=conn_id, positive=True)
        return cls(
            conn_id=conn_id,
            namenodes=namenodes,
            user=conn.login or None,
            auth=auth,  # type: ignore[arg-type]  # checked above
            token=token if auth == "token" else None,
            verify=verify,
            timeout=timeout,
            proxy_user=extra_str(extra, "proxy_user", conn_id=conn_id),
        )


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


class HdfsHook(BaseHook):
    """Talk to HDFS through WebHDFS (or to a local directory) using an ``ml_hdfs`` connection.

    :param hdfs_conn_id: the connection to use (default ``ml_hdfs_default``).
    """

    conn_name_attr = "hdfs_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "ML provider: HDFS (WebHDFS)"

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
        from airflow_ml_provider.utils.tls import connection_tls_session

        session = connection_tls_session(config.verify)
        url = ";".join(config.namenodes)
        common: dict[str, Any] = {"session": session, "timeout": config.timeout, "proxy": config.proxy_user}
        if config.auth == "kerberos":
            with requires_extra("kerberos"):
                from hdfs.ext.kerberos import KerberosClient
            return KerberosClient(url, **common)
        with requires_extra("hdfs"):
            from hdfs import InsecureClient, TokenClient

        if config.auth == "token":
            return TokenClient(url, config.token, **common)
        return InsecureClient(url, user=config.user, **common)

    @cached_property
    def storage(self) -> Storage:
        """The storage for paths on this connection (one client, reused across calls)."""
        from airflow_ml_provider.storage.local import LocalStorage
        from airflow_ml_provider.storage.webhdfs import WebHdfsStorage

        config = self.config
        if config.local_root is not None:
            return LocalStorage(config.local_root)
        return WebHdfsStorage(self.get_conn(), config.namenodes)

    def storage_for(self, path: StoragePath) -> Storage:
        """The storage ``path`` lives on: the local disk for ``file://`` paths (the connection is
        not read), this connection's file system otherwise."""
        from airflow_ml_provider.storage.local import LocalStorage

        return LocalStorage() if path.local else self.storage

    def check_markers(self, markers: Sequence[StoragePath], newer_than: dt.datetime | None = None) -> MarkerReport:
        """Check marker files; ``file://`` ones on the local disk, the others on this connection.

        The connection is only read if some marker is not local.
        """
        from airflow_ml_provider.storage.local import LocalStorage
        from airflow_ml_provider.storage.markers import MarkerReport, check_markers

        report = MarkerReport()
        local = [m.path for m in markers if m.local]
        remote = [m.path for m in markers if not m.local]
        if local:
            report.merge(check_markers(LocalStorage(), local, newer_than))
        if remote:
            report.merge(check_markers(self.storage, remote, newer_than))
        return report

    def test_connection(self) -> tuple[bool, str]:
        """Ask every NameNode for the status of ``/`` and say which one is active."""
        try:
            config = self.config
            if config.local_root is not None:
                from airflow_ml_provider.storage.local import LocalStorage

                info = LocalStorage(config.local_root).stat("/")
                return (info is not None, f"local directory {config.local_root}")
            answers = []
            for url in config.namenodes:
                single = HdfsHook(self.hdfs_conn_id, config=config._replace(namenodes=(url,)))
                try:
                    single.storage.stat("/")
                    answers.append(f"{url}: active")
                except StorageUnavailableError as e:
                    answers.append(f"{url}: unavailable ({e})")
            ok = any(a.endswith(": active") for a in answers)
            return ok, connection_test_text("; ".join(answers))
        except Exception as e:  # noqa: BLE001  # test_connection reports, it does not raise
            return False, connection_test_text(str(e))

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the standard connection form fields (mirrors provider_info)."""
        from airflow_ml_provider.connection_forms import HDFS_UI_FIELD_BEHAVIOUR

        return HDFS_UI_FIELD_BEHAVIOUR
