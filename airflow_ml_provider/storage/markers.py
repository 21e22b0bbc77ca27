"""Marker-file checks, independent of any file system or of Airflow.

The sensor and its trigger share this code: given marker paths, a storage backend (see
:mod:`airflow_ml_provider.storage.base`) and an optional freshness bound, say which markers are
present, missing or stale, using as few requests as possible: markers that share a parent
directory cost one directory listing together, a lone marker one status call. A parent the user
may traverse but not list (mode ``711``, say) falls back to one status call per marker, as the
stock sensor would succeed there too.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from airflow_ml_provider.exceptions import InvalidSpecError, StorageRefusedError
from airflow_ml_provider.storage.errors import is_permission_denied, not_a_directory
from airflow_ml_provider.storage.paths import StoragePath, parse_path

if TYPE_CHECKING:  # the protocol costs import time, and DAG files import this module
    from airflow_ml_provider.storage.base import FileInfo

    class MarkerLookup(Protocol):
        """The part of the storage contract a marker check uses (any :class:`Storage` has it)."""

        def describe(self) -> str: ...

        def stat(self, path: str) -> FileInfo | None: ...

        def list_dir(self, path: str) -> dict[str, FileInfo] | None: ...


def marker_locations(paths: str | Iterable[str], marker: str | None) -> list[StoragePath]:
    """Turn the sensor's ``paths`` and ``marker`` into the marker files to look for.

    :param paths: one path or several; each a directory that receives ``marker``, or, when
        ``marker`` is empty, the marker file itself.
    :param marker: file name appended to every path (``_SUCCESS``), or ``None``/``""``.
    :raises InvalidSpecError: when nothing is given, a path is invalid or ``marker`` has a ``/``.
    """
    items = [paths] if isinstance(paths, str) else list(paths)
    if not items:
        raise InvalidSpecError("No paths to watch; give at least one, e.g. paths=['/data/2026-11-23'].")
    if marker is not None and ("/" in marker or marker in (".", "..")):
        raise InvalidSpecError(f"Marker name {marker!r} must be a plain file name such as '_SUCCESS'.")
    result: list[StoragePath] = []
    seen: set[StoragePath] = set()
    for item in items:
        loc = parse_path(item, arg="paths")
        if marker:
            loc = loc.join(marker)
        if loc not in seen:  # the same marker twice costs nothing more
            seen.add(loc)
            result.append(loc)
    return result


def parse_newer_than(value: Any, default_tz: dt.tzinfo | None = None) -> dt.datetime | None:
    """Parse the sensor's ``newer_than`` into an aware UTC datetime (``None``/``""`` = no bound).

    Accepts a datetime or an ISO 8601 string, as rendered from ``{{ data_interval_end }}``. A
    value without an offset is wall-clock time in ``default_tz``, as Airflow reads naive times
    (its ``timezone.parse`` and ``make_aware`` use ``[core] default_timezone``).

    :param value: the rendered ``newer_than``.
    :param default_tz: the zone of naive values; UTC when not given (callers inside Airflow pass
        the deployment's default timezone).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as e:
            raise InvalidSpecError(
                f"newer_than={value!r} is not an ISO 8601 timestamp; use e.g. "
                "'{{ data_interval_end }}' or '2026-11-23T08:00:00+00:00'."
            ) from e
    else:
        raise InvalidSpecError(f"newer_than must be a datetime or an ISO 8601 string, not {type(value).__name__}.")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=default_tz or dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


class MarkerReport:
    """The outcome of one check of a set of markers.

    :param found: marker path -> modification time, for markers present and fresh.
    :param missing: markers that do not exist (yet).
    :param stale: marker path -> modification time, for markers older than ``newer_than``.
    :param requests: how many backend calls the check made.
    :param bound: the freshness bound the check used (``newer_than``), shown with stale markers.
    """

    def __init__(
        self,
        found: dict[str, dt.datetime] | None = None,
        missing: list[str] | None = None,
        stale: dict[str, dt.datetime] | None = None,
        requests: int = 0,
        bound: dt.datetime | None = None,
    ) -> None:
        self.found = dict(found or {})
        self.missing = list(missing or [])
        self.stale = dict(stale or {})
        self.requests = requests
        self.bound = bound

    def __repr__(self) -> str:
        return f"MarkerReport({self.summary()}, requests={self.requests})"

    @property
    def done(self) -> bool:
        """True when every marker is present and fresh."""
        return not self.missing and not self.stale

    def merge(self, other: MarkerReport) -> None:
        """Add another report's results (from another backend) to this one."""
        self.found.update(other.found)
        self.missing.extend(other.missing)
        self.stale.update(other.stale)
        self.requests += other.requests
        self.bound = self.bound or other.bound

    def to_xcom(self) -> list[dict[str, str]]:
        """JSON-native list of ``{"path", "modification_time"}`` for the found markers."""
        return [{"path": p, "modification_time": t.isoformat()} for p, t in sorted(self.found.items())]

    def summary(self, limit: int = 5) -> str:
        """One line: how many markers are found, and which are missing or stale."""
        total = len(self.found) + len(self.missing) + len(self.stale)
        text = f"{len(self.found)}/{total} markers present"
        if self.missing:
            text += f"; missing: {_head(self.missing, limit)}"
        if self.stale:
            stale = [f"{p} ({t.isoformat()})" for p, t in sorted(self.stale.items())]
            bound = f" {self.bound.isoformat()}" if self.bound is not None else ""
            text += f"; older than the freshness bound{bound}: {_head(stale, limit)}"
        return text


def waiting_status(summary: str, last_error: str | None) -> str:
    """What a waiting sensor reports: the last check's summary and, if the latest failed, why."""
    return f"{summary}. Last error: {last_error}" if last_error else summary


def _head(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def check_markers(backend: MarkerLookup, markers: Sequence[str], newer_than: dt.datetime | None = None) -> MarkerReport:
    """Check ``markers`` (absolute paths in ``backend``) in as few requests as possible.

    Markers sharing a parent directory are answered by one ``list_dir`` of that parent; a lone
    marker by one ``stat``, and while it is missing one more ``stat`` of its parent (both file
    systems answer "not found" for a path under a file). A marker that is a directory, or whose
    parent is a file, raises :class:`StorageRefusedError` (it will never become a marker file).
    When listing a parent is refused for lack of permission, its markers are asked for one by one
    (a directory with mode ``711`` cannot be listed, yet its files can be read). Other errors from
    the backend propagate unchanged.

    :param backend: the storage backend to ask.
    :param markers: absolute marker paths.
    :param newer_than: markers modified before this instant count as stale, not present.
    """
    report = MarkerReport(bound=newer_than)
    groups: dict[str, list[str]] = {}
    for marker in markers:
        groups.setdefault(posixpath.dirname(marker), []).append(marker)
    for parent, members in groups.items():
        infos: dict[str, FileInfo | None]
        if len(members) == 1:
            infos = {members[0]: backend.stat(members[0])}
            if infos[members[0]] is None:
                report.requests += 1
                _refuse_file_parent(backend, parent, backend.stat(parent))
        else:
            try:
                listing = backend.list_dir(parent)
            except StorageRefusedError as e:
                if not is_permission_denied(e):
                    raise
                report.requests += 1
                infos = {m: backend.stat(m) for m in members}  # a refusal here is the real answer
                report.requests += len(members) - 1
            else:
                infos = {m: (listing or {}).get(posixpath.basename(m)) for m in members}
        report.requests += 1
        for marker, info in infos.items():
            _classify(report, backend, marker, info, newer_than)
    return report


def _refuse_file_parent(backend: MarkerLookup, parent: str, info: FileInfo | None) -> None:
    if info is not None and info.kind == "FILE":
        raise not_a_directory(parent, backend.describe())


def _classify(
    report: MarkerReport,
    backend: MarkerLookup,
    marker: str,
    info: FileInfo | None,
    newer_than: dt.datetime | None,
) -> None:
    if info is None:
        report.missing.append(marker)
    elif info.kind == "DIRECTORY":
        raise StorageRefusedError(
            f"Marker {marker!r} on the {backend.describe()} is a directory, not a file, so it can "
            "never signal completion. Point the sensor at the directory that receives the marker "
            "file (paths=[...]) and name the file with marker='_SUCCESS'.",
            remote_exception="IsADirectory",
        )
    elif newer_than is not None and info.modification_time < newer_than:
        report.stale[marker] = info.modification_time
    else:
        report.found[marker] = info.modification_time
