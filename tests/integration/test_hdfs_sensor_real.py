"""HdfsSuccessSensor and HdfsHook against a real NameNode + DataNode (WebHDFS)."""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from airflow_ml_provider.exceptions import ConnectionConfigError, StorageRefusedError
from airflow_ml_provider.hooks.webhdfs import HdfsHook
from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor
from scripts.testbed.counting_proxy import CountingProxy
from scripts.testbed.loopback_http import free_port
from tests.integration.conftest import admin_client, set_hdfs_conn

pytestmark = pytest.mark.integration
CTX: Any = {}


def sensor(**kw: Any) -> HdfsSuccessSensor:
    kw.setdefault("hdfs_conn_id", "hdfs_it")
    kw.setdefault("poke_interval", 0.2)
    kw.setdefault("timeout", 3)
    return HdfsSuccessSensor(task_id="wait", **kw)


@pytest.fixture
def conn(hdfs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_hdfs_conn(monkeypatch, "hdfs_it", hdfs.namenode_urls)


def touch(hdfs: Any, path: str, when: dt.datetime | None = None) -> None:
    client = admin_client(hdfs)
    client.write(path, data=b"", overwrite=True)
    if when is not None:
        ms = int(when.timestamp() * 1000)
        client.set_times(path, access_time=ms, modification_time=ms)


def test_all_partitions_present_returns_markers_and_times(hdfs: Any, hdfs_dir: str, conn: None) -> None:
    for country in ("FR", "DE", "IT"):
        touch(hdfs, f"{hdfs_dir}/country={country}/_SUCCESS")
    result = sensor(paths=[f"{hdfs_dir}/country={c}" for c in ("FR", "DE", "IT")]).execute(CTX)
    status = admin_client(hdfs).status(f"{hdfs_dir}/country=FR/_SUCCESS")
    by_path = {m["path"]: m["modification_time"] for m in result}
    assert set(by_path) == {f"{hdfs_dir}/country={c}/_SUCCESS" for c in ("FR", "DE", "IT")}
    expected = dt.datetime.fromtimestamp(status["modificationTime"] / 1000, tz=dt.timezone.utc).isoformat()
    assert by_path[f"{hdfs_dir}/country=FR/_SUCCESS"] == expected


def test_waits_for_the_last_partition(hdfs: Any, hdfs_dir: str, conn: None) -> None:
    touch(hdfs, f"{hdfs_dir}/a/_SUCCESS")
    timer = threading.Timer(1.5, touch, args=(hdfs, f"{hdfs_dir}/b/_SUCCESS"))
    timer.start()
    started = time.monotonic()
    result = sensor(paths=[f"{hdfs_dir}/a", f"{hdfs_dir}/b"], timeout=30).execute(CTX)
    timer.join()
    assert time.monotonic() - started >= 1.4
    assert len(result) == 2


def test_stale_marker_does_not_count(hdfs: Any, hdfs_dir: str, conn: None) -> None:
    touch(hdfs, f"{hdfs_dir}/_SUCCESS", when=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    with pytest.raises(AirflowSensorTimeout, match="older than the freshness bound"):
        sensor(paths=hdfs_dir, newer_than="2026-11-01T00:00:00+00:00", timeout=1).execute(CTX)
    touch(hdfs, f"{hdfs_dir}/_SUCCESS")  # rewritten now: fresh
    assert sensor(paths=hdfs_dir, newer_than="2026-11-01T00:00:00+00:00").execute(CTX)


@pytest.mark.parametrize("n_markers", [1, 2], ids=["getfilestatus", "liststatus"])
def test_permission_denied_fails_at_once(hdfs: Any, hdfs_dir: str, conn: None, n_markers: int) -> None:
    """403 AccessControlException is never 'not yet' (HdfsCLI's status(strict=False) says None)."""
    secure = f"{hdfs_dir}/secure"
    for i in range(n_markers):
        touch(hdfs, f"{secure}/p{i}/_SUCCESS" if n_markers == 1 else f"{secure}/_SUCCESS_{i}")
    admin_client(hdfs).set_permission(secure, "700")
    paths = [f"{secure}/p0"] if n_markers == 1 else [f"{secure}/_SUCCESS_{i}" for i in range(n_markers)]
    started = time.monotonic()
    with pytest.raises(StorageRefusedError) as info:
        sensor(paths=paths, marker="_SUCCESS" if n_markers == 1 else None, timeout=60, soft_fail=True).execute(CTX)
    assert time.monotonic() - started < 10  # at once, not at the 60 s timeout
    message = str(info.value)
    assert "AccessControlException" in message
    assert "Permission denied" in message
    assert hdfs.namenode_urls[0] in message
    assert secure in message
    assert info.value.remote_exception == "AccessControlException"


def test_refused_identity_fails_at_once(hdfs: Any, hdfs_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real NameNode refuses an impersonation it was not configured to allow."""
    set_hdfs_conn(monkeypatch, "hdfs_doas", hdfs.namenode_urls, proxy_user="alice")
    started = time.monotonic()
    with pytest.raises(StorageRefusedError) as info:
        sensor(paths=hdfs_dir, hdfs_conn_id="hdfs_doas", timeout=60).execute(CTX)
    assert time.monotonic() - started < 10
    assert "etl is not allowed to impersonate alice" in str(info.value)
    assert "rejected the connection's identity" in str(info.value)
    assert hdfs.namenode_urls[0] in str(info.value)


def test_marker_that_is_a_directory_fails_at_once(hdfs: Any, hdfs_dir: str, conn: None) -> None:
    admin_client(hdfs).makedirs(f"{hdfs_dir}/_SUCCESS")
    with pytest.raises(StorageRefusedError, match="is a directory, not a file"):
        sensor(paths=hdfs_dir, timeout=60).execute(CTX)


def test_watched_path_that_is_a_file_fails_at_once(hdfs: Any, hdfs_dir: str, conn: None) -> None:
    touch(hdfs, f"{hdfs_dir}/part-0000.parquet")
    with pytest.raises(StorageRefusedError, match="is a file, not a directory"):
        sensor(
            paths=[f"{hdfs_dir}/part-0000.parquet/_A", f"{hdfs_dir}/part-0000.parquet/_B"],
            marker=None,
            timeout=60,
        ).execute(CTX)


def test_malformed_namenode_url_fails_at_once(monkeypatch: pytest.MonkeyPatch, hdfs_dir: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HDFS_BAD", '{"conn_type": "ml_hdfs", "host": "http://nn1:notaport"}')
    with pytest.raises(ConnectionConfigError, match=r"'hdfs_bad'.*invalid port"):
        sensor(paths=hdfs_dir, hdfs_conn_id="hdfs_bad", timeout=60).execute(CTX)


def test_no_namenode_answering_pokes_again_and_times_out_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    set_hdfs_conn(monkeypatch, "hdfs_dead", [dead], timeout=1)
    pokes: list[Any] = []
    s = sensor(paths="/data/x", hdfs_conn_id="hdfs_dead", timeout=1.5, poke_interval=0.3)
    original = s.poke

    def counted_poke(context: Any) -> Any:
        pokes.append(1)
        return original(context)

    monkeypatch.setattr(s, "poke", counted_poke)
    with pytest.raises(AirflowSensorTimeout) as info:
        s.execute(CTX)
    assert len(pokes) >= 2
    assert "No NameNode answered" in str(info.value)
    assert dead.removeprefix("http://") in str(info.value)
    assert str(info.value).count("Last error") == 1  # the latest error, not one per poke


def test_soft_fail_skips_only_on_timeout(hdfs: Any, hdfs_dir: str, conn: None) -> None:
    with pytest.raises(AirflowSkipException):
        sensor(paths=f"{hdfs_dir}/never", timeout=0.5, soft_fail=True).execute(CTX)


def test_45_markers_under_one_directory_cost_one_liststatus_per_poke(
    hdfs: Any, hdfs_dir: str, proxy: CountingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    countries = [f"C{i:02d}" for i in range(45)]
    for c in countries[:-1]:
        touch(hdfs, f"{hdfs_dir}/markers/_SUCCESS_{c}")
    set_hdfs_conn(monkeypatch, "hdfs_counted", [proxy.url])
    s = sensor(
        paths=[f"{hdfs_dir}/markers/_SUCCESS_{c}" for c in countries],
        marker=None,
        hdfs_conn_id="hdfs_counted",
    )
    proxy.reset()
    assert s.poke(CTX) is False  # one missing
    assert proxy.counts() == {"LISTSTATUS": 1}
    touch(hdfs, f"{hdfs_dir}/markers/_SUCCESS_{countries[-1]}")
    proxy.reset()
    assert s.poke(CTX)
    assert proxy.counts() == {"LISTSTATUS": 1}


def test_test_connection_names_the_active_namenode(hdfs: Any, conn: None) -> None:
    ok, message = HdfsHook("hdfs_it").test_connection()
    assert ok, message
    assert f"{hdfs.namenode_urls[0]}: active" in message


def test_local_connection_kind(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection whose host is file:///dir serves the same DAG paths from local disk."""
    (tmp_path / "data" / "FR").mkdir(parents=True)
    (tmp_path / "data" / "FR" / "_SUCCESS").write_text("")
    monkeypatch.setenv("AIRFLOW_CONN_LAKE", f'{{"conn_type": "ml_hdfs", "host": "file://{tmp_path}"}}')
    result = sensor(paths="/data/FR", hdfs_conn_id="lake").execute(CTX)
    assert result[0]["path"] == "/data/FR/_SUCCESS"


@pytest.fixture
def tls_proxy(hdfs: Any, tmp_path: Path) -> Iterator[tuple[CountingProxy, Path]]:
    """HTTPS (self-signed certificate for 127.0.0.1) in front of the real NameNode."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with CountingProxy(hdfs.namenode_urls[0], tls=context) as proxy:
        yield proxy, cert


def test_tls_is_verified_by_default(
    hdfs: Any, hdfs_dir: str, tls_proxy: tuple[CountingProxy, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, cert = tls_proxy
    touch(hdfs, f"{hdfs_dir}/_SUCCESS")
    set_hdfs_conn(monkeypatch, "hdfs_tls", [proxy.url])
    with pytest.raises(StorageRefusedError, match=r"TLS verification failed.*ca_bundle"):
        sensor(paths=hdfs_dir, hdfs_conn_id="hdfs_tls", timeout=60).execute(CTX)
    set_hdfs_conn(monkeypatch, "hdfs_tls", [proxy.url], ca_bundle=str(cert))
    assert sensor(paths=hdfs_dir, hdfs_conn_id="hdfs_tls").execute(CTX)[0]["path"] == f"{hdfs_dir}/_SUCCESS"
