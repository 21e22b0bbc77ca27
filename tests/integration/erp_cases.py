"""What every family of the ERP writer must do, as scenarios run against a real database.

A family's test module (PostgreSQL, MariaDB/MySQL, SQLite) makes an :class:`ErpDb` for its
``prices`` table and its connection, then calls the scenarios: replace only the given keys and
rerun idempotently, a reader never sees a partial or empty key, a killed writer or a constraint
violation deep in the load leaves the previous rows, two concurrent writers end with exactly one
input, bad inputs write nothing, the drop guard fails naming the keys. Every module's ``prices``
table has the same columns (``country``, ``sku``, ``price`` with the CHECK constraint
``price_check``, ``source``, ``model_version``, ``written_at`` with a default), so the scenarios'
SQL is plain (no placeholders: each driver has its own).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ml_provider.exceptions import DropGuardError, InvalidSpecError
from airflow_ml_provider.operators.erp_writer import ErpWriteOperator
from tests.conftest import ROOT

CTX: Any = {}
#: Dataset column -> ``prices`` column.
MAP = {"country": "country", "sku": "sku", "prediction": "price", "source": "source"}
SNAPSHOT = "SELECT country, sku, price, source, model_version FROM prices ORDER BY 1, 2"

Rows = list[tuple[Any, ...]]


def parquet(path: Path, country: str | list[str], n: int, source: str = "a", **columns: Any) -> str:
    """A Parquet file of ``n`` predictions; ``columns`` override or add columns. Returns a file:// URL."""
    data: dict[str, Any] = {
        "country": country if isinstance(country, list) else [country] * n,
        "sku": list(range(n)),
        "prediction": [float(i % 97) for i in range(n)],
        "source": [source] * n,
    }
    data.update(columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(data), path, row_group_size=max(1, min(n, 50_000)))
    return f"file://{path}"


def writer(input_path: Any, *, conn_id: str, **kwargs: Any) -> ErpWriteOperator:
    """The operator on ``prices`` keyed by ``country`` with :data:`MAP`; ``kwargs`` override."""
    args: dict[str, Any] = {
        "task_id": "erp_write",
        "conn_id": conn_id,
        "table": "prices",
        "input_path": input_path,
        "key_column": "country",
        "column_map": MAP,
    }
    return ErpWriteOperator(**(args | kwargs))


def messages(logs: list[Any], level: str | None = None) -> list[str]:
    """The formatted messages of ``structlog.testing.capture_logs`` entries (of one level)."""
    out = []
    for e in logs:
        if level and e["log_level"] != level:
            continue
        args = e.get("positional_args")
        out.append(e["event"] % tuple(args) if args else str(e["event"]))
    return out


def bad_cases(tmp_path: Path) -> list[tuple[str, dict[str, Any], str]]:
    """(name, operator arguments, error pattern) of inputs that must fail and write nothing."""
    n = 20
    nan = [1.0] * n
    nan[7] = math.nan
    dup = list(range(n))
    dup[5] = 3

    def de(name: str, rows: int = n, **columns: Any) -> dict[str, str]:
        return {"DE": parquet(tmp_path / f"{name}.parquet", "DE", rows, **columns)}

    unknown = parquet(tmp_path / "k.parquet", ["DE"] * 10 + ["XX"] * 10, n)
    no_price = {"sku": "sku", "country": "country"}
    return [
        ("null in NOT NULL", {"input_path": de("m", prediction=[None] * n)}, r"Row 0 .*'price'.*NOT NULL"),
        ("missing column", {"input_path": de("m2"), "column_map": no_price}, r"\['price'\]"),
        ("incompatible type", {"input_path": de("t", sku=[str(i) for i in range(n)])}, r"'sku'.*string.*bigint"),
        ("NaN in NOT NULL", {"input_path": de("nan", prediction=nan)}, r"Row 7 of .*nan\.parquet.*'price'.*NOT NULL"),
        ("unknown key", {"input_path": unknown, "keys": ["DE"]}, r"Row 10 .*key 'XX'.*\['DE'\]"),
        ("duplicate PK", {"input_path": de("d", sku=dup)}, r"duplicate primary keys.*'sku': '3'.*2 times"),
        ("empty dataset", {"input_path": de("e", 0)}, "holds no rows"),
        ("missing table", {"table": "nope", "input_path": de("ok")}, "Table nope does not exist"),
    ]


