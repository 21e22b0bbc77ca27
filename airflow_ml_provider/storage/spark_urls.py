"""Where Spark finds a storage path: the URL, the Spark settings and the environment it needs.

Our storage paths (:class:`~airflow_ml_provider.storage.paths.StoragePath`) name a place on the
worker's disk or on an ``ml_hdfs`` connection, which the provider reaches over WebHDFS. Spark
reaches the same place through its own Hadoop client, which speaks a different protocol, so the
connection is mapped here once for every Spark caller (the batch-predict Spark engine, the Spark
training operator).

Why ``hdfs://`` (NameNode RPC) and not ``webhdfs://``: the Hadoop client inside the ``pyspark``
wheel (4.2.0 ships ``hadoop-client-api/runtime`` 3.5.0) cannot decode any WebHDFS answer: its
shaded JAX-RS ``MediaType`` looks for ``org.apache.hadoop.shaded.org.glassfish.jersey.internal.
RuntimeDelegateImpl``, which the shaded jar does not contain, so every ``webhdfs://`` call fails
with ``IOException: <host>:<port>: Response decoding failure: java.lang.RuntimeException:
java.lang.ClassNotFoundException: …RuntimeDelegateImpl`` (``Unexpected HTTP response: code=404``
for a missing path). RPC works (measured against HDFS 2.7.3 in ``tests/integration/test_spark_hdfs_real.py``), so
Spark gets ``hdfs://<namenode>:<rpc_port>/path``.

The connection (read by :class:`~airflow_ml_provider.hooks.webhdfs.HdfsConfig`) gives the
NameNode hosts, the user and the auth kind; two extras that only Spark needs are read here
(:class:`SparkHdfs`):

* ``rpc_port``: the NameNodes' RPC port (``dfs.namenode.rpc-address``), default 8020 (Hadoop's
  default on 2.x and 3.x). One number for every NameNode, or one per Host entry in the same
  order (``"8020,8021"``), e.g. when an HA pair shares one machine.
* ``nameservice``: with two or more NameNodes (HA), the logical name in the URL
  (``hdfs://<nameservice>/path``); the HA client settings for it are generated (``dfs.nameservices``,
  ``dfs.ha.namenodes.<ns>``, ``dfs.namenode.rpc-address.<ns>.nnN``, the failover proxy provider).
  Default: the connection id with ``_`` turned into ``-`` (``ml-hdfs-default``). Set it to the
  cluster's own name when the Spark cluster's ``hdfs-site.xml`` already defines it.

Who Spark acts as: with ``auth = simple`` the Hadoop client takes its user from the
``HADOOP_USER_NAME`` environment variable of the driver JVM (``HADOOP_PROXY_USER`` for
``proxy_user``), never from a Spark setting; executors act as the driver's user. So the user goes
into :attr:`SparkLocation.env`, the environment of the process that starts the driver JVM
(``spark-submit``, or PySpark's gateway), and is fixed once that JVM runs. ``auth = kerberos``
sets ``hadoop.security.authentication`` and leaves the user to the ticket cache or Spark's
``spark.kerberos.principal``/``keytab``. ``auth = token`` cannot be mapped: a WebHDFS
delegation token is not a Spark setting.

Pure string handling: DAG files and operators import this module; it imports no Spark, HDFS or
Airflow hook module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from airflow_ml_provider.exceptions import ConnectionConfigError

if TYPE_CHECKING:
    from airflow_ml_provider.hooks.webhdfs import HdfsConfig
    from airflow_ml_provider.storage.paths import StoragePath

#: The NameNode RPC port when the connection has no ``rpc_port`` extra (Hadoop 2.x and 3.x default).
DEFAULT_RPC_PORT = 8020
#: The HA client's failover implementation (part of every Hadoop HDFS client).
FAILOVER_PROXY_PROVIDER = "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider"
#: Characters Spark's file source treats as a glob pattern in a path it reads.
_GLOB_CHARS = re.compile(r"([{}\[\]*?\\])")
_NAMESERVICE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


class SparkHdfs(NamedTuple):
    """The Spark-only settings of an ``ml_hdfs`` connection (its ``rpc_port`` and ``nameservice`` extras).

    :param rpc_ports: the NameNodes' RPC ports: one for all, or one per NameNode in Host order;
        empty means :data:`DEFAULT_RPC_PORT` for every NameNode.
    :param nameservice: the logical HA name (two or more NameNodes); ``None`` derives it from the
        connection id.
    """

    rpc_ports: tuple[int, ...] = ()
    nameservice: str | None = None

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any], *, conn_id: str) -> SparkHdfs:
        """Read and validate ``rpc_port`` and ``nameservice`` from a connection's extra.

        :param extra: the connection's extra as a dict (absent, null or ``""`` values take the defaults).
        :param conn_id: the connection's id, for messages.
        :raises ConnectionConfigError: naming the connection, the key and what is accepted.
        """
        return cls(_rpc_ports(extra.get("rpc_port"), conn_id), _nameservice(extra.get("nameservice"), conn_id))

    @classmethod
    def from_connection(cls, conn: Any) -> SparkHdfs:
        """:meth:`from_extra` for an Airflow Connection (its extra parsed strictly)."""
        from airflow_ml_provider.utils.conn_extras import connection_extra

        return cls.from_extra(connection_extra(conn), conn_id=conn.conn_id)


class SparkLocation(NamedTuple):
    """What Spark needs to read or write one path.

    :param url: the URL to give Spark, e.g. ``hdfs://nn1.corp:8020/data/x``,
        ``hdfs://ml-hdfs/data/x`` (HA) or ``file:///data/x``.
    :param conf: Spark settings the URL needs (``spark.hadoop.dfs.*`` for HA, the auth kind);
        set them on the session before it starts (they are Hadoop client settings).
    :param env: environment variables for the process that starts the Spark driver JVM
        (``HADOOP_USER_NAME``, ``HADOOP_PROXY_USER``); they take effect only when that JVM starts.
    """

    url: str
    conf: dict[str, str]
    env: dict[str, str]


class SparkFileSystem(NamedTuple):
    """One file system as Spark sees it; :meth:`url` maps many paths with one ``conf``/``env``.

    :param root: the URL prefix of absolute paths: ``hdfs://host:port``, ``hdfs://<nameservice>``,
        ``file://`` or ``file://<local root>``.
    :param conf: as :attr:`SparkLocation.conf`.
    :param env: as :attr:`SparkLocation.env`.
    """

    root: str
    conf: dict[str, str]
    env: dict[str, str]

    def url(self, path: str) -> str:
        """The URL of the absolute path ``path`` (as :func:`~airflow_ml_provider.storage.paths.parse_path` gives it)."""
        return self.root + "/" + path.lstrip("/")

    def location(self, path: str) -> SparkLocation:
        """:meth:`url` with this file system's ``conf`` and ``env``."""
        return SparkLocation(self.url(path), dict(self.conf), dict(self.env))


