"""Hooks for container jobs: read a Connection, build the matching backend, resolve secrets.

The connection's type selects the backend:

========================  =================================  ============================
connection type           host                               backend
========================  =================================  ============================
``ml_docker``             ``unix:///var/run/docker.sock``    :class:`DockerBackend`
                          or ``tcp://host:2376``
``ml_swarm``              a Swarm manager's engine URL       :class:`SwarmBackend`
``ml_metronome``          ``https://dcos.example.com``       :class:`MetronomeBackend`
========================  =================================  ============================

Docker/Swarm extras: ``tls_ca``, ``tls_cert``, ``tls_key`` (paths), ``tls_verify`` (default
true), ``timeout``, ``stop_timeout``, ``pull`` (``missing``/``always``/``never``).
Metronome: login = IAM uid, password = its password; extras ``token`` (a pre-issued token
instead of a password), ``verify`` (default true), ``ca_bundle``, ``timeout``, ``retries``,
``backoff``. Without any connection, ``ml_docker_default`` means the local Docker engine.

These hooks are the only code that reads Connections and Variables for container jobs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_ml_provider.exceptions import ConnectionConfigError
from airflow_ml_provider.utils.secret_refs import SecretRef

if TYPE_CHECKING:
    from airflow_ml_provider.backends.base import ContainerBackend

DEFAULT_CONN_ID = "ml_docker_default"
CONN_TYPES = ("ml_docker", "ml_swarm", "ml_metronome")


def _extra(conn: Any) -> dict[str, Any]:
    try:
        extra = conn.extra_dejson if conn.extra else {}
    except ValueError:
        raise ConnectionConfigError(f"Connection {conn.conn_id!r}: extra is not valid JSON.") from None
    if not isinstance(extra, dict):
        raise ConnectionConfigError(f"Connection {conn.conn_id!r}: extra must be a JSON object.")
    return extra


def _number(conn: Any, extra: Mapping[str, Any], key: str, default: float) -> float:
    value = extra.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConnectionConfigError(f"Connection {conn.conn_id!r}: extra {key}={value!r} must be a number.") from None
    if number < 0:
        raise ConnectionConfigError(f"Connection {conn.conn_id!r}: extra {key}={value!r} must be >= 0.")
    return number


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def docker_config_from_connection(conn: Any) -> Any:
    """The ``DockerConfig`` of an ``ml_docker`` or ``ml_swarm`` connection."""
    from airflow_ml_provider.backends.docker_engine import DockerConfig

    extra = _extra(conn)
    host = (conn.host or "").strip()
    if not host:
        base_url = DockerConfig._field_defaults["base_url"]
    elif "://" in host:
        base_url = host
    else:
        base_url = f"tcp://{host}:{conn.port or 2376}"
    pull = str(extra.get("pull", "missing"))
    if pull not in ("missing", "always", "never"):
        raise ConnectionConfigError(f"Connection {conn.conn_id!r}: extra pull={pull!r}; use missing, always or never.")
    return DockerConfig(
        base_url=base_url,
        tls_ca=extra.get("tls_ca") or None,
        tls_cert=extra.get("tls_cert") or None,
        tls_key=extra.get("tls_key") or None,
        tls_verify=_bool(extra.get("tls_verify", True)),
        timeout=_number(conn, extra, "timeout", 60),
        stop_timeout=int(_number(conn, extra, "stop_timeout", 10)),
        pull=pull,
    )


def metronome_config_from_connection(conn: Any) -> Any:
    """A :class:`~airflow_ml_provider.backends.metronome.MetronomeConfig` from an ``ml_metronome`` connection."""
    from airflow_ml_provider.backends.metronome import MetronomeConfig

    extra = _extra(conn)
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ConnectionConfigError(f"Connection {conn.conn_id!r}: set host to the DC/OS URL, e.g. https://dcos.corp.")
    url = host if "://" in host else f"https://{host}" + (f":{conn.port}" if conn.port else "")
    token = extra.get("token") or None
    if not token and not (conn.login and conn.password):
        raise ConnectionConfigError(
            f"Connection {conn.conn_id!r}: give login (IAM uid) and password, or a token in the extra."
        )
    verify: bool | str = _bool(extra.get("verify", True))
    if verify and extra.get("ca_bundle"):
        verify = str(extra["ca_bundle"])
    return MetronomeConfig(
        url=url,
        uid=conn.login or "",
        password=conn.password or "",
        token=token,
        verify=verify,
        timeout=_number(conn, extra, "timeout", 30),
        retries=int(_number(conn, extra, "retries", 5)),
        backoff=_number(conn, extra, "backoff", 0.5),
    )


def backend_from_connection(conn: Any) -> ContainerBackend:
    """Build the backend that ``conn``'s type names (see the module docstring)."""
    conn_type = conn.conn_type
    if conn_type == "ml_docker":
        from airflow_ml_provider.backends.docker_engine import DockerBackend

        return DockerBackend(docker_config_from_connection(conn))
    if conn_type == "ml_swarm":
        from airflow_ml_provider.backends.swarm import SwarmBackend

        return SwarmBackend(docker_config_from_connection(conn))
    if conn_type == "ml_metronome":
        from airflow_ml_provider.backends.metronome import MetronomeBackend

        return MetronomeBackend(metronome_config_from_connection(conn))
    raise ConnectionConfigError(
        f"Connection {conn.conn_id!r} has type {conn_type!r}; container jobs need one of {', '.join(CONN_TYPES)}."
    )