@dataclass
class ErpDb:
    """One family's ``prices`` table, as the scenarios use it.

    :param conn_id: the Airflow connection of the writer.
    :param query: runs SQL on the test's own connection (autocommit) and returns the rows.
    :param reader: opens a separate autocommit reading connection; gives its query function.
    """

    conn_id: str
    query: Callable[[str], Rows]
    reader: Callable[[], AbstractContextManager[Callable[[str], Rows]]]

    def writer(self, input_path: Any, **kwargs: Any) -> ErpWriteOperator:
        return writer(input_path, **({"conn_id": self.conn_id} | kwargs))

    def snapshot(self) -> Rows:
        return [tuple(float(v) if i == 2 else v for i, v in enumerate(r)) for r in self.query(SNAPSHOT)]

    def counts(self) -> dict[str, int]:
        return {c: int(n) for c, n in self.query("SELECT country, count(*) FROM prices GROUP BY country")}


def replaces_only_the_given_keys(db: ErpDb, tmp_path: Path, **first: Any) -> dict[str, Any]:
    """Write DE, FR, IT; replace DE and FR only; rerun: the same rows. ``first``: the first write's extra
    arguments. Returns the first write's XCom (for the family's own checks)."""
    inputs = {c: parquet(tmp_path / f"v1/{c}.parquet", c, n, "v1") for c, n in (("DE", 100), ("FR", 50), ("IT", 30))}
    result = db.writer(inputs, **({"constants": {"model_version": "1"}} | first)).execute(CTX)
    assert result["rows"] == 180
    assert result["keys"]["IT"] == {"old": 0, "new": 30, "change": None}
    italy = [r for r in db.snapshot() if r[0] == "IT"]

    second = {
        "DE": parquet(tmp_path / "v2/DE.parquet", "DE", 95, "v2"),
        "FR": parquet(tmp_path / "v2/FR.parquet", "FR", 50, "v2"),
    }
    op = db.writer(second, keys=["DE", "FR"], constants={"model_version": "2"}, batch_rows=7)
    again = op.execute(CTX)
    assert set(again) == {"table", "keys", "rows", "seconds"}
    assert again["keys"] == {
        "DE": {"old": 100, "new": 95, "change": -5.0},
        "FR": {"old": 50, "new": 50, "change": 0.0},
    }
    assert again["rows"] == 145
    assert db.counts() == {"DE": 95, "FR": 50, "IT": 30}
    assert [r for r in db.snapshot() if r[0] == "IT"] == italy  # untouched
    assert db.query("SELECT DISTINCT source, model_version FROM prices WHERE country <> 'IT'") == [("v2", "2")]
    assert db.query("SELECT count(*) FROM prices WHERE written_at IS NULL") == [(0,)]  # the default applied

    before = db.snapshot()
    rerun = op.execute(CTX)
    assert db.snapshot() == before
    assert rerun["keys"]["DE"] == {"old": 95, "new": 95, "change": 0.0}
    return result


def reader_sees_only_whole_sets(db: ErpDb, tmp_path: Path, polls: int = 1000) -> None:
    """A reader polling ``polls`` times while a writer replaces DE again and again sees 2000 or 2100 rows."""
    sizes = (2000, 2100)
    inputs = [parquet(tmp_path / f"r{n}.parquet", "DE", n, f"s{n}") for n in sizes]
    db.writer({"DE": inputs[0]}).execute(CTX)
    stop = threading.Event()
    writes: list[int] = []
    errors: list[BaseException] = []

    def write_repeatedly() -> None:
        try:
            while not stop.is_set():
                db.writer({"DE": inputs[(len(writes) + 1) % 2]}, batch_rows=300).execute(CTX)
                writes.append(1)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=write_repeatedly)
    thread.start()
    seen = []
    try:
        with db.reader() as read:
            for _ in range(polls):
                seen.append(int(read("SELECT count(*) FROM prices WHERE country = 'DE'")[0][0]))
                time.sleep(0.002)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors
    assert len(writes) >= 4, "the writer did not run during the polling"
    assert set(seen) <= set(sizes), sorted(set(seen) - set(sizes))
    assert set(seen) == set(sizes), "the reader never saw a write land"


KILL_SCRIPT = """
import sys
from airflow_ml_provider.operators.erp_writer import ErpWriteOperator
ErpWriteOperator(task_id="w", conn_id=sys.argv[1], table="prices", input_path=sys.argv[2], key_column="country",
                 column_map={"country": "country", "sku": "sku", "prediction": "price"}, batch_rows=5000).execute({})
print("COMMITTED")
"""


