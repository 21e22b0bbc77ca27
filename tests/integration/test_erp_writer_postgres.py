"""ErpWriteOperator against a real PostgreSQL (127.0.0.1:5432): one transaction per write.

The module creates its own database (unique name) and drops it at the end. Under CI=true a
PostgreSQL that cannot be reached fails the tests; elsewhere they are skipped.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import structlog

from airflow_ml_provider.exceptions import DropGuardError, InvalidSpecError
from airflow_ml_provider.operators.erp_writer import ErpWriteOperator
from tests.conftest import ROOT, service_unavailable
from tests.integration.conftest import admin_client, set_hdfs_conn

pytestmark = pytest.mark.integration

HOST, PORT, USER = "127.0.0.1", 5432, "postgres"
CONN_ID = "erp_pg_test"
#: The connection's password (trust auth ignores it): it must never show in logs, XCom or errors.
SECRET = "Pw-s3cr3t-ERP-4711"
CTX: Any = {}
TABLE_SQL = """
CREATE TABLE prices (
    country text NOT NULL,
    sku bigint NOT NULL,
    price double precision NOT NULL CHECK (price >= 0),
    source text,
    model_version text,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (country, sku)
)"""


def _connect(dbname: str) -> Any:
    return psycopg2.connect(host=HOST, port=PORT, user=USER, dbname=dbname, connect_timeout=5)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A database of this module's own, dropped at the end."""
    name = f"erp_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = _connect("postgres")
    except Exception as e:
        service_unavailable(f"PostgreSQL at {HOST}:{PORT} is not reachable: {e}")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def db(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh ``prices`` table; the connection ``erp_pg_test`` (with a password) points at it."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", f"postgresql://{USER}:{quote(SECRET)}@{HOST}:{PORT}/{database}"
    )
    conn = _connect(database)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS prices")
        cur.execute(TABLE_SQL)
    yield conn
    conn.close()


