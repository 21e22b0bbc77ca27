"""How the sensor and the storage read answers that are not WebHDFS's happy path (issue 9).

A 401 from a Kerberized NameNode, a web page on the configured port, TLS spoken to a plain-HTTP
port (and the reverse), and watched paths that are files. The 401 comes from an HTTP front that
answers as Hadoop's SPNEGO filter does (a real Kerberized NameNode is out of reach here); every
other case runs against the real NameNode or the real local disk.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout

from airflow_ml_provider.exceptions import (
    ConnectionConfigError,
    InvalidSpecError,
    StorageRefusedError,
    StorageUnavailableError,
)
from airflow_ml_provider.hooks.webhdfs import HdfsHook
from airflow_ml_provider.storage.markers import marker_locations
from scripts.testbed.canned_http import HTML_200, NEGOTIATE_401, CannedHttpServer
from scripts.testbed.counting_proxy import CountingProxy
from tests.integration.conftest import admin_client, set_hdfs_conn
from tests.integration.test_hdfs_sensor_real import CTX, conn, sensor, tls_proxy, touch

pytestmark = pytest.mark.integration
__all__ = ["conn", "tls_proxy"]  # the fixtures, shared with the sensor tests


def fails_at_once(started: float) -> None:
    assert time.monotonic() - started < 10  # not at the 60 s timeout


# -- 401 (issue 9, item 1) ----------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["simple", "kerberos"])
@pytest.mark.parametrize("soft_fail", [False, True], ids=["hard", "soft_fail"])
@pytest.mark.parametrize("n_markers", [1, 2], ids=["getfilestatus", "liststatus"])
def test_401_negotiate_fails_at_once_even_with_soft_fail(
    monkeypatch: pytest.MonkeyPatch, auth: str, soft_fail: bool, n_markers: int
) -> None:
    """A NameNode asking for Kerberos (no ticket here) is a refusal, never "poke again" or a skip."""
    with CannedHttpServer(NEGOTIATE_401) as front:
        set_hdfs_conn(monkeypatch, "hdfs_krb", [front.url], auth=auth)
        paths = ["/data/x"] if n_markers == 1 else ["/data/x/_A", "/data/x/_B"]
        started = time.monotonic()
        with pytest.raises(StorageRefusedError) as info:
            sensor(
                paths=paths,
                marker="_SUCCESS" if n_markers == 1 else None,
                hdfs_conn_id="hdfs_krb",
                timeout=60,
                soft_fail=soft_fail,
            ).execute(CTX)
        fails_at_once(started)
        assert front.requests  # it did ask
    message = str(info.value)
    assert "HTTP 401" in message
    assert "Kerberos ticket" in message
    assert front.url.removeprefix("http://") in message
    assert "/data/x" in message
    assert not message.endswith("..")


def test_401_on_other_operations_and_test_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    with CannedHttpServer(NEGOTIATE_401) as front:
        set_hdfs_conn(monkeypatch, "hdfs_krb", [front.url])
        with pytest.raises(StorageRefusedError, match=r"Creating '/data/x'.*HTTP 401.*Kerberos ticket"):
            HdfsHook("hdfs_krb").storage.makedirs("/data/x")
        ok, message = HdfsHook("hdfs_krb").test_connection()
    assert not ok
    assert "HTTP 401" in message


def test_5xx_page_without_remote_exception_stays_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side of the 401 rule: a gateway's 502 page can heal by waiting."""
    bad_gateway = (502, {"Content-Type": "text/html"}, b"<html><body>502 Bad Gateway</body></html>")
    with CannedHttpServer(bad_gateway) as front:
        set_hdfs_conn(monkeypatch, "hdfs_gw", [front.url])
        with pytest.raises(StorageUnavailableError, match="Creating '/data/x'"):
            HdfsHook("hdfs_gw").storage.makedirs("/data/x")


# -- a web page on the port (item 4) -------------------------------------------------------------


@pytest.mark.parametrize("n_markers", [1, 2], ids=["getfilestatus", "liststatus"])
def test_web_page_on_the_port_is_a_connection_error(monkeypatch: pytest.MonkeyPatch, n_markers: int) -> None:
    with CannedHttpServer(HTML_200) as page:
        set_hdfs_conn(monkeypatch, "hdfs_page", [page.url])
        paths = ["/data/x"] if n_markers == 1 else ["/data/x/_A", "/data/x/_B"]
        started = time.monotonic()
        with pytest.raises(ConnectionConfigError) as info:
            sensor(
                paths=paths,
                marker="_SUCCESS" if n_markers == 1 else None,
                hdfs_conn_id="hdfs_page",
                timeout=60,
                soft_fail=True,
            ).execute(CTX)
        fails_at_once(started)
    message = str(info.value)
    assert "/data/x" in message
    assert page.url in message  # the origin that answered
    assert "text/html" in message
    assert "port is probably wrong" in message


