"""``airflow-init`` of the compose stack: everything the stack needs once before Airflow starts.

Run by the one-shot ``airflow-init`` service of ``docker-compose.yaml`` (``python
/usr/local/lib/airflow-ml-stack/stack_init.py``), in the Airflow image, after PostgreSQL, MariaDB,
Redis and ``hdfs-init`` are ready; the other Airflow services start once it exited 0. Every step is
idempotent, so a restart of the stack (``docker-compose up`` again) runs it again harmlessly:

1. ``airflow db migrate`` (Airflow's metadata database in PostgreSQL);
2. the admin's password: the SimpleAuthManager's passwords file (``AIRFLOW_ADMIN_USER`` /
   ``AIRFLOW_ADMIN_PASSWORD``) on the ``airflow-auth`` volume the api-server reads;
3. the pools (``airflow pools import``): ``ml_pipeline_spark`` and markdown_pricing's two, plus any
   in ``STACK_POOLS`` (``name=slots,...``);
4. the connections (``airflow connections import --overwrite``): the pipeline's source (MariaDB) and
   ERP (PostgreSQL) databases, the lake (HDFS), MLflow and Spark, all at ``STACK_HOST`` (the stack
   runs with host networking);
5. the ERP table, from ``ERP_TABLE_DDL`` of ``dags/ml_pipeline.py``, when it does not exist;
6. the source table: seeded with synthetic sales (``python -m airflow_ml_provider.jobs.synthetic
   seed``) when it does not exist and ``STACK_SEED_ROWS`` is not 0.

Hand-written because Apache's image and its entry point (``_AIRFLOW_DB_MIGRATE``,
``_AIRFLOW_WWW_USER_CREATE``) are not used here: the image is built from the repository on a Debian
base, and the auth manager is Airflow's SimpleAuthManager, whose users live in a file. Secrets come
from the environment (``.env``); the file of connections handed to the CLI lives for the call only
(mode 0600), and any output quoted in an error has every secret replaced by ``***``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE_CONN_ID = "ml_pipeline_source"
ERP_CONN_ID = "ml_pipeline_erp"
HDFS_CONN_ID = "ml_hdfs_default"
MLFLOW_CONN_ID = "ml_mlflow_default"
SPARK_CONN_ID = "spark_default"
#: Pools every stack gets (name -> slots): the Spark applications of ml_pipeline (one at a time on a
#: small machine), markdown_pricing's container jobs and its ERP writers.
DEFAULT_POOLS = {"ml_pipeline_spark": 1, "markdown_pricing": 4, "markdown_pricing_erp": 2}
PASSWORDS_FILE = Path("/opt/airflow/auth/passwords.json")
DAGS_FOLDER = Path("/opt/airflow/dags")
#: Letters, digits and . _ ~ -: database and broker passwords also go into URLs unescaped.
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")
_TABLE = re.compile(r"^[a-z_][a-z0-9_]*$")


class StackInitError(RuntimeError):
    """A step failed; the message names it and what to do (secrets replaced by ``***``)."""


@dataclass(frozen=True)
class Settings:
    """What the init reads from its environment (see ``.env.example`` for each variable).

    :param host: ``STACK_HOST``, where every service listens and is reached.
    :param ports: the services' ports, by variable name (``POSTGRES_PORT``, ``MARIADB_PORT``, ...).
    :param source_db: ``SOURCE_DB_NAME``, the MariaDB database, also its user.
    :param source_password: ``SOURCE_DB_PASSWORD``.
    :param erp_password: ``ERP_DB_PASSWORD`` (database and role ``erp`` on PostgreSQL).
    :param hdfs_user: ``HDFS_USER``, the lake connection's login, owner of the lake.
    :param admin_user: ``AIRFLOW_ADMIN_USER``.
    :param admin_password: ``AIRFLOW_ADMIN_PASSWORD``.
    :param pools: pool name -> slots (:data:`DEFAULT_POOLS` updated with ``STACK_POOLS``).
    :param source_table: ``STACK_SOURCE_TABLE``, the table seeded and ingested (``sales``).
    :param erp_table: ``STACK_ERP_TABLE``, the table ``write_erp`` fills (``ml_pipeline_predictions``).
    :param seed_rows: ``STACK_SEED_ROWS``, about how many source rows to seed (0: none).
    :param seed_countries: ``STACK_SEED_COUNTRIES``, e.g. ``DE,FR,IT``.
    """

    host: str
    ports: Mapping[str, int]
    source_db: str
    source_password: str
    erp_password: str
    hdfs_user: str
    admin_user: str
    admin_password: str
    pools: Mapping[str, int]
    source_table: str
    erp_table: str
    seed_rows: int
    seed_countries: str

    def secrets(self) -> list[str]:
        """Every secret value, for redaction."""
        return [self.source_password, self.erp_password, self.admin_password]


PORTS = {
    "POSTGRES_PORT": 5433,
    "MARIADB_PORT": 3307,
    "HDFS_HTTP_PORT": 9870,
    "HDFS_RPC_PORT": 8020,
    "MLFLOW_PORT": 5000,
    "SPARK_MASTER_PORT": 7077,
}


def _required(env: Mapping[str, str], name: str, *, url_safe: bool) -> str:
    value = env.get(name, "")
    if not value:
        raise StackInitError(f"{name} is not set: give it a value in .env (see .env.example)")
    if url_safe and not _URL_SAFE.match(value):
        raise StackInitError(f"{name} may hold only letters, digits and . _ ~ - (it also goes into URLs)")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "") or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise StackInitError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise StackInitError(f"{name}={value} must be at least {minimum}")
    return value


def parse_pools(text: str) -> dict[str, int]:
    """``STACK_POOLS`` (``name=slots,name=slots``) as a dict; raises :class:`StackInitError` naming a bad entry."""
    pools: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, slots = item.partition("=")
        if not sep or not re.match(r"^[A-Za-z0-9_.-]+$", name.strip()) or not slots.strip().isdigit():
            raise StackInitError(f"STACK_POOLS entry {item!r}: write name=slots, e.g. ml_pipeline_spark=2")
        pools[name.strip()] = int(slots)
    return pools


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Read and check the init's environment; :class:`StackInitError` names the first bad variable."""
    source_db = env.get("SOURCE_DB_NAME", "") or "shop"
    defaults = {"STACK_SOURCE_TABLE": "sales", "STACK_ERP_TABLE": "ml_pipeline_predictions"}
    tables = {name: env.get(name, "") or default for name, default in defaults.items()}
    for name, table in tables.items():
        if not _TABLE.match(table):
            raise StackInitError(f"{name}={table!r}: use a lower-case name of letters, digits and _")
    return Settings(
        host=env.get("STACK_HOST", "") or "127.0.0.1",
        ports={name: _int(env, name, default, minimum=1) for name, default in PORTS.items()},
        source_db=source_db,
        source_password=_required(env, "SOURCE_DB_PASSWORD", url_safe=True),
        erp_password=_required(env, "ERP_DB_PASSWORD", url_safe=True),
        hdfs_user=env.get("HDFS_USER", "") or "etl",
        admin_user=env.get("AIRFLOW_ADMIN_USER", "") or "admin",
        admin_password=_required(env, "AIRFLOW_ADMIN_PASSWORD", url_safe=False),
        pools={**DEFAULT_POOLS, **parse_pools(env.get("STACK_POOLS", ""))},
        source_table=tables["STACK_SOURCE_TABLE"],
        erp_table=tables["STACK_ERP_TABLE"],
        seed_rows=_int(env, "STACK_SEED_ROWS", 20_000),
        seed_countries=env.get("STACK_SEED_COUNTRIES", "") or "DE,FR,IT",
    )


