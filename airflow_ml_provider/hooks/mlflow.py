"""MLflow hook: a tracking/registry client per connection, credentials scoped to each call.

Connection type ``ml_mlflow``:

=================  ============================================================================
field              meaning
=================  ============================================================================
host               tracking URI: ``https://mlflow.corp``, ``http://127.0.0.1:5000``, or a local
                   store for the embedded default (``sqlite:////srv/mlflow/mlflow.db``,
                   ``file:///srv/mlflow/mlruns``)
port               added to an http(s) host given without one
login / password   basic auth (``auth: basic``, the default when a login is set)
password           bearer token with ``auth: token``
extra              ``registry_uri`` (a separate model registry), ``auth`` (``none``/``basic``/
                   ``token``), ``verify`` (TLS verification: true/false, default true, or the
                   path of a CA bundle file), ``ca_bundle`` (a CA bundle file), ``timeout``
                   (seconds per request, > 0, default 60), ``max_retries`` (a whole number
                   >= 0, default 5). Extras are read strictly: a value that cannot be read
                   (``"verify": "ture"``) fails naming the connection, the key and the accepted
                   values; an absent, null or ``""`` key (a cleared form field) means the default.
=================  ============================================================================

MLflow's REST client reads credentials and TLS settings from ``MLFLOW_*`` environment
variables on every request. This hook never leaves them in the process environment (the
Astronomer provider wrote them into ``os.environ`` for good): :meth:`MlflowHook.scoped` sets
them for the duration of a ``with`` block, under a process-wide lock, and restores exactly what
was there before. Every MLflow call of our operators runs inside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow.sdk import BaseHook

from airflow_ml_provider.exceptions import ConnectionConfigError
from airflow_ml_provider.utils.conn_extras import (
    connection_extra,
    extra_choice,
    extra_int,
    extra_number,
    extra_str,
    extra_tls_verify,
)
from airflow_ml_provider.utils.optional_deps import connection_test_text, requires_extra

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_CONN_ID = "ml_mlflow_default"
_ENV_LOCK = threading.RLock()
_AUTH_MODES = ("none", "basic", "token")


class MlflowConfig(NamedTuple):
    """Where the tracking server and registry are and how to talk to them.

    :param tracking_uri: the tracking URI.
    :param registry_uri: the model registry URI (defaults to the tracking URI).
    :param auth: ``none``, ``basic`` or ``token``.
    :param username: basic-auth user.
    :param password: basic-auth password or bearer token (secret).
    :param verify: verify TLS certificates.
    :param ca_bundle: PEM file of the CA that signed the server's certificate.
    :param timeout: seconds per HTTP request.
    :param max_retries: retries of a failed HTTP request (MLflow backs off between them).
    """

    tracking_uri: str
    registry_uri: str
    auth: str = "none"
    username: str = ""
    password: str = ""
    verify: bool = True
    ca_bundle: str = ""
    timeout: float = 60.0
    max_retries: int = 5

    def __repr__(self) -> str:
        hidden = "***" if self.password else ""
        return (
            f"MlflowConfig(tracking_uri={self.tracking_uri!r}, registry_uri={self.registry_uri!r}, "
            f"auth={self.auth!r}, username={self.username!r}, password={hidden!r}, verify={self.verify!r})"
        )

    def env(self) -> dict[str, str]:
        """The ``MLFLOW_*`` variables MLflow's REST client reads for this config."""
        env = {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(self.timeout)),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.max_retries),
            "MLFLOW_TRACKING_INSECURE_TLS": "false" if self.verify else "true",
        }
        if self.verify and self.ca_bundle:
            env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = self.ca_bundle
        if self.auth == "basic":
            env["MLFLOW_TRACKING_USERNAME"] = self.username
            env["MLFLOW_TRACKING_PASSWORD"] = self.password
        elif self.auth == "token":
            env["MLFLOW_TRACKING_TOKEN"] = self.password
        return env


#: Every variable :meth:`MlflowConfig.env` may set; all are cleared inside a scope so a
#: credential of the worker's environment cannot leak into a call for another connection.
SCOPED_VARIABLES = (
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
)


#: Signs, in an exception chain's texts, of a request that never got an HTTP answer.
_UNREACHABLE = re.compile(
    r"NewConnectionError|ConnectTimeoutError|NameResolutionError|Failed to establish a new connection|"
    r"Connection refused|Connection reset|Connection aborted|RemoteDisconnected|Name or service not known"
)
_NO_ANSWER = re.compile(r"ReadTimeoutError|Read timed out")


