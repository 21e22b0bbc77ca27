"""The seam between the operator and one family of databases: :class:`ErpWriter`.

The operator does everything that is the same for every database: argument checks, reading the
dataset in batches through the storage layer, the column plan and the per-batch checks
(:mod:`.checks`), the drop guard's rule (:mod:`.drop_guard`) and the XCom. A family of databases
(PostgreSQL, MariaDB/MySQL and SQLite) implements two methods:

``describe(table) -> TargetTable | None``
    The table's columns (name, type as the database names it, nullability) and primary key, from
    the catalog (``information_schema``); ``None`` if the table does not exist. The schema of a
    name without one is resolved (so locks and messages use one spelling).
``replace(job) -> list[KeyCount]``
    In **one transaction**: serialize with other writers of the same (table, key) (an advisory or
    row lock, taken in sorted key order), load ``job.batches`` into a staging area without holding
    more than one batch in memory, refuse duplicate primary keys (checked in SQL), count the old and
    new rows per key, call ``job.guard(counts)`` (which raises to abort), delete the keys' rows and
    insert the staged ones, commit once. Any error rolls back: the table is as before. Names go
    into SQL only through the dialect's identifier quoting; values are always bound.

Each dialect module imports its driver inside its methods (``requires_extra``), so importing this
module or the operator needs no driver, pandas or pyarrow.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_ml_provider.erp.drop_guard import KeyCount
from airflow_ml_provider.erp.identifiers import TableName
from airflow_ml_provider.exceptions import InvalidSpecError

if TYPE_CHECKING:
    import pyarrow as pa

#: Joins the values of several key columns into one key text (``DE|2026-W48``).
KEY_SEPARATOR = "|"
#: How many duplicate primary keys the error lists.
SHOW_DUPLICATES = 5


def key_text(values: Sequence[object]) -> str:
    """One key as text: its column values joined with :data:`KEY_SEPARATOR`."""
    return KEY_SEPARATOR.join(str(v) for v in values)


def duplicates_error(
    job: ReplaceJob, rows: Sequence[Sequence[Any]], text: Callable[[Any], str] = str
) -> InvalidSpecError:
    """The error for duplicate primary keys in the input, every family's same words.

    :param job: the replacement (its table and primary key columns).
    :param rows: up to :data:`SHOW_DUPLICATES` rows ``(pk value, ..., count)`` from the staging table.
    :param text: turns a value the driver returned into text (e.g. bytes from MySQL).
    """
    shown = "; ".join(
        f"{dict(zip(job.primary_key, (text(v) for v in r[:-1]), strict=True))} {r[-1]} times" for r in rows
    )
    return InvalidSpecError(
        f"The input has duplicate primary keys ({', '.join(job.primary_key)}) for {job.table.name}: {shown}. "
        "Deduplicate the predictions upstream. Nothing was written."
    )


def does_not_fit_error(table: TableName, detail: str) -> InvalidSpecError:
    """The error for a constraint or type the input breaks in the target (after the rollback).

    :param table: the target table.
    :param detail: the database's own words (whitespace collapsed here).
    """
    return InvalidSpecError(
        f"The input does not fit table {table}: {' '.join(detail.split()).rstrip('.')}. Fix the data upstream. "
        "Nothing was written (the transaction was rolled back)."
    )


class TargetColumn(NamedTuple):
    """One column of the target table.

    :param name: the column's name.
    :param data_type: its type as the catalog names it, lower case (``bigint``, ``text``, ...).
    :param nullable: whether it accepts NULL.
    :param has_default: whether it has a default (then it need not be written).
    """

    name: str
    data_type: str
    nullable: bool
    has_default: bool


class TargetTable(NamedTuple):
    """The target table as the catalog describes it.

    :param name: the table, schema resolved.
    :param columns: its columns by name, in table order.
    :param primary_key: its primary key's columns (empty: none).
    """

    name: TableName
    columns: dict[str, TargetColumn]
    primary_key: tuple[str, ...]


@dataclass
class ReplaceJob:
    """One replacement, as the operator hands it to :meth:`ErpWriter.replace`.

    :param table: the target, as returned by :meth:`ErpWriter.describe`.
    :param columns: the target columns written, in the order of the batches' columns.
    :param key_columns: the partition key columns whose rows are replaced.
    :param keys: the keys replaced, each a tuple of text values (one per key column); ``None``: the
        keys present in the input.
    :param primary_key: columns that must be unique in the input (empty: not checked).
    :param batches: the checked record batches, with the target's column names; consumed once,
        inside the transaction (an exception from it aborts the write).
    :param guard: called with the counts before anything is deleted; raises to abort.
    """

    table: TargetTable
    columns: list[str]
    key_columns: list[str]
    keys: list[tuple[str, ...]] | None
    primary_key: list[str]
    batches: Iterable[pa.RecordBatch]
    guard: Callable[[list[KeyCount]], None]


class ErpWriter(abc.ABC):
    """One family of databases (see the module docstring).

    :param conn_id: the Airflow connection; credentials come only from it.
    """

    #: The Airflow connection types this writer serves (e.g. ``("postgres",)``).
    conn_types: tuple[str, ...] = ()

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    @abc.abstractmethod
    def describe(self, table: TableName) -> TargetTable | None:
        """The table's columns and primary key, or ``None`` if it does not exist."""

    @abc.abstractmethod
    def replace(self, job: ReplaceJob) -> list[KeyCount]:
        """Replace the keys' rows with the batches in one transaction; the counts per key, sorted by key."""
