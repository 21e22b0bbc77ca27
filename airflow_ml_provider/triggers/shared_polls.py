"""Directory checks shared by every marker wait in one triggerer.

A triggerer runs all its triggers in one asyncio event loop. When many waits watch markers in
the same directory of the same file system (many DAGs waiting on one upstream dataset, a mapped
sensor), one check of that directory per interval answers all of them. This module keeps, per
event loop, one :class:`DirectoryPoll` per (file system, directory): it checks the union of its
members' markers (:func:`~airflow_ml_provider.storage.markers.check_directory`: one request in the
steady state), at the smallest interval any member asked for, and hands the answer to each member
by a plain call (:meth:`PollMember.deliver`). A member wakes its own trigger only when something
it must act on happened, so a poll that finds nothing new costs a wait no task switch, no
allocation of its own and no log line.

Written by hand; ``asyncio`` provides the pieces (tasks, events, ``to_thread``) and this module
only decides who shares what. HdfsCLI sends each call it is given. Airflow 3.3 added shared
streams for :class:`~airflow.triggers.base.BaseEventTrigger` (``shared_stream_key``), made for
event-driven scheduling; they do not fit here: one key per trigger (a wait on three directories
would share only with waits on the same three), the producer sees one trigger's arguments (not
the union of marker names, so it could not pick one ``GETFILESTATUS`` over a ``LISTSTATUS``), every
raw event is queued to every subscriber (a task switch per wait per poll, which this module
avoids), and we support Airflow 3.1 and 3.2 too.

Sharing is safe because a poll's key holds everything that decides an answer: the backend's
settings (NameNodes, user, authentication, TLS, proxy user: waits with other credentials never
share) and the directory. What differs between members (their markers, freshness bounds and
deadlines) is applied by each member to the shared answer, so each wait gets its own result and
its own errors: a refusal of one marker fails only the waits watching it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Hashable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from airflow_ml_provider.storage.markers import DirectoryAnswer, check_directory

if TYPE_CHECKING:
    from airflow_ml_provider.storage.base import Storage

log = logging.getLogger(__name__)

#: Checks of one remote file system in flight at once: requests' default connection pool size (10),
#: below which the shared client never opens and discards extra connections.
CONCURRENT_CHECKS = 8


class PollOutcome(NamedTuple):
    """One check of one directory: its answer, or the error that ended it.

    :param answer: what the check found, when it ran to the end.
    :param error: the exception raised instead (unreachable, refused, a bug).
    :param asked: the markers the check asked for: it says nothing about others (of a member that
        joined while it ran; that member takes the next check's answer).
    """

    answer: DirectoryAnswer | None
    error: BaseException | None
    asked: frozenset[str] = frozenset()


class PollMember(Protocol):
    """A wait taking part in shared polls (the trigger's side of the contract)."""

    #: Seconds between checks this member asks for.
    interval: float

    def deliver(self, poll: DirectoryPoll, outcome: PollOutcome) -> None:
        """Take the outcome of a check by ``poll``; called in the event loop, must not block."""


class FileSystem:
    """A storage backend shared by the polls of one key.

    :param storage: the backend (one client, reused by every check).
    :param inline: check in the event loop itself (the local disk: a ``stat`` takes microseconds,
        less than handing it to a thread) rather than in a worker thread (WebHDFS).
    """

    def __init__(self, storage: Storage, *, inline: bool) -> None:
        self.storage = storage
        self.inline = inline
        self.describe = storage.describe()
        # One client serves every check; no more of them at once than its connection pool holds.
        self._slots = asyncio.Semaphore(CONCURRENT_CHECKS)

    async def check(self, parent: str, markers: list[str], check_parent: bool) -> DirectoryAnswer:
        """Check ``markers`` under ``parent`` (see :func:`check_directory`)."""
        if self.inline:
            return check_directory(self.storage, parent, markers, check_parent=check_parent)
        async with self._slots:
            return await asyncio.to_thread(check_directory, self.storage, parent, markers, check_parent=check_parent)


class DirectoryPoll:
    """Checks one directory for all its members, one check per interval.

    Use :meth:`PollRegistry.join` to get one. The first check runs as soon as the event loop is
    free; later ones every ``min(member intervals)`` seconds, start to start. A member joining with
    a shorter interval than the poll's shortens the current wait at once.

    :param registry: the registry holding this poll (it forgets the poll when its last member leaves).
    :param key: the file system's key.
    :param filesystem: the backend to check.
    :param parent: the directory.
    """

    def __init__(self, registry: PollRegistry, key: Hashable, filesystem: FileSystem, parent: str) -> None:
        self.registry = registry
        self.key = key
        self.filesystem = filesystem
        self.parent = parent
        #: member -> its markers in this directory
        self.members: dict[PollMember, tuple[str, ...]] = {}
        #: checks made, and backend requests they cost
        self.checks = 0
        self.requests = 0
        self._parent_checked = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        """Seconds between checks: the smallest interval a member asked for."""
        return min((m.interval for m in self.members), default=60.0)

    def add(self, member: PollMember, markers: tuple[str, ...]) -> None:
        """Add ``member`` watching ``markers`` (paths under :attr:`parent`); start checking if new."""
        shorter = bool(self.members) and member.interval < self.interval
        self.members[member] = markers
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"marker poll {self.parent} ({self.filesystem.describe})"
            )
        elif shorter:
            self._wake.set()

    def remove(self, member: PollMember) -> None:
        """Forget ``member``; the last one out stops the poll."""
        self.members.pop(member, None)
        if not self.members:
            self.registry._forget(self)
            if self._task is not None:
                self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.members:
            started = loop.time()
            markers = frozenset(m for ms in self.members.values() for m in ms)
            outcome = await self._check(markers)
            for member in list(self.members):  # a member may leave while being told
                if member in self.members:
                    try:
                        member.deliver(self, outcome)
                    except Exception:  # a member's bug must not stop the others' answers
                        log.exception("A wait on %s failed to take a shared answer", self.parent)
            while self.members:
                delay = started + self.interval - loop.time()
                if delay <= 0:
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def _check(self, markers: frozenset[str]) -> PollOutcome:
        try:
            answer = await self.filesystem.check(self.parent, sorted(markers), not self._parent_checked)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001  # each member decides what an error means for it
            self.checks += 1
            return PollOutcome(None, e, markers)
        self.checks += 1
        self.requests += answer.requests
        self._parent_checked = True  # a directory once seen is not re-checked for being a file
        return PollOutcome(answer, None, markers)


class PollRegistry:
    """The shared polls of one event loop (one triggerer); :func:`registry` returns it."""

    def __init__(self) -> None:
        self.polls: dict[tuple[Hashable, str], DirectoryPoll] = {}
        self.filesystems: dict[Hashable, FileSystem] = {}

    def filesystem(self, key: Hashable) -> FileSystem | None:
        """The backend already shared under ``key``, if any poll uses it."""
        return self.filesystems.get(key)

    def join(
        self, key: Hashable, filesystem: FileSystem, parent: str, member: PollMember, markers: tuple[str, ...]
    ) -> DirectoryPoll:
        """Add ``member`` to the poll of ``parent`` on ``key`` (created, with ``filesystem``, if none).

        :param key: what identifies the backend and its credentials (equal keys share checks).
        :param filesystem: the backend to use if ``key`` has none yet (else the existing one is used).
        :param parent: the directory.
        :param member: the wait.
        :param markers: its markers directly under ``parent``.
        """
        fs = self.filesystems.setdefault(key, filesystem)
        poll = self.polls.get((key, parent))
        if poll is None:
            poll = self.polls[(key, parent)] = DirectoryPoll(self, key, fs, parent)
        poll.add(member, markers)
        return poll

    def _forget(self, poll: DirectoryPoll) -> None:
        if self.polls.get((poll.key, poll.parent)) is poll:
            del self.polls[(poll.key, poll.parent)]
        if not any(key == poll.key for key, _ in self.polls):
            self.filesystems.pop(poll.key, None)

    def stats(self) -> dict[str, int]:
        """Polls, members, checks and requests of the polls now running (for tests and benchmarks)."""
        polls = list(self.polls.values())
        return {
            "polls": len(polls),
            "members": sum(len(p.members) for p in polls),
            "checks": sum(p.checks for p in polls),
            "requests": sum(p.requests for p in polls),
        }


_REGISTRIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PollRegistry] = weakref.WeakKeyDictionary()


def registry() -> PollRegistry:
    """The registry of the running event loop (created on first use; gone with the loop)."""
    loop = asyncio.get_running_loop()
    found = _REGISTRIES.get(loop)
    if found is None:
        found = _REGISTRIES[loop] = PollRegistry()
    return found
