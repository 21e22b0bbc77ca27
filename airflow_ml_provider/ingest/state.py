"""Incremental mode: a dataset made of ``ingest_batch=N`` directories, each with its watermark.

Layout of an incremental dataset (``output_path``)::

    ingest_batch=00000/country=DE/part-00000.parquet   first run: every row
    ingest_batch=00000/_watermark.json                 {"column": "updated_at", "value": ..., ...}
    ingest_batch=00001/...                             each later run: the rows above the watermark
    _SUCCESS                                           rewritten after every run

Each run's rows appear as one new ``ingest_batch=N`` directory, written elsewhere (under the hidden
``_ingest_tmp-<id>/``) and renamed into place in one step, so a reader (Spark, pyarrow, the storage
layer) sees whole batches only, as one dataset with an ``ingest_batch`` partition column. The
watermark lives in the batch it belongs to (``_watermark.json``, hidden from readers), so it is
published in the same rename as the rows: a run that dies before the rename leaves neither; one
that dies after it leaves both, and the next run continues from there. The next run reads the
last batch's watermark, the highest value of ``watermark_column`` so far, and asks the source
only for greater ones.

This module imports pyarrow only inside functions, and no hdfs.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.storage.base import Storage, is_hidden
from airflow_ml_provider.utils.optional_deps import requires_extra

BATCH_KEY = "ingest_batch"
WATERMARK_FILE = "_watermark.json"
FORMAT = 1
_BATCH = re.compile(rf"{BATCH_KEY}=(\d+)\Z")


@dataclass
class State:
    """What the last batch of an incremental dataset says.

    :param batch: the last batch's number (``-1``: none yet).
    :param column: the watermark column.
    :param value: the highest watermark so far (``None``: no rows yet), as the source compares it.
    :param schema: the result's columns as ``[name, arrow type]`` pairs.
    :param arrow_schema: the same as a serialized Arrow schema (base64), which keeps every type exactly.
    """

    batch: int = -1
    column: str | None = None
    value: Any = None
    schema: list[list[str]] = field(default_factory=list)
    arrow_schema: str = ""

    def types(self) -> dict[str, Any]:
        """Column -> Arrow type in the earlier batches (empty if unknown)."""
        if not self.arrow_schema:
            return {}
        with requires_extra("mlflow"):
            import pyarrow as pa

        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.arrow_schema)))
        return {f.name: f.type for f in schema}


def batch_name(number: int) -> str:
    """``ingest_batch=00007``."""
    return f"{BATCH_KEY}={number:05d}"


def encode(value: Any) -> dict[str, Any]:
    """A watermark value as JSON, its Python type kept (``{"type": "datetime", "value": "2026-..."}``)."""
    if value is None:
        return {"type": "null", "value": None}
    if isinstance(value, bool):
        raise TypeError("a boolean is no watermark")
    if isinstance(value, dt.datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "value": str(value)}
    for name, kind in (("int", int), ("float", float), ("str", str)):
        if isinstance(value, kind):
            return {"type": name, "value": value}
    raise TypeError(f"{type(value).__name__} is no watermark type")


def decode(data: dict[str, Any]) -> Any:
    """The inverse of :func:`encode`."""
    kind, value = data.get("type"), data.get("value")
    decoders: dict[str, Any] = {
        "null": lambda v: None,
        "datetime": dt.datetime.fromisoformat,
        "date": dt.date.fromisoformat,
        "decimal": decimal.Decimal,
        "int": int,
        "float": float,
        "str": str,
    }
    if kind not in decoders:
        raise ValueError(f"unknown watermark type {kind!r}")
    return decoders[kind](value)


def display(value: Any) -> Any:
    """A watermark for XCom and logs: numbers as they are, other values as text."""
    if value is None or isinstance(value, (int, float)):
        return value
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)


def schema_pairs(schema: Any) -> list[list[str]]:
    """A ``pyarrow.Schema`` as ``[name, type]`` pairs (readable, and compared between batches)."""
    return [[f.name, str(f.type)] for f in schema]


def state_json(*, column: str, value: Any, batch: int, rows: int, schema: Any, source: str) -> bytes:
    """The ``_watermark.json`` of a new batch (``schema``: the batch's ``pyarrow.Schema``)."""
    body = {
        "format": FORMAT,
        "column": column,
        "watermark": encode(value),
        "batch": batch,
        "rows": rows,
        "schema": schema_pairs(schema),
        "arrow_schema": base64.b64encode(schema.serialize().to_pybytes()).decode(),
        "source": source,
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    return json.dumps(body, indent=2).encode()


def read_state(storage: Storage, root: str, scratch: str, arg: str) -> State | None:
    """The state of the incremental dataset at ``root``; ``None`` if there is none (nothing or an empty directory).

    :param arg: how the DAG author named ``root`` (``output_path='...'``), for messages.
    :raises InvalidSpecError: ``root`` holds something that is not an incremental dataset, or a
        batch without a readable watermark.
    """
    info = storage.stat(root)
    if info is not None and info.kind != "DIRECTORY":
        raise InvalidSpecError(f"{arg} is a file ({storage.location(root)}); give a directory path.")
    entries = storage.list_dir(root) or {}
    numbers = sorted(int(m.group(1)) for name in entries if (m := _BATCH.match(name)))
    others = sorted(n for n in entries if not is_hidden(n) and not _BATCH.match(n))
    if others:
        raise InvalidSpecError(
            f"{arg} ({storage.location(root)}) holds {others[:5]}, so it is not a dataset written with "
            f"watermark_column (which holds only {BATCH_KEY}=N directories). Give a new path, or delete it to load "
            "everything again. Nothing was written."
        )
    if not numbers:
        return None
    last = numbers[-1]
    path = posixpath.join(root, batch_name(last), WATERMARK_FILE)
    raw = storage.read_bytes(path, scratch)
    try:
        if raw is None:
            raise ValueError("the file is missing")
        body = json.loads(raw)
        state = State(last, body["column"], decode(body["watermark"]), body.get("schema") or [])
        state.arrow_schema = body.get("arrow_schema") or ""
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidSpecError(
            f"The last batch of {arg} has no readable watermark ({storage.location(path)}: {e}). Delete that batch "
            "directory to load its rows again, or the whole dataset to start over. Nothing was written."
        ) from None
    return state
