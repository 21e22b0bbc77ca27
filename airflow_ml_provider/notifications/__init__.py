"""Failure notifications for DAGs: an SMTP notifier (the smtp provider's) and a generic webhook.

Both send the same alert, built by :func:`~airflow_ml_provider.notifications.message.build_failure_alert`
from the task's Airflow context: DAG, task, run, try number, the exception's first line, the
failing keys and the task's log URL. Use them as ``on_failure_callback``::

    from airflow_ml_provider.notifications.smtp import smtp_failure_notifier
    from airflow_ml_provider.notifications.webhook import WebhookNotifier

    on_failure_callback = [smtp_failure_notifier(to="ml-oncall@corp"), WebhookNotifier(conn_id="ml_webhook_default")]

This package imports nothing itself; each module imports only what it needs.
"""
