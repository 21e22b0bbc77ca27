"""Result columns as Arrow types, and rows from a cursor as record batches.

Each column's Parquet type is fixed before the first row is written and never changes. It comes,
in this order, from ``column_types`` (the DAG author's word), the type the database declares
(the cursor description or the catalog, see :mod:`.sources`), or the values of the first chunk.
A column whose type is only known from values and that is NULL in the whole first chunk becomes
``string``; a later value that does not fit then fails the task naming the column and the fix.

Two types per column: ``wire`` is what the driver's Python values are converted to (one
``pyarrow.array`` call over the whole chunk, as a struct of all columns: no Python loop per
value), ``final`` what is written. They differ where the driver is asked to hand over text, which
Arrow parses much faster than the driver builds ``Decimal``/``datetime`` objects (MySQL decimals
and dates, PostgreSQL numerics, SQLite's ISO dates). Text Arrow cannot parse (MySQL's zero date)
goes through the column's ``fallback`` (the driver's own converter), value by value.

This module imports pyarrow only inside functions.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.utils.messages import first_line
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    import pyarrow as pa

#: Arrow type names accepted in ``column_types`` (besides ``decimal128(p, s)`` and ``timestamp[unit, tz=Zone]``).
SIMPLE_TYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "string",
    "large_string",
    "binary",
    "date32",
    "time64[us]",
    "duration[us]",
    "timestamp[s]",
    "timestamp[ms]",
    "timestamp[us]",
    "timestamp[ns]",
)
_DECIMAL = re.compile(r"decimal(128|256)?\(\s*(\d+)\s*,\s*(\d+)\s*\)\Z")
_TIMESTAMP_TZ = re.compile(r"timestamp\[(s|ms|us|ns),\s*tz=([A-Za-z0-9_+\-:/]+)\]\Z")
TYPE_EXAMPLE = "'int64', 'float64', 'string', 'date32', 'timestamp[us]', 'timestamp[us, tz=UTC]' or 'decimal128(12, 2)'"


def check_type_name(value: Any, *, column: str) -> str:
    """``value`` if it names an Arrow type :func:`arrow_type` understands; pure string handling.

    :param value: the type name from ``column_types``, e.g. ``"decimal128(12, 2)"``.
    :param column: the column it is for, for the message.
    :raises InvalidSpecError: naming the column and the accepted names.
    """
    text = value.strip() if isinstance(value, str) else None
    if text is None or not (text in SIMPLE_TYPES or _DECIMAL.match(text) or _TIMESTAMP_TZ.match(text)):
        raise InvalidSpecError(
            f"column_types[{column!r}]={value!r} is not an Arrow type name this operator knows; use e.g. "
            f"{TYPE_EXAMPLE}."
        )
    decimal = _DECIMAL.match(text)
    if decimal:
        width, precision, scale = decimal.group(1) or "128", int(decimal.group(2)), int(decimal.group(3))
        limit = 38 if width == "128" else 76
        if not 1 <= precision <= limit or scale > precision:
            raise InvalidSpecError(
                f"column_types[{column!r}]={value!r}: decimal{width} takes a precision of 1 to {limit} and a scale "
                "no larger than the precision, e.g. 'decimal128(12, 2)'."
            )
    return text


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type for a name :func:`check_type_name` accepted."""
    with requires_extra("mlflow"):
        import pyarrow as pa

    text = name.strip()
    decimal = _DECIMAL.match(text)
    if decimal:
        maker = pa.decimal256 if decimal.group(1) == "256" else pa.decimal128
        return maker(int(decimal.group(2)), int(decimal.group(3)))
    zoned = _TIMESTAMP_TZ.match(text)
    if zoned:
        return pa.timestamp(zoned.group(1), tz=zoned.group(2))
    aliases = {"float32": pa.float32(), "float64": pa.float64(), "bool": pa.bool_()}
    return aliases.get(text) or pa.type_for_alias(text)


