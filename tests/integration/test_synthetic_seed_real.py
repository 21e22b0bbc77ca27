"""Seeding a real source database with synthetic sales (jobs.synthetic_seed): PostgreSQL
(127.0.0.1:5432), MariaDB (127.0.0.1:3306, a user with a password allowed only on its own database)
and a SQLite file.

Each family: the table's row count, column types, countries, NOT NULL and value ranges, ids that
grow chunk by chunk (an ingest watermark), the same rows for the same seed whatever the chunk size,
a table with rows refused unless ``replace``. Once: the CLI on SQLite, and the seeded table through
``SqlIngestOperator`` into the training job's layout, trained on. The module's databases are created
with unique names and dropped at the end.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.jobs import markdown_train, synthetic_seed
from airflow_ml_provider.jobs.common import BadInputError
from tests.conftest import ROOT
from tests.integration import databases

pytestmark = pytest.mark.integration

COUNTRIES = ["DE", "FR", "IT", "ES", "PL", "NL", "BE", "AT", "CH", "CZ", "SK", "HU"]
WEEKS, SKUS = 20, 60
ROWS = WEEKS * len(COUNTRIES) * SKUS  # 14,400
CHUNK_ROWS = 3_000  # 4 weeks (2,880 rows) a chunk: 5 chunks
WEEKS_PER_CHUNK = 4
#: The MariaDB user's password: it must never show.
SECRET = "Pw-seed-s3cr3t"
CONN_ID = "seed_db"
COLUMNS = "country, sku, week, week_of_year, base_price, discount, stock, days_to_season_end, units_sold"
#: The catalog's type of each column, per family (the DDL's types as each database reports them).
TYPES = {
    "postgres": {"id": "bigint", "country": "character varying", "week": "date", "week_of_year": "integer",
                 "base_price": "double precision", "stock": "integer", "units_sold": "integer"},
    "mariadb": {"id": "bigint", "country": "varchar", "week": "date", "week_of_year": "int",
                "base_price": "double", "stock": "int", "units_sold": "int"},
    "sqlite": {"id": "INTEGER", "country": "VARCHAR(16)", "week": "DATE", "week_of_year": "INTEGER",
               "base_price": "DOUBLE PRECISION", "stock": "INTEGER", "units_sold": "INTEGER"},
}  # fmt: skip


@dataclass
class Db:
    """One family: its name, and SQL on its database through the test's own admin connection."""

    family: str
    query: Callable[[str], list[tuple[Any, ...]]]

    def types(self, table: str = "sales") -> dict[str, str]:
        if self.family == "sqlite":
            return {r[1]: r[2] for r in self.query(f"PRAGMA table_info({table})")}
        schema = "current_schema()" if self.family == "postgres" else "DATABASE()"
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "  # noqa: S608 - test constants
            f"WHERE table_schema = {schema} AND table_name = '{table}'"
        )
        return {str(name).lower(): str(kind) for name, kind in rows}

    def rows(self, table: str = "sales") -> list[tuple[Any, ...]]:
        """All rows but the id, in a stable order, dates as text."""
        out = self.query(f"SELECT {COLUMNS} FROM {table} ORDER BY week, country, sku")  # noqa: S608
        return [(r[0], r[1], str(r[2]), *r[3:]) for r in out]


@pytest.fixture(scope="module")
def postgres_name() -> Iterator[str]:
    with databases.postgres_database("seed_test") as name:
        yield name


@pytest.fixture(scope="module")
def mariadb_name() -> Iterator[str]:
    with databases.mariadb_database("seed_test", password=SECRET, grant="ALL") as name:
        yield name


def _postgres(name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Db]:
    import psycopg2

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", f"postgresql://postgres@127.0.0.1:5432/{name}")
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=name)
    admin.autocommit = True

    def query(sql: str) -> list[tuple[Any, ...]]:
        with admin.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall()) if cur.description else []

    query("DROP TABLE IF EXISTS sales, sales_b, sales_c")
    yield Db("postgres", query)
    admin.close()


def _mariadb(name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Db]:
    import MySQLdb

    conn = {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": name, "password": SECRET, "schema": name}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    admin = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", passwd="", db=name)
    admin.autocommit(True)

    def query(sql: str) -> list[tuple[Any, ...]]:
        cur = admin.cursor()
        cur.execute(sql)
        return list(cur.fetchall())

    query("DROP TABLE IF EXISTS sales, sales_b, sales_c")
    yield Db("mariadb", query)
    admin.close()


def _sqlite(path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Db]:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    admin = sqlite3.connect(path, isolation_level=None)
    yield Db("sqlite", lambda sql: list(admin.execute(sql).fetchall()))
    admin.close()


@pytest.fixture(params=["postgres", "mariadb", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Db]:
    """Each family in turn, with an empty database behind the connection ``seed_db``."""
    if request.param == "postgres":
        yield from _postgres(request.getfixturevalue("postgres_name"), monkeypatch)
    elif request.param == "mariadb":
        yield from _mariadb(request.getfixturevalue("mariadb_name"), monkeypatch)
    else:
        yield from _sqlite(tmp_path / "source.db", monkeypatch)


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Db]:
    """SQLite only, behind the connection ``seed_db``."""
    yield from _sqlite(tmp_path / "source.db", monkeypatch)


def seed(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"countries": COUNTRIES, "weeks": WEEKS, "skus_per_country": SKUS, "chunk_rows": CHUNK_ROWS}
    return synthetic_seed.seed_database(CONN_ID, **(args | kwargs))