def _chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not e for e in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def connection_failure(error: BaseException) -> str | None:
    """Why no MLflow server answered, if ``error`` comes from a request that got no HTTP answer.

    MLflow reports a refused connection, an unknown host or a timeout as ``INTERNAL_ERROR``
    ("API request to … failed with exception …") after its retries; nothing answered at all.
    Returns a short reason (``"[Errno 111] Connection refused"``, ``"no answer within the
    timeout"``), or ``None`` when a server did answer (then its error code means something).
    """
    chain = _chain(error)
    text = " ".join(str(e) for e in chain)
    names = {cls.__name__ for e in chain for cls in type(e).__mro__}
    if "ReadTimeout" in names or "ReadTimeoutError" in names or _NO_ANSWER.search(text):
        return "no answer within the timeout"
    connection_types = {"ConnectionError", "ConnectTimeout", "NewConnectionError", "NameResolutionError"}
    if not (names & connection_types or _UNREACHABLE.search(text)):
        return None
    for e in reversed(chain):  # the innermost socket error says it best: "[Errno 111] Connection refused"
        if isinstance(e, OSError) and type(e).__module__ == "builtins" and str(e):
            return str(e).strip().splitlines()[0][:200].rstrip(".")
    found = _UNREACHABLE.search(text)
    return found.group(0) if found else "the connection failed"


def mlflow_config_from_connection(conn: Any) -> MlflowConfig:
    """Validate an ``ml_mlflow`` connection into a :class:`MlflowConfig` (see the module docstring).

    The extras are read strictly (:mod:`airflow_ml_provider.utils.conn_extras`): a value that
    cannot be read is a ConnectionConfigError naming the connection, the key and the accepted
    values (a typo in ``verify`` never turns TLS verification off); absent or null means the default.
    """
    conn_id = conn.conn_id
    extra = connection_extra(conn)
    host = (conn.host or "").strip()
    if not host:
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: set host to the tracking URI, e.g. https://mlflow.corp "
            "or sqlite:////srv/mlflow/mlflow.db."
        )
    if "://" not in host:
        host = f"https://{host}"
    scheme = host.split("://", 1)[0]
    if scheme in ("http", "https") and conn.port and host.count(":") == 1:
        host = f"{host.rstrip('/')}:{conn.port}"
    auth = extra_choice(extra, "auth", _AUTH_MODES, "basic" if conn.login else "none", conn_id=conn_id)
    if auth != "none" and not conn.password:
        raise ConnectionConfigError(f"Connection {conn_id!r}: auth={auth} needs the password field.")
    timeout = extra_number(extra, "timeout", 60.0, conn_id=conn_id, positive=True)
    retries = extra_int(extra, "max_retries", 5, conn_id=conn_id)
    verify_setting = extra_tls_verify(extra, conn_id=conn_id)
    ca_bundle = verify_setting if isinstance(verify_setting, str) else ""
    verify = verify_setting is not False
    return MlflowConfig(
        tracking_uri=host.rstrip("/"),
        registry_uri=extra_str(extra, "registry_uri", conn_id=conn_id) or host.rstrip("/"),
        auth=auth,
        username=conn.login or "",
        password=conn.password or "",
        verify=verify,
        ca_bundle=ca_bundle,
        timeout=timeout,
        max_retries=retries,
    )


@contextlib.contextmanager
def scoped_environment(values: dict[str, str], clear: tuple[str, ...] = SCOPED_VARIABLES) -> Iterator[None]:
    """Set ``values`` (after removing every name in ``clear``) for the block; restore exactly after."""
    with _ENV_LOCK:
        saved = {name: os.environ.get(name) for name in {*clear, *values}}
        try:
            for name in clear:
                os.environ.pop(name, None)
            os.environ.update(values)
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class MlflowHook(BaseHook):
    """Builds ``MlflowClient(tracking_uri=…, registry_uri=…)`` for an ``ml_mlflow`` connection.

    :param conn_id: the ``ml_mlflow`` connection.
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "ml_mlflow"
    hook_name = "ML provider: MLflow"

    def __init__(self, conn_id: str = DEFAULT_CONN_ID) -> None:
        super().__init__()
        self.conn_id = conn_id

    @cached_property
    def config(self) -> MlflowConfig:
        """The validated connection; the password is registered with the secrets masker."""
        from airflow.sdk.log import mask_secret

        config = mlflow_config_from_connection(self.get_connection(self.conn_id))
        if config.password:
            mask_secret(config.password)
        return config

    @contextlib.contextmanager
    def scoped(self) -> Iterator[None]:
        """MLflow calls inside this block use this connection's credentials and TLS settings."""
        config = self.config
        env = config.env()
        env["MLFLOW_TRACKING_URI"] = config.tracking_uri
        env["MLFLOW_REGISTRY_URI"] = config.registry_uri
        with scoped_environment(env):
            yield

    def get_client(self) -> MlflowClient:
        """A client bound to this connection's URIs (use it inside :meth:`scoped`)."""
        with requires_extra("mlflow"):
            from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.config.tracking_uri, registry_uri=self.config.registry_uri)

    def test_connection(self) -> tuple[bool, str]:
        """Ask the tracking server for one experiment."""
        try:
            with self.scoped():
                self.get_client().search_experiments(max_results=1)
            return True, f"MLflow at {self.config.tracking_uri} answered"
        except Exception as e:  # noqa: BLE001  # test_connection reports, it does not raise
            reason = connection_failure(e)
            if reason is not None:
                message = f"The MLflow server at {self.config.tracking_uri} was unreachable ({reason})"
            else:
                message = f"{type(e).__name__}: {e}"
            return False, connection_test_text(message)
