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
true; ``false`` turns verification off; a CA file path means "verify against this CA", like
``tls_ca``), ``tls`` (a ``tcp://`` engine is spoken to over TLS, verified against ``tls_ca`` or
the system CAs; only ``false`` sends plain HTTP, an explicit choice because anyone on the network
could then run containers: ``tls_verify=false`` keeps TLS and only skips the certificate check),
``timeout``, ``stop_timeout``, ``pull`` (``missing``/``always``/``never``), ``namespace``.
Metronome: login = IAM uid, password = its password; extras ``token`` (a pre-issued token
instead of a password), ``verify`` (default true; ``false``, or a CA bundle path), ``ca_bundle``
(a CA bundle path), ``timeout``, ``retries``, ``backoff``, ``namespace``. Every extra is read strictly
(:mod:`airflow_ml_provider.utils.conn_extras`): a value that cannot be read is a
:class:`~airflow_ml_provider.exceptions.ConnectionConfigError` naming the connection, the key and
the accepted values, never a silent default, so a typo cannot turn TLS verification off; an extra
that is absent, null or ``""`` (a cleared form field) takes its default. Docker and Swarm need the
``docker`` extra: without it, the first use of the engine fails at once with a
:class:`~airflow_ml_provider.exceptions.MissingExtraError` naming the ``pip install`` command.

Each hook has its own default connection (``ml_docker_default``, ``ml_swarm_default``,
``ml_metronome_default``). Only ``ml_docker_default`` has a fallback: when it is not defined,
it means the local Docker engine. Any other missing connection is a ``ConnectionConfigError``.

Installation namespace (:meth:`ContainerJobHook.job_namespace`): part of every job key and a label
on every job, so two Airflow installations sharing one engine, Swarm or Metronome never touch each
other's jobs. It is the connection's extra ``namespace`` when set (``null`` or ``""`` = not set);
else the Airflow Variable ``ml_provider_namespace``, which the first task that needs it creates
with a random value: a letter then 7 hex characters (never all digits and ``e``, which Airflow's
REST API and UI would show as a JSON number such as ``Infinity``). Every installation has its own
Variables, so installations differ out of the box and a retry within one finds its predecessor.
A namespace is 1-20 characters of ``a-z``, ``0-9`` and ``-``, starting with a letter or digit.

These hooks are the only code that reads Connections and Variables for container jobs.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError
from airflow_ml_provider.utils.conn_extras import (
    connection_extra,
    extra_bool,
    extra_choice,
    extra_int,
    extra_number,
    extra_str,
    extra_tls_verify,
    is_unset,
)
from airflow_ml_provider.utils.optional_deps import connection_test_text
from airflow_ml_provider.utils.secret_refs import SecretRef

if TYPE_CHECKING:
    from airflow_ml_provider.backends.base import ContainerBackend

DEFAULT_CONN_ID = "ml_docker_default"
CONN_TYPES = ("ml_docker", "ml_swarm", "ml_metronome")
#: The Airflow Variable holding this installation's job namespace when the connection sets none.
NAMESPACE_VARIABLE = "ml_provider_namespace"


def new_namespace() -> str:
    """A random namespace: a letter a-z, then 7 hex characters (8 in all, the length a job key shows).

    Not plain hex: Airflow's REST API reads a Variable's value as JSON before showing it, so a value
    such as ``12e45678`` would be listed as ``Infinity`` and ``01234567`` as ``1234567``.
    """
    return secrets.choice(string.ascii_lowercase) + secrets.token_hex(4)[:7]


#: The namespace used when the Variable cannot exist: ``execute`` called outside an Airflow task.
LOCAL_NAMESPACE = "local"
NAMESPACE_DESCRIPTION = (
    "Installation namespace of airflow-ml-provider container jobs, generated on first use: part of "
    "every job's name and a label on it, so this Airflow installation never touches another's jobs. "
    "Two Airflow installations sharing one Docker engine, Swarm or Metronome must differ here "
    "(1-20 characters a-z, 0-9 and '-'). A connection's extra 'namespace' overrides it. Change it only "
    "while no container task runs: a retry finds its predecessor's job under the same namespace."
)
_NAMESPACE_RULE = "1-20 characters of a-z, 0-9 and '-', starting with a letter or digit (e.g. \"staging\")"


