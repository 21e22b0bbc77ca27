"""Connection parsing for the ml_hdfs connection type (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_ml_provider.exceptions import ConnectionConfigError, StorageUnavailableError
from airflow_ml_provider.hooks.webhdfs import HdfsConfig, HdfsHook


def conn(**kw: Any) -> Connection:
    extra = kw.pop("extra", None)
    return Connection(conn_id="c1", conn_type="ml_hdfs", extra=json.dumps(extra) if extra else None, **kw)


def test_single_host_defaults() -> None:
    c = HdfsConfig.from_connection(conn(host="nn1.corp", login="etl"))
    assert c.namenodes == ("http://nn1.corp:9870",)
    assert (c.user, c.auth, c.verify, c.timeout) == ("etl", "simple", True, 30.0)


def test_ha_hosts_ports_and_tls() -> None:
    c = HdfsConfig.from_connection(
        conn(
            host="nn1.corp,nn2.corp:9871;https://nn3.corp:50470",
            port=9999,
            extra={"use_ssl": "true", "timeout": 5},
        )
    )
    assert c.namenodes == ("https://nn1.corp:9999", "https://nn2.corp:9871", "https://nn3.corp:50470")
    assert c.timeout == 5.0


def test_ca_bundle_and_verify_off(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert HdfsConfig.from_connection(conn(host="nn", extra={"ca_bundle": str(ca)})).verify == str(ca)
    assert HdfsConfig.from_connection(conn(host="nn", extra={"verify": str(ca)})).verify == str(ca)
    assert HdfsConfig.from_connection(conn(host="nn", extra={"verify": False})).verify is False
    assert HdfsConfig.from_connection(conn(host="nn", extra={"verify": "off", "ca_bundle": str(ca)})).verify is False
    with pytest.raises(ConnectionConfigError, match="does not exist"):
        HdfsConfig.from_connection(conn(host="nn", extra={"ca_bundle": str(tmp_path / "missing.pem")}))
    with pytest.raises(ConnectionConfigError, match="absolute path of a CA bundle"):
        HdfsConfig.from_connection(conn(host="nn", extra={"ca_bundle": "ca.pem"}))


def test_token_is_kept_out_of_repr() -> None:
    c = HdfsConfig.from_connection(conn(host="nn", password="s3cr3t-tok", extra={"auth": "token"}))
    assert c.token == "s3cr3t-tok"
    assert "s3cr3t-tok" not in repr(c)


def test_local_root() -> None:
    c = HdfsConfig.from_connection(conn(host="file:///tmp/lake"))
    assert c.local_root == "/tmp/lake"
    assert c.namenodes == ()


@pytest.mark.parametrize(("host", "fix"), [("file://tmp/lake", "file:///tmp/lake"), ("file://lake", "file:///lake")])
def test_relative_file_root_is_refused_naming_the_fix(host: str, fix: str) -> None:
    """``file://tmp/lake`` would put 'tmp' in the URL's host part and silently re-root at /lake."""
    with pytest.raises(ConnectionConfigError, match="c1") as info:
        HdfsConfig.from_connection(conn(host=host))
    assert "three slashes" in str(info.value)
    assert repr(fix) in str(info.value)
    ok, message = _hook_for(host).test_connection()
    assert not ok
    assert repr(fix) in message


def _hook_for(host: str) -> HdfsHook:
    hook = HdfsHook("c1")
    hook.get_connection = lambda conn_id: conn(host=host)  # type: ignore[method-assign]
    return hook


def test_single_slash_file_root() -> None:
    assert HdfsConfig.from_connection(conn(host="file:/tmp/lake")).local_root == "/tmp/lake"


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"host": ""}, "Host is empty"),
        ({"host": "ftp://nn1"}, "not a valid http(s) URL"),
        ({"host": "nn1:99999"}, "invalid port"),
        ({"host": "http://nn1:9870/webhdfs"}, "must not have a path"),
        ({"host": "nn", "extra": {"auth": "ldap"}}, "use 'simple', 'token' or 'kerberos'"),
        ({"host": "nn", "extra": {"auth": "token"}}, "Password is empty"),
        ({"host": "nn", "extra": {"timeout": "soon"}}, "use a number"),
        ({"host": "nn", "extra": {"timeout": 0}}, "use a positive number"),
        ({"host": "nn", "extra": {"verify": "maybe"}}, "or the absolute path of a CA bundle file"),
    ],
)
def test_malformed_connections_name_the_field(kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConnectionConfigError, match="c1") as info:
        HdfsConfig.from_connection(conn(**kw))
    assert fragment in str(info.value)


def test_token_never_in_unavailable_error() -> None:
    """requests' messages contain the URL with ?delegation=...; ours must not."""
    config = HdfsConfig(conn_id="c1", namenodes=("http://127.0.0.1:1",), auth="token", token="TOPSECRET123", timeout=2)
    hook = HdfsHook("c1", config=config)
    with pytest.raises(StorageUnavailableError) as info:
        hook.storage.stat("/x")
    assert "TOPSECRET123" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert "127.0.0.1:1" in str(info.value)


def test_test_connection_reports_each_namenode() -> None:
    config = HdfsConfig(conn_id="c1", namenodes=("http://127.0.0.1:1", "http://127.0.0.1:2"), timeout=2)
    ok, message = HdfsHook("c1", config=config).test_connection()
    assert not ok
    assert "http://127.0.0.1:1: unavailable" in message
    assert "http://127.0.0.1:2: unavailable" in message
