"""Tell a value known at DAG parse time from one that Airflow fills in later.

Operators validate their arguments in the constructor when the values are static, so a typo
fails when the DAG is parsed, and again after rendering when they were templated. This is the
one check of "is this value templated?" that they all use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Values that are known as they are: nothing renders into them.
_PLAIN = (int, float, bool, type(None))


def is_templated(value: Any) -> bool:
    """True when ``value`` is not final until the task runs.

    That is a string holding Jinja (``{{`` or ``{%``), a list, tuple, set or mapping holding such a
    string (in a mapping, in its values: Airflow renders values, not keys), or any object other
    than a plain scalar (an ``XComArg``, a mapped argument, ...), which resolves at run time.
    """
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(is_templated(v) for v in value)
    if isinstance(value, Mapping):
        return any(is_templated(v) for v in value.values())
    return not isinstance(value, _PLAIN)
