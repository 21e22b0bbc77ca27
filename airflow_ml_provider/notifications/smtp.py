"""A failure alert by e-mail: the smtp provider's ``SmtpNotifier`` with our subject and body.

SMTP itself (the connection, TLS, authentication, sending) is the smtp provider's
(``apache-airflow-providers-smtp``, the provider's ``smtp`` extra); this module only fills in the
subject and the HTML body from :func:`~airflow_ml_provider.notifications.message.build_failure_alert`
(DAG, task, run, try, error line, failing keys, log URL). Use::

    on_failure_callback=smtp_failure_notifier(to="ml-oncall@example.com", smtp_conn_id="smtp_alerts")

The SMTP connection (host, port, login/password, ``from_email``, ``disable_ssl``/``disable_tls``
extras) is the smtp provider's ``smtp`` connection type; its password is masked by Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.utils.optional_deps import requires_extra

with requires_extra("smtp"):  # the provider's `smtp` extra: Airflow's smtp provider
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context


class FailureSmtpNotifier(SmtpNotifier):
    """The smtp provider's notifier, sending our failure alert (subject and HTML body).

    :param to: the recipient address(es) (templated).
    :param smtp_conn_id: the smtp provider's connection; ``None``: ``[email] email_conn_id``, else
        ``smtp_default``.
    :param from_email: the sender; ``None``: the connection's ``from_email`` extra.
    :param cc: carbon-copy address(es).
    :param bcc: blind carbon-copy address(es).
    :param raise_on_error: raise when the mail cannot be sent; by default the error is logged and
        the callback returns (the task's own failure stays what Airflow reports).
    """

    def __init__(
        self,
        *,
        to: str | Iterable[str],
        smtp_conn_id: str | None = None,
        from_email: str | None = None,
        cc: str | Iterable[str] | None = None,
        bcc: str | Iterable[str] | None = None,
        raise_on_error: bool = False,
    ) -> None:
        super().__init__(to=to, from_email=from_email, cc=cc, bcc=bcc, smtp_conn_id=smtp_conn_id)
        self.raise_on_error = raise_on_error

    def notify(self, context: Context) -> None:
        """Build the alert from ``context`` and send it with the smtp provider."""
        from airflow_ml_provider.notifications.message import build_failure_alert

        alert = build_failure_alert(context)
        self.subject = alert.subject  # set after templating: an error text is never rendered as Jinja
        self.html_content = alert.html
        try:
            super().notify(context)
        except Exception as e:
            if self.raise_on_error:
                raise
            self.log.error(
                "The failure alert e-mail was not sent (connection %r): %s: %s",
                self.smtp_conn_id,
                type(e).__name__,
                e,
            )
            return
        self.log.info("Failure alert e-mailed through connection %r", self.smtp_conn_id)


def smtp_failure_notifier(
    *, to: str | Iterable[str], smtp_conn_id: str | None = None, **kwargs: Any
) -> FailureSmtpNotifier:
    """A :class:`FailureSmtpNotifier`; ``kwargs`` are its other keyword arguments (``from_email``, ``cc``,
    ``bcc``, ``raise_on_error``).

    :param to: the recipient address(es).
    :param smtp_conn_id: the smtp provider's connection (``None``: Airflow's default e-mail connection).
    """
    return FailureSmtpNotifier(to=to, smtp_conn_id=smtp_conn_id, **kwargs)
