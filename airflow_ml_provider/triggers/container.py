"""Trigger that waits for a container job while its task is deferred, relaying its log lines."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow_ml_provider.backends.base import ContainerBackend, JobHandle, JobStatus


class ContainerJobTrigger(BaseTrigger):
    """Poll a submitted job's status every ``poll_interval`` seconds and log its new lines.

    Yields exactly one JSON-native event, then stops:

    * ``{"status": "finished", "state", "exit_code", "oom_killed", "message", "tail", "handle"}``
      when the job ended (``state`` is ``succeeded``, ``failed`` or ``gone``);
    * ``{"status": "startup_timeout", …}`` when the job stayed pending longer than
      ``startup_timeout`` seconds (image missing on the node, no room in the cluster);
    * ``{"status": "error", "message", "error_type", "handle"}`` after ``max_errors`` consecutive
      failed calls to the scheduler, or at once when the error is permanent (a malformed
      connection, a rejected token: no retry can fix it). ``error_type`` is the exception's class
      name, so the resumed task can fail with the same permanent error instead of a retryable one.

    Log lines are read by cursor, so none is lost or repeated across polls; the last
    ``tail_lines`` travel in the event for the failure message.

    Secrets: the trigger is given the job's secret environment as *references* (``conn://…``,
    ``var://…``), never values, so its stored kwargs hold none. It resolves them itself when it
    starts in the triggerer, registers the values with the triggerer's secrets masker and replaces
    them (and their escaped forms) by ``***`` in every relayed line and in the event, which Airflow
    stores in its database unmasked. If they cannot be resolved it relays nothing and yields an
    ``error`` event (the resumed task then fails and removes the job). On Airflow 3.3+ a deferred task
    that is killed (marked failed, cleared, timed out) calls :meth:`on_kill`, which stops and
    removes the job.

    :param conn_id: the container connection (its type selects the backend).
    :param handle: ``JobHandle.to_dict()`` of the submitted job.
    :param secret_env: the job's secret environment as ``{ENV_NAME: "conn://…" | "var://…"}``
        references (what the operator's ``secret_env`` takes); used only to redact.
    :param poll_interval: seconds between status polls.
    :param log_cursor: the log cursor to continue from (``None``: from the first line).
    :param tail_lines: how many last lines to keep for the event.
    :param startup_timeout: seconds a job may stay pending; ``None`` waits forever.
    :param max_errors: consecutive scheduler errors tolerated before giving up.
    """

    def __init__(
        self,
        *,
        conn_id: str,
        handle: dict[str, Any],
        secret_env: dict[str, str] | None = None,
        poll_interval: float = 5.0,
        log_cursor: Any = None,
        tail_lines: int = 20,
        startup_timeout: float | None = None,
        max_errors: int = 5,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.handle = dict(handle)
        self.secret_env = dict(secret_env or {})
        self.poll_interval = float(poll_interval)
        self.log_cursor = log_cursor
        self.tail_lines = int(tail_lines)
        self.startup_timeout = None if startup_timeout is None else float(startup_timeout)
        self.max_errors = int(max_errors)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and the exact constructor kwargs (JSON-native)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "handle": self.handle,
                "secret_env": self.secret_env,
                "poll_interval": self.poll_interval,
                "log_cursor": self.log_cursor,
                "tail_lines": self.tail_lines,
                "startup_timeout": self.startup_timeout,
                "max_errors": self.max_errors,
            },
        )

    async def _backend(self) -> ContainerBackend:
        from airflow_ml_provider.hooks.container import ContainerJobHook, backend_from_connection

        conn = await ContainerJobHook(conn_id=self.conn_id).aget_conn()
        return backend_from_connection(conn)

    def _resolve_secrets(self) -> list[str]:
        """The secret values (blocking: the SDK's lookups; run it in a thread)."""
        from airflow_ml_provider.hooks.container import ContainerJobHook
        from airflow_ml_provider.utils.secret_refs import parse_secret_env

        if not self.secret_env:
            return []
        refs = parse_secret_env(self.secret_env)
        return list(ContainerJobHook(conn_id=self.conn_id).resolve_secret_env(refs).values())

    def _job(self) -> JobHandle:
        from airflow_ml_provider.backends.base import JobHandle

        return JobHandle.from_dict(self.handle)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the job ends; yield one event (see the class docstring)."""
        from airflow_ml_provider.backends.base import PENDING, redact

        handle = self._job()
        try:
            # Resolved first: not a line is relayed before the trigger can redact it.
            secrets = await asyncio.to_thread(self._resolve_secrets)
        except Exception as e:  # noqa: BLE001  # the message names the reference, never a value
            yield TriggerEvent(
                {
                    "status": "error",
                    "message": f"could not read the job's secrets to redact its log lines: {e}",
                    "error_type": type(e).__name__,
                    "handle": self.handle,
                }
            )
            return

        def clean(text: str) -> str:
            return redact(text, secrets)

        try:
            backend = await self._backend()
        except Exception as e:  # noqa: BLE001  # report and stop, never loop on a bug
            message = clean(f"{type(e).__name__}: {e}")
            yield TriggerEvent(
                {"status": "error", "message": message, "error_type": type(e).__name__, "handle": self.handle}
            )
            return
        tail: deque[str] = deque(maxlen=self.tail_lines)
        cursor = self.log_cursor
        started = time.monotonic()
        errors = 0
        try:
            while True:
                try:
                    # One thread hop per poll for both calls (the triggerer may hold thousands).
                    status, raw, cursor = await asyncio.to_thread(_poll, backend, handle, cursor)
                    lines = [clean(line) for line in raw]
                    errors = 0
                except Exception as e:  # noqa: BLE001  # counted; max_errors in a row ends the wait
                    errors += 1
                    failure = clean(f"{type(e).__name__}: {e}")
                    self.log.warning("Polling %s failed (%d/%d): %s", handle.key, errors, self.max_errors, failure)
                    if errors >= self.max_errors or not getattr(e, "retryable", True):
                        yield TriggerEvent(
                            {
                                "status": "error",
                                "message": failure,
                                "error_type": type(e).__name__,
                                "handle": self.handle,
                                "tail": list(tail),
                            }
                        )
                        return
                    await asyncio.sleep(self.poll_interval)
                    continue
                for line in lines:  # a job that printed nothing since the last poll costs no log line
                    self.log.info("%s", line)
                tail.extend(lines)
                if status.finished:
                    yield TriggerEvent(
                        {
                            "status": "finished",
                            "state": status.state,
                            "exit_code": status.exit_code,
                            "oom_killed": status.oom_killed,
                            "message": clean(status.message),
                            "tail": list(tail),
                            "handle": self.handle,
                        }
                    )
                    return
                waited = time.monotonic() - started
                if self.startup_timeout is not None and status.state == PENDING and waited > self.startup_timeout:
                    yield TriggerEvent(
                        {
                            "status": "startup_timeout",
                            "message": clean(f"still pending after {waited:.0f} s: {status.message}".rstrip(": ")),
                            "handle": self.handle,
                            "tail": list(tail),
                        }
                    )
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            backend.close()

    async def on_kill(self) -> None:
        """The deferred task was killed: stop and remove the remote job (idempotent, errors logged)."""
        try:
            backend = await self._backend()
            try:
                await asyncio.to_thread(backend.cancel, self._job())
            finally:
                backend.close()
            self.log.info("Stopped and removed %s", self.handle.get("key"))
        except Exception as e:  # noqa: BLE001  # on_kill must not raise; the failure is logged
            self.log.error("Could not stop job %s on kill: %s", self.handle.get("key"), e)


def _poll(backend: ContainerBackend, handle: JobHandle, cursor: Any) -> tuple[JobStatus, list[str], Any]:
    """Status, then the log lines after ``cursor``: if the status says finished, the lines are complete."""
    status = backend.status(handle)
    raw, cursor = backend.logs(handle, cursor)
    return status, raw, cursor
