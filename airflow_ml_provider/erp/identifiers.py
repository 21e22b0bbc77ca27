"""Table, schema and column names: validated before any SQL is built, quoted by the dialect.

A name that reaches SQL text (as opposed to a value, which is always a bound parameter) must
match ``[A-Za-z_][A-Za-z0-9_]*`` and be at most 63 characters (PostgreSQL's limit); a table may be
``schema.table``. So a templated name such as ``"t; DROP TABLE x"`` is refused with an
:class:`~airflow_ml_provider.exceptions.InvalidSpecError` before the database is contacted, and
the dialect still quotes every name it writes (``psycopg2.sql.Identifier`` for PostgreSQL).

This module is imported by DAG files: it is pure string handling.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from airflow_ml_provider.exceptions import InvalidSpecError

MAX_LENGTH = 63
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class TableName(NamedTuple):
    """A validated table name.

    :param schema: the schema (``None``: the connection's search path).
    :param name: the table.
    """

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def check_identifier(value: Any, *, arg: str) -> str:
    """Return ``value`` if it is a valid name, else raise naming ``arg`` and the rule.

    :param value: the name (after rendering).
    :param arg: what the name is, for the message (e.g. ``"column_map['price']"``).
    :raises InvalidSpecError: not a string, empty, too long or with characters outside the rule.
    """
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise InvalidSpecError(
            f"{arg}={value!r} is not a valid SQL name: use letters, digits and '_', starting with a letter or "
            "'_', e.g. 'price_recommendation'."
        )
    if len(value) > MAX_LENGTH:
        raise InvalidSpecError(f"{arg}={value!r} is longer than {MAX_LENGTH} characters; use a shorter name.")
    return value


def parse_table(value: Any, *, arg: str = "table") -> TableName:
    """``"table"`` or ``"schema.table"`` as a :class:`TableName`; each part checked by :func:`check_identifier`."""
    if not isinstance(value, str):
        raise InvalidSpecError(f"{arg}={value!r} is not a table name; give e.g. 'erp.markdown_prices'.")
    parts = value.split(".")
    if len(parts) > 2:
        raise InvalidSpecError(f"{arg}={value!r} has more than one '.'; give 'table' or 'schema.table'.")
    names = [check_identifier(p, arg=arg) for p in parts]
    return TableName(names[0], names[1]) if len(names) == 2 else TableName(None, names[0])
