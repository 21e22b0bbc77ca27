"""Trigger that waits for HDFS (or local) marker files without holding a worker slot.

A triggerer may hold thousands of these waits, so a wait costs next to nothing between changes:
its markers are checked by polls shared with every other wait on the same directory and file
system (:mod:`airflow_ml_provider.triggers.shared_polls`), paths and bounds are parsed once, the
WebHDFS client is built once per file system, local markers are checked without a thread hop, and
a check that finds nothing new wakes no task and writes no log line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Hashable
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_ml_provider.exceptions import MlProviderError, StorageRefusedError, StorageUnavailableError
from airflow_ml_provider.hooks.webhdfs import HdfsHook
from airflow_ml_provider.storage.markers import (
    MarkerReport,
    classify,
    group_by_parent,
    parse_newer_than,
    waiting_status,
)
from airflow_ml_provider.storage.paths import parse_path
from airflow_ml_provider.utils.compat import default_timezone

if TYPE_CHECKING:
    import datetime as dt

    from airflow_ml_provider.storage.paths import StoragePath
    from airflow_ml_provider.triggers.shared_polls import DirectoryPoll, FileSystem, PollOutcome, PollRegistry

#: Seconds between "still waiting" lines while nothing changes.
DEFAULT_SUMMARY_INTERVAL = 600.0


class HdfsMarkersTrigger(BaseTrigger):
    """Poll marker files until all are present, an error occurs, or the deadline passes.

    Yields exactly one JSON-native event and stops:

    * ``{"status": "success", "markers": [{"path", "modification_time"}, ...], "message"}``
    * ``{"status": "timeout", "message"}`` -- the deadline passed; the message says what is missing
      and the last error seen, if NameNodes were unreachable.
    * ``{"status": "error", "kind": "access" | "unexpected", "message"}`` -- permission denied, bad
      credentials, a bad connection, or a bug. Unlike the house pattern of sleeping on every
      error, only "no NameNode answered" is retried: the rest cannot heal by waiting.

    Waits in one triggerer on the same directory and file system share one check per interval
    (the shortest interval among them); each applies its own ``newer_than`` and gets its own
    errors. The log gets a line when the set of present, missing or stale markers changes, when
    an error appears or changes, and every ``summary_interval`` seconds; never for a check that
    found nothing new.

    :param markers: marker paths, as strings (``/a/_SUCCESS`` or ``file:///a/_SUCCESS``).
    :param hdfs_conn_id: the ``ml_hdfs`` connection for non-local markers.
    :param newer_than: ISO 8601 instant; older markers do not count. ``None`` for no bound.
    :param poke_interval: seconds between checks.
    :param deadline: epoch seconds after which the trigger yields ``timeout``; ``None`` for never.
    :param summary_interval: seconds between "still waiting" log lines while nothing changes.
    """

    def __init__(
        self,
        *,
        markers: list[str],
        hdfs_conn_id: str = HdfsHook.default_conn_name,
        newer_than: str | None = None,
        poke_interval: float = 60.0,
        deadline: float | None = None,
        summary_interval: float = DEFAULT_SUMMARY_INTERVAL,
    ) -> None:
        super().__init__()
        self.markers = list(markers)
        self.hdfs_conn_id = hdfs_conn_id
        self.newer_than = newer_than
        self.poke_interval = float(poke_interval)
        self.deadline = deadline
        self.summary_interval = float(summary_interval)
        self._locations = [parse_path(m, arg="markers") for m in self.markers]
        self._newer_than = parse_newer_than(newer_than, default_timezone())

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and the keyword arguments that rebuild this trigger exactly."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "markers": list(self.markers),
                "hdfs_conn_id": self.hdfs_conn_id,
                "newer_than": self.newer_than,
                "poke_interval": self.poke_interval,
                "deadline": self.deadline,
                "summary_interval": self.summary_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait until done; yield one event (see the class docstring)."""
        wait = _MarkerWait(self._newer_than, self.poke_interval, self.summary_interval)
        try:
            try:
                await wait.join(self._locations, self.hdfs_conn_id)
            except MlProviderError as e:
                yield TriggerEvent({"status": "error", "kind": "access", "message": str(e)})
                return
            except Exception as e:  # noqa: BLE001  # report and stop, never loop on a bug
                yield TriggerEvent({"status": "error", "kind": "unexpected", "message": f"{type(e).__name__}: {e}"})
                return
            while True:
                if not await wait.woken(self._time_left()):
                    message = f"Markers not complete by the sensor's timeout: {wait.status()}."
                    yield TriggerEvent({"status": "timeout", "message": message})
                    return
                event = wait.act(self.log)
                if event is not None:
                    yield TriggerEvent(event)
                    return
        finally:
            wait.leave()

    def _time_left(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - time.time()


class _Verdict(NamedTuple):
    """What the latest answers mean for one wait; ``signature`` tells whether it changed."""

    kind: str  # "report", "unavailable", "error"
    signature: Hashable
    report: MarkerReport | None = None
    message: str = ""
    error_kind: str = "access"


class _MarkerWait:
    """One trigger's side of the shared polls: turns their answers into verdicts, wakes on change.

    :param newer_than: the freshness bound.
    :param interval: seconds between checks this wait asks for.
    :param summary_interval: seconds between "still waiting" lines.
    """

    def __init__(self, newer_than: dt.datetime | None, interval: float, summary_interval: float) -> None:
        self.newer_than = newer_than
        self.interval = interval
        self.summary_interval = summary_interval
        self.polls: dict[DirectoryPoll, tuple[str, ...]] = {}
        self.latest: dict[DirectoryPoll, PollOutcome] = {}
        self.pending: _Verdict | None = None
        self._event = asyncio.Event()
        self._acted: Hashable = None
        self._next_summary = 0.0
        self.progress = "not checked yet"
        self.last_error: str | None = None

    async def join(self, locations: list[StoragePath], hdfs_conn_id: str) -> None:
        """Join the polls of every marker's directory (reading the connection if a marker is remote)."""
        from airflow_ml_provider.triggers.shared_polls import registry

        reg = registry()
        for local in (True, False):
            paths = [loc.path for loc in locations if loc.local == local]
            if not paths:
                continue
            key, fs = await self._filesystem(reg, local, hdfs_conn_id)
            for parent, members in group_by_parent(paths).items():
                members_t = tuple(members)
                self.polls[reg.join(key, fs, parent, self, members_t)] = members_t

    @staticmethod
    async def _filesystem(reg: PollRegistry, local: bool, hdfs_conn_id: str) -> tuple[Hashable, FileSystem]:
        """The registry's file system for local markers or for ``hdfs_conn_id``'s settings (built if new)."""
        from airflow_ml_provider.storage.local import LocalStorage
        from airflow_ml_provider.triggers.shared_polls import FileSystem

        if local:
            key: Hashable = ("file",)
            return key, reg.filesystem(key) or FileSystem(LocalStorage(), inline=True)
        hook = await HdfsHook.async_from_conn_id(hdfs_conn_id)
        config = hook.config
        key = ("ml_hdfs", config._replace(conn_id=""))  # equal settings share, whatever the conn id
        fs = reg.filesystem(key)
        if fs is None:  # the client is built once per file system, off the event loop
            storage = await asyncio.to_thread(lambda: hook.storage)
            fs = FileSystem(storage, inline=config.local_root is not None)
        return key, fs

    def leave(self) -> None:
        """Leave every poll (the last member out stops it)."""
        for poll in self.polls:
            poll.remove(self)

    # -- called by the polls, in the event loop ---------------------------------------------------

    def deliver(self, poll: DirectoryPoll, outcome: PollOutcome) -> None:
        """Record ``poll``'s answer; wake the trigger only if the verdict changed or a summary is due."""
        if not outcome.asked.issuperset(self.polls[poll]):
            return  # a check that began before this wait joined: the next one asks for its markers
        self.latest[poll] = outcome
        if len(self.latest) < len(self.polls):
            return  # every directory answers once before the first verdict
        try:
            verdict = self._verdict()
        except Exception as e:  # noqa: BLE001  # a bug ends this wait, never the shared poll
            verdict = _Verdict("error", None, message=f"{type(e).__name__}: {e}", error_kind="unexpected")
        if verdict.signature != self._acted or verdict.kind == "error" or time.monotonic() >= self._next_summary:
            self.pending = verdict
            self._event.set()

    def _verdict(self) -> _Verdict:
        report = MarkerReport(bound=self.newer_than)
        unavailable: str | None = None
        for poll, markers in self.polls.items():
            answer, error, _ = self.latest[poll]
            if error is not None:
                if isinstance(error, StorageUnavailableError):
                    unavailable = unavailable or str(error)
                    continue
                if isinstance(error, MlProviderError):
                    return _Verdict("error", None, message=str(error))
                return _Verdict("error", None, message=f"{type(error).__name__}: {error}", error_kind="unexpected")
            assert answer is not None
            for marker in markers:
                refused = answer.refused.get(marker)
                if refused is not None:
                    return _Verdict("error", None, message=str(refused))
                try:
                    classify(report, poll.filesystem.describe, marker, answer.infos.get(marker), self.newer_than)
                except StorageRefusedError as e:
                    return _Verdict("error", None, message=str(e))
        if unavailable is not None:  # one signature for the whole outage, whichever request saw it
            return _Verdict("unavailable", "unavailable", message=unavailable)
        signature = (
            tuple(sorted(report.found.items())),
            tuple(sorted(report.missing)),
            tuple(sorted(report.stale.items())),
        )
        return _Verdict("report", signature, report=report)

    # -- in the trigger's own task ----------------------------------------------------------------

    async def woken(self, time_left: float | None) -> bool:
        """Wait for a verdict to act on; False when ``time_left`` ran out first (None: no deadline).

        Before the first answer the wait lasts at least one interval, so that a trigger resumed
        after its deadline still reports what it found.
        """
        if time_left is not None and self.pending is None and self._acted is None:
            time_left = max(time_left, self.interval)
        if time_left is not None and time_left <= 0:
            return self._event.is_set()
        try:
            await asyncio.wait_for(self._event.wait(), time_left)
        except TimeoutError:
            return False
        return True

    def act(self, log: Any) -> dict[str, Any] | None:
        """Log what changed (on ``log``, the trigger's logger); the event to yield when the wait is over, else None."""
        self._event.clear()
        verdict, self.pending = self.pending, None
        if verdict is None:
            return None
        changed = verdict.signature != self._acted
        self._acted = verdict.signature
        self._next_summary = time.monotonic() + self.summary_interval
        if verdict.kind == "error":
            return {"status": "error", "kind": verdict.error_kind, "message": verdict.message}
        if verdict.kind == "unavailable":
            self.last_error = verdict.message
            if changed:
                log.warning("%s; checking again every %g s", verdict.message, self.interval)
            else:
                log.warning("Still no answer: %s", verdict.message)
            return None
        assert verdict.report is not None
        recovered, self.last_error = self.last_error is not None, None
        self.progress = verdict.report.summary()
        if verdict.report.done:
            return {"status": "success", "markers": verdict.report.to_xcom(), "message": self.progress}
        if changed or recovered:
            log.info("Waiting for markers: %s", self.progress)
        else:
            log.info("Still waiting for markers (checked every %g s): %s", self.interval, self.progress)
        return None

    def status(self) -> str:
        """The last progress and, if the latest check failed, why."""
        return waiting_status(self.progress, self.last_error)
