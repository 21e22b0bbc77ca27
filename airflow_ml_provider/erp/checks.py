"""Checks on the dataset before anything is written, on Arrow schemas and one batch at a time.

* :func:`plan_columns` (schemas only, before the transaction): every mapped or constant column
  exists in the target, every NOT NULL target column without a default is provided, the key
  columns are provided, and each Arrow type is compatible with the target column's type.
* :func:`check_batch` (each batch, while it streams): no null, NaN or infinite value in a NOT NULL
  column, and every key value in the expected set; the message names the file, row and value.

Duplicate primary keys are checked by the dialect in SQL on the staging table (the input does not
fit in memory). Every failure is an :class:`~airflow_ml_provider.exceptions.InvalidSpecError`
naming the column, key or row and the fix; raised inside the write, it rolls everything back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.erp.dialect import TargetTable, key_text
from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    import pyarrow as pa

#: Catalog type names (PostgreSQL, MariaDB/MySQL ``information_schema.columns.data_type``, SQLite)
#: -> family. Unknown types (``json``, ``time``, ``blob``, ...): "other", which takes any value.
#: MariaDB/MySQL's ``BOOL`` is ``tinyint(1)`` (named so by :func:`.mysql.mysql_data_type`): a "flag".
_FAMILIES = {
    "integer": ("smallint", "integer", "bigint", "int", "tinyint", "mediumint", "int2", "int4", "int8", "year"),
    "number": ("numeric", "decimal", "real", "double precision", "double", "float", "float4", "float8"),
    "text": (
        "text",
        "character varying",
        "varchar",
        "character",
        "char",
        "bpchar",
        "tinytext",
        "mediumtext",
        "longtext",
        "enum",
    ),
    "bool": ("boolean", "bool"),
    "flag": ("tinyint(1)",),
    "date": ("date",),
    "timestamp": ("timestamp without time zone", "timestamp with time zone", "timestamp", "datetime"),
}
DB_FAMILY = {name: family for family, names in _FAMILIES.items() for name in names}


def _arrow_family(t: pa.DataType) -> str:
    with requires_extra("mlflow"):
        import pyarrow.types as pt

    if pt.is_dictionary(t):
        return _arrow_family(t.value_type)
    for family, test in (
        ("integer", pt.is_integer),
        ("float", pt.is_floating),
        ("decimal", pt.is_decimal),
        ("text", lambda x: pt.is_string(x) or pt.is_large_string(x)),
        ("bool", pt.is_boolean),
        ("date", pt.is_date),
        ("timestamp", pt.is_timestamp),
        ("null", pt.is_null),
    ):
        if test(t):
            return family
    return "other"


#: Target family -> the Arrow families it accepts (the database parses text for dates and others).
_ACCEPTS = {
    "integer": {"integer"},
    "number": {"integer", "float", "decimal"},
    "text": {"text"},
    "bool": {"bool"},
    "flag": {"bool", "integer"},
    "date": {"date", "text"},
    "timestamp": {"timestamp", "date", "text"},
}


def compatible(arrow_type: pa.DataType, data_type: str) -> bool:
    """Whether values of ``arrow_type`` can be written to a column of the catalog type ``data_type``."""
    family = _arrow_family(arrow_type)
    if family == "null":
        return True
    accepted = _ACCEPTS.get(DB_FAMILY.get(data_type.lower(), "other"))
    return True if accepted is None else family in accepted


@dataclass
class ColumnPlan:
    """Which dataset columns are read and what they become.

    :param sources: dataset columns read, in order.
    :param targets: the target column each source is written to (same order).
    :param constants: target column -> constant value, appended to every batch.
    """

    sources: list[str]
    targets: list[str]
    constants: dict[str, Any]

    @property
    def columns(self) -> list[str]:
        """Every target column written, in batch order."""
        return self.targets + list(self.constants)


def plan_columns(
    schema: pa.Schema,
    where: str,
    table: TargetTable,
    *,
    column_map: Mapping[str, str] | None,
    constants: Mapping[str, Any] | None,
    key_columns: Sequence[str],
) -> ColumnPlan:
    """Map one input file's columns (``schema``, partition columns included) onto ``table``.

    Without ``column_map`` every dataset column that the table has is written (others are
    skipped); with it, exactly the mapped ones. ``where`` names the file for messages.
    """
    with requires_extra("mlflow"):
        import pyarrow as pa

    constants = dict(constants or {})
    cols = table.columns
    if column_map is not None:
        missing = [s for s in column_map if s not in schema.names]
        if missing:
            raise InvalidSpecError(
                f"{where} has no column(s) {missing} named in column_map; it has {schema.names}. "
                "Fix column_map or the data upstream. Nothing was written."
            )
        pairs = list(column_map.items())
    else:
        pairs = [(n, n) for n in schema.names if n in cols and n not in constants]
    unknown = [t for _, t in pairs if t not in cols] + [c for c in constants if c not in cols]
    if unknown:
        raise InvalidSpecError(
            f"Table {table.name} has no column(s) {unknown}; it has {list(cols)}. Fix column_map/constants. "
            "Nothing was written."
        )
    targets = [t for _, t in pairs]
    twice = sorted({t for t in targets + list(constants) if (targets + list(constants)).count(t) > 1})
    if twice:
        raise InvalidSpecError(f"Column(s) {twice} of {table.name} would be written twice; map each column once.")
    written = set(targets) | set(constants)
    required = [c.name for c in cols.values() if not c.nullable and not c.has_default and c.name not in written]
    missing_keys = [k for k in key_columns if k not in written]
    if required or missing_keys:
        what = sorted(set(required) | set(missing_keys))
        raise InvalidSpecError(
            f"{where} provides no value for column(s) {what} of {table.name} (NOT NULL without a default, or a "
            f"key column); it has {schema.names}. Add them to the data, map them with column_map or set them in "
            "constants. Nothing was written."
        )
    for source, target in pairs:
        arrow_type = schema.field(source).type
        if not compatible(arrow_type, cols[target].data_type):
            raise InvalidSpecError(
                f"Column {source!r} of {where} is {arrow_type}, which cannot be written to {table.name}.{target} "
                f"({cols[target].data_type}); cast it upstream or map another column. Nothing was written."
            )
    for name, value in constants.items():
        arrow_type = pa.scalar(value).type
        if not compatible(arrow_type, cols[name].data_type):
            raise InvalidSpecError(
                f"constants[{name!r}]={value!r} ({arrow_type}) cannot be written to {table.name}.{name} "
                f"({cols[name].data_type}); give a value of that type."
            )
        if value is None and not cols[name].nullable:
            raise InvalidSpecError(f"constants[{name!r}] is None but {table.name}.{name} is NOT NULL; give a value.")
    return ColumnPlan([s for s, _ in pairs], targets, constants)


def check_batch(
    batch: pa.RecordBatch,
    table: TargetTable,
    *,
    where: str,
    first_row: int,
    key_columns: Sequence[str],
    keys: set[tuple[str, ...]] | None,
) -> None:
    """Check one batch (target column names): NOT NULL columns hold values, keys are expected.

    :param where: the input file, for messages.
    :param first_row: the batch's first row number within the file (0-based), for messages.
    :param keys: the expected keys (text tuples); ``None``: any.
    """
    with requires_extra("mlflow"):
        import pyarrow.compute as pc
        import pyarrow.types as pt

    for name in batch.schema.names:
        if table.columns[name].nullable:
            continue
        column = batch.column(name)
        bad = pc.is_null(column, nan_is_null=True)
        if pt.is_floating(column.type):
            bad = pc.or_(bad, pc.fill_null(pc.is_inf(column), False))
        index = pc.index(bad, True).as_py()
        if index >= 0:
            raise InvalidSpecError(
                f"Row {first_row + index} of {where} has {column[index].as_py()!r} in {name!r}, but "
                f"{table.name}.{name} is NOT NULL; fix the data upstream (no null, NaN or infinite values). "
                "Nothing was written."
            )
    if keys is None:
        return
    values = [pc.cast(batch.column(k), "string").to_pylist() for k in key_columns]
    for index, key in enumerate(zip(*values, strict=True)):
        if key not in keys:
            expected = sorted(key_text(k) for k in keys)
            raise InvalidSpecError(
                f"Row {first_row + index} of {where} has the key {key_text(key)!r} ({', '.join(key_columns)}), "
                f"which is not in keys={expected}; add it to keys or remove those rows upstream. Nothing was written."
            )