def test_web_page_on_the_port_for_other_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    with CannedHttpServer(HTML_200) as page:
        set_hdfs_conn(monkeypatch, "hdfs_page", [page.url])
        with pytest.raises(ConnectionConfigError, match=r"Renaming '/data/x' to '/data/y'.*port is probably"):
            HdfsHook("hdfs_page").storage.rename("/data/x", "/data/y")


# -- a watched path that is a file (item 3) ------------------------------------------------------


@pytest.mark.parametrize("n_markers", [1, 2], ids=["stat", "list_dir"])
def test_watched_local_path_that_is_a_file_fails_at_once(tmp_path: Path, n_markers: int) -> None:
    data = tmp_path / "part-0000.parquet"
    data.write_bytes(b"PAR1")
    paths = [f"file://{data}"] if n_markers == 1 else [f"file://{data}/_A", f"file://{data}/_B"]
    started = time.monotonic()
    with pytest.raises(StorageRefusedError, match="is a file, not a directory") as info:
        sensor(paths=paths, marker="_SUCCESS" if n_markers == 1 else None, timeout=60, soft_fail=True).execute(CTX)
    fails_at_once(started)
    assert str(data) in str(info.value) or "part-0000.parquet" in str(info.value)


def test_watched_path_that_is_a_file_on_a_local_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "FR").write_text("not a directory")
    monkeypatch.setenv("AIRFLOW_CONN_LAKE", f'{{"conn_type": "ml_hdfs", "host": "file://{tmp_path}"}}')
    started = time.monotonic()
    with pytest.raises(StorageRefusedError, match=r"'/data/FR'.*is a file, not a directory"):
        sensor(paths="/data/FR", hdfs_conn_id="lake", timeout=60).execute(CTX)
    fails_at_once(started)


def test_watched_hdfs_path_that_is_a_file_fails_at_once_with_one_marker(
    hdfs: Any, hdfs_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GETFILESTATUS of file/_SUCCESS answers 404 like a missing marker: the parent tells."""
    set_hdfs_conn(monkeypatch, "hdfs_it", hdfs.namenode_urls)
    touch(hdfs, f"{hdfs_dir}/part-0000.parquet")
    started = time.monotonic()
    with pytest.raises(StorageRefusedError, match="is a file, not a directory") as info:
        sensor(paths=f"{hdfs_dir}/part-0000.parquet", timeout=60, soft_fail=True).execute(CTX)
    fails_at_once(started)
    assert f"{hdfs_dir}/part-0000.parquet" in str(info.value)
    assert hdfs.namenode_urls[0] in str(info.value)


# -- relative file:// roots (item 2) -------------------------------------------------------------


@pytest.mark.parametrize("host", ["file://tmp/lake", "file://lake"])
def test_relative_file_root_connection_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REL", f'{{"conn_type": "ml_hdfs", "host": "{host}"}}')
    with pytest.raises(ConnectionConfigError, match=r"'rel'.*three slashes, e\.g\. 'file:///"):
        sensor(paths="/data/FR", hdfs_conn_id="rel", timeout=60, soft_fail=True).execute(CTX)


def test_single_slash_file_root_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data" / "FR").mkdir(parents=True)
    (tmp_path / "data" / "FR" / "_SUCCESS").write_text("")
    monkeypatch.setenv("AIRFLOW_CONN_LAKE1", f'{{"conn_type": "ml_hdfs", "host": "file:{tmp_path}"}}')
    assert sensor(paths="/data/FR", hdfs_conn_id="lake1").execute(CTX)[0]["path"] == "/data/FR/_SUCCESS"


@pytest.mark.parametrize("path", ["file://tmp/lake", "file://lake"])
def test_relative_file_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidSpecError, match=r"paths=.*three slashes"):
        sensor(paths=[path])


# -- TLS hints (item 5) --------------------------------------------------------------------------


def test_https_against_a_plain_http_port_says_so(hdfs: Any, hdfs_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    https = hdfs.namenode_urls[0].replace("http://", "https://")
    set_hdfs_conn(monkeypatch, "hdfs_https", [https])
    started = time.monotonic()
    with pytest.raises(StorageRefusedError) as info:
        sensor(paths=hdfs_dir, hdfs_conn_id="hdfs_https", timeout=60).execute(CTX)
    fails_at_once(started)
    message = str(info.value)
    assert "plain HTTP, not TLS" in message
    assert "Set the connection's extra 'ca_bundle'" not in message
    assert https in message


def test_plain_http_against_a_tls_port_hints_use_ssl(
    hdfs: Any, hdfs_dir: str, tls_proxy: tuple[CountingProxy, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, _ = tls_proxy
    set_hdfs_conn(monkeypatch, "hdfs_plain", [proxy.url.replace("https://", "http://")])
    with pytest.raises(AirflowSensorTimeout) as info:
        sensor(paths=hdfs_dir, hdfs_conn_id="hdfs_plain", timeout=1.5, poke_interval=0.3).execute(CTX)
    assert "'use_ssl' to true" in str(info.value)


# -- a directory the user may traverse but not list (item 6) -------------------------------------


def test_execute_only_parent_falls_back_to_one_status_per_marker(hdfs: Any, hdfs_dir: str, conn: None) -> None:
    """A 711 directory refuses LISTSTATUS but not GETFILESTATUS of its files, as the stock sensor finds."""
    parent = f"{hdfs_dir}/drop"
    for name in ("_A", "_B"):
        touch(hdfs, f"{parent}/{name}")
    admin_client(hdfs).set_permission(parent, "711")
    markers = [f"{parent}/_A", f"{parent}/_B"]
    result = sensor(paths=markers, marker=None).execute(CTX)
    assert sorted(r["path"] for r in result) == markers
    report = HdfsHook("hdfs_it").check_markers(marker_locations([*markers, f"{parent}/_C"], None))
    assert report.requests == 4  # the refused listing, then one status per marker
    assert report.missing == [f"{parent}/_C"]  # missing, not "permission denied"
    with pytest.raises(AirflowSensorTimeout, match="_C"):
        sensor(paths=[*markers, f"{parent}/_C"], marker=None, timeout=1).execute(CTX)


# -- naive newer_than follows [core] default_timezone (item 7) -----------------------------------


def test_naive_newer_than_is_read_in_the_default_timezone(
    hdfs: Any, hdfs_dir: str, conn: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10:00 in Tokyo is 01:00 UTC: a marker written at 03:00 UTC is fresh there, stale in UTC."""
    touch(hdfs, f"{hdfs_dir}/_SUCCESS", when=dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc))
    monkeypatch.setenv("AIRFLOW__CORE__DEFAULT_TIMEZONE", "Asia/Tokyo")
    assert sensor(paths=hdfs_dir, newer_than="2026-11-23T10:00:00").execute(CTX)
    assert sensor(paths=hdfs_dir, newer_than=dt.datetime(2026, 11, 23, 10, 0)).execute(CTX)
    monkeypatch.setenv("AIRFLOW__CORE__DEFAULT_TIMEZONE", "UTC")
    with pytest.raises(AirflowSensorTimeout) as info:
        sensor(paths=hdfs_dir, newer_than="2026-11-23T10:00:00", timeout=1).execute(CTX)
    message = str(info.value)
    assert "older than the freshness bound 2026-11-23T10:00:00+00:00" in message  # the bound, not only the marker
    assert f"{hdfs_dir}/_SUCCESS (2026-11-23T03:00:00+00:00)" in message