@dataclass
class Column:
    """One result column.

    :param name: the column's name in the result (and in the Parquet files).
    :param wire: the Arrow type the driver's values are converted to; ``None``: inferred from the
        first chunk's values.
    :param final: the Arrow type written; ``None``: the same as ``wire``.
    :param fallback: converts one wire value (text) to a Python value of the final type, for text
        Arrow cannot parse (``None``: such text fails the task).
    :param declared: the database's name for the column's type, for messages (e.g. ``numeric(10,2)``).
    :param driver_text: the driver was asked to hand this column over as text, so every value is
        text whatever ``final`` is.
    :param strict: the database guarantees the values are of the declared type (not so in SQLite).
    """

    name: str
    wire: pa.DataType | None
    final: pa.DataType | None = None
    fallback: Callable[[Any], Any] | None = None
    declared: str = ""
    driver_text: bool = False
    strict: bool = True

    @property
    def type(self) -> pa.DataType:
        """The Arrow type written to Parquet."""
        final = self.final if self.final is not None else self.wire
        assert final is not None, f"column {self.name!r} has no type yet"
        return final


def apply_overrides(columns: list[Column], column_types: Mapping[str, str] | None) -> list[Column]:
    """``column_types`` replaces the final type; the values are converted as before and then cast by Arrow.

    A column whose declared type the database does not enforce (SQLite) is converted as its values
    say instead (ISO text becomes dates and timestamps).

    :raises InvalidSpecError: a name in ``column_types`` that is not a result column.
    """
    if not column_types:
        return columns
    names = [c.name for c in columns]
    unknown = [n for n in column_types if n not in names]
    if unknown:
        raise InvalidSpecError(
            f"column_types names {unknown}, which the result does not have; its columns are {names}. Nothing was "
            "written."
        )
    out = []
    for col in columns:
        if col.name in column_types:
            wanted = arrow_type(column_types[col.name])
            if col.strict:
                col = Column(col.name, col.wire, wanted, col.fallback, col.declared, col.driver_text)
            else:
                col = Column(col.name, None, wanted, _text_parser(wanted), col.declared, strict=False)
        out.append(col)
    return out


def infer(
    columns: list[Column], rows: Sequence[tuple[Any, ...]], earlier: Mapping[str, pa.DataType] | None = None
) -> list[str]:
    """Give every column without a wire type one: its type in an earlier batch, else from the values in ``rows``.

    :param rows: the first chunk.
    :param earlier: column -> Arrow type in the dataset's earlier batches.
    :return: the names of columns that were NULL throughout and became ``string`` (to warn about).
    """
    with requires_extra("mlflow"):
        import pyarrow as pa

    all_null = []
    for i, col in enumerate(columns):
        if col.wire is not None:
            continue
        known = (earlier or {}).get(col.name)
        if known is not None and col.final is None:
            if col.strict:
                col.wire = known
                continue
            col.final, col.fallback = known, _text_parser(known)  # SQLite: the values may be text
        values = [r[i] for r in rows if r[i] is not None]
        if not values and col.final is not None:  # typed by column_types: dates and numbers stored as text
            col.wire = pa.string() if _text_parser(col.final) or pa.types.is_decimal(col.final) else col.final
            continue
        if not values:
            col.wire = pa.string()
            all_null.append(col.name)
            continue
        try:
            col.wire = pa.array(values).type
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            raise InvalidSpecError(
                f"Column {col.name!r}{_declared(col)} holds values Arrow cannot store ({type(values[0]).__name__}: "
                f"{first_line(str(e), 200)}). Convert it in a query (e.g. CAST({col.name} AS TEXT)) or give its type "
                f"in column_types. Nothing was written."
            ) from None
        if pa.types.is_null(col.wire):
            col.wire = pa.string()
            all_null.append(col.name)
    return all_null


def iso_timestamp(text: str) -> dt.datetime:
    """ISO text with an offset, as naive UTC (Arrow parses the rest); a ``ValueError`` for anything else."""
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def iso_date(text: str) -> dt.date:
    """ISO date text, also the date part of a timestamp's."""
    return dt.date.fromisoformat(text[:10] if len(text) > 10 and text[10] in "T " else text)


def _text_parser(final: pa.DataType) -> Callable[[Any], Any] | None:
    """The fallback that parses text Arrow does not for a date or timestamp column, else ``None``."""
    with requires_extra("mlflow"):
        import pyarrow as pa

    if pa.types.is_timestamp(final):
        return iso_timestamp
    return iso_date if pa.types.is_date(final) else None


def _declared(col: Column) -> str:
    return f" (declared {col.declared})" if col.declared else ""