def query(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def snapshot(conn: Any) -> list[tuple[Any, ...]]:
    return query(conn, "SELECT country, sku, price, source, model_version FROM prices ORDER BY 1, 2")


def counts(conn: Any) -> dict[str, int]:
    return dict(query(conn, "SELECT country, count(*) FROM prices GROUP BY 1"))


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


MAP = {"country": "country", "sku": "sku", "prediction": "price", "source": "source"}


def writer(input_path: Any, **kwargs: Any) -> ErpWriteOperator:
    args: dict[str, Any] = {
        "task_id": "erp_write",
        "conn_id": CONN_ID,
        "table": "prices",
        "input_path": input_path,
        "key_column": "country",
        "column_map": MAP,
    }
    return ErpWriteOperator(**(args | kwargs))


def messages(logs: list[Any], level: str | None = None) -> list[str]:
    out = []
    for e in logs:
        if level and e["log_level"] != level:
            continue
        args = e.get("positional_args")
        out.append(e["event"] % tuple(args) if args else str(e["event"]))
    return out


# -- 1. replace only the given keys, in one transaction; idempotent --------------------------------


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_replaces_only_the_given_keys_and_a_rerun_is_idempotent(
    db: Any, tmp_path: Path, driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With either driver the postgres provider's hook may hand out (psycopg 3 with SQLAlchemy 2, else psycopg2)."""
    import airflow.providers.postgres.hooks.postgres as pg_hook

    monkeypatch.setattr(pg_hook, "USE_PSYCOPG3", driver == "psycopg")
    first = {c: parquet(tmp_path / f"v1/{c}.parquet", c, n, "v1") for c, n in (("DE", 100), ("FR", 50), ("IT", 30))}
    written_at = dt.datetime(2026, 11, 23, 10, 30, 15, 123456, tzinfo=dt.timezone.utc)
    result = writer(first, constants={"model_version": "1", "written_at": written_at}).execute(CTX)
    assert query(db, "SELECT DISTINCT written_at FROM prices") == [(written_at,)]
    assert result["rows"] == 180
    assert result["keys"]["IT"] == {"old": 0, "new": 30, "change": None}
    italy = [r for r in snapshot(db) if r[0] == "IT"]

    second = {
        "DE": parquet(tmp_path / "v2/DE.parquet", "DE", 95, "v2"),
        "FR": parquet(tmp_path / "v2/FR.parquet", "FR", 50, "v2"),
    }
    op = writer(second, keys=["DE", "FR"], constants={"model_version": "2"})
    result = op.execute(CTX)
    assert set(result) == {"table", "keys", "rows", "seconds"}
    assert result["table"] == "public.prices"
    assert result["keys"] == {
        "DE": {"old": 100, "new": 95, "change": -5.0},
        "FR": {"old": 50, "new": 50, "change": 0.0},
    }
    assert result["rows"] == 145
    assert counts(db) == {"DE": 95, "FR": 50, "IT": 30}
    assert [r for r in snapshot(db) if r[0] == "IT"] == italy  # untouched
    assert query(db, "SELECT DISTINCT source, model_version FROM prices WHERE country <> 'IT'") == [("v2", "2")]
    assert query(db, "SELECT count(*) FROM prices WHERE written_at IS NULL") == [(0,)]  # the default applied

    before = snapshot(db)
    again = op.execute(CTX)
    assert snapshot(db) == before
    assert again["keys"]["DE"] == {"old": 95, "new": 95, "change": 0.0}


def test_hive_partitioned_directory_and_keys_from_the_data(db: Any, tmp_path: Path) -> None:
    root = tmp_path / "preds"
    for c, n in (("DE", 7), ("FR", 3)):
        (root / f"country={c}").mkdir(parents=True)
        pq.write_table(pa.table({"sku": list(range(n)), "prediction": [1.5] * n}), root / f"country={c}" / "p.parquet")
    (root / "_SUCCESS").write_text("")
    result = writer(f"file://{root}", column_map={"country": "country", "sku": "sku", "prediction": "price"}).execute(
        CTX
    )
    assert sorted(result["keys"]) == ["DE", "FR"]
    assert counts(db) == {"DE": 7, "FR": 3}


def test_reads_a_hive_partitioned_dataset_from_hdfs(
    db: Any, hdfs: Any, hdfs_dir: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    set_hdfs_conn(monkeypatch, "hdfs_erp", hdfs.namenode_urls)
    admin = admin_client(hdfs)
    for c, n in (("DE", 1200), ("FR", 5)):
        local = tmp_path / f"{c}.parquet"
        pq.write_table(pa.table({"sku": list(range(n)), "prediction": [2.5] * n}), local, row_group_size=500)
        admin.write(f"{hdfs_dir}/p/country={c}/part-00000.parquet", data=local.read_bytes())
    admin.write(f"{hdfs_dir}/p/_SUCCESS", data=b"")
    op = writer(
        f"hdfs://nn{hdfs_dir}/p",
        hdfs_conn_id="hdfs_erp",
        keys=["DE", "FR"],
        batch_rows=100,
        column_map={"country": "country", "sku": "sku", "prediction": "price"},
        constants={"model_version": "hdfs"},
    )
    result = op.execute(CTX)
    assert result["rows"] == 1205
    assert counts(db) == {"DE": 1200, "FR": 5}
    assert query(db, "SELECT DISTINCT price, model_version FROM prices") == [(2.5, "hdfs")]


# -- 2. a reader never sees a partial or empty key ---------------------------------------------------


def test_a_reader_polling_1000_times_sees_only_whole_sets(db: Any, tmp_path: Path, database: str) -> None:
    sizes = (2000, 2100)
    inputs = [parquet(tmp_path / f"r{n}.parquet", "DE", n, f"s{n}") for n in sizes]
    writer({"DE": inputs[0]}).execute(CTX)
    stop = threading.Event()
    writes: list[int] = []
    errors: list[BaseException] = []

    def write_repeatedly() -> None:
        try:
            while not stop.is_set():
                writer({"DE": inputs[(len(writes) + 1) % 2]}, batch_rows=300).execute(CTX)
                writes.append(1)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=write_repeatedly)
    thread.start()
    seen = []
    reader = _connect(database)
    reader.autocommit = True
    try:
        for _ in range(1000):
            seen.append(query(reader, "SELECT count(*) FROM prices WHERE country = %s", ("DE",))[0][0])
            time.sleep(0.002)
    finally:
        stop.set()
        thread.join(timeout=60)
        reader.close()
    assert not errors, errors
    assert len(writes) >= 4, "the writer did not run during the polling"
    assert set(seen) <= set(sizes), sorted(set(seen) - set(sizes))
    assert set(seen) == set(sizes), "the reader never saw a write land"


# -- 3. killed mid-COPY, constraint violation mid-load: nothing changes ------------------------------

KILL_SCRIPT = """
import sys
from airflow_ml_provider.operators.erp_writer import ErpWriteOperator
ErpWriteOperator(task_id="w", conn_id=sys.argv[1], table="prices", input_path=sys.argv[2], key_column="country",
                 column_map={"country": "country", "sku": "sku", "prediction": "price"}, batch_rows=5000).execute({})
print("COMMITTED")
"""


def test_writer_sigkilled_mid_copy_leaves_the_previous_rows(db: Any, tmp_path: Path, database: str) -> None:
    writer({"DE": parquet(tmp_path / "old.parquet", "DE", 1000, "old")}).execute(CTX)
    before = snapshot(db)
    big = parquet(tmp_path / "big.parquet", "DE", 1_500_000)
    script = tmp_path / "write.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script), CONN_ID, big],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    copied = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        rows = query(
            db,
            "SELECT tuples_processed FROM pg_stat_progress_copy WHERE datname = %s AND command = 'COPY FROM'",
            (database,),
        )
        if rows and rows[0][0] > 20_000:
            copied = rows[0][0]
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[0]
    assert copied > 0, "never saw the COPY in progress"
    os.kill(proc.pid, signal.SIGKILL)
    output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == -signal.SIGKILL
    assert "COMMITTED" not in output
    assert snapshot(db) == before
    # the server notices the dead client and its locks go with it: the next write proceeds
    result = writer({"DE": parquet(tmp_path / "new.parquet", "DE", 1000, "new")}).execute(CTX)
    assert result["keys"]["DE"]["new"] == 1000
    assert query(db, "SELECT DISTINCT source FROM prices") == [("new",)]


def test_a_constraint_violation_deep_in_the_load_rolls_back_everything(db: Any, tmp_path: Path) -> None:
    writer({"DE": parquet(tmp_path / "old.parquet", "DE", 100_000, "old")}).execute(CTX)
    before = snapshot(db)
    prices = [1.0] * 100_000
    prices[87_654] = -1.0  # violates CHECK (price >= 0)
    bad = parquet(tmp_path / "bad.parquet", "DE", 100_000, "new", prediction=prices)
    with pytest.raises(InvalidSpecError, match="price_check") as info:
        writer({"DE": bad}, batch_rows=10_000).execute(CTX)
    assert "Nothing was written" in str(info.value)
    assert ".." not in str(info.value)
    assert snapshot(db) == before


# -- 4. two concurrent writers: exactly one input, whole ------------------------------------------------


def test_two_concurrent_writers_end_with_exactly_one_input(db: Any, tmp_path: Path) -> None:
    sizes = {"a": 3000, "b": 2900}
    files = {s: parquet(tmp_path / f"{s}.parquet", "DE", n, s) for s, n in sizes.items()}
    writer({"DE": files["a"]}).execute(CTX)
    for round_ in range(5):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(source: str, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors) -> None:
            try:
                barrier.wait()
                writer({"DE": files[source]}, batch_rows=500).execute(CTX)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=(s,)) for s in sizes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        rows = query(db, "SELECT source, count(*) FROM prices WHERE country = 'DE' GROUP BY 1")
        assert len(rows) == 1, (round_, rows)
        assert rows[0][1] == sizes[rows[0][0]], (round_, rows)