def connections(s: Settings) -> dict[str, dict[str, Any]]:
    """The connections to import, in ``airflow connections import``'s JSON layout (conn_id -> fields)."""
    host, ports = s.host, s.ports
    return {
        SOURCE_CONN_ID: {
            "conn_type": "mysql",
            "host": host,
            "port": ports["MARIADB_PORT"],
            "schema": s.source_db,
            "login": s.source_db,
            "password": s.source_password,
        },
        ERP_CONN_ID: {
            "conn_type": "postgres",
            "host": host,
            "port": ports["POSTGRES_PORT"],
            "schema": "erp",
            "login": "erp",
            "password": s.erp_password,
        },
        HDFS_CONN_ID: {
            "conn_type": "ml_hdfs",
            "host": host,
            "port": ports["HDFS_HTTP_PORT"],
            "login": s.hdfs_user,
            "extra_dejson": {"rpc_port": str(ports["HDFS_RPC_PORT"])},
        },
        MLFLOW_CONN_ID: {"conn_type": "ml_mlflow", "host": f"http://{host}:{ports['MLFLOW_PORT']}"},
        SPARK_CONN_ID: {
            "conn_type": "spark",
            "host": f"spark://{host}",
            "port": ports["SPARK_MASTER_PORT"],
            "extra_dejson": {"deploy-mode": "client"},
        },
    }


def pools_json(s: Settings) -> dict[str, dict[str, Any]]:
    """The pools to import, in ``airflow pools import``'s JSON layout."""
    return {
        name: {"slots": slots, "description": f"compose stack pool {name}", "include_deferred": False}
        for name, slots in sorted(s.pools.items())
    }


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def run(cmd: Sequence[str], what: str, secrets: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Run ``cmd``; on failure raise :class:`StackInitError` naming ``what`` with the output's tail, redacted."""
    started = time.monotonic()
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False, env=dict(env or os.environ))
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise StackInitError(f"{what} failed (exit {done.returncode}):\n{redact(tail, secrets)}")
    log(f"{what}: done in {time.monotonic() - started:.1f} s")


