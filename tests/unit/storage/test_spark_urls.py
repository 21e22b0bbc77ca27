"""Where Spark finds a storage path: URL, Spark settings and environment from an ml_hdfs connection.

The URLs and settings are proven against a real HDFS 2.7.3 (single and HA) in
tests/integration/test_spark_hdfs_real.py; here every mapping rule and every refusal.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_ml_provider.exceptions import ConnectionConfigError
from airflow_ml_provider.hooks.webhdfs import HdfsConfig
from airflow_ml_provider.storage.paths import StoragePath, parse_path
from airflow_ml_provider.storage.spark_urls import (
    DEFAULT_RPC_PORT,
    FAILOVER_PROXY_PROVIDER,
    SparkFileSystem,
    SparkHdfs,
    SparkLocation,
    glob_escape,
    merge_settings,
    spark_filesystem,
    spark_location,
)


def conn(host: str, conn_id: str = "ml_hdfs_default", login: str | None = "etl", **extra: Any) -> Connection:
    return Connection(
        conn_id=conn_id, conn_type="ml_hdfs", host=host, login=login, extra=json.dumps(extra) if extra else None
    )


def mapped(path: str, connection: Connection) -> SparkLocation:
    """What a Spark caller does: parse the path, read the connection twice (hook config, Spark extras)."""
    return spark_location(
        parse_path(path), HdfsConfig.from_connection(connection), SparkHdfs.from_connection(connection)
    )


def test_a_single_namenode_is_reached_over_rpc_on_the_default_port_as_the_login() -> None:
    loc = mapped("hdfs://anything/data/scores/day=1", conn("nn1.corp"))
    assert loc == SparkLocation(
        f"hdfs://nn1.corp:{DEFAULT_RPC_PORT}/data/scores/day=1", {}, {"HADOOP_USER_NAME": "etl"}
    )
    # the WebHDFS port of the connection is not the RPC port
    assert mapped("/data/x", conn("https://nn1.corp:9871", rpc_port=9000)).url == "hdfs://nn1.corp:9000/data/x"


@pytest.mark.parametrize("value", [8021, "8021", " 8021 ", [8021], ["8021"]])
def test_rpc_port_spellings(value: Any) -> None:
    assert SparkHdfs.from_extra({"rpc_port": value}, conn_id="c") == SparkHdfs((8021,))


@pytest.mark.parametrize("value", [None, "", "  "])
def test_a_cleared_rpc_port_takes_the_default(value: Any) -> None:
    assert SparkHdfs.from_extra({"rpc_port": value, "nameservice": value}, conn_id="c") == SparkHdfs()
    assert mapped("/x", conn("nn1", rpc_port=value)).url == "hdfs://nn1:8020/x"


@pytest.mark.parametrize("value", ["abc", 0, 70000, True, 8020.5, "8020x", "-1"])
def test_a_bad_rpc_port_names_the_key_and_the_fix(value: Any) -> None:
    with pytest.raises(ConnectionConfigError) as e:
        SparkHdfs.from_extra({"rpc_port": value}, conn_id="lake")
    message = str(e.value)
    assert "'lake'" in message
    assert "'rpc_port'" in message
    assert "dfs.namenode.rpc-address" in message
    assert "not the WebHDFS HTTP port" in message


def test_ha_namenodes_get_a_nameservice_and_its_client_settings() -> None:
    loc = mapped("/data/x", conn("http://nn1.corp:9870,http://nn2.corp:9870", conn_id="ml_hdfs_default"))
    assert loc.url == "hdfs://ml-hdfs-default/data/x"  # '_' is not valid in a host name
    assert loc.conf == {
        "spark.hadoop.dfs.nameservices": "ml-hdfs-default",
        "spark.hadoop.dfs.ha.namenodes.ml-hdfs-default": "nn1,nn2",
        "spark.hadoop.dfs.namenode.rpc-address.ml-hdfs-default.nn1": "nn1.corp:8020",
        "spark.hadoop.dfs.namenode.rpc-address.ml-hdfs-default.nn2": "nn2.corp:8020",
        "spark.hadoop.dfs.client.failover.proxy.provider.ml-hdfs-default": FAILOVER_PROXY_PROVIDER,
    }
    assert loc.env == {"HADOOP_USER_NAME": "etl"}


def test_ha_with_a_named_nameservice_and_one_port_per_namenode() -> None:
    loc = mapped("/x", conn("127.0.0.1:50070,127.0.0.1:50071", nameservice="prod.ns1", rpc_port="9000, 9001"))
    assert loc.url == "hdfs://prod.ns1/x"
    assert loc.conf["spark.hadoop.dfs.namenode.rpc-address.prod.ns1.nn1"] == "127.0.0.1:9000"
    assert loc.conf["spark.hadoop.dfs.namenode.rpc-address.prod.ns1.nn2"] == "127.0.0.1:9001"


def test_rpc_ports_that_do_not_fit_the_host_list_are_refused() -> None:
    with pytest.raises(ConnectionConfigError, match="lists 2 ports for 3 NameNodes") as e:
        mapped("/x", conn("a,b,c", rpc_port="1,2"))
    assert "'8020,8021,8022'" in str(e.value)


@pytest.mark.parametrize("value", ["my_ns", "ns/1", "-ns", 5])
def test_a_bad_nameservice_is_refused(value: Any) -> None:
    with pytest.raises(ConnectionConfigError, match="'nameservice'"):
        SparkHdfs.from_extra({"nameservice": value}, conn_id="c")


def test_local_paths_and_local_connections_are_file_urls() -> None:
    assert spark_location(parse_path("file:///data/x")) == SparkLocation("file:///data/x", {}, {})
    assert spark_location(StoragePath(True, "/"), None).url == "file:///"
    lake = conn("file:///tmp/lake")
    assert mapped("/data/x", lake) == SparkLocation("file:///tmp/lake/data/x", {}, {})
    assert spark_filesystem(HdfsConfig.from_connection(lake)).url("/") == "file:///tmp/lake/"


def test_an_hdfs_path_without_a_connection_is_an_error() -> None:
    with pytest.raises(ConnectionConfigError, match="no ml_hdfs connection"):
        spark_location(parse_path("hdfs:///data/x"), None)


def test_token_auth_cannot_reach_spark() -> None:
    token = Connection(
        conn_id="tok", conn_type="ml_hdfs", host="nn1", password="s3cr3t-token", extra=json.dumps({"auth": "token"})
    )
    with pytest.raises(ConnectionConfigError) as e:
        mapped("/x", token)
    assert "auth 'token'" in str(e.value)
    assert "'simple'" in str(e.value)
    assert "s3cr3t" not in str(e.value)


def test_kerberos_sets_the_auth_kind_and_no_user_and_proxy_user_acts_as_that_user() -> None:
    kerberos = mapped("/x", conn("nn1", auth="kerberos"))
    assert kerberos.conf == {"spark.hadoop.hadoop.security.authentication": "kerberos"}
    assert kerberos.env == {}
    proxied = mapped("/x", conn("nn1", proxy_user="analyst"))
    assert proxied.env == {"HADOOP_USER_NAME": "etl", "HADOOP_PROXY_USER": "analyst"}
    assert mapped("/x", conn("nn1", login=None)).env == {}  # the OS user of the driver, as Hadoop does


def test_ipv6_namenodes_are_bracketed() -> None:
    config = HdfsConfig(conn_id="v6", namenodes=("http://[::1]:9870",), user="etl")
    assert spark_location(parse_path("/x"), config).url == "hdfs://[::1]:8020/x"


def test_one_filesystem_maps_many_paths() -> None:
    fs = spark_filesystem(HdfsConfig.from_connection(conn("nn1")), SparkHdfs((9000,)))
    assert fs == SparkFileSystem("hdfs://nn1:9000", {}, {"HADOOP_USER_NAME": "etl"})
    assert [fs.url(p) for p in ("/a", "/a/b c/part-0.parquet", "/")] == [
        "hdfs://nn1:9000/a",
        "hdfs://nn1:9000/a/b c/part-0.parquet",
        "hdfs://nn1:9000/",
    ]
    loc = fs.location("/a")
    loc.env["HADOOP_USER_NAME"] = "changed"
    assert fs.env == {"HADOOP_USER_NAME": "etl"}  # a copy


def test_merge_settings_joins_input_and_output_and_refuses_two_users() -> None:
    local = spark_filesystem(None)
    lake = spark_filesystem(HdfsConfig.from_connection(conn("a,b")))
    assert merge_settings(local, lake, lake.location("/x")) == (lake.conf, lake.env)
    other = spark_filesystem(HdfsConfig.from_connection(conn("nn9", login="bob")))
    with pytest.raises(ConnectionConfigError, match=r"HADOOP_USER_NAME .*'etl' and 'bob'"):
        merge_settings(lake, other)


def test_glob_characters_are_escaped_for_spark_readers() -> None:
    assert glob_escape("hdfs://nn:8020/data/scores[v2]/a*b?{c}") == r"hdfs://nn:8020/data/scores\[v2\]/a\*b\?\{c\}"
    assert glob_escape("hdfs://nn:8020/data/day=1") == "hdfs://nn:8020/data/day=1"