# -- 5. bad inputs: a clear error naming the thing, nothing written ----------------------------------------


def _bad_cases(tmp_path: Path) -> list[tuple[str, dict[str, Any], str]]:
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


def test_each_bad_input_gives_a_clear_error_and_writes_nothing(db: Any, tmp_path: Path) -> None:
    writer({"DE": parquet(tmp_path / "seed.parquet", "DE", 20, "seed")}).execute(CTX)
    before = snapshot(db)
    for name, kwargs, pattern in _bad_cases(tmp_path):
        with pytest.raises(InvalidSpecError, match=pattern) as info:
            writer(**kwargs).execute(CTX)
        assert ".." not in str(info.value), name
        assert snapshot(db) == before, name


@pytest.mark.parametrize(
    "kwargs",
    [
        {"table": "prices; DROP TABLE prices"},
        {"table": 'prices" --'},
        {"key_column": "country) OR (1=1"},
        {"column_map": {"prediction": "price; DELETE FROM prices"}},
        {"constants": {"x = 1; --": "v"}},
        {"primary_key": ["sku --"]},
    ],
)
def test_bad_identifiers_are_refused_before_and_after_rendering(
    db: Any, tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    path = {"DE": parquet(tmp_path / "x.parquet", "DE", 5)}
    writer(path).execute(CTX)
    before = snapshot(db)
    with pytest.raises(InvalidSpecError, match="not a valid SQL name"):
        writer(path, **kwargs)
    op = writer(path)
    for name, value in kwargs.items():  # as if a template had rendered to it
        setattr(op, name, value)
    with pytest.raises(InvalidSpecError, match="not a valid SQL name"):
        op.execute(CTX)
    assert snapshot(db) == before
    assert query(db, "SELECT to_regclass('public.prices') IS NOT NULL") == [(True,)]


# -- 6. the drop guard --------------------------------------------------------------------------


def test_drop_guard_fails_on_a_20_percent_drop_warns_when_asked_and_passes_a_first_run(db: Any, tmp_path: Path) -> None:
    seed = {c: parquet(tmp_path / f"s{c}.parquet", c, 100, "seed") for c in ("DE", "FR")}
    with structlog.testing.capture_logs() as logs:
        first = writer(seed).execute(CTX)
    assert any("first run" in m for m in messages(logs)), messages(logs)
    assert first["keys"]["DE"] == {"old": 0, "new": 100, "change": None}
    table_log = [m for m in messages(logs) if "Row counts per key" in m]
    assert len(table_log) == 1
    assert "DE" in table_log[0]
    assert "first run" in table_log[0]
    before = snapshot(db)

    smaller = {
        "DE": parquet(tmp_path / "de80.parquet", "DE", 80, "new"),
        "FR": parquet(tmp_path / "fr.parquet", "FR", 100, "new"),
    }
    with pytest.raises(DropGuardError) as info:
        writer(smaller).execute(CTX)
    assert info.value.keys == ["DE"]
    assert "DE: 100 -> 80 (-20.00%)" in str(info.value)
    assert "max_drop" in str(info.value)
    assert snapshot(db) == before

    with structlog.testing.capture_logs() as logs:
        result = writer(smaller, on_drop="warn").execute(CTX)
    warnings = [m for m in messages(logs, "warning") if "Drop guard" in m]
    assert len(warnings) == 1, warnings
    assert "DE: 100 -> 80" in warnings[0]
    assert result["keys"]["DE"] == {"old": 100, "new": 80, "change": -20.0}
    assert counts(db) == {"DE": 80, "FR": 100}

    writer({"DE": parquet(tmp_path / "de72.parquet", "DE", 72, "x")}).execute(CTX)  # exactly 10% less passes
    assert counts(db) == {"DE": 72, "FR": 100}


# -- 7. the password never shows ---------------------------------------------------------------------


def test_the_password_never_appears_in_logs_xcom_or_errors(
    db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    with structlog.testing.capture_logs() as logs:
        seen.append(repr(writer({"DE": parquet(tmp_path / "a.parquet", "DE", 100)}).execute(CTX)))
        failing: list[tuple[type[Exception], dict[str, Any]]] = [
            (DropGuardError, {"input_path": {"DE": parquet(tmp_path / "b.parquet", "DE", 10)}}),
            (InvalidSpecError, {"table": "missing", "input_path": {"DE": parquet(tmp_path / "c.parquet", "DE", 10)}}),
        ]
        for error, kwargs in failing:
            with pytest.raises(error) as info:
                writer(**kwargs).execute(CTX)
            seen += [str(info.value), repr(info.value)]
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", f"postgresql://{USER}:{quote(SECRET)}@{HOST}:1/x")
        with pytest.raises((psycopg2.OperationalError, psycopg.OperationalError)) as info:
            writer({"DE": parquet(tmp_path / "a.parquet", "DE", 100)}).execute(CTX)
        seen += [str(info.value), repr(info.value), repr(info.value.__context__)]
    seen += [repr(e) for e in logs]
    assert len(seen) >= 7
    assert not [s for s in seen if SECRET in s or quote(SECRET) in s]
