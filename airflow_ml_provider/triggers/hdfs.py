"""Trigger that waits for HDFS (or local) marker files without holding a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_ml_provider.exceptions import MlProviderError, StorageUnavailableError
from airflow_ml_provider.hooks.webhdfs import HdfsHook
from airflow_ml_provider.storage.markers import parse_newer_than, waiting_status
from airflow_ml_provider.storage.paths import parse_path
from airflow_ml_provider.utils.compat import default_timezone


class HdfsMarkersTrigger(BaseTrigger):
    """Poll marker files until all are present, an error occurs, or the deadline passes.

    Yields exactly one JSON-native event and stops:

    * ``{"status": "success", "markers": [{"path", "modification_time"}, ...], "message"}``
    * ``{"status": "timeout", "message"}`` -- the deadline passed; the message says what is missing
      and the last error seen, if NameNodes were unreachable.
    * ``{"status": "error", "kind": "access" | "unexpected", "message"}`` -- permission denied, bad
      credentials, a bad connection, or a bug. Unlike the house pattern of sleeping on every
      error, only "no NameNode answered" is retried: the rest cannot heal by waiting.

    The blocking WebHDFS calls run in a worker thread (``asyncio.to_thread``) so the triggerer's
    event loop stays free; the connection is read with the async API.

    :param markers: marker paths, as strings (``/a/_SUCCESS`` or ``file:///a/_SUCCESS``).
    :param hdfs_conn_id: the ``ml_hdfs`` connection for non-local markers.
    :param newer_than: ISO 8601 instant; older markers do not count. ``None`` for no bound.
    :param poke_interval: seconds between checks.
    :param deadline: epoch seconds after which the trigger yields ``timeout``; ``None`` for never.
    """

    def __init__(
        self,
        *,
        markers: list[str],
        hdfs_conn_id: str = HdfsHook.default_conn_name,
        newer_than: str | None = None,
        poke_interval: float = 60.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.markers = list(markers)
        self.hdfs_conn_id = hdfs_conn_id
        self.newer_than = newer_than
        self.poke_interval = float(poke_interval)
        self.deadline = deadline
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
            },
        )

    async def _hook(self) -> HdfsHook:
        if all(loc.local for loc in self._locations):
            return HdfsHook(self.hdfs_conn_id)  # never reads the connection
        return await HdfsHook.async_from_conn_id(self.hdfs_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until done; yield one event (see the class docstring)."""
        hook: HdfsHook | None = None
        progress = "not checked yet"
        last_error: str | None = None
        while True:
            try:
                if hook is None:
                    hook = await self._hook()
                report = await asyncio.to_thread(hook.check_markers, self._locations, self._newer_than)
            except StorageUnavailableError as e:
                last_error = str(e)
                self.log.warning("%s; checking again in %.0f s", e, self.poke_interval)
            except MlProviderError as e:
                yield TriggerEvent({"status": "error", "kind": "access", "message": str(e)})
                return
            except Exception as e:  # noqa: BLE001  # report and stop, never loop on a bug
                yield TriggerEvent({"status": "error", "kind": "unexpected", "message": f"{type(e).__name__}: {e}"})
                return
            else:
                last_error = None
                progress = report.summary()
                if report.done:
                    yield TriggerEvent({"status": "success", "markers": report.to_xcom(), "message": progress})
                    return
                self.log.info("Waiting for markers: %s", progress)
            now = time.time()
            if self.deadline is not None and now >= self.deadline:
                message = f"Markers not complete by the sensor's timeout: {waiting_status(progress, last_error)}."
                yield TriggerEvent({"status": "timeout", "message": message})
                return
            sleep_for = self.poke_interval
            if self.deadline is not None:
                sleep_for = max(0.0, min(sleep_for, self.deadline - now))
            await asyncio.sleep(sleep_for)
