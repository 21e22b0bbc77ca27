"""The text of a failure alert, built from a failed task's Airflow context.

The failing keys (e.g. the countries whose prediction count dropped) come, in this order, from:

1. the exception's ``keys`` attribute (``failing_keys`` is accepted too): a list, tuple or set of
   values, each shown with ``str()``; a task that fails for some keys raises an error carrying them;
2. the XCom ``failing_keys`` (:data:`FAILING_KEYS_XCOM`) the failed task pushed before failing;

and otherwise the alert says ``no keys reported``. Nothing here does I/O except that XCom pull,
and no secret reaches the alert: every value passes through Airflow's secrets masker.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: The XCom key a task may push its failing keys under (a list of strings) before it fails.
FAILING_KEYS_XCOM = "failing_keys"
#: What the alert says when neither the exception nor the XCom names failing keys.
NO_KEYS = "no keys reported"
#: Longest exception line kept in an alert (characters).
MAX_ERROR_CHARS = 500
#: Most failing keys listed by name; the rest are counted.
MAX_KEYS = 50


@dataclass(frozen=True)
class FailureAlert:
    """One failure alert; every field is already masked.

    :param dag_id: the DAG's id.
    :param task_id: the failed task's id.
    :param run_id: the DAG run's id.
    :param try_number: the try that failed (``None`` when the context has no task instance).
    :param map_index: the mapped task's index (-1 when not mapped).
    :param error: the exception's type and first line, e.g. ``DropGuardError: count dropped 12%``.
    :param keys: the failing keys (empty: none reported).
    :param log_url: the task instance's log page in the Airflow UI.
    """

    dag_id: str
    task_id: str
    run_id: str
    try_number: int | None
    map_index: int
    error: str
    keys: tuple[str, ...]
    log_url: str

    @property
    def keys_text(self) -> str:
        """The failing keys, comma-separated (the first :data:`MAX_KEYS`), or :data:`NO_KEYS`."""
        if not self.keys:
            return NO_KEYS
        shown = ", ".join(self.keys[:MAX_KEYS])
        more = len(self.keys) - MAX_KEYS
        return f"{shown} (and {more} more)" if more > 0 else shown

    @property
    def subject(self) -> str:
        """A one-line subject: ``[Airflow] Task failed: <dag>.<task> (<run>) keys: <keys>``."""
        return f"[Airflow] Task failed: {self.dag_id}.{self.task_id} ({self.run_id}) keys: {self.keys_text}"

    def lines(self) -> list[tuple[str, str]]:
        """The alert's fields as (label, value) pairs, in display order."""
        task = self.task_id if self.map_index < 0 else f"{self.task_id} [map index {self.map_index}]"
        return [
            ("DAG", self.dag_id),
            ("Task", task),
            ("Run", self.run_id),
            ("Try", "unknown" if self.try_number is None else str(self.try_number)),
            ("Error", self.error),
            ("Failing keys", self.keys_text),
            ("Log", self.log_url),
        ]

    @property
    def text(self) -> str:
        """The plain-text body."""
        return "\n".join(f"{label}: {value}" for label, value in self.lines()) + "\n"

    @property
    def html(self) -> str:
        """The HTML body (every value escaped; the log URL is a link)."""
        rows = []
        for label, value in self.lines():
            cell = html.escape(value)
            if label == "Log" and value.startswith(("http://", "https://")):
                cell = f'<a href="{html.escape(value, quote=True)}">{cell}</a>'
            rows.append(f"<tr><th align='left'>{html.escape(label)}</th><td>{cell}</td></tr>")
        return "<p>An Airflow task failed.</p><table>" + "".join(rows) + "</table>"

    def as_json(self) -> dict[str, Any]:
        """The JSON document the webhook posts."""
        return {
            "event": "task_failed",
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "try_number": self.try_number,
            "map_index": self.map_index,
            "error": self.error,
            "failing_keys": list(self.keys),
            "failing_keys_text": self.keys_text,
            "log_url": self.log_url,
            "subject": self.subject,
            "text": self.text,
        }


def _redact(value: str) -> str:
    """``value`` with every secret the masker knows replaced by ``***``."""
    try:
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:  # pragma: no cover - an Airflow without the Task SDK's masker
        return value
    redacted = redact(value)
    return redacted if isinstance(redacted, str) else value


def error_line(exception: object) -> str:
    """``<Type>: <first non-empty line of the message>`` (at most :data:`MAX_ERROR_CHARS`), masked."""
    if exception is None:
        return "no exception in the context"
    if isinstance(exception, BaseException):
        name = type(exception).__name__
        first = next((line.strip() for line in str(exception).splitlines() if line.strip()), "")
        line = f"{name}: {first}" if first else name
    else:  # Airflow may pass the error as text
        line = next((part.strip() for part in str(exception).splitlines() if part.strip()), "")
    if len(line) > MAX_ERROR_CHARS:
        line = line[: MAX_ERROR_CHARS - 1] + "…"
    return _redact(line)


def _as_keys(value: object) -> tuple[str, ...] | None:
    """``value`` as a tuple of key strings if it is a list, tuple or set (or one string), else ``None``."""
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    if isinstance(value, (list, tuple, set, frozenset)):
        keys = [str(k).strip() for k in value if str(k).strip()]
        return tuple(sorted(keys)) if isinstance(value, (set, frozenset)) else tuple(keys)
    return None


def failing_keys(context: Mapping[str, Any]) -> tuple[str, ...]:
    """The failing keys of a failed task: the exception's ``keys``/``failing_keys``, else the XCom
    :data:`FAILING_KEYS_XCOM`; empty when neither names any."""
    exception = context.get("exception")
    for attribute in ("keys", "failing_keys"):
        keys = _as_keys(getattr(exception, attribute, None))
        if keys is not None:
            return tuple(_redact(k) for k in keys)
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return ()
    try:
        pulled = ti.xcom_pull(task_ids=ti.task_id, key=FAILING_KEYS_XCOM, map_indexes=getattr(ti, "map_index", None))
    except Exception as e:  # noqa: BLE001  # an alert without keys beats no alert
        log.warning("Could not read the XCom %r for the alert: %s", FAILING_KEYS_XCOM, type(e).__name__)
        return ()
    keys = _as_keys(pulled)
    return tuple(_redact(k) for k in keys) if keys else ()


def build_failure_alert(context: Mapping[str, Any]) -> FailureAlert:
    """The :class:`FailureAlert` of the failed task described by ``context`` (an Airflow context)."""
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or "unknown DAG"
    task_id = getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", None) or "unknown task"
    run_id = context.get("run_id") or getattr(ti, "run_id", None) or "unknown run"
    try_number = getattr(ti, "try_number", None)
    map_index = getattr(ti, "map_index", None)
    try:
        log_url = str(ti.log_url) if ti is not None else "no task instance in the context"
    except Exception as e:  # noqa: BLE001  # an alert without the link beats no alert
        log_url = f"unavailable ({type(e).__name__})"
    return FailureAlert(
        dag_id=str(dag_id),
        task_id=str(task_id),
        run_id=str(run_id),
        try_number=try_number if isinstance(try_number, int) else None,
        map_index=map_index if isinstance(map_index, int) else -1,
        error=error_line(context.get("exception")),
        keys=failing_keys(context),
        log_url=_redact(log_url),
    )
