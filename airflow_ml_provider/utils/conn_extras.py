"""Strict readers for the values in a Connection's extra, shared by every hook.

A connection's extra is typed by hand in the Airflow UI, so these readers fail closed: a value
they cannot parse is a :class:`~airflow_ml_provider.exceptions.ConnectionConfigError` naming the
connection, the key and the accepted values, never a silent default. In particular a typo in a
TLS setting (``"tls_verify": "ture"``) must not turn verification off.

A key that is absent, ``null`` or ``""`` means "use the default", in every reader and so in every
hook: the connection form saves a cleared field as null (and a cleared text field may be saved as
``""``). Only that: a value that is there but cannot be read stays an error, and the default of
TLS verification is "verify".
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow_ml_provider.exceptions import ConnectionConfigError

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_ACCEPTED = "true/false (also 1/0, yes/no, on/off)"


def connection_extra(conn: Any) -> dict[str, Any]:
    """The extra of ``conn`` as a dict; malformed JSON or a non-object is an error naming the connection."""
    raw = conn.extra
    if not raw:
        return {}
    try:  # not extra_dejson: the Task SDK's logs malformed JSON and returns {}, i.e. silent defaults
        extra = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ConnectionConfigError(f"Connection {conn.conn_id!r}: extra is not valid JSON.") from None
    if not isinstance(extra, dict):
        raise ConnectionConfigError(f"Connection {conn.conn_id!r}: extra must be a JSON object, e.g. {{}}.")
    return extra


def _bad(conn_id: str, key: str, value: Any, accepted: str) -> ConnectionConfigError:
    return ConnectionConfigError(f"Connection {conn_id!r}: extra {key!r} is {value!r}; use {accepted}.")


def is_unset(value: Any) -> bool:
    """Whether an extra's value means "use the default": absent (None), null, or an empty or blank string."""
    return value is None or (isinstance(value, str) and not value.strip())


def extra_str(extra: dict[str, Any], key: str, default: str | None = None, *, conn_id: str) -> str | None:
    """``extra[key]`` as a stripped string; absent, null or blank gives ``default``.

    A number or a boolean where text is expected (``"tls_cert": true``) is an error naming the key
    (its value is not echoed: the key may hold a secret, such as a token).
    """
    value = extra.get(key)
    if is_unset(value):
        return default
    if not isinstance(value, str):
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: extra {key!r} must be text, not {type(value).__name__}; quote it, or clear it."
        )
    return value.strip()


def extra_choice(extra: dict[str, Any], key: str, choices: tuple[str, ...], default: str, *, conn_id: str) -> str:
    """``extra[key]`` as one of ``choices`` (case-insensitive); absent, null or blank gives ``default``."""
    value = extra.get(key)
    if is_unset(value):
        return default
    text = str(value).strip().lower()
    if isinstance(value, str) and text in choices:
        return text
    accepted = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
    raise _bad(conn_id, key, value, accepted)


def parse_bool(value: Any, *, conn_id: str, key: str) -> bool:
    """Parse one boolean setting; anything but the accepted spellings is an error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad(conn_id, key, value, _ACCEPTED)


def extra_bool(extra: dict[str, Any], key: str, default: bool, *, conn_id: str) -> bool:
    """``extra[key]`` as a boolean; absent or null gives ``default``."""
    value = extra.get(key)
    return default if is_unset(value) else parse_bool(value, conn_id=conn_id, key=key)


def extra_number(
    extra: dict[str, Any], key: str, default: float, *, conn_id: str, minimum: float = 0.0, positive: bool = False
) -> float:
    """``extra[key]`` as a number >= ``minimum`` (> 0 with ``positive``); absent, null or blank gives ``default``."""
    value: Any = extra.get(key)
    if is_unset(value):
        return default
    if isinstance(value, bool):
        raise _bad(conn_id, key, value, "a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _bad(conn_id, key, value, "a number, e.g. 30") from None
    if number != number or number < minimum or (positive and number <= 0):  # NaN, or out of range
        raise _bad(conn_id, key, value, "a positive number" if positive else f"a number >= {minimum:g}")
    return number


def extra_int(extra: dict[str, Any], key: str, default: int, *, conn_id: str, minimum: int = 0) -> int:
    """``extra[key]`` as a whole number >= ``minimum`` (``5`` or ``"5"``, not ``2.5``); absent, null or blank
    gives ``default``."""
    number = extra_number(extra, key, float(default), conn_id=conn_id, minimum=minimum)
    if not number.is_integer():
        raise _bad(conn_id, key, extra.get(key), f"a whole number >= {minimum}, e.g. {default}")
    return int(number)


def extra_verify(extra: dict[str, Any], key: str = "verify", *, conn_id: str, default: bool | str = True) -> bool | str:
    """A TLS ``verify`` setting as requests takes it: ``True``, ``False``, or a CA bundle path.

    ``true``/``false`` spellings are booleans; an absolute path (the usual requests convention)
    means "verify with this CA file" and must exist; anything else is an error, so verification is
    never turned off by a value we cannot read.
    """
    value = extra.get(key)
    if is_unset(value):
        return default
    if isinstance(value, str) and value.strip().startswith(("/", "~")):
        path = os.path.expanduser(value.strip())
        if not os.path.exists(path):
            raise ConnectionConfigError(
                f"Connection {conn_id!r}: extra {key!r} names the CA file {path!r}, which does not exist on "
                "this worker; install the CA file there or fix the path."
            )
        return path
    try:
        return parse_bool(value, conn_id=conn_id, key=key)
    except ConnectionConfigError:
        raise _bad(conn_id, key, value, f"{_ACCEPTED}, or the absolute path of a CA bundle file") from None


def extra_tls_verify(
    extra: dict[str, Any], *, conn_id: str, verify_key: str = "verify", ca_key: str = "ca_bundle"
) -> bool | str:
    """The effective TLS verification of a connection with a ``verify`` and a ``ca_bundle`` extra.

    ``verify`` false turns verification off (explicitly, whatever ``ca_bundle`` says); otherwise
    the CA file is ``ca_bundle`` or a path given as ``verify`` (both must exist, and name the same
    file when both are given); with neither, ``True`` (the system's CAs).
    """
    verify = extra_verify(extra, verify_key, conn_id=conn_id)
    ca_value = extra.get(ca_key)
    if is_unset(ca_value):
        return verify
    if not isinstance(ca_value, str) or not ca_value.strip().startswith(("/", "~")):
        raise _bad(conn_id, ca_key, ca_value, "the absolute path of a CA bundle file")
    ca = extra_verify(extra, ca_key, conn_id=conn_id)
    if verify is False:
        return False
    if isinstance(verify, str) and verify != ca:
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: extras {verify_key!r} ({verify!r}) and {ca_key!r} ({ca!r}) name different "
            "CA files; keep one."
        )
    return ca
