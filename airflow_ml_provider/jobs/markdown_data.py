"""The markdown-pricing job's files: read a country's sales, publish its predictions, write the result.

Layout under the data root ``R`` (see :mod:`airflow_ml_provider.jobs.synthetic`)::

    R/{week}/sales/country=XX/*.parquet          <- read, validated (REQUIRED_COLUMNS)
    R/{week}/predictions/country=XX/part-0.parquet
    R/{week}/predictions/country=XX/_SUCCESS     <- written after the file

Writes are atomic (a temporary file in the same directory, then ``os.replace``) and the old
``_SUCCESS`` is removed before a file it vouched for is replaced, so a reader never sees a partial
result. Local disk only, and hand-written rather than the provider's storage layer: this code runs
in the training container, which has neither Airflow nor the rest of the provider (see the package
docstring). Stdlib, numpy, pandas and pyarrow only.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_ml_provider.jobs.common import BadInputError

#: Columns a sales file must have, and their kind (``num``: int or float; ``str``: any, read as text).
REQUIRED_COLUMNS: dict[str, str] = {
    "sku": "str",
    "week_of_year": "num",
    "base_price": "num",
    "discount": "num",
    "stock": "num",
    "days_to_season_end": "num",
    "units_sold": "num",
}
TARGET = "units_sold"
#: Fewer rows than this cannot train a meaningful model.
MIN_ROWS = 10
SUCCESS = "_SUCCESS"


def sales_dir(root: str, week: str, country: str) -> str:
    """``{root}/{week}/sales/country={country}``: where a country's sales files are."""
    return os.path.join(root, week, "sales", f"country={country}")


def predictions_dir(root: str, week: str, country: str) -> str:
    """``{root}/{week}/predictions/country={country}``: where a country's predictions go."""
    return os.path.join(root, week, "predictions", f"country={country}")


def _data_files(directory: str) -> list[str]:
    # Like Spark and pyarrow, skip hidden and metadata files ('.tmp...', '_SUCCESS').
    return sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if name.endswith(".parquet") and not name.startswith((".", "_"))
    )


def _check_columns(frame: pd.DataFrame, path: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BadInputError(
            f"{path}: missing column(s) {', '.join(missing)}; a sales file needs "
            f"{', '.join(REQUIRED_COLUMNS)} (has {', '.join(map(str, frame.columns))})"
        )
    for column, kind in REQUIRED_COLUMNS.items():
        dtype = frame[column].dtype
        if kind == "num" and not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)):
            raise BadInputError(f"{path}: column {column} must be numeric, found {dtype}")


def read_country(root: str, week: str, country: str) -> tuple[pd.DataFrame, int]:
    """All usable rows of one country's sales partition, validated, and how many rows were dropped.

    Numeric columns come back as float64 and ``sku`` as text; rows without a finite target are
    dropped (the count is the second item).

    :param root: the data root.
    :param week: the week (``YYYY-MM-DD``, already checked).
    :param country: the country code (already checked).
    :raises BadInputError: no partition or no file, an unreadable file, missing or non-numeric
        columns, fewer than :data:`MIN_ROWS` usable rows, or out-of-range values; the message
        names the country and the path.
    """
    directory = sales_dir(root, week, country)
    if not os.path.isdir(directory):
        raise BadInputError(f"country {country}: no data for week {week}: {directory} does not exist")
    files = _data_files(directory)
    if not files:
        raise BadInputError(f"country {country}: no data for week {week}: no *.parquet file in {directory}")
    frames = []
    for path in files:
        try:
            frame = pq.read_table(path).to_pandas()
        except (OSError, pa.ArrowException) as e:
            raise BadInputError(f"country {country}: cannot read {path}: {e}") from None
        _check_columns(frame, path)
        frames.append(frame[list(REQUIRED_COLUMNS)])
    data = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    where = directory if len(files) > 1 else files[0]

    data = data.astype({c: "float64" for c, kind in REQUIRED_COLUMNS.items() if kind == "num"})
    data["sku"] = data["sku"].astype(str)
    labelled = np.isfinite(data[TARGET].to_numpy())
    dropped = int((~labelled).sum())
    if dropped:
        data = data[labelled].reset_index(drop=True)
    if len(data) < MIN_ROWS:
        raise BadInputError(f"country {country}: {len(data)} usable row(s) in {where}; need at least {MIN_ROWS}")
    if (data[TARGET] < 0).any():
        raise BadInputError(f"country {country}: {where}: {TARGET} has negative values")
    for column in ("base_price", "stock"):
        values = data[column].to_numpy()
        if not np.isfinite(values).all() or (values < 0).any():
            raise BadInputError(f"country {country}: {where}: {column} must be finite and >= 0")
    discount = data["discount"].to_numpy()
    if np.nanmin(discount, initial=0.0) < 0 or np.nanmax(discount, initial=0.0) > 1:
        raise BadInputError(f"country {country}: {where}: discount must be a fraction between 0 and 1 (0.3 = 30 % off)")
    return data, dropped


@contextlib.contextmanager
def _atomic(path: str) -> Iterator[str]:
    """A temporary path next to ``path`` to write; it replaces ``path`` on success and is removed on failure."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise


def write_predictions(predictions: pd.DataFrame, directory: str) -> str:
    """Write ``part-0.parquet`` atomically into ``directory``, then ``_SUCCESS``; return the file's path.

    :param predictions: the rows to write (the index is not written).
    :param directory: the country's predictions directory (created if missing). A ``_SUCCESS``
        already there is removed first, so it never vouches for a file being replaced.
    """
    os.makedirs(directory, exist_ok=True)
    marker = os.path.join(directory, SUCCESS)
    if os.path.lexists(marker):
        os.remove(marker)
    path = os.path.join(directory, "part-0.parquet")
    with _atomic(path) as tmp:
        pq.write_table(pa.Table.from_pandas(predictions, preserve_index=False), tmp)
    with _atomic(marker) as tmp, open(tmp, "wb"):
        pass
    return path


def write_result(result: dict[str, Any], path: str) -> None:
    """Write the JSON result atomically.

    :param result: the job's result (the task's XCom).
    :param path: the file to write; its directory is created if missing.
    :raises ValueError: a NaN or infinity in ``result`` (strict JSON: it is not written as ``NaN``).
    """
    text = json.dumps(result, allow_nan=False, sort_keys=False)
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with _atomic(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
