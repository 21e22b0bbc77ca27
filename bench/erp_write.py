"""ErpWriteOperator: write time against a hand-written COPY and ``insert_rows``; peak memory; MariaDB.

1M predictions ``(country, sku, price)`` over 45 country keys in 4 local Parquet files, written with
a constant ``model_version`` into a table with a primary key ``(country, sku)``, in a database of
its own (unique name, dropped at the end) on the PostgreSQL at 127.0.0.1:5432. Before every timed
write the table holds a previous set of the same keys (1M rows, restored, vacuumed, checkpointed).

* Floor: one transaction with ``DELETE ... WHERE country = ANY(keys)`` and ``COPY prices FROM STDIN
  (FORMAT csv)`` fed by pyarrow in batches of the operator's size, on psycopg 3 (the driver the
  postgres provider's hook picks here): no staging, checks or locks. It and ours alternate.
* Stock: ``PostgresHook.run(DELETE)`` + ``insert_rows`` (defaults). Rows stop being fed after a time
  budget (at a 1000-row commit); the insert time is then scaled linearly and the label says so.
* Memory: peak RSS growth (VmHWM, reset after imports and a tiny write) writing 1M rows against
  100k rows, each in a fresh interpreter: bounded by ``batch_rows``, they should be about equal.
* MariaDB (127.0.0.1:3306, root): ours on a ``mysql`` connection against ``MySqlHook.run(DELETE)``
  + ``insert_rows`` (defaults), 200k rows.

``python -m bench.erp_write`` runs it alone.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from bench.common import Row, run_alone

ROWS = 1_000_000
SMALL_ROWS = 100_000
MYSQL_ROWS = 200_000
FILES = 4
BATCH_ROWS = 50_000
REPEATS = 3
#: Seconds of stock ``insert_rows`` after which no more rows are fed (then scaled to all rows).
STOCK_BUDGET_S = 60.0
MYSQL_STOCK_BUDGET_S = 40.0
VERSION = "bench-v2"
# 45 country keys.
COUNTRIES = tuple(
    "AT BE BG CH CY CZ DE DK EE ES FI FR GB GR HR HU IE IS IT LI LT LU LV MT NL NO PL PT RO SE SI SK "  # noqa: SIM905
    "AL BA ME MK RS TR UA MD GE AM AZ BY XK".split()
)
PG_URL = "postgresql://postgres@127.0.0.1:5432"
MYSQL_URL = "mysql://root@127.0.0.1:3306"
PG_CONN, MYSQL_CONN = "erp_bench_pg", "erp_bench_mysql"
COLUMNS = ("country", "sku", "price", "model_version")
#: The stock writers' DELETE (placeholders only: the keys are bound).
DELETE_KEYS = "DELETE FROM prices WHERE country IN (" + ", ".join(["%s"] * len(COUNTRIES)) + ")"  # noqa: S608
PG_TABLE = """CREATE TABLE {name} (country text NOT NULL, sku bigint NOT NULL, price double precision NOT NULL,
    model_version text, written_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (country, sku))
    WITH (autovacuum_enabled = false)"""
MYSQL_TABLE = """CREATE TABLE {name} (country varchar(8) NOT NULL, sku bigint NOT NULL, price double NOT NULL,
    model_version varchar(32), written_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (country, sku))
    ENGINE=InnoDB"""


def write_dataset(root: Path, rows: int, seed: int, files: int = FILES) -> Path:
    """``rows`` predictions over :data:`COUNTRIES` in ``files`` Parquet files under ``root`` (replaced).

    :param root: the dataset's directory.
    :param rows: how many rows in all; sku ``i`` has country ``i % 45`` (so (country, sku) is unique).
    :param seed: the prices' random seed (a previous set and a new set differ only in prices).
    :param files: how many part files (row groups of :data:`BATCH_ROWS` rows).
    :return: ``root``, absolute.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    codes = pa.array(list(COUNTRIES), pa.string())
    per_file = -(-rows // files)
    for i in range(files):
        sku = np.arange(i * per_file, min(rows, (i + 1) * per_file), dtype=np.int64)
        price = np.round(rng.uniform(1, 500, len(sku)), 2)
        table = pa.table({"country": codes.take(pa.array(sku % len(COUNTRIES))), "sku": sku, "price": price})
        pq.write_table(table, root / f"part-{i:05d}.parquet", row_group_size=BATCH_ROWS)
    return root.resolve()


def _batches(root: Path) -> Iterator[Any]:
    """The dataset's record batches (:data:`BATCH_ROWS` rows) with ``model_version`` appended."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in sorted(root.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            version = pa.repeat(pa.scalar(VERSION), batch.num_rows)
            yield pa.RecordBatch.from_arrays([*batch.columns, version], names=list(COLUMNS))


def _operator(conn_id: str, src: Path | str, table: str = "prices") -> Any:
    """The operator under test: replace the 45 keys of ``table`` with ``src`` plus the constant version."""
    from airflow_ml_provider.operators.erp_writer import ErpWriteOperator

    return ErpWriteOperator(
        task_id="erp_write",
        conn_id=conn_id,
        table=table,
        input_path=str(src),
        key_column="country",
        keys=list(COUNTRIES),
        constants={"model_version": VERSION},
        batch_rows=BATCH_ROWS,
    )


@dataclass
class Stock:
    """One stock ``run(DELETE)`` + ``insert_rows``: its timings and how many rows it was fed."""

    delete_s: float
    insert_s: float
    inserted: int

    def scaled(self, rows: int) -> float:
        """The DELETE plus the insert time scaled linearly to ``rows``."""
        return self.delete_s + self.insert_s * rows / self.inserted

    def label(self, rows: int, budget_s: float) -> str:
        """What to add to the row's label when not all ``rows`` were fed."""
        if self.inserted >= rows:
            return ""
        return f" (insert_rows stopped at {self.inserted // 1000}k rows after {budget_s:.0f} s, scaled linearly)"


def stock_insert_rows(hook: Any, src: Path, rows: int, budget_s: float) -> Stock:
    """``hook.run(DELETE the keys)``, then ``hook.insert_rows`` (defaults) of ``src``'s rows.

    :param hook: the provider's hook (``PostgresHook`` or ``MySqlHook``) of the target database.
    :param src: the dataset (converted to tuples as ``insert_rows`` wants them, inside the timing).
    :param rows: how many rows at most.
    :param budget_s: after this many seconds no more rows are fed (at a 1000-row commit boundary).
    """
    started = time.perf_counter()
    hook.run(DELETE_KEYS, parameters=COUNTRIES)
    deleted = time.perf_counter()
    fed = 0

    def feed() -> Iterator[tuple[Any, ...]]:
        nonlocal fed
        for batch in _batches(src):
            for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                if fed >= rows or (fed % 1000 == 0 and time.perf_counter() - deleted > budget_s):
                    return
                fed += 1
                yield row

    hook.insert_rows("prices", feed(), target_fields=list(COLUMNS))
    return Stock(deleted - started, time.perf_counter() - deleted, fed)


# -- PostgreSQL ---------------------------------------------------------------------------------


class _Postgres:
    """A database of our own on the local PostgreSQL, its ``prices`` table and a saved previous set."""

    def __init__(self) -> None:
        import psycopg

        self.name = f"erp_bench_{uuid.uuid4().hex[:10]}"
        self.admin = psycopg.connect(f"{PG_URL}/postgres", autocommit=True, connect_timeout=5)
        self.admin.execute(f"CREATE DATABASE {self.name}")
        self.url = f"{PG_URL}/{self.name}"
        self.conn = psycopg.connect(self.url, autocommit=True)
        for name in ("prices", "prices_prev", "prices_warm"):
            self.conn.execute(PG_TABLE.format(name=name))

    def load_previous(self, src: Path) -> None:
        """COPY the previous set into ``prices_prev`` (restored into ``prices`` by :meth:`reset`)."""
        copy_rows(self.conn, "prices_prev", src)

    def reset(self, previous: bool = True) -> None:
        """``prices`` := the previous set (or empty), vacuumed and checkpointed: every run starts alike."""
        self.conn.execute("TRUNCATE prices")
        if previous:
            self.conn.execute("INSERT INTO prices SELECT * FROM prices_prev")
        self.conn.execute("VACUUM ANALYZE prices")
        self.conn.execute("CHECKPOINT")

    def count(self) -> tuple[int, int]:
        """Rows in ``prices``, and how many of them have ``model_version`` :data:`VERSION`."""
        row = self.conn.execute("SELECT count(*), count(*) FILTER (WHERE model_version = %s) FROM prices", (VERSION,))
        found = row.fetchone()
        assert found is not None
        return int(found[0]), int(found[1])

    def close(self) -> None:
        self.conn.close()
        self.admin.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        self.admin.close()


def copy_rows(conn: Any, table: str, src: Path) -> None:
    """``COPY table FROM STDIN (FORMAT csv)`` of ``src``, one batch of CSV (``pyarrow.csv``) at a time."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    options = pacsv.WriteOptions(include_header=False)
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT csv)") as copy:
        for batch in _batches(src):
            sink = pa.BufferOutputStream()
            pacsv.write_csv(batch, sink, write_options=options)
            copy.write(memoryview(sink.getvalue()))


def raw_copy(url: str, src: Path) -> None:
    """The minimal hand-written writer: one transaction, DELETE the keys, COPY the rows in."""
    import psycopg

    with psycopg.connect(url) as conn:  # one transaction, committed on leaving the block
        conn.execute("DELETE FROM prices WHERE country = ANY(%s)", (list(COUNTRIES),))
        copy_rows(conn, "prices", src)


#: Run before the peak is reset (imports and a tiny write), so the growth is what writing the dataset costs.
_PEAK_SETUP = """
src, warm = sys.argv[1:3]
import pyarrow, pyarrow.csv, pyarrow.parquet
from bench.erp_write import PG_CONN, _operator
_operator(PG_CONN, warm, table="prices_warm").execute({})
"""
_PEAK_MEASURED = """
extra = {"rows": _operator(PG_CONN, src).execute({})["rows"]}
"""


def peak_rss(src: Path, warm: Path) -> dict[str, float]:
    """Peak RSS growth (bytes) of the operator writing ``src`` in a fresh interpreter.

    :param src: the dataset written (the connection comes from the environment).
    :param warm: a tiny dataset written first, into ``prices_warm``, before the peak is reset.
    :return: ``{"baseline", "peak", "growth", "seconds", "rows"}``.
    """
    from scripts.testbed.peak_rss import peak_rss_growth

    return peak_rss_growth(_PEAK_SETUP, _PEAK_MEASURED, [str(src), str(warm)])


def _postgres_measure(db: _Postgres, base: Path) -> dict[str, Any]:
    """Every PostgreSQL figure, with the connection :data:`PG_CONN` pointing at ``db``."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    new = write_dataset(base / "new", ROWS, seed=2)
    db.load_previous(write_dataset(base / "previous", ROWS, seed=1))
    db.reset()

    def ours() -> None:
        assert _operator(PG_CONN, new).execute({})["rows"] == ROWS

    ours()  # warm-up: imports, connection lookup, page cache
    runs: dict[str, Callable[[], None]] = {"ours": ours, "copy": lambda: raw_copy(db.url, new)}
    timed: dict[str, list[float]] = {"ours": [], "copy": []}
    for i in range(REPEATS):
        for which in ("copy", "ours") if i % 2 else ("ours", "copy"):  # alternate which goes first
            db.reset()
            started = time.perf_counter()
            runs[which]()
            timed[which].append(time.perf_counter() - started)
            assert db.count() == (ROWS, ROWS), which
    db.reset()
    stock = stock_insert_rows(PostgresHook(postgres_conn_id=PG_CONN), new, ROWS, STOCK_BUDGET_S)
    assert db.count() == (stock.inserted, stock.inserted)
    warm = write_dataset(base / "warm", len(COUNTRIES), seed=4, files=1)
    db.reset(previous=False)
    big = peak_rss(new, warm)
    db.reset(previous=False)
    little = peak_rss(write_dataset(base / "small", SMALL_ROWS, seed=3, files=SMALL_ROWS // BATCH_ROWS), warm)
    assert (big["rows"], little["rows"]) == (ROWS, SMALL_ROWS)
    return {"timed": timed, "stock": stock, "big": big, "little": little}


def _postgres_rows(base: Path) -> list[Row]:
    db = _Postgres()
    try:
        with mock.patch.dict(os.environ, {f"AIRFLOW_CONN_{PG_CONN.upper()}": db.url}):  # restored after
            m = _postgres_measure(db, base)
    finally:
        db.close()
    timed, stock, big, little = m["timed"], m["stock"], m["big"], m["little"]
    ours_s, copy_s = statistics.median(timed["ours"]), statistics.median(timed["copy"])

    def rate(rows: int, seconds: float) -> str:
        return f"{rows / seconds / 1e3:.0f}k rows/s"

    def spread(samples: list[float]) -> str:
        return f"{min(samples):.1f}-{max(samples):.1f} s"

    what = f"ERP write to PostgreSQL, {ROWS // 1_000_000}M rows x {len(COUNTRIES)} keys replacing 1M"
    ours = f"ours {rate(ROWS, ours_s)}, median of {REPEATS} ({spread(timed['ours'])})"
    best = min(timed["ours"]) / min(timed["copy"])
    copy_note = (
        f"{ours}; COPY {rate(ROWS, copy_s)} ({spread(timed['copy'])}); best-of ratio {best:.2f}; order alternated"
    )
    stock_note = f"{ours}; insert_rows {rate(stock.inserted, stock.insert_s)} (DELETE {stock.delete_s:.1f} s)"
    mem_note = (
        "fresh interpreter, VmHWM reset after imports and a tiny write; "
        f"peak RSS {big['peak'] / 2**20:.0f} MB vs {little['peak'] / 2**20:.0f} MB"
    )
    return [
        Row(what, ours_s, copy_s, "s", "hand-written DELETE + COPY FROM STDIN (psycopg 3), one transaction", copy_note),
        Row(
            what + stock.label(ROWS, STOCK_BUDGET_S),
            ours_s,
            stock.scaled(ROWS),
            "s",
            "PostgresHook.run(DELETE) + insert_rows (defaults: executemany, commit every 1000)",
            stock_note,
        ),
        Row(
            f"ERP write peak RSS growth, {ROWS // 1000}k rows (batch_rows={BATCH_ROWS})",
            big["growth"] / 2**20,
            little["growth"] / 2**20,
            "MB",
            f"same operator on {SMALL_ROWS // 1000}k rows",
            mem_note,
        ),
    ]


# -- MariaDB ------------------------------------------------------------------------------------


def _mysql_measure(hook: Any, base: Path) -> tuple[float, Stock]:
    """Ours (median) and the stock writer on MariaDB, the connection :data:`MYSQL_CONN` pointing at a new database."""
    new = write_dataset(base / "mysql", MYSQL_ROWS, seed=5)
    hook.run([MYSQL_TABLE.format(name="prices"), MYSQL_TABLE.format(name="prices_prev")])
    previous = write_dataset(base / "mysql-previous", MYSQL_ROWS, seed=6)
    tuples = (row for b in _batches(previous) for row in zip(*(c.to_pylist() for c in b.columns), strict=True))
    hook.insert_rows("prices_prev", tuples, target_fields=list(COLUMNS), commit_every=10_000, executemany=True)

    def reset() -> None:
        hook.run(["TRUNCATE prices", "INSERT INTO prices SELECT * FROM prices_prev"])

    def ours() -> None:
        assert _operator(MYSQL_CONN, new).execute({})["rows"] == MYSQL_ROWS

    reset()
    ours()  # warm-up
    samples = []
    for _ in range(REPEATS):
        reset()
        started = time.perf_counter()
        ours()
        samples.append(time.perf_counter() - started)
    reset()
    stock = stock_insert_rows(hook, new, MYSQL_ROWS, MYSQL_STOCK_BUDGET_S)
    assert hook.get_first("SELECT count(*) FROM prices")[0] == stock.inserted
    return statistics.median(samples), stock


def _mysql_rows(base: Path) -> list[Row]:
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    name = f"erp_bench_{uuid.uuid4().hex[:10]}"
    env = f"AIRFLOW_CONN_{MYSQL_CONN.upper()}"
    with mock.patch.dict(os.environ, {env: MYSQL_URL}):  # the environment is restored after
        MySqlHook(mysql_conn_id=MYSQL_CONN).run(f"CREATE DATABASE {name}")
        try:
            os.environ[env] = f"{MYSQL_URL}/{name}"
            ours_s, stock = _mysql_measure(MySqlHook(mysql_conn_id=MYSQL_CONN), base)
        finally:
            os.environ[env] = MYSQL_URL
            MySqlHook(mysql_conn_id=MYSQL_CONN).run(f"DROP DATABASE IF EXISTS {name}")
    what = f"ERP write to MariaDB, {MYSQL_ROWS // 1000}k rows x {len(COUNTRIES)} keys replacing as many"
    note = (
        f"ours {MYSQL_ROWS / ours_s / 1e3:.0f}k rows/s, median of {REPEATS}; insert_rows "
        f"{stock.inserted / stock.insert_s / 1e3:.1f}k rows/s (DELETE {stock.delete_s:.1f} s)"
    )
    stock_name = "MySqlHook.run(DELETE) + insert_rows (defaults: one INSERT per row, commit every 1000)"
    return [
        Row(
            what + stock.label(MYSQL_ROWS, MYSQL_STOCK_BUDGET_S),
            ours_s,
            stock.scaled(MYSQL_ROWS),
            "s",
            stock_name,
            note,
        )
    ]


def run(base: Path) -> list[Row]:
    """Build the datasets under ``base`` (removed at the end), measure; three PostgreSQL rows, one MariaDB row."""
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    try:
        rows = _postgres_rows(base) + _mysql_rows(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


if __name__ == "__main__":  # python -m bench.erp_write
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    sys.exit(run_alone(run, "erp"))
