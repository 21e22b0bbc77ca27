"""The one path parser: hdfs://, file:// and plain absolute paths mean the same place everywhere."""

from __future__ import annotations

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.storage.paths import StoragePath, overlaps, parse_path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/data/x", StoragePath(False, "/data/x")),
        ("/data//x/", StoragePath(False, "/data/x")),
        ("hdfs://nameservice1/data/x", StoragePath(False, "/data/x")),
        ("webhdfs://nn:9870/data/x", StoragePath(False, "/data/x")),
        ("file:///tmp/lake/x", StoragePath(True, "/tmp/lake/x")),
        ("//data/x", StoragePath(False, "/data/x")),
    ],
)
def test_parse_path_accepts(value: str, expected: StoragePath) -> None:
    assert parse_path(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("data/x", "not absolute"),
        ("", "empty"),
        ("s3://bucket/x", "unsupported scheme 's3'"),
        ("/data/../etc", "contains '..'"),
    ],
)
def test_parse_path_rejects_with_a_fix(value: str, fragment: str) -> None:
    with pytest.raises(InvalidSpecError, match=fragment) as info:
        parse_path(value)
    assert repr(value) in str(info.value) or value == ""


def test_plain_paths_follow_the_callers_default_and_urls_override_it() -> None:
    assert parse_path("/data/x", default_local=True) == StoragePath(True, "/data/x")
    assert parse_path("hdfs:///data/x", default_local=True) == StoragePath(False, "/data/x")
    assert parse_path("file:/data/x") == StoragePath(True, "/data/x")
    assert parse_path("file://localhost/data/x") == StoragePath(True, "/data/x")
    assert str(StoragePath(False, "/data/x")) == "hdfs:///data/x"
    assert parse_path(str(StoragePath(True, "/a b"))) == StoragePath(True, "/a b")


@pytest.mark.parametrize("value", ["file://tmp/lake", "file://lake", "file://data/x/"])
def test_a_file_url_with_a_host_part_is_refused_not_re_rooted(value: str) -> None:
    # urlsplit reads 'tmp' as a host: the path would silently become '/lake' (or '/').
    with pytest.raises(InvalidSpecError, match="three slashes") as info:
        parse_path(value, arg="output_path")
    assert "output_path=" in str(info.value)


def test_root_is_refused_where_a_dataset_is_replaced() -> None:
    assert parse_path("/").path == "/"
    with pytest.raises(InvalidSpecError, match="root directory"):
        parse_path("hdfs:///", allow_root=False)


def test_overlaps_only_on_the_same_file_system() -> None:
    assert overlaps(parse_path("/a"), parse_path("/a/b"))
    assert overlaps(parse_path("/a/b"), parse_path("/a"))
    assert overlaps(parse_path("/a"), parse_path("/a/"))
    assert not overlaps(parse_path("/a"), parse_path("/ab"))
    assert not overlaps(parse_path("/a"), parse_path("file:///a"))