def _default_docker_connection(conn_id: str) -> Any:
    from airflow.sdk import Connection

    return Connection(conn_id=conn_id, conn_type="ml_docker")


def _is_missing_connection(error: Exception) -> bool:
    return type(error).__name__ in ("AirflowNotFoundException", "ConnectionNotFound") or "isn't defined" in str(error)


class ContainerJobHook(BaseHook):
    """Reads a container connection and builds its backend; resolves secret environment references.

    :param conn_id: an ``ml_docker``, ``ml_swarm`` or ``ml_metronome`` connection. The default
        ``ml_docker_default`` falls back to the local Docker engine when no such connection exists.
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "ml_docker"
    hook_name = "Docker engine (airflow-ml-provider container jobs)"

    def __init__(self, conn_id: str = DEFAULT_CONN_ID) -> None:
        super().__init__()
        self.conn_id = conn_id

    def get_conn(self) -> Any:
        """The Connection (the local-engine default when ``ml_docker_default`` is not defined)."""
        try:
            return self.get_connection(self.conn_id)
        except Exception as e:
            if self.conn_id == DEFAULT_CONN_ID and _is_missing_connection(e):
                self.log.info("Connection %s is not defined; using the local Docker engine.", DEFAULT_CONN_ID)
                return _default_docker_connection(self.conn_id)
            raise

    async def aget_conn(self) -> Any:
        """Async twin of :meth:`get_conn` for triggers."""
        try:
            return await self.aget_connection(self.conn_id)
        except Exception as e:
            if self.conn_id == DEFAULT_CONN_ID and _is_missing_connection(e):
                return _default_docker_connection(self.conn_id)
            raise

    def get_backend(self) -> ContainerBackend:
        """The backend for this connection; no network call yet."""
        return backend_from_connection(self.get_conn())

    def resolve_secret_env(self, refs: Mapping[str, SecretRef]) -> dict[str, str]:
        """Look up each reference and register the value with Airflow's secrets masker.

        Errors name the variable and the reference, never a value.
        """
        from airflow.sdk import Variable
        from airflow.sdk.log import mask_secret

        values: dict[str, str] = {}
        for name, ref in refs.items():
            try:
                if ref.kind == "var":
                    value = Variable.get(ref.key)
                else:
                    value = _connection_field(self.get_connection(ref.key), ref.field)
            except ConnectionConfigError:
                raise
            except Exception as e:  # noqa: BLE001  # any lookup failure: name the reference, never a value
                raise ConnectionConfigError(
                    f"secret_env[{name!r}]: could not read {ref} ({type(e).__name__}); define it in Airflow."
                ) from None
            if value is None or value == "":
                raise ConnectionConfigError(f"secret_env[{name!r}]: {ref} is empty; set it in Airflow.")
            text = value if isinstance(value, str) else json.dumps(value)
            mask_secret(text)
            values[name] = text
        return values

    def test_connection(self) -> tuple[bool, str]:
        """Ask the scheduler whether it answers (lists no job; creates nothing)."""
        backend = self.get_backend()
        try:
            backend.find("ml-connection-test-0000000000")
            return True, f"{backend.name} scheduler answered"
        except Exception as e:  # noqa: BLE001  # test_connection reports, it does not raise
            return False, f"{type(e).__name__}: {e}"
        finally:
            backend.close()


def _connection_field(conn: Any, field: str) -> Any:
    if field == "uri":
        return conn.get_uri()
    if field.startswith("extra/"):
        key = field.removeprefix("extra/")
        extra = _extra(conn)
        if key not in extra:
            raise ConnectionConfigError(f"Connection {conn.conn_id!r} has no extra key {key!r}.")
        return extra[key]
    return getattr(conn, field)


class SwarmJobHook(ContainerJobHook):
    """Container jobs as Docker Swarm ``replicated-job`` services (connection type ``ml_swarm``)."""

    default_conn_name = "ml_swarm_default"
    conn_type = "ml_swarm"
    hook_name = "Docker Swarm (airflow-ml-provider container jobs)"


class MetronomeJobHook(ContainerJobHook):
    """Container jobs on DC/OS Metronome (connection type ``ml_metronome``)."""

    default_conn_name = "ml_metronome_default"
    conn_type = "ml_metronome"
    hook_name = "DC/OS Metronome (airflow-ml-provider container jobs)"
