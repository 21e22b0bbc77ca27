"""One storage contract, two backends: the same checks on local disk and on a real NameNode."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.exceptions import StorageRefusedError, StorageUnavailableError
from airflow_ml_provider.storage.base import Storage
from tests.integration.conftest import admin_client

pytestmark = pytest.mark.integration


def _write_parquet(storage: Storage, path: str, rows: int, country: str | None = None) -> None:
    """Write a small Parquet file through the contract's own staging (no second code path)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(rows)), "x": [float(i) / 2 for i in range(rows)]})
    if country is not None:
        table = table.append_column("country_in_file", pa.array([country] * rows))
    with storage.staged(path) as staging:
        with staging.part("part-00000.parquet") as local:
            pq.write_table(table, local)
        staging.publish()


@pytest.fixture(params=["local", "hdfs"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Storage, str]]:
    """A backend and a fresh root directory on it."""
    if request.param == "local":
        from airflow_ml_provider.storage.local import LocalStorage

        yield LocalStorage(str(tmp_path)), "/lake"
        return
    from airflow_ml_provider.storage.webhdfs import WebHdfsStorage

    cluster: Any = request.getfixturevalue("hdfs")
    root = f"/contract/{uuid.uuid4().hex[:10]}"
    admin = admin_client(cluster)
    admin.makedirs(root)
    yield WebHdfsStorage(admin, cluster.namenode_urls), root
    admin.delete(root, recursive=True)


def test_dataset_listing_with_hive_partitions_and_hidden_files(storage: tuple[Storage, str], tmp_path: Path) -> None:
    backend, root = storage
    for country, rows in (("DE", 3), ("FR", 2)):
        _write_parquet(backend, f"{root}/in/country={country}", rows, country)
    backend.makedirs(f"{root}/in/_temporary/x")
    backend.write_bytes(f"{root}/in/_temporary/x/part-0.parquet", b"junk")
    backend.write_bytes(f"{root}/in/.part-0.crc", b"junk")

    files = backend.list_dataset(f"{root}/in")
    assert files is not None
    assert [(f.path, f.partitions) for f in files] == [
        (f"{root}/in/country=DE/part-00000.parquet", (("country", "DE"),)),
        (f"{root}/in/country=FR/part-00000.parquet", (("country", "FR"),)),
    ]
    assert all(f.size > 0 for f in files)
    assert backend.list_dataset(f"{root}/missing") is None
    one = backend.list_dataset(files[0].path)
    assert one is not None
    assert [f.path for f in one] == [files[0].path]

    assert backend.read_schema(files[0]).names == ["id", "x", "country_in_file"]
    batches = list(backend.iter_batches(files[0], columns=["x", "country"], batch_size=2, scratch=str(tmp_path)))
    assert [b.num_rows for b in batches] == [2, 1]
    assert batches[0].schema.names == ["x", "country"]
    assert batches[0].column("country").to_pylist() == ["DE", "DE"]
    with pytest.raises(ValueError, match="no column 'nope'"):
        list(backend.iter_batches(files[0], columns=["nope"], batch_size=2, scratch=str(tmp_path)))


def test_publish_replaces_the_previous_version_and_writes_the_marker_last(
    storage: tuple[Storage, str], tmp_path: Path
) -> None:
    backend, root = storage
    final = f"{root}/out/day=1"
    _write_parquet(backend, final, 5)
    first = backend.list_dir(final)
    assert first is not None
    assert set(first) == {"_SUCCESS", "part-00000.parquet"}

    _write_parquet(backend, final, 7)
    listing = backend.list_dir(final)
    assert listing is not None
    assert set(listing) == {"_SUCCESS", "part-00000.parquet"}
    assert listing["_SUCCESS"].modification_time >= listing["part-00000.parquet"].modification_time
    files = backend.list_dataset(final)
    assert files is not None
    assert (
        sum(b.num_rows for b in backend.iter_batches(files[0], columns=None, batch_size=100, scratch=str(tmp_path)))
        == 7
    )
    siblings = backend.list_dir(f"{root}/out")
    assert siblings is not None
    assert set(siblings) == {"day=1"}, "no .tmp- or .old- directory may stay behind"