# -- the denying ancestor and wrong ports (item 9) -----------------------------------------------


@pytest.mark.parametrize("n_markers", [1, 2], ids=["getfilestatus", "liststatus"])
def test_denied_traversal_names_the_directory_that_denies(hdfs: Any, hdfs_dir: str, conn: None, n_markers: int) -> None:
    """Hadoop 2.7 names the marker; the message names the 700 directory above it, owner and mode."""
    locked = f"{hdfs_dir}/locked"
    parent = f"{locked}/country=FR/week=48"
    for i in range(n_markers):
        touch(hdfs, f"{parent}/_SUCCESS_{i}")
    admin_client(hdfs).set_permission(locked, "700")
    paths = [f"{parent}/_SUCCESS_{i}" for i in range(n_markers)]
    with pytest.raises(StorageRefusedError) as info:
        sensor(paths=paths, marker=None, timeout=60, soft_fail=True).execute(CTX)
    message = str(info.value)
    assert f"The directory '{locked}' (owner {hdfs.superuser}, group supergroup, permission 700)" in message
    assert "Grant execute (x)" in message
    assert "access=EXECUTE" in message  # Hadoop's own words are kept
    assert not message.endswith("..")


@pytest.mark.parametrize("port", ["datanode", "rpc"])
@pytest.mark.parametrize("n_markers", [1, 2], ids=["getfilestatus", "liststatus"])
def test_datanode_or_rpc_port_gets_the_wrong_port_hint(
    hdfs: Any, hdfs_dir: str, monkeypatch: pytest.MonkeyPatch, port: str, n_markers: int
) -> None:
    url = hdfs.datanode_http_url if port == "datanode" else hdfs.rpc_url.replace("hdfs://", "http://")
    set_hdfs_conn(monkeypatch, "hdfs_port", [url])
    paths = [hdfs_dir] if n_markers == 1 else [f"{hdfs_dir}/_A", f"{hdfs_dir}/_B"]
    started = time.monotonic()
    with pytest.raises(ConnectionConfigError) as info:
        sensor(
            paths=paths, marker="_SUCCESS" if n_markers == 1 else None, hdfs_conn_id="hdfs_port", timeout=60
        ).execute(CTX)
    fails_at_once(started)
    message = str(info.value)
    assert "port is probably wrong" in message
    assert "dfs.namenode.http-address" in message
    assert url in message
    assert ".." not in message
