"""References to secrets kept in Airflow, resolved only when a task runs.

A container job's secret environment is given as *references*, never values, so the DAG file,
the serialized DAG, the rendered template fields and the trigger's stored kwargs hold no secret:

* ``"conn://erp_db/password"`` -- a field of Connection ``erp_db``: ``password``, ``login``,
  ``host``, ``schema``, ``port`` or ``uri`` (the whole connection URI);
* ``"conn://erp_db/extra/api_key"`` -- a key of the connection's extra;
* ``"var://erp_api_token"`` -- an Airflow Variable.

Parsing is pure (no I/O) and runs at DAG parse time, so a typo fails the DAG import with a
message that shows the accepted forms. Resolution lives in the container hook.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from airflow_ml_provider.exceptions import InvalidSpecError

CONN_FIELDS = ("password", "login", "host", "schema", "port", "uri")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORMS = '"conn://<conn_id>/password", "conn://<conn_id>/extra/<key>" or "var://<variable_key>"'


class SecretRef(NamedTuple):
    """Where one secret lives: ``kind`` is ``conn`` or ``var``; ``field`` is set for connections.

    :param kind: ``"conn"`` or ``"var"``.
    :param key: the connection id or the variable key.
    :param field: connection field (``password``, ``uri``, ``extra/<key>`` …); empty for variables.
    """

    kind: str
    key: str
    field: str = ""

    def __str__(self) -> str:
        return f"conn://{self.key}/{self.field}" if self.kind == "conn" else f"var://{self.key}"


def parse_secret_ref(name: str, value: Any) -> SecretRef:
    """Parse one reference; ``name`` is the environment variable it is for (used in errors)."""
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str):
        raise InvalidSpecError(f"secret_env[{name!r}] must be a reference string such as {_FORMS}, not a value.")
    if value.startswith("var://"):
        key = value.removeprefix("var://")
        if key and "/" not in key:
            return SecretRef("var", key)
    elif value.startswith("conn://"):
        conn_id, _, field = value.removeprefix("conn://").partition("/")
        if conn_id and (field in CONN_FIELDS or (field.startswith("extra/") and len(field) > 6)):
            return SecretRef("conn", conn_id, field)
    # Do not echo the value: a user who pasted a password here must not see it in the DAG error.
    raise InvalidSpecError(
        f"secret_env[{name!r}] is not a secret reference; use {_FORMS} "
        f"(connection fields: {', '.join(CONN_FIELDS)}, or extra/<key>). Never put the secret itself in the DAG."
    )


def parse_secret_env(refs: Mapping[str, Any] | None) -> dict[str, SecretRef]:
    """Validate a ``{ENV_NAME: reference}`` mapping (see the module docstring)."""
    if refs is None:
        return {}
    if not isinstance(refs, Mapping):
        raise InvalidSpecError('secret_env must be a dict like {"ERP_PASSWORD": "conn://erp_db/password"}.')
    parsed = {}
    for name, value in refs.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise InvalidSpecError(
                f"secret_env key {name!r} is not a valid environment variable name (e.g. ERP_PASSWORD)."
            )
        parsed[name] = parse_secret_ref(name, value)
    return parsed
