"""Pure marker logic: path parsing, grouping into few requests, classification."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError, StorageRefusedError
from airflow_ml_provider.storage.base import FileInfo
from airflow_ml_provider.storage.markers import check_markers, marker_locations, parse_newer_than

T0 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)


class CountingBackend:
    """A fake storage backend over a dict of path -> FileInfo that counts calls."""

    def __init__(self, files: dict[str, FileInfo]) -> None:
        self.files = files
        self.calls: list[tuple[str, str]] = []

    def describe(self) -> str:
        return "fake"

    def stat(self, path: str) -> FileInfo | None:
        self.calls.append(("stat", path))
        return self.files.get(path)

    def list_dir(self, path: str) -> dict[str, FileInfo] | None:
        self.calls.append(("list", path))
        prefix = path.rstrip("/") + "/"
        children = {
            p[len(prefix) :]: f for p, f in self.files.items() if p.startswith(prefix) and "/" not in p[len(prefix) :]
        }
        return children or None


def _file(path: str, when: dt.datetime = T0, kind: str = "FILE") -> FileInfo:
    return FileInfo(path=path, kind=kind, modification_time=when, size=0)  # type: ignore[arg-type]


def test_marker_locations_appends_marker_and_dedups() -> None:
    locs = marker_locations(["/d/a", "/d/b", "/d/a/", "file:///l"], "_SUCCESS")
    assert [str(x) for x in locs] == ["hdfs:///d/a/_SUCCESS", "hdfs:///d/b/_SUCCESS", "file:///l/_SUCCESS"]
    assert [str(x) for x in marker_locations("/d/_DONE_FR", None)] == ["hdfs:///d/_DONE_FR"]


@pytest.mark.parametrize("marker", ["a/b", "..", "."])
def test_marker_name_must_be_a_file_name(marker: str) -> None:
    with pytest.raises(InvalidSpecError, match="plain file name"):
        marker_locations(["/d"], marker)


def test_no_paths_is_an_error() -> None:
    with pytest.raises(InvalidSpecError, match="at least one"):
        marker_locations([], "_SUCCESS")


def test_parse_newer_than() -> None:
    assert parse_newer_than(None) is None
    assert parse_newer_than("") is None
    assert parse_newer_than("2026-11-23T08:00:00+00:00") == T0
    assert parse_newer_than("2026-11-23T09:00:00+01:00") == T0
    assert parse_newer_than("2026-11-23 08:00:00") == T0  # naive, no zone given = UTC
    assert parse_newer_than(T0.replace(tzinfo=None)) == T0


def test_parse_newer_than_reads_naive_values_in_the_given_zone() -> None:
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")  # UTC+1 in November, UTC+2 in July
    assert parse_newer_than("2026-11-23T09:00:00", paris) == T0
    assert parse_newer_than(dt.datetime(2026, 11, 23, 9, 0), paris) == T0
    assert parse_newer_than("2026-07-01T10:00:00", paris) == dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.timezone.utc)
    assert parse_newer_than("2026-11-23T08:00:00+00:00", paris) == T0  # an explicit offset wins
    with pytest.raises(InvalidSpecError, match="ISO 8601"):
        parse_newer_than("next monday")
    with pytest.raises(InvalidSpecError, match="datetime or an ISO 8601"):
        parse_newer_than(42)


def test_markers_under_one_parent_cost_one_listing() -> None:
    countries = [f"C{i:02d}" for i in range(45)]
    files = {f"/w/_SUCCESS_{c}": _file(f"/w/_SUCCESS_{c}") for c in countries}
    backend = CountingBackend(files)
    report = check_markers(backend, [f"/w/_SUCCESS_{c}" for c in countries])
    assert report.done
    assert backend.calls == [("list", "/w")]
    assert report.requests == 1
    assert len(report.to_xcom()) == 45
    assert report.to_xcom()[0] == {
        "path": "/w/_SUCCESS_C00",
        "modification_time": "2026-11-23T08:00:00+00:00",
    }


def test_lone_markers_use_one_stat_each_and_report_missing() -> None:
    backend = CountingBackend({"/a/_SUCCESS": _file("/a/_SUCCESS")})
    report = check_markers(backend, ["/a/_SUCCESS", "/b/_SUCCESS"])
    # a missing lone marker costs one more stat, of its parent (a file there fails at once)
    assert backend.calls == [("stat", "/a/_SUCCESS"), ("stat", "/b/_SUCCESS"), ("stat", "/b")]
    assert report.requests == 3
    assert not report.done
    assert report.missing == ["/b/_SUCCESS"]
    assert report.summary() == "1/2 markers present; missing: /b/_SUCCESS"


def test_lone_marker_under_a_file_is_refused() -> None:
    backend = CountingBackend({"/d/part-0.parquet": _file("/d/part-0.parquet")})
    with pytest.raises(StorageRefusedError, match=r"'/d/part-0.parquet' on the fake is a file, not a directory"):
        check_markers(backend, ["/d/part-0.parquet/_SUCCESS"])


def test_missing_parent_means_all_its_markers_missing() -> None:
    report = check_markers(CountingBackend({}), ["/w/_A", "/w/_B"])
    assert report.missing == ["/w/_A", "/w/_B"]


def test_stale_markers_do_not_count() -> None:
    old = T0 - dt.timedelta(days=7)
    backend = CountingBackend({"/a/_SUCCESS": _file("/a/_SUCCESS", old), "/b/_SUCCESS": _file("/b/_SUCCESS")})
    report = check_markers(backend, ["/a/_SUCCESS", "/b/_SUCCESS"], newer_than=T0)
    assert not report.done
    assert report.stale == {"/a/_SUCCESS": old}
    bound, stale = "2026-11-23T08:00:00+00:00", "/a/_SUCCESS (2026-11-16T08:00:00+00:00)"
    assert f"older than the freshness bound {bound}: {stale}" in report.summary()


def test_marker_that_is_a_directory_is_a_permanent_error() -> None:
    backend = CountingBackend({"/a/_SUCCESS": _file("/a/_SUCCESS", kind="DIRECTORY")})
    with pytest.raises(StorageRefusedError, match=r"'/a/_SUCCESS' on the fake is a directory"):
        check_markers(backend, ["/a/_SUCCESS"])


def test_summary_truncates_long_lists() -> None:
    report = check_markers(CountingBackend({}), [f"/p{i}/_SUCCESS" for i in range(9)])
    assert report.summary().endswith("(+4 more)")


class DeniedListing(CountingBackend):
    """A directory that can be traversed but not listed (mode 711), or refuses for another reason."""

    def __init__(self, files: dict[str, FileInfo], remote_exception: str) -> None:
        super().__init__(files)
        self.remote_exception = remote_exception

    def list_dir(self, path: str) -> dict[str, FileInfo] | None:
        self.calls.append(("list", path))
        raise StorageRefusedError(f"listing {path} refused", remote_exception=self.remote_exception)


@pytest.mark.parametrize("denial", ["AccessControlException", "PermissionError"])
def test_listing_denied_falls_back_to_one_stat_per_marker(denial: str) -> None:
    backend = DeniedListing({"/d/_A": _file("/d/_A"), "/d/_B": _file("/d/_B")}, denial)
    report = check_markers(backend, ["/d/_A", "/d/_B", "/d/_C"])
    assert report.found == {"/d/_A": T0, "/d/_B": T0}
    assert report.missing == ["/d/_C"]
    assert backend.calls == [("list", "/d"), ("stat", "/d/_A"), ("stat", "/d/_B"), ("stat", "/d/_C")]
    assert report.requests == 4


def test_other_listing_refusals_are_not_retried_per_marker() -> None:
    backend = DeniedListing({"/d/_A": _file("/d/_A")}, "NotADirectory")
    with pytest.raises(StorageRefusedError, match="listing /d refused"):
        check_markers(backend, ["/d/_A", "/d/_B"])
    assert backend.calls == [("list", "/d")]