def docker_config_from_connection(conn: Any) -> Any:
    """The ``DockerConfig`` of an ``ml_docker`` or ``ml_swarm`` connection."""
    from airflow_ml_provider.backends.docker_engine import DockerConfig

    conn_id = conn.conn_id
    extra = connection_extra(conn)
    host = (conn.host or "").strip()
    if not host:
        base_url = DockerConfig._field_defaults["base_url"]
    elif "://" in host:
        base_url = host
    else:
        base_url = f"tcp://{host}:{conn.port or 2376}"
    pull = extra_choice(extra, "pull", ("missing", "always", "never"), "missing", conn_id=conn_id)
    verify = extra_tls_verify(extra, conn_id=conn_id, verify_key="tls_verify", ca_key="tls_ca")
    # with verification off, a tls_ca is kept: the engine is still spoken to over TLS
    tls_ca = verify if isinstance(verify, str) else extra_str(extra, "tls_ca", conn_id=conn_id)
    tls_verify = verify is not False
    tls_cert = extra_str(extra, "tls_cert", conn_id=conn_id)
    tls_key = extra_str(extra, "tls_key", conn_id=conn_id)
    tls = None if is_unset(extra.get("tls")) else extra_bool(extra, "tls", True, conn_id=conn_id)
    scheme = base_url.partition("://")[0].lower()
    if tls is False and (scheme == "https" or tls_ca or tls_cert or tls_key):
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: extra 'tls' is false (plain HTTP) but the connection also gives "
            "an https:// host or TLS files; remove tls=false, or the TLS settings."
        )
    if tls is True and scheme == "http":
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: extra 'tls' is true but the host is an http:// URL; use tcp:// or https://."
        )
    return DockerConfig(
        base_url=base_url,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_verify=tls_verify,
        timeout=extra_number(extra, "timeout", 60, conn_id=conn_id, positive=True),
        stop_timeout=extra_int(extra, "stop_timeout", 10, conn_id=conn_id),
        pull=pull,
        tls=tls,
    )


