"""Post JSON to a webhook named by an ``ml_webhook`` connection (urllib3, retries, timeouts).

The connection: Host is the full URL (``https://alerts.corp/hooks/ml``), Password an optional
bearer token (sent as ``Authorization: Bearer <token>``, registered with the secrets masker).
Extras, all optional (null or empty: the default), read strictly by
:mod:`airflow_ml_provider.utils.conn_extras`:

* ``verify`` (default true): TLS certificate verification, or the absolute path of a CA file;
* ``ca_bundle``: the absolute path of the CA file that signed the server's certificate;
* ``timeout`` (default 10 s): connect and read timeout of each attempt;
* ``retries`` (default 3): retries of a connection error or a 429/5xx answer;
* ``backoff`` (default 0.5 s): the first retry's delay, doubling with each retry.

A POST is retried after a 5xx answer, so a receiver may see an alert twice; every post carries
an ``Idempotency-Key`` header the receiver can use to drop the repeat.
"""

from __future__ import annotations

import json
import urllib.parse
from functools import cached_property
from typing import Any, NamedTuple

from airflow.sdk import BaseHook

from airflow_ml_provider.exceptions import ConnectionConfigError, WebhookError
from airflow_ml_provider.utils.conn_extras import (
    connection_extra,
    extra_int,
    extra_number,
    extra_tls_verify,
)
from airflow_ml_provider.utils.optional_deps import connection_test_text

DEFAULT_CONN_ID = "ml_webhook_default"
#: Answers that are retried (with the backoff); any other non-2xx answer fails at once.
RETRY_STATUSES = (429, 500, 502, 503, 504)


class WebhookConfig(NamedTuple):
    """A validated ``ml_webhook`` connection.

    :param url: the URL posted to.
    :param token: the bearer token, or ``None``.
    :param verify: ``True``, ``False`` or the path of a CA file.
    :param timeout: connect and read timeout of each attempt, in seconds.
    :param retries: retries after a connection error or a retried status.
    :param backoff: the first retry's delay in seconds (doubling).
    """

    url: str
    token: str | None
    verify: bool | str
    timeout: float
    retries: int
    backoff: float

    @property
    def endpoint(self) -> str:
        """``scheme://host[:port]`` of :attr:`url`: what messages name (the path may be a secret)."""
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def webhook_config_from_connection(conn: Any) -> WebhookConfig:
    """Validate an ``ml_webhook`` connection; an error names the connection and the field to fix."""
    conn_id = conn.conn_id
    url = (conn.host or "").strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: Host must be the webhook's full http(s) URL, e.g. "
            "https://alerts.example.com/hooks/ml."
        )
    if parts.username or parts.password:
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: Host must not carry credentials; put a bearer token in Password."
        )
    extra = connection_extra(conn)
    unknown = sorted(set(extra) - {"verify", "ca_bundle", "timeout", "retries", "backoff"})
    if unknown:
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: unknown extra {', '.join(map(repr, unknown))}; "
            "use verify, ca_bundle, timeout, retries or backoff."
        )
    return WebhookConfig(
        url=url,
        token=conn.password or None,
        verify=extra_tls_verify(extra, conn_id=conn_id),
        timeout=extra_number(extra, "timeout", 10.0, conn_id=conn_id, positive=True),
        retries=extra_int(extra, "retries", 3, conn_id=conn_id),
        backoff=extra_number(extra, "backoff", 0.5, conn_id=conn_id),
    )


class WebhookHook(BaseHook):
    """Posts JSON documents to the URL of an ``ml_webhook`` connection.

    :param conn_id: the ``ml_webhook`` connection.
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "ml_webhook"
    hook_name = "ML provider: Webhook"

    def __init__(self, conn_id: str = DEFAULT_CONN_ID) -> None:
        super().__init__()
        self.conn_id = conn_id

    @cached_property
    def config(self) -> WebhookConfig:
        """The validated connection; the token is registered with the secrets masker."""
        from airflow.sdk.log import mask_secret

        config = webhook_config_from_connection(self.get_connection(self.conn_id))
        if config.token:
            mask_secret(config.token)
        return config

    def _pool(self) -> Any:
        import urllib3

        config = self.config
        tls: dict[str, Any] = {}
        if config.url.startswith("https://"):
            if config.verify is False:
                tls = {"cert_reqs": "CERT_NONE"}
            else:
                tls = {"cert_reqs": "CERT_REQUIRED"}
                if isinstance(config.verify, str):
                    tls["ca_certs"] = config.verify
        retry = urllib3.Retry(
            total=config.retries,
            connect=config.retries,
            read=config.retries,
            status=config.retries,
            backoff_factor=config.backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # POST too: an alert delivered twice beats one lost
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        timeout = urllib3.Timeout(connect=config.timeout, read=config.timeout)
        return urllib3.PoolManager(retries=retry, timeout=timeout, **tls)

    def post_json(self, document: dict[str, Any], *, idempotency_key: str | None = None) -> int:
        """POST ``document`` as JSON; returns the (2xx) status.

        :param document: the JSON document.
        :param idempotency_key: sent as the ``Idempotency-Key`` header when given.
        :raises WebhookError: no 2xx answer after the retries, or the server could not be reached.
        """
        import urllib3

        config = self.config
        headers = {"Content-Type": "application/json", "User-Agent": "airflow-ml-provider"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        body = json.dumps(document, default=str).encode()
        pool = self._pool()
        try:
            response = pool.request("POST", config.url, body=body, headers=headers, redirect=False)
        except urllib3.exceptions.HTTPError as e:  # connection refused, timeouts, TLS: after the retries
            raise WebhookError(
                f"The webhook of connection {self.conn_id!r} at {config.endpoint} could not be reached after "
                f"{config.retries} retries ({type(e).__name__}); check that it is up and the connection's Host."
            ) from None
        finally:
            pool.clear()
        if not 200 <= response.status < 300:
            raise WebhookError(
                f"The webhook of connection {self.conn_id!r} at {config.endpoint} answered HTTP {response.status} "
                f"(after up to {config.retries} retries); check the receiver and the connection's Host and token."
            )
        return int(response.status)

    def test_connection(self) -> tuple[bool, str]:
        """Post a test document (``{"event": "test"}``)."""
        try:
            status = self.post_json({"event": "test", "text": "Test from airflow-ml-provider"})
            return True, f"The webhook at {self.config.endpoint} answered HTTP {status}"
        except (WebhookError, ConnectionConfigError) as e:
            return False, connection_test_text(str(e))