class Converter:
    """Rows (tuples, in column order) to record batches of the columns' final types.

    :param columns: the result's columns, every one with a wire type.
    """

    def __init__(self, columns: list[Column]) -> None:
        with requires_extra("mlflow"):
            import pyarrow as pa

        self.columns = columns
        self.schema = pa.schema([pa.field(c.name, c.type) for c in columns])
        #: The last batch's columns as the driver handed them over (before parsing text).
        self.wire: list[pa.Array] = []
        self._struct = pa.struct([pa.field(f"c{i}", c.wire) for i, c in enumerate(columns)])

    def batch(self, rows: Sequence[tuple[Any, ...]], first_row: int) -> pa.RecordBatch:
        """One record batch; ``first_row`` (0-based in the result) only names rows in errors.

        :raises InvalidSpecError: a value that does not fit its column, naming the column, its
            type, the rows and the fix.
        """
        with requires_extra("mlflow"):
            import pyarrow as pa

        try:
            arrays = pa.array(rows, type=self._struct).flatten()
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            arrays = [self._column(i, rows, first_row) for i in range(len(self.columns))]
        self.wire = list(arrays)
        out = [self._finish(col, arr, first_row, len(rows)) for col, arr in zip(self.columns, arrays, strict=True)]
        return pa.RecordBatch.from_arrays(out, schema=self.schema)

    def _column(self, i: int, rows: Sequence[tuple[Any, ...]], first_row: int) -> pa.Array:
        """Column ``i`` alone (the slow path, taken only to name the column a chunk fails on)."""
        with requires_extra("mlflow"):
            import pyarrow as pa

        col = self.columns[i]
        values = [r[i] for r in rows]
        try:
            return pa.array(values, type=col.wire)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            bad = _first_bad(values, col.wire)
            raise self._error(col, first_row, len(rows), bad, e) from None

    def _finish(self, col: Column, arr: pa.Array, first_row: int, n: int) -> pa.Array:
        """Cast a text column to its final type; the fallback converts what Arrow cannot parse."""
        with requires_extra("mlflow"):
            import pyarrow as pa

        final = col.type
        if arr.type == final:
            return arr
        text = arr.cast(pa.string()) if pa.types.is_binary(arr.type) else arr
        try:
            return _cast(text, final)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            error: BaseException = e
        values = text.to_pylist()
        if col.fallback is not None:
            try:
                return pa.array([None if v is None else col.fallback(v) for v in values], type=final)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
                error = e
        bad = None
        for v in values:
            if v is not None and not _converts(v, text.type, final, col.fallback):
                bad = v
                break
        raise self._error(col, first_row, n, bad, error)

    @staticmethod
    def _error(col: Column, first_row: int, n: int, bad: Any, error: BaseException) -> InvalidSpecError:
        shown = f"{type(bad).__name__} {first_line(repr(bad), 60)}" if bad is not None else "a value"
        return InvalidSpecError(
            f"Column {col.name!r}{_declared(col)} has {shown} in rows {first_row + 1}-{first_row + n} of the result "
            f"that does not fit {col.type} ({first_line(str(error), 200).rstrip('.')}). Give the column's type in "
            f"column_types (e.g. {{{col.name!r}: 'string'}}) or convert it in a query. Nothing was written."
        )


def _cast(text: pa.Array, final: pa.DataType) -> pa.Array:
    """Parse a text column as ``final`` (text without an offset is UTC for a zoned timestamp)."""
    with requires_extra("mlflow"):
        import pyarrow as pa

    if pa.types.is_timestamp(final) and final.tz is not None:
        return text.cast(pa.timestamp(final.unit)).cast(final)
    return text.cast(final)


def _first_bad(values: Sequence[Any], arrow: pa.DataType | None) -> Any:
    """The first value that does not convert to ``arrow`` on its own (for the message), or ``None``."""
    with requires_extra("mlflow"):
        import pyarrow as pa

    for v in values:
        if v is None:
            continue
        try:
            pa.array([v], type=arrow)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return v
    return None


def _converts(value: Any, wire: pa.DataType, final: pa.DataType, fallback: Callable[[Any], Any] | None) -> bool:
    """Whether one text value becomes ``final`` (by Arrow's parser, else by the fallback)."""
    with requires_extra("mlflow"):
        import pyarrow as pa

    try:
        _cast(pa.array([value], type=wire), final)
        return True
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        if fallback is None:
            return False
    try:
        pa.array([fallback(value)], type=final)
        return True
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return False