def metronome_config_from_connection(conn: Any) -> Any:
    """A :class:`~airflow_ml_provider.backends.metronome.MetronomeConfig` from an ``ml_metronome`` connection."""
    from airflow_ml_provider.backends.metronome import MetronomeConfig

    conn_id = conn.conn_id
    extra = connection_extra(conn)
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ConnectionConfigError(f"Connection {conn_id!r}: set host to the DC/OS URL, e.g. https://dcos.corp.")
    url = host if "://" in host else f"https://{host}" + (f":{conn.port}" if conn.port else "")
    token = extra_str(extra, "token", conn_id=conn_id)
    if not token and not (conn.login and conn.password):
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: give login (IAM uid) and password, or a token in the extra."
        )
    verify = extra_tls_verify(extra, conn_id=conn_id)
    return MetronomeConfig(
        url=url,
        uid=conn.login or "",
        password=conn.password or "",
        token=token,
        verify=verify,
        timeout=extra_number(extra, "timeout", 30, conn_id=conn_id, positive=True),
        retries=extra_int(extra, "retries", 5, conn_id=conn_id),
        backoff=extra_number(extra, "backoff", 0.5, conn_id=conn_id),
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


class ContainerJobHook(BaseHook):
    """Reads a container connection and builds its backend; resolves secret environment references.

    :param conn_id: an ``ml_docker``, ``ml_swarm`` or ``ml_metronome`` connection; default
        :attr:`default_conn_name`. ``ml_docker_default`` falls back to the local Docker engine
        when no such connection exists.
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "ml_docker"
    hook_name = "ML provider: Docker engine"

    def __init__(self, conn_id: str | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name
        self._conn: Any = None

    def _missing(self) -> Any:
        """The local-engine connection for ``ml_docker_default``; any other missing connection is an error."""
        if self.conn_id == DEFAULT_CONN_ID:
            self.log.info("Connection %s is not defined; using the local Docker engine.", DEFAULT_CONN_ID)
            return _default_docker_connection(self.conn_id)
        raise ConnectionConfigError(
            f"Connection {self.conn_id!r} is not defined; create it with type {self.conn_type} "
            f"(or use one of type {', '.join(CONN_TYPES)})."
        )

    def get_conn(self) -> Any:
        """The Connection (the local-engine default when ``ml_docker_default`` is not defined).

        Read once per hook: the backend and the job namespace come from the same Connection.
        """
        if self._conn is None:
            try:
                self._conn = self.get_connection(self.conn_id)
            except AirflowNotFoundException:
                self._conn = self._missing()
        return self._conn

    async def aget_conn(self) -> Any:
        """Async twin of :meth:`get_conn` for triggers."""
        try:
            return await self.aget_connection(self.conn_id)
        except AirflowNotFoundException:
            return self._missing()

    def get_backend(self) -> ContainerBackend:
        """The backend for this connection; no network call yet."""
        return backend_from_connection(self.get_conn())

    def job_namespace(self) -> str:
        """This installation's job namespace: the connection's extra ``namespace``, else the Variable.

        Call at execute time only (it reads the Connection, and may create the Variable
        :data:`NAMESPACE_VARIABLE` with a random value: get, set, then get again, so two first tasks
        racing end up with the value stored last).

        :raises ConnectionConfigError: the extra is set but is not a valid namespace.
        :raises InvalidSpecError: the Variable holds an invalid namespace.
        """
        from airflow_ml_provider.backends.base import is_namespace

        conn = self.get_conn()
        value = connection_extra(conn).get("namespace")
        if not is_unset(value):
            if not is_namespace(value):
                raise ConnectionConfigError(
                    f"Connection {conn.conn_id!r}: extra 'namespace' is {value!r}; use {_NAMESPACE_RULE}, "
                    f"or remove it to use the Airflow Variable {NAMESPACE_VARIABLE}."
                )
            self.log.info("Job namespace %s (extra 'namespace' of connection %s).", value, conn.conn_id)
            return str(value)
        return self._variable_namespace()

    def _variable_namespace(self) -> str:
        """The namespace in the Variable, created with a random value when it does not exist."""
        from airflow.sdk import Variable

        from airflow_ml_provider.backends.base import is_namespace

        value = Variable.get(NAMESPACE_VARIABLE, default=None)
        if value is None:
            if not _in_task_runtime():
                self.log.warning(
                    "Not running in an Airflow task, so the Variable %s cannot be created; using job "
                    "namespace %r. Set the connection extra 'namespace' to choose one.",
                    NAMESPACE_VARIABLE,
                    LOCAL_NAMESPACE,
                )
                return LOCAL_NAMESPACE
            Variable.set(NAMESPACE_VARIABLE, new_namespace(), description=NAMESPACE_DESCRIPTION)
            value = Variable.get(NAMESPACE_VARIABLE, default=None)
            self.log.info(
                "Created the Airflow Variable %s = %s (this installation's job namespace).", NAMESPACE_VARIABLE, value
            )
        if not is_namespace(value):
            raise InvalidSpecError(
                f"The Airflow Variable {NAMESPACE_VARIABLE} is {value!r}, not a job namespace; set it to "
                f"{_NAMESPACE_RULE}, or delete it to have one generated."
            )
        self.log.info("Job namespace %s (Airflow Variable %s).", value, NAMESPACE_VARIABLE)
        return str(value)

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
            except AirflowNotFoundException:
                raise ConnectionConfigError(
                    f"secret_env[{name!r}]: {ref} names a connection that is not defined; define it in Airflow."
                ) from None
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
        try:
            backend = self.get_backend()
        except Exception as e:  # noqa: BLE001  # test_connection reports, it does not raise
            return False, connection_test_text(f"{type(e).__name__}: {e}")
        try:
            backend.find("ml-connection-test-0000000000")
            return True, f"{backend.name} scheduler answered"
        except Exception as e:  # noqa: BLE001  # test_connection reports, it does not raise
            return False, connection_test_text(f"{type(e).__name__}: {e}")
        finally:
            backend.close()


def _in_task_runtime() -> bool:
    """True inside an Airflow task (a worker or ``dag.test()``), where Variables can be written."""
    from airflow.sdk.execution_time import task_runner

    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def _connection_field(conn: Any, field: str) -> Any:
    if field == "uri":
        return conn.get_uri()
    if field.startswith("extra/"):
        key = field.removeprefix("extra/")
        extra = connection_extra(conn)
        if key not in extra:
            raise ConnectionConfigError(f"Connection {conn.conn_id!r} has no extra key {key!r}.")
        return extra[key]
    return getattr(conn, field)


class SwarmJobHook(ContainerJobHook):
    """Container jobs as Docker Swarm ``replicated-job`` services (connection type ``ml_swarm``)."""

    default_conn_name = "ml_swarm_default"
    conn_type = "ml_swarm"
    hook_name = "ML provider: Docker Swarm"


class MetronomeJobHook(ContainerJobHook):
    """Container jobs on DC/OS Metronome (connection type ``ml_metronome``)."""

    default_conn_name = "ml_metronome_default"
    conn_type = "ml_metronome"
    hook_name = "ML provider: DC/OS Metronome"