def spark_filesystem(hdfs: HdfsConfig | None, spark: SparkHdfs | None = None) -> SparkFileSystem:
    """The file system of an ``ml_hdfs`` connection as Spark reaches it.

    :param hdfs: the validated connection; ``None`` for the worker's local disk.
    :param spark: the connection's Spark-only extras (:meth:`SparkHdfs.from_connection`);
        ``None`` takes the defaults (RPC port 8020, nameservice from the connection id).
    :raises ConnectionConfigError: ``auth = token``, or ``rpc_port`` that does not fit the Host list.
    """
    if hdfs is None:
        return SparkFileSystem("file://", {}, {})
    if hdfs.local_root is not None:
        return SparkFileSystem("file://" + hdfs.local_root.rstrip("/"), {}, {})
    spark = spark or SparkHdfs()
    conn_id = hdfs.conn_id
    if hdfs.auth == "token":
        raise ConnectionConfigError(
            f"Connection {conn_id!r} uses auth 'token' (a WebHDFS delegation token), which Spark cannot use: it "
            "reaches HDFS over RPC. Give Spark a connection with auth 'simple' (a user name in Login) or "
            "'kerberos'."
        )
    hosts = [_host_of(url) for url in hdfs.namenodes]
    if not hosts:
        raise ConnectionConfigError(f"Connection {conn_id!r} names no NameNode; set Host, e.g. 'nn1.corp'.")
    ports = spark.rpc_ports or (DEFAULT_RPC_PORT,)
    if len(ports) == 1:
        ports = ports * len(hosts)
    elif len(ports) != len(hosts):
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: extra 'rpc_port' lists {len(ports)} ports for {len(hosts)} NameNodes; give "
            f"one port for all of them (e.g. 8020) or one per Host entry in the same order "
            f"(e.g. {','.join(str(DEFAULT_RPC_PORT + i) for i in range(len(hosts)))!r})."
        )
    addresses = [f"{host}:{port}" for host, port in zip(hosts, ports, strict=True)]
    conf: dict[str, str] = {}
    if len(addresses) == 1:
        root = f"hdfs://{addresses[0]}"
    else:
        ns = spark.nameservice or _default_nameservice(conn_id)
        ids = [f"nn{i + 1}" for i in range(len(addresses))]
        conf["spark.hadoop.dfs.nameservices"] = ns
        conf[f"spark.hadoop.dfs.ha.namenodes.{ns}"] = ",".join(ids)
        for nn, address in zip(ids, addresses, strict=True):
            conf[f"spark.hadoop.dfs.namenode.rpc-address.{ns}.{nn}"] = address
        conf[f"spark.hadoop.dfs.client.failover.proxy.provider.{ns}"] = FAILOVER_PROXY_PROVIDER
        root = f"hdfs://{ns}"
    env: dict[str, str] = {}
    if hdfs.auth == "kerberos":
        conf["spark.hadoop.hadoop.security.authentication"] = "kerberos"
    elif hdfs.user:
        env["HADOOP_USER_NAME"] = hdfs.user
    if hdfs.proxy_user:
        env["HADOOP_PROXY_USER"] = hdfs.proxy_user
    return SparkFileSystem(root, conf, env)


