"""Each database family's column types as :class:`~.columns.Column` s (Arrow wire and final types).

PostgreSQL (by type OID; ``numeric``, ``json``, ``jsonb`` and ``uuid`` are handed over as text):

* ``int2/int4/int8`` -> ``int16/int32/int64``, ``float4/float8`` -> ``float32/float64``, ``bool``;
* ``numeric(p, s)`` -> ``decimal128(p, s)`` (``decimal256`` above 38 digits, text above 76);
  ``numeric`` without a precision -> ``decimal128(38, 18)``, as Spark's JDBC reader does;
* ``date`` -> ``date32``, ``timestamp`` -> ``timestamp[us]``, ``timestamptz`` -> ``timestamp[us, tz=UTC]``,
  ``time`` -> ``time64[us]``, ``interval`` -> ``duration[us]``;
* ``text/varchar/char/name``, ``json/jsonb`` (the JSON text), ``uuid`` -> ``string``; ``bytea`` -> ``binary``;
* anything else (arrays, enums, ``money``, ...) from the values (arrays become lists).

MariaDB/MySQL (by field type and flags; mysqlclient hands decimals and dates over as text):

* ``TINYINT/SMALLINT/MEDIUMINT/INT/BIGINT`` -> ``int8/int16/int32/int32/int64``; ``UNSIGNED`` ones the
  next wider signed type (``BIGINT UNSIGNED``: ``uint64``); ``YEAR`` -> ``int16``;
* ``FLOAT/DOUBLE`` -> ``float32/float64``; ``DECIMAL(p, s)`` -> ``decimal128(p, s)`` (``decimal256``
  above 38 digits); with mysql-connector-python, whose cursor does not report the precision,
  ``decimal128(38, 18)``;
* ``DATE`` -> ``date32``, ``DATETIME`` -> ``timestamp[us]``, ``TIMESTAMP`` -> ``timestamp[us, tz=UTC]``
  (the session reads in UTC), ``TIME`` -> ``duration[us]``; zero dates (``0000-00-00``) are NULL;
* ``CHAR/VARCHAR/TEXT/ENUM/SET/JSON`` -> ``string``, ``BINARY/VARBINARY/BLOB/GEOMETRY`` -> ``binary``
  (with mysqlclient, string-like columns are told apart by their first value).

SQLite (declared types, by SQLite's affinity rules; a query's columns from their values):
``...INT...`` -> ``int64``; ``CHAR/CLOB/TEXT`` -> ``string``; ``REAL/FLOA/DOUB`` and the other numeric
types (``DECIMAL``, ``NUMERIC``) -> ``float64``; ``BOOL...`` -> ``bool``; ``DATETIME/TIMESTAMP...`` ->
``timestamp[us]`` and ``DATE`` -> ``date32`` (ISO text parsed; an offset is converted to UTC);
``BLOB`` or no type -> from the values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.ingest.columns import Column, iso_date, iso_timestamp
from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    import pyarrow as pa

#: PostgreSQL type OIDs the driver is asked to hand over as text (parsed by Arrow, or kept as text).
PG_TEXT_OIDS = (1700, 114, 3802, 2950)
#: psycopg2 reports this precision for ``numeric`` without one.
_PG_NO_PRECISION = 65535
#: mysqlclient field types handed over as text (decimals, dates, timestamps).
MYSQL_TEXT_TYPES = (0, 246, 7, 10, 12, 14)
_UNSIGNED_FLAG = 32
_BINARY_CHARSET = 63


def _pa() -> Any:
    with requires_extra("mlflow"):
        import pyarrow as pa
    return pa


def decimal_type(precision: int, scale: int) -> pa.DataType:
    """``decimal128`` up to 38 digits, ``decimal256`` up to 76, otherwise ``string``."""
    pa = _pa()
    if 1 <= precision <= 38:
        return pa.decimal128(precision, scale)
    if precision <= 76:
        return pa.decimal256(precision, scale)
    return pa.string()


def pg_column(name: str, oid: int, precision: int | None, scale: int | None) -> Column:
    """A PostgreSQL result column (see the module docstring)."""
    pa = _pa()
    simple = {
        16: pa.bool_(),
        17: pa.binary(),
        18: pa.string(),
        19: pa.string(),
        20: pa.int64(),
        21: pa.int16(),
        23: pa.int32(),
        25: pa.string(),
        26: pa.int64(),
        700: pa.float32(),
        701: pa.float64(),
        1042: pa.string(),
        1043: pa.string(),
        1082: pa.date32(),
        1083: pa.time64("us"),
        1114: pa.timestamp("us"),
        1184: pa.timestamp("us", tz="UTC"),
        1186: pa.duration("us"),
    }
    declared = f"PostgreSQL type oid {oid}"
    if oid in simple:
        return Column(name, simple[oid], declared=declared)
    if oid in (114, 3802, 2950):  # json, jsonb, uuid: their text
        return Column(name, pa.string(), declared=declared, driver_text=True)
    if oid == 1700:
        if precision is None or precision == _PG_NO_PRECISION or precision <= 0:
            final, declared = pa.decimal128(38, 18), "numeric"
        else:
            final, declared = decimal_type(precision, scale or 0), f"numeric({precision},{scale or 0})"
        return Column(name, pa.string(), final, declared=declared, driver_text=True)
    return Column(name, None, declared=declared)


def mysql_column(
    name: str,
    type_code: int,
    flags: int,
    *,
    length: int | None = None,
    scale: int | None = None,
    charset: int | None = None,
    text: bool = False,
) -> Column:
    """A MariaDB/MySQL result column (see the module docstring).

    :param type_code: the protocol's field type (``MYSQL_TYPE_*``).
    :param flags: the field flags (``UNSIGNED`` matters).
    :param length: the display length (mysqlclient), from which a decimal's precision follows.
    :param scale: the decimals.
    :param charset: the character set number (mysql-connector-python); 63 is binary.
    :param text: the driver hands decimals and dates over as text (mysqlclient with our converters).
    """
    pa = _pa()
    unsigned = bool(flags & _UNSIGNED_FLAG)
    declared = f"MySQL field type {type_code}"
    ints = {1: (pa.int8(), pa.int16()), 2: (pa.int16(), pa.int32()), 9: (pa.int32(), pa.int32())}
    ints |= {3: (pa.int32(), pa.int64()), 8: (pa.int64(), pa.uint64()), 13: (pa.int16(), pa.int16())}
    if type_code in ints:
        return Column(name, ints[type_code][1 if unsigned else 0], declared=declared)
    if type_code in (4, 5):
        return Column(name, pa.float32() if type_code == 4 else pa.float64(), declared=declared)
    if type_code in (0, 246):
        if length is not None and scale is not None:
            precision = length - (1 if scale > 0 else 0) - (0 if unsigned else 1)
            final, declared = decimal_type(precision, scale), f"DECIMAL({precision},{scale})"
        else:
            final, declared = pa.decimal128(38, 18), "DECIMAL"
        return _mysql_dated(name, final, declared, text, None)
    if type_code in (10, 14):
        return _mysql_dated(name, pa.date32(), "DATE", text, _mysql_date)
    if type_code == 12:
        return _mysql_dated(name, pa.timestamp("us"), "DATETIME", text, _mysql_datetime)
    if type_code == 7:
        return _mysql_dated(name, pa.timestamp("us", tz="UTC"), "TIMESTAMP", text, _mysql_datetime)
    if type_code == 11:
        return Column(name, pa.duration("us"), declared="TIME")
    if type_code in (245, 247, 248):
        return Column(name, pa.string(), declared=declared)
    if type_code in (15, 249, 250, 251, 252, 253, 254):
        if charset is None:
            return Column(name, None, declared=declared)  # str or bytes: the first value says
        return Column(name, pa.binary() if charset == _BINARY_CHARSET else pa.string(), declared=declared)
    if type_code == 255:
        return Column(name, pa.binary(), declared="GEOMETRY")
    return Column(name, None, declared=declared)


def _mysql_dated(name: str, final: pa.DataType, declared: str, text: bool, fallback: Any) -> Column:
    if not text:
        return Column(name, final, declared=declared)
    return Column(name, _pa().binary(), final, fallback=fallback, declared=declared, driver_text=True)


def _mysql_datetime(text: str) -> dt.datetime | None:
    """A DATETIME/TIMESTAMP's text Arrow did not parse: a zero date (NULL) or a valid one."""
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None  # '0000-00-00 00:00:00' and partial zero dates, as mysqlclient reads them


def _mysql_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def sqlite_column(name: str, declared: str | None) -> Column:
    """A SQLite column by its declared type (``None``: a query's column, typed by its values)."""
    pa = _pa()
    if declared is None:
        return Column(name, None, strict=False)
    upper = declared.upper()
    shown = declared or "no type"
    wire: Any = None
    final: Any = None
    fallback: Callable[[str], Any] | None = None
    if "INT" in upper:
        wire = pa.int64()
    elif any(part in upper for part in ("CHAR", "CLOB", "TEXT")):
        wire = pa.string()
    elif not upper or "BLOB" in upper:
        pass  # any value: typed by the first chunk
    elif any(part in upper for part in ("REAL", "FLOA", "DOUB")):
        wire = pa.float64()
    elif "BOOL" in upper:
        wire, final = pa.int64(), pa.bool_()
    elif "DATETIME" in upper or "TIMESTAMP" in upper:
        wire, final, fallback = pa.string(), pa.timestamp("us"), iso_timestamp
    elif "DATE" in upper:
        wire, final, fallback = pa.string(), pa.date32(), iso_date
    else:
        wire = pa.float64()
    return Column(name, wire, final, fallback=fallback, declared=shown, strict=False)