def test_seeds_the_sales_table(db: Db, capsys: pytest.CaptureFixture[str]) -> None:
    summary = seed()
    assert summary["rows"] == ROWS
    assert summary["chunks"] == 5
    assert (summary["first_week"], summary["last_week"]) == ("2025-01-06", "2025-05-19")
    assert db.query("SELECT COUNT(*) FROM sales") == [(ROWS,)]
    types = db.types()
    assert set(types) == {"id", *synthetic_seed.SEED_COLUMNS}
    assert {k: types[k] for k in TYPES[db.family]} == TYPES[db.family]
    assert sorted(r[0] for r in db.query("SELECT DISTINCT country FROM sales")) == sorted(COUNTRIES)
    nulls = " OR ".join(f"{c} IS NULL" for c in ("id", *synthetic_seed.SEED_COLUMNS))
    assert db.query(f"SELECT COUNT(*) FROM sales WHERE {nulls}") == [(0,)]  # noqa: S608
    bad = "units_sold < 0 OR units_sold > stock OR discount < 0 OR discount > 0.5 OR days_to_season_end < 1"
    assert db.query(f"SELECT COUNT(*) FROM sales WHERE {bad}") == [(0,)]  # noqa: S608
    assert db.query("SELECT COUNT(*) FROM (SELECT week, country, sku FROM sales GROUP BY week, country, sku) t") == [
        (ROWS,)
    ]
    weeks = db.query("SELECT week, MIN(id), MAX(id), COUNT(*) FROM sales GROUP BY week ORDER BY week")
    days = [dt.date.fromisoformat(str(w)) for w, *_ in weeks]
    assert days == [dt.date(2025, 1, 6) + dt.timedelta(weeks=k) for k in range(WEEKS)]
    assert all(n == len(COUNTRIES) * SKUS for *_, n in weeks)
    # The id: unique, and every chunk's ids above the previous chunk's (a usable ingest watermark).
    assert db.query("SELECT COUNT(DISTINCT id), MIN(id) >= 1 FROM sales") == [(ROWS, 1)]
    chunks = [weeks[k : k + WEEKS_PER_CHUNK] for k in range(0, WEEKS, WEEKS_PER_CHUNK)]
    for earlier, later in itertools.pairwise(chunks):
        assert max(hi for _, _, hi, _ in earlier) < min(lo for _, lo, _, _ in later)
    assert SECRET not in capsys.readouterr().out + json.dumps(summary)


def test_the_same_seed_gives_the_same_rows_whatever_the_chunk_size(db: Db) -> None:
    seed(table="sales", replace=True)
    seed(table="sales_b", chunk_rows=1_000_000)
    seed(table="sales_c", seed=1)
    first = db.rows("sales")
    assert len(first) == ROWS
    assert first == db.rows("sales_b")
    assert first != db.rows("sales_c")


def test_a_table_with_rows_is_refused_unless_replaced(db: Db) -> None:
    seed(replace=True)
    with pytest.raises(BadInputError, match=f"table .*sales already has {ROWS} row\\(s\\); seed with replace=True"):
        seed()
    assert db.query("SELECT COUNT(*) FROM sales") == [(ROWS,)]
    assert seed(replace=True, weeks=2)["rows"] == 2 * len(COUNTRIES) * SKUS
    assert db.query("SELECT COUNT(*), MIN(id) FROM sales") == [(2 * len(COUNTRIES) * SKUS, 1)], "a new table"


def test_cli_seeds_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    env = {
        "AIRFLOW_CONN_CLI_SEED": json.dumps({"conn_type": "sqlite", "host": str(path)}),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "PYTHONPATH": str(ROOT),
    }
    args = [sys.executable, "-m", "airflow_ml_provider.jobs.synthetic", "seed", "--conn-id", "cli_seed",
            "--rows", "9000", "--weeks", "10", "--countries", "DE,FR,IT", "--seed", "4"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "synthetic: seeded main.sales rows=9000 countries=3 skus_per_country=300 weeks=10" in proc.stdout
    with sqlite3.connect(path) as conn:
        counts = conn.execute("SELECT COUNT(*), COUNT(DISTINCT country), MAX(id) FROM sales").fetchone()
    assert counts == (9000, 3, 9000)
    again = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)
    assert again.returncode == 2
    assert "synthetic: error: table main.sales already has 9000 row(s)" in again.stdout


def test_the_seeded_table_ingested_is_the_training_jobs_input(sqlite_db: Db, tmp_path: Path) -> None:
    """SqlIngestOperator copies the 8 weeks before a week, partitioned by country, into
    ``{root}/{week}/sales``; the training job trains on it and prices only SKUs still on sale."""
    from airflow_ml_provider.operators.ingest import SqlIngestOperator

    db = sqlite_db
    seed(countries=["DE", "FR"], weeks=30, skus_per_country=80)
    week, since = "2025-07-28", "2025-06-02"
    lake = tmp_path / "lake"
    query = (
        "SELECT country, sku, week_of_year, base_price, discount, stock, days_to_season_end, units_sold "  # noqa: S608
        f"FROM sales WHERE week >= '{since}' AND week < '{week}'"
    )
    SqlIngestOperator(
        task_id="ingest", conn_id=CONN_ID, query=query, output_path=str(lake / week / "sales"), partition_by="country"
    ).execute({})
    result = tmp_path / "result.json"
    args = ["--data-root", str(lake), "--week", week, "--countries", "DE,FR", "--result-path", str(result)]
    assert markdown_train.main(args) == 0
    countries = json.loads(result.read_text())["countries"]
    for country in ("DE", "FR"):
        last_week = f"FROM sales WHERE country = '{country}' AND week = '2025-07-21'"
        on_sale = db.query(f"SELECT COUNT(*) {last_week} AND days_to_season_end > 7")
        assert countries[country]["skus"] == on_sale[0][0]
        assert 0.0 <= countries[country]["mean_markdown"] < 0.3