def spark_location(path: StoragePath, hdfs: HdfsConfig | None = None, spark: SparkHdfs | None = None) -> SparkLocation:
    """The URL, settings and environment Spark needs for ``path``.

    :param path: a parsed path: ``file://`` paths map to ``file:///…`` (nothing needed), the
        others to the connection ``hdfs`` (see :func:`spark_filesystem`).
    :param hdfs: the ``ml_hdfs`` connection that non-local paths live on.
    :param spark: that connection's Spark-only extras; ``None`` takes the defaults.
    :raises ConnectionConfigError: a non-local path without a connection, or see :func:`spark_filesystem`.
    """
    if path.local:
        return spark_filesystem(None).location(path.path)
    if hdfs is None:
        raise ConnectionConfigError(f"{path} is on HDFS, but no ml_hdfs connection was given to reach it.")
    return spark_filesystem(hdfs, spark).location(path.path)


def merge_settings(*locations: SparkLocation | SparkFileSystem) -> tuple[dict[str, str], dict[str, str]]:
    """The union of several locations' ``conf`` and ``env`` (e.g. input and output of one job).

    :raises ConnectionConfigError: two locations need different values for one key (e.g. two
        connections with different users: one Spark driver acts as one HDFS user).
    """
    conf: dict[str, str] = {}
    env: dict[str, str] = {}
    for loc in locations:
        for target, values, what in ((conf, loc.conf, "Spark setting"), (env, loc.env, "environment variable")):
            for key, value in values.items():
                if target.setdefault(key, value) != value:
                    raise ConnectionConfigError(
                        f"The input and output need different values of the {what} {key} ({target[key]!r} and "
                        f"{value!r}), but one Spark driver has one; put them on one connection."
                    )
    return conf, env


def glob_escape(url: str) -> str:
    """``url`` with the characters Spark's readers take as a glob (``[]{}*?\\``) escaped, so a path
    such as ``/data/scores[v2]`` is read as it is written."""
    return _GLOB_CHARS.sub(r"\\\1", url)


def _host_of(namenode_url: str) -> str:
    host = urlsplit(namenode_url).hostname or ""
    return f"[{host}]" if ":" in host else host


def _default_nameservice(conn_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9-]+", "-", conn_id).strip("-").lower()
    return name or "ml-hdfs"


def _rpc_ports(value: Any, conn_id: str) -> tuple[int, ...]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return ()
    items: list[Any]
    if isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, str):
        items = [v.strip() for v in re.split(r"[,;\s]+", value.strip()) if v.strip()]
    else:
        items = [value]
    ports = []
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or not text.isdigit() or not 1 <= int(text) <= 65535:
            raise ConnectionConfigError(
                f"Connection {conn_id!r}: extra 'rpc_port' is {value!r}; use the NameNode RPC port "
                f"(dfs.namenode.rpc-address, e.g. {DEFAULT_RPC_PORT}), or one port per Host entry "
                f"('{DEFAULT_RPC_PORT},{DEFAULT_RPC_PORT + 1}'). It is not the WebHDFS HTTP port (9870 or 50070)."
            )
        ports.append(int(text))
    return tuple(ports)


def _nameservice(value: Any, conn_id: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or not _NAMESERVICE.match(value.strip()):
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: extra 'nameservice' is {value!r}; use a logical name of letters, digits, "
            "'-' and '.', e.g. 'ns1' (no '_': Hadoop reads hdfs://<name>/ as a host name)."
        )
    return value.strip()
