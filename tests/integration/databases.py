"""Throwaway databases on the machine's PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306).

Each test module that needs a database makes its own with a unique name and drops it at the end, so
the suite leaves the services as it found them. A server that cannot be reached is a missing service
(a failure under ``CI=true``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from tests.conftest import service_unavailable

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
MARIADB_HOST, MARIADB_PORT, MARIADB_ADMIN = "127.0.0.1", 3306, "root"


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database named ``<prefix>_<random>``; dropped (connections closed) at the end.

    :param prefix: the start of its name (letters, digits, ``_``).
    """
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5)
    except Exception as e:
        service_unavailable(f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable: {e}")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@contextlib.contextmanager
def mariadb_database(prefix: str, *, password: str, grant: str) -> Iterator[str]:
    """A new MariaDB database and a user of the same name allowed only on it; both dropped at the end.

    :param prefix: the start of their name (letters, digits, ``_``).
    :param password: the user's password (tests check it never shows).
    :param grant: the privileges the user gets on the database, e.g. ``"SELECT"`` or ``"ALL"``.
    """
    import MySQLdb

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = MySQLdb.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_ADMIN, passwd="", connect_timeout=5)
    except Exception as e:
        service_unavailable(f"MariaDB at {MARIADB_HOST}:{MARIADB_PORT} is not reachable as {MARIADB_ADMIN}: {e}")
    admin.autocommit(True)
    cur = admin.cursor()
    cur.execute(f"CREATE DATABASE `{name}`")
    cur.execute(f"CREATE USER `{name}`@'{MARIADB_HOST}' IDENTIFIED BY %s", (password,))
    cur.execute(f"GRANT {grant} ON `{name}`.* TO `{name}`@'{MARIADB_HOST}'")
    try:
        yield name
    finally:
        cur.execute(f"DROP USER IF EXISTS `{name}`@'{MARIADB_HOST}'")
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
