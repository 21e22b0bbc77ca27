"""Sensor that waits until every watched path has its ``_SUCCESS`` marker.

DAG files import this module, so it imports only what the class needs: the marker logic
(:mod:`airflow_ml_provider.storage.markers`) loads when a static argument is validated or the
sensor runs, the hook when it runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from airflow_ml_provider.exceptions import MlProviderError, StorageRefusedError, StorageUnavailableError
from airflow_ml_provider.utils.compat import default_deferrable
from airflow_ml_provider.utils.templating import is_templated

if TYPE_CHECKING:
    import datetime as dt

    from airflow.sdk import Context

    from airflow_ml_provider.hooks.webhdfs import HdfsHook
    from airflow_ml_provider.storage.paths import StoragePath
#: Seconds the deferral itself may outlive the trigger's own deadline before Airflow times it out.
_DEFERRAL_GRACE = 60.0


class HdfsSuccessSensor(BaseSensorOperator):
    """Wait until **every** path in ``paths`` has its marker file (default ``_SUCCESS``).

    What counts, per marker: only "file not found" means *not yet*. Permission denied, bad
    credentials, a marker that is a directory or a malformed connection fail the task at once
    (no retries, and ``soft_fail`` does not turn them into a skip) with a message naming the
    path, the NameNode and the cause. Connection errors, timeouts and standby NameNodes make the
    sensor try the next NameNode and, if none answers, poke again later; the task then fails
    only at ``timeout``, saying what was missing and the last error.

    Markers sharing a parent directory are checked with one ``LISTSTATUS`` per poke (one
    ``GETFILESTATUS`` per marker when the user may traverse the directory but not list it).
    Deferred, every wait in a triggerer on the same directory and connection settings shares
    one such check per interval (see :mod:`airflow_ml_provider.triggers.shared_polls`).

    :param paths: templated; one path or a list. Each is a directory that receives ``marker``
        (e.g. one per country partition) or, with ``marker=None``, the marker file itself.
        Absolute paths and ``hdfs://`` URLs are looked up on ``hdfs_conn_id``; ``file://`` URLs on
        the local disk, needing no connection.
    :param marker: templated; the marker file name appended to every path, or ``None``.
    :param newer_than: templated; a datetime or ISO 8601 string such as
        ``"{{ data_interval_end }}"``. A marker modified before it is stale and does not count
        (a value without an offset is in the deployment's ``[core] default_timezone``, as Airflow
        reads naive times). ``None`` accepts any marker.
    :param hdfs_conn_id: the ``ml_hdfs`` connection (HA NameNodes, user, TLS, timeout); ``None``
        means ``HdfsHook.default_conn_name`` (``ml_hdfs_default``). Only read if some path is not
        ``file://``.
    :param deferrable: wait in the triggerer instead of a worker slot. Defaults to the
        deployment's ``[operators] default_deferrable``.
    :param kwargs: ``poke_interval``, ``timeout``, ``soft_fail``, ``mode`` and the other
        :class:`~airflow.sdk.BaseSensorOperator` arguments.

    XCom: a list of ``{"path", "modification_time"}`` (ISO 8601, UTC), one per marker.
    """

    template_fields: Sequence[str] = ("paths", "marker", "newer_than")
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        paths: str | Sequence[str],
        marker: str | None = "_SUCCESS",
        newer_than: Any = None,
        hdfs_conn_id: str | None = None,
        deferrable: bool = default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.paths = paths
        self.marker = marker
        self.newer_than = newer_than
        self.hdfs_conn_id = hdfs_conn_id
        self.deferrable = deferrable
        # Fail at DAG parse time for what is already known; templated values are checked after rendering.
        if not is_templated(paths) and not is_templated(marker or ""):
            from airflow_ml_provider.storage.markers import marker_locations

            marker_locations(paths, marker)
        if isinstance(newer_than, str) and not is_templated(newer_than):
            from airflow_ml_provider.storage.markers import parse_newer_than

            parse_newer_than(newer_than)
        self._summary = "not checked yet"
        self._last_error: str | None = None

    @cached_property
    def hook(self) -> HdfsHook:
        """The hook, built on first use (never at DAG parse time; nor is its module imported then)."""
        from airflow_ml_provider.hooks.webhdfs import HdfsHook

        return HdfsHook(self.hdfs_conn_id or HdfsHook.default_conn_name)

    def _locations(self) -> list[StoragePath]:
        from airflow_ml_provider.storage.markers import marker_locations

        return marker_locations(self.paths, self.marker)

    def _newer_than(self) -> dt.datetime | None:
        from airflow_ml_provider.storage.markers import parse_newer_than
        from airflow_ml_provider.utils.compat import default_timezone

        return parse_newer_than(self.newer_than, default_timezone())

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Check all markers once; unreachable NameNodes mean "poke again", refusals raise."""
        try:
            report = self.hook.check_markers(self._locations(), self._newer_than())
        except StorageUnavailableError as e:
            self._last_error = str(e)
            self.log.warning("%s; poking again later", e)
            return False
        self._summary, self._last_error = report.summary(), None
        if report.done:
            self.log.info("All markers present: %s", self._summary)
            return PokeReturnValue(is_done=True, xcom_value=report.to_xcom())
        self.log.info("Waiting: %s", self._summary)
        return False

    def execute(self, context: Context) -> Any:
        """Poke (or reschedule) until done; in deferrable mode check once, then defer."""
        if self.deferrable:
            return self._execute_deferrable(context)
        try:
            return super().execute(context)
        except AirflowSkipException as e:
            self._raise_if_permanent(e)
            raise
        except AirflowSensorTimeout as e:
            from airflow_ml_provider.storage.markers import waiting_status

            raise AirflowSensorTimeout(f"{e} {waiting_status(self._summary, self._last_error)}.") from e

    def _raise_if_permanent(self, skip: AirflowSkipException) -> None:
        """``soft_fail`` skips on any failure; a misconfiguration must still fail the task."""
        cause = skip.__cause__
        if isinstance(cause, MlProviderError) and not cause.retryable and not getattr(self, "never_fail", False):
            raise cause

    def _execute_deferrable(self, context: Context) -> Any:
        from airflow_ml_provider.triggers.hdfs import HdfsMarkersTrigger

        result = self.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        newer_than = self._newer_than()
        trigger = HdfsMarkersTrigger(
            markers=[str(loc) for loc in self._locations()],
            hdfs_conn_id=self.hook.hdfs_conn_id,
            newer_than=newer_than.isoformat() if newer_than else None,
            poke_interval=float(self.poke_interval),
            deadline=time.time() + float(self.timeout),
        )
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout) + _DEFERRAL_GRACE),
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Resume after deferral, keeping permanent errors as failures under ``soft_fail``."""
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSkipException as e:
            self._raise_if_permanent(e)
            raise

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Validate the trigger's event; return the markers' XCom or raise."""
        if not isinstance(event, dict) or "status" not in event:
            raise MlProviderError(f"HdfsMarkersTrigger sent an invalid event {event!r}; expected a dict with 'status'.")
        status = event["status"]
        message = str(event.get("message", ""))
        if status == "success":
            markers = event.get("markers")
            if not isinstance(markers, list):
                raise MlProviderError(f"HdfsMarkersTrigger success event lacks 'markers': {event!r}")
            self.log.info("All markers present: %s", message)
            return markers
        if status == "timeout":
            raise AirflowSensorTimeout(message)
        if status == "error" and event.get("kind") == "access":
            raise StorageRefusedError(message)
        raise MlProviderError(f"Waiting for markers failed: {message or event!r}")
