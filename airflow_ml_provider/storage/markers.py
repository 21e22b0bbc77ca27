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


class DirectoryAnswer:
    """What one check of one parent directory said about the markers asked for in it.

    :param infos: marker path -> its status, ``None`` when it does not exist.
    :param refused: marker path -> the refusal of that marker alone (its parent could be traversed
        but not listed, and asking for the marker itself was refused too).
    :param requests: how many backend calls the check made.
    """

    __slots__ = ("infos", "refused", "requests")

    def __init__(
        self,
        infos: dict[str, FileInfo | None],
        refused: dict[str, StorageRefusedError] | None = None,
        requests: int = 0,
    ) -> None:
        self.infos = infos
        self.refused = dict(refused or {})
        self.requests = requests


def check_directory(
    backend: MarkerLookup, parent: str, members: Sequence[str], *, check_parent: bool = True
) -> DirectoryAnswer:
    """Look up ``members`` (marker paths directly under ``parent``) in as few requests as possible.

    One marker costs one ``stat``; several one ``list_dir`` of ``parent`` (one ``stat`` each if
    listing is refused for lack of permission, each marker's own refusal kept in
    :attr:`DirectoryAnswer.refused`). A lone missing marker also costs a ``stat`` of ``parent``
    when ``check_parent``, to refuse a parent that is a file. Errors about the directory itself
    (unreachable, refused, a file) raise: they hold for every marker in it.

    :param backend: the storage backend to ask.
    :param parent: the markers' parent directory.
    :param members: absolute marker paths, each directly under ``parent``.
    :param check_parent: whether a lone missing marker's parent is checked for being a file (a
        repeated check of the same directory may skip it: it was checked the first time).
    """
    if len(members) == 1:
        marker = members[0]
        info = backend.stat(marker)
        answer = DirectoryAnswer({marker: info}, requests=1)
        if info is None and check_parent:
            answer.requests += 1
            _refuse_file_parent(backend, parent, backend.stat(parent))
        return answer
    try:
        listing = backend.list_dir(parent)
    except StorageRefusedError as e:
        if not is_permission_denied(e):
            raise
    else:
        return DirectoryAnswer({m: (listing or {}).get(posixpath.basename(m)) for m in members}, requests=1)
    answer = DirectoryAnswer({}, requests=1 + len(members))
    for marker in members:
        try:
            answer.infos[marker] = backend.stat(marker)
        except StorageRefusedError as e:  # the real answer for this marker, not for the others
            answer.refused[marker] = e
    return answer


def group_by_parent(markers: Iterable[str]) -> dict[str, list[str]]:
    """Marker paths grouped by their parent directory (first-seen order, duplicates dropped)."""
    groups: dict[str, list[str]] = {}
    for marker in markers:
        members = groups.setdefault(posixpath.dirname(marker), [])
        if marker not in members:
            members.append(marker)
    return groups


def classify(
    report: MarkerReport,
    describe: str,
    marker: str,
    info: FileInfo | None,
    newer_than: dt.datetime | None,
) -> None:
    """Add ``marker`` with status ``info`` to ``report``: present, missing or stale.

    :param report: the report to add to.
    :param describe: the backend's name, for the message of a marker that is a directory.
    :param marker: the marker path.
    :param info: its status, ``None`` when it does not exist.
    :param newer_than: markers modified before this instant are stale.
    :raises StorageRefusedError: the marker is a directory (it can never signal completion).
    """
    if info is None:
        report.missing.append(marker)
    elif info.kind == "DIRECTORY":
        raise StorageRefusedError(
            f"Marker {marker!r} on the {describe} is a directory, not a file, so it can "
            "never signal completion. Point the sensor at the directory that receives the marker "
            "file (paths=[...]) and name the file with marker='_SUCCESS'.",
            remote_exception="IsADirectory",
        )
    elif newer_than is not None and info.modification_time < newer_than:
        report.stale[marker] = info.modification_time
    else:
        report.found[marker] = info.modification_time


def check_markers(backend: MarkerLookup, markers: Sequence[str], newer_than: dt.datetime | None = None) -> MarkerReport:
    """Check ``markers`` (absolute paths in ``backend``) in as few requests as possible.

    Each parent directory is checked with :func:`check_directory`: markers sharing a parent cost
    one ``list_dir`` together, a lone marker one ``stat`` (and, while missing, one ``stat`` of its
    parent: both file systems answer "not found" for a path under a file). A marker that is a
    directory, or whose parent is a file, raises :class:`StorageRefusedError` (it will never become
    a marker file); so does a marker whose own lookup was refused. Other errors from the backend
    propagate unchanged.

    :param backend: the storage backend to ask.
    :param markers: absolute marker paths.
    :param newer_than: markers modified before this instant count as stale, not present.
    """
    report = MarkerReport(bound=newer_than)
    for parent, members in group_by_parent(markers).items():
        answer = check_directory(backend, parent, members)
        report.requests += answer.requests
        for marker in members:
            if marker in answer.refused:
                raise answer.refused[marker]
            classify(report, backend.describe(), marker, answer.infos[marker], newer_than)
    return report


def _refuse_file_parent(backend: MarkerLookup, parent: str, info: FileInfo | None) -> None:
    if info is not None and info.kind == "FILE":
        raise not_a_directory(parent, backend.describe())
