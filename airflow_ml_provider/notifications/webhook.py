"""``WebhookNotifier``: post a failure alert as JSON to the URL of an ``ml_webhook`` connection.

The notifier reads no connection itself: :class:`~airflow_ml_provider.hooks.webhook.WebhookHook`
does (URL, bearer token, TLS, timeout, retries). The document is
:meth:`~airflow_ml_provider.notifications.message.FailureAlert.as_json`: DAG, task, run, try,
error line, failing keys and log URL.

A webhook that cannot be reached (after the hook's retries) is logged as an error and, by
default, not raised: the task's own failure stays what Airflow reports. ``raise_on_error=True``
raises instead (Airflow then logs "Failed to run task callback" too).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from airflow.sdk.bases.notifier import BaseNotifier

from airflow_ml_provider.hooks.webhook import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context


class WebhookNotifier(BaseNotifier):
    """Post the failed task's alert to a webhook; use as ``on_failure_callback``.

    :param conn_id: the ``ml_webhook`` connection (templated).
    :param raise_on_error: raise when the alert cannot be delivered; by default the error is
        logged (without the URL's path or the token) and the callback returns.
    """

    template_fields = ("conn_id",)

    def __init__(self, *, conn_id: str = DEFAULT_CONN_ID, raise_on_error: bool = False) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.raise_on_error = raise_on_error

    def notify(self, context: Context) -> None:
        """Build the alert from ``context`` and post it."""
        from airflow_ml_provider.exceptions import ConnectionConfigError, WebhookError
        from airflow_ml_provider.hooks.webhook import WebhookHook
        from airflow_ml_provider.notifications.message import build_failure_alert

        alert = build_failure_alert(context)
        key = hashlib.sha256(
            f"{alert.dag_id}\0{alert.task_id}\0{alert.run_id}\0{alert.map_index}\0{alert.try_number}".encode()
        ).hexdigest()
        try:
            status = WebhookHook(conn_id=self.conn_id).post_json(alert.as_json(), idempotency_key=key)
        except Exception as e:  # a missing connection too: the task's own failure must stay what is reported
            if self.raise_on_error:
                raise
            # our errors name the connection and the endpoint (never the URL's path or the token)
            reason = str(e) if isinstance(e, (WebhookError, ConnectionConfigError)) else f"{type(e).__name__}: {e}"
            self.log.error("The failure alert was not delivered (connection %r): %s", self.conn_id, reason)
            return
        self.log.info("Failure alert posted to the webhook of connection %r (HTTP %s)", self.conn_id, status)

    def __repr__(self) -> str:
        return f"WebhookNotifier(conn_id={self.conn_id!r})"