def test_a_failed_write_leaves_nothing_and_keeps_the_old_version(storage: tuple[Storage, str], tmp_path: Path) -> None:
    backend, root = storage
    final = f"{root}/out"
    _write_parquet(backend, final, 4)

    def fail_half_way() -> None:
        with backend.staged(final) as staging:
            with staging.part("part-00000.parquet") as local:
                Path(local).write_bytes(b"half")
            raise RuntimeError("scoring failed")

    with pytest.raises(RuntimeError, match="scoring failed"):
        fail_half_way()
    assert backend.list_dir(root) is not None
    assert set(backend.list_dir(root) or {}) == {"out"}
    files = backend.list_dataset(final)
    assert files is not None
    assert (
        sum(b.num_rows for b in backend.iter_batches(files[0], columns=None, batch_size=100, scratch=str(tmp_path)))
        == 4
    )
    backend.delete(final)
    backend.delete(final)  # a missing path is fine
    assert backend.stat(final) is None


def test_a_file_where_a_directory_is_needed_is_refused(storage: tuple[Storage, str]) -> None:
    backend, root = storage
    backend.write_bytes(f"{root}/plain", b"x")
    with pytest.raises(StorageRefusedError, match="is a file, not a directory"):
        backend.list_dir(f"{root}/plain")


def test_permission_denied_is_refused_with_path_and_cause_on_hdfs(hdfs: Any) -> None:
    """On HDFS as a user without write access: refused (permanent), naming path and cause."""
    from airflow_ml_provider.storage.webhdfs import WebHdfsStorage

    admin = admin_client(hdfs)
    root = f"/contract-locked/{uuid.uuid4().hex[:8]}"
    admin.makedirs(root, permission="755")
    try:
        from hdfs import InsecureClient

        stranger = WebHdfsStorage(
            InsecureClient(hdfs.namenode_urls[0], user="stranger", timeout=10), hdfs.namenode_urls
        )
        with pytest.raises(StorageRefusedError, match=r"AccessControlException") as info:
            stranger.makedirs(f"{root}/out")
        assert root in str(info.value)
        assert not isinstance(info.value, StorageUnavailableError)
        assert info.value.retryable is False
    finally:
        admin.delete(root, recursive=True)


def test_no_namenode_is_unavailable_not_refused() -> None:
    from hdfs import InsecureClient

    from airflow_ml_provider.storage.webhdfs import WebHdfsStorage
    from scripts.testbed.hdfs import free_ports

    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    backend = WebHdfsStorage(InsecureClient(url, user="etl", timeout=2), [url])
    with pytest.raises(StorageUnavailableError) as info:
        backend.makedirs("/x")
    assert info.value.retryable is True
    with pytest.raises(StorageUnavailableError):
        backend.stat("/x")


def test_parts_in_partition_directories_and_small_file_reads(storage: tuple[Storage, str], tmp_path: Path) -> None:
    """``Staging.part`` takes ``country=DE/part-0.parquet`` (the directory is made), refuses hidden or
    climbing segments; ``read_bytes`` reads a small file whole, ``None`` for a missing one or a directory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_ml_provider.exceptions import MlProviderError

    backend, root = storage
    with backend.staged(f"{root}/parts") as staging:
        for country in ("DE", "FR"):
            with staging.part(f"country={country}/part-0.parquet") as local:
                pq.write_table(pa.table({"x": [1, 2]}), local)
        for bad in ("_tmp/part-0.parquet", "../escape.parquet", "a//b.parquet", ".hidden"):
            with pytest.raises(MlProviderError, match="non-hidden"), staging.part(bad):
                pass
        staging.publish()
    files = backend.list_dataset(f"{root}/parts")
    assert files is not None
    assert [(f.path.rsplit("/", 2)[-2], dict(f.partitions)) for f in files] == [
        ("country=DE", {"country": "DE"}),
        ("country=FR", {"country": "FR"}),
    ]
    backend.write_bytes(f"{root}/parts/_state.json", b'{"a": 1}')
    assert backend.read_bytes(f"{root}/parts/_state.json", str(tmp_path)) == b'{"a": 1}'
    assert backend.read_bytes(f"{root}/parts/_missing.json", str(tmp_path)) is None
    assert backend.read_bytes(f"{root}/parts", str(tmp_path)) is None