def sigkill_mid_load(
    db: ErpDb, tmp_path: Path, loading: Callable[[], bool], rows: int = 1_500_000
) -> None:
    """A writer process SIGKILLed while ``loading()`` says it is mid-load leaves the previous rows, and the
    next write (whose locks the dead session no longer holds) goes through."""
    db.writer({"DE": parquet(tmp_path / "old.parquet", "DE", 1000, "old")}).execute(CTX)
    before = db.snapshot()
    big = parquet(tmp_path / "big.parquet", "DE", rows)
    script = tmp_path / "write.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script), db.conn_id, big],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seen = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if loading():
            seen = True
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[0]
    assert seen, "never saw the load in progress"
    os.kill(proc.pid, signal.SIGKILL)
    output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == -signal.SIGKILL
    assert "COMMITTED" not in output
    assert db.snapshot() == before
    result = db.writer({"DE": parquet(tmp_path / "new.parquet", "DE", 1000, "new")}).execute(CTX)
    assert result["keys"]["DE"]["new"] == 1000
    assert db.query("SELECT DISTINCT source FROM prices") == [("new",)]


def constraint_violation_rolls_back(db: ErpDb, tmp_path: Path, match: str = "price_check") -> None:
    """A CHECK violation at row 87,654 of 100,000: an :class:`InvalidSpecError` naming it, nothing written."""
    db.writer({"DE": parquet(tmp_path / "old.parquet", "DE", 100_000, "old")}).execute(CTX)
    before = db.snapshot()
    prices = [1.0] * 100_000
    prices[87_654] = -1.0  # violates CHECK (price >= 0)
    bad = parquet(tmp_path / "bad.parquet", "DE", 100_000, "new", prediction=prices)
    with pytest.raises(InvalidSpecError, match=match) as info:
        db.writer({"DE": bad}, batch_rows=10_000).execute(CTX)
    assert "Nothing was written" in str(info.value)
    assert ".." not in str(info.value)
    assert db.snapshot() == before


def concurrent_writers_end_with_one_input(db: ErpDb, tmp_path: Path, rounds: int = 5) -> None:
    """Two writers of DE started together, ``rounds`` times: both commit, DE holds exactly one input, whole,
    and the writer that committed last counted (for its drop guard) the rows of the one before it."""
    sizes = {"a": 3000, "b": 2900}
    files = {s: parquet(tmp_path / f"{s}.parquet", "DE", n, s) for s, n in sizes.items()}
    db.writer({"DE": files["a"]}).execute(CTX)
    for round_ in range(rounds):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []
        done: dict[str, Any] = {}

        def run(source: str, barrier: threading.Barrier = barrier, errors: Any = errors, done: Any = done) -> None:
            try:
                barrier.wait()
                done[source] = db.writer({"DE": files[source]}, batch_rows=500).execute(CTX)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=(s,)) for s in sizes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert sorted(done) == ["a", "b"]  # both committed, one after the other
        rows = db.query("SELECT source, count(*) FROM prices WHERE country = 'DE' GROUP BY source")
        assert len(rows) == 1, (round_, rows)
        last, n = rows[0]
        assert n == sizes[last], (round_, rows)
        first = "b" if last == "a" else "a"
        assert done[last]["keys"]["DE"]["old"] == sizes[first], (round_, done)  # it waited, then counted


def bad_inputs_write_nothing(db: ErpDb, tmp_path: Path) -> None:
    """Each of :func:`bad_cases` fails with its message and leaves the table as it was."""
    db.writer({"DE": parquet(tmp_path / "seed.parquet", "DE", 20, "seed")}).execute(CTX)
    before = db.snapshot()
    for name, kwargs, pattern in bad_cases(tmp_path):
        with pytest.raises(InvalidSpecError, match=pattern) as info:
            db.writer(**kwargs).execute(CTX)
        assert ".." not in str(info.value), name
        assert db.snapshot() == before, name


def drop_guard_fails_naming_keys(db: ErpDb, tmp_path: Path) -> None:
    """DE drops 20%: :class:`DropGuardError` naming DE, nothing written; ``on_drop="warn"`` writes."""
    seed = {c: parquet(tmp_path / f"s{c}.parquet", c, 100, "seed") for c in ("DE", "FR")}
    db.writer(seed).execute(CTX)
    before = db.snapshot()
    smaller = {
        "DE": parquet(tmp_path / "de80.parquet", "DE", 80, "new"),
        "FR": parquet(tmp_path / "fr.parquet", "FR", 100, "new"),
    }
    with pytest.raises(DropGuardError) as info:
        db.writer(smaller).execute(CTX)
    assert info.value.keys == ["DE"]
    assert "DE: 100 -> 80 (-20.00%)" in str(info.value)
    assert db.snapshot() == before
    result = db.writer(smaller, on_drop="warn").execute(CTX)
    assert result["keys"]["DE"] == {"old": 100, "new": 80, "change": -20.0}
    assert db.counts() == {"DE": 80, "FR": 100}