def import_json(kind: str, payload: Mapping[str, Any], s: Settings, extra_args: Sequence[str] = ()) -> None:
    """``airflow <kind> import`` of ``payload`` through a private temporary file, removed afterwards."""
    fd, name = tempfile.mkstemp(prefix=f"stack-{kind}-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp made it 0600
            json.dump(payload, f)
        run(["airflow", kind, "import", *extra_args, name], f"airflow {kind} import", s.secrets())
    finally:
        Path(name).unlink(missing_ok=True)


def write_passwords(s: Settings, path: Path = PASSWORDS_FILE) -> None:
    """The SimpleAuthManager's passwords file: ``{admin_user: admin_password}``, mode 0600, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        json.dump({s.admin_user: s.admin_password}, f)
    tmp.replace(path)
    log(f"admin user {s.admin_user!r}: password set")


def erp_table_ddl(dags_folder: Path = DAGS_FOLDER) -> str | None:
    """``ERP_TABLE_DDL`` of ``ml_pipeline.py`` in the DAGs folder, or None (no such file or constant)."""
    path = dags_folder / "ml_pipeline.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_ml_pipeline_for_stack_init", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ddl = getattr(module, "ERP_TABLE_DDL", None)
    return ddl if isinstance(ddl, str) else None


def ensure_erp_table(s: Settings) -> None:
    """Create ``s.erp_table`` in the ERP database from the DAG's DDL when the table does not exist."""
    ddl = erp_table_ddl()
    if ddl is None:
        log("ERP table: dags/ml_pipeline.py has no ERP_TABLE_DDL; skipped")
        return
    import psycopg2

    conn = psycopg2.connect(
        host=s.host,
        port=s.ports["POSTGRES_PORT"],
        dbname="erp",
        user="erp",
        password=s.erp_password,
        connect_timeout=10,
    )
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (s.erp_table,))
            row = cur.fetchone()
            if row is not None and row[0] is not None:
                log(f"ERP table {s.erp_table}: exists")
                return
            cur.execute(ddl.format(table=s.erp_table))
    finally:
        conn.close()
    log(f"ERP table {s.erp_table}: created")


def source_table_exists(s: Settings) -> bool:
    """Whether the source table is in the MariaDB database already."""
    import MySQLdb

    conn = MySQLdb.connect(
        host=s.host,
        port=s.ports["MARIADB_PORT"],
        user=s.source_db,
        passwd=s.source_password,
        db=s.source_db,
        connect_timeout=10,
    )
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            (s.source_db, s.source_table),
        )
        row = cur.fetchone()
        return bool(row and row[0])
    finally:
        conn.close()


def seed_source(s: Settings) -> None:
    """Seed the source table with synthetic sales unless it exists or seeding is off (``STACK_SEED_ROWS=0``)."""
    if s.seed_rows == 0:
        log("source table: seeding is off (STACK_SEED_ROWS=0)")
        return
    if source_table_exists(s):
        log(f"source table {s.source_db}.{s.source_table}: exists, not seeded again")
        return
    env = {**os.environ, f"AIRFLOW_CONN_{SOURCE_CONN_ID.upper()}": json.dumps(connections(s)[SOURCE_CONN_ID])}
    cmd = [sys.executable, "-m", "airflow_ml_provider.jobs.synthetic", "seed", "--conn-id", SOURCE_CONN_ID,
           "--table", s.source_table, "--rows", str(s.seed_rows), "--countries", s.seed_countries]  # fmt: skip
    run(cmd, f"seeding {s.source_db}.{s.source_table} (~{s.seed_rows} rows)", s.secrets(), env)


def log(message: str) -> None:
    """One progress line on stderr (the container's log)."""
    print(f"stack-init: {message}", file=sys.stderr, flush=True)


def main(env: Mapping[str, str] | None = None) -> int:
    """Run every step; 0 when all succeeded, 1 (with the failing step named) otherwise."""
    started = time.monotonic()
    try:
        s = settings_from_env(os.environ if env is None else env)
        run(["airflow", "db", "migrate"], "airflow db migrate", s.secrets())
        write_passwords(s)
        import_json("pools", pools_json(s), s)
        import_json("connections", connections(s), s, ["--overwrite"])
        ensure_erp_table(s)
        seed_source(s)
    except StackInitError as e:
        log(f"error: {e}")
        return 1
    except Exception as e:  # noqa: BLE001  # a database or import error: the step and the reason, redacted
        secrets = [v for k, v in os.environ.items() if k.endswith(("_PASSWORD", "_SECRET", "_KEY"))]
        log(f"error: {type(e).__name__}: {redact(str(e), secrets)}")
        return 1
    log(f"the stack is initialised ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
