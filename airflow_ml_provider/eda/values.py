"""Values as JSON and as short text: Python scalars from Arrow, temporal integers back to dates."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.utils.optional_deps import requires_extra

if TYPE_CHECKING:
    import pyarrow as pa


def jsonable(value: Any) -> Any:
    """``value`` as a JSON value: finite numbers, strings, booleans, None; the rest as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    try:  # numpy scalars
        return jsonable(value.item())
    except (AttributeError, ValueError):
        return str(value)


def display_value(number: float | int | None, arrow_type: pa.DataType) -> Any:
    """A temporal column's underlying integer (days, or units since the epoch) as ISO text."""
    with requires_extra("mlflow"):
        import pyarrow as pa
        import pyarrow.types as pt

    if number is None:
        return None
    width = pa.int32() if pt.is_date32(arrow_type) else pa.int64()
    try:
        return jsonable(pa.scalar(round(number), width).cast(arrow_type).as_py())
    except (pa.ArrowInvalid, OverflowError, ValueError):
        return str(number)


def short(value: Any, digits: int = 4) -> str:
    """A value as short text for tables and chart labels: ``12,345``, ``0.1235``, ``1.2e+07``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e7:
            text = f"{value:,.{digits}f}".rstrip("0").rstrip(".")
            return text if text not in ("-0", "") else "0"
        return f"{value:.{digits - 1}e}"
    return str(value)


def percent(rate: float) -> str:
    """A fraction as a percentage with enough digits to tell 0 from tiny: ``0 %``, ``0.01 %``, ``12.5 %``."""
    if rate == 0:
        return "0 %"
    value = rate * 100
    if value < 0.01:
        return "<0.01 %"
    return f"{value:.2f}".rstrip("0").rstrip(".") + " %"
