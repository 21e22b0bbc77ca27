#!/bin/sh
# Entry point of the compose stack's PostgreSQL image (scripts/images/postgres/Dockerfile).
#
# On the first start (an empty $PGDATA volume): initdb with the superuser `postgres`'s password,
# password (scram-sha-256) authentication for every TCP client, then the roles and databases
# `airflow`, `erp` and `mlflow`, each owned by the role of the same name. The SQL runs on a server
# that listens on no TCP port, so the health check (pg_isready over TCP) stays red until it is done.
# Later starts keep the data as it is (changing a password in .env then needs ALTER ROLE by hand).
#
# Environment: POSTGRES_PASSWORD, AIRFLOW_DB_PASSWORD, ERP_DB_PASSWORD, MLFLOW_DB_PASSWORD (required,
# letters, digits and . _ ~ - only: they also go into connection URLs), STACK_HOST (127.0.0.1: the
# address to listen on), POSTGRES_PORT (5433), POSTGRES_MAX_CONNECTIONS (200).
# Passwords reach psql through \getenv, never a command line.
set -eu

STACK_HOST=${STACK_HOST:-127.0.0.1}
POSTGRES_PORT=${POSTGRES_PORT:-5433}
POSTGRES_MAX_CONNECTIONS=${POSTGRES_MAX_CONNECTIONS:-200}
PGDATA=${PGDATA:-/var/lib/postgresql/data}

. /usr/local/lib/stack-secret.sh
require_secret postgres.sh POSTGRES_PASSWORD AIRFLOW_DB_PASSWORD ERP_DB_PASSWORD MLFLOW_DB_PASSWORD

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "postgres.sh: initialising $PGDATA" >&2
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    {
        echo "host all all 0.0.0.0/0 scram-sha-256"
        echo "host all all ::/0 scram-sha-256"
    } >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 --no-psqlrc -q -h /var/run/postgresql -U postgres -d postgres <<'SQL'
\getenv airflow_pw AIRFLOW_DB_PASSWORD
\getenv erp_pw ERP_DB_PASSWORD
\getenv mlflow_pw MLFLOW_DB_PASSWORD
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE ROLE erp LOGIN PASSWORD :'erp_pw';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE DATABASE erp OWNER erp;
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE airflow, erp, mlflow FROM PUBLIC;
SQL
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "postgres.sh: databases airflow, erp and mlflow created" >&2
fi

exec postgres -D "$PGDATA" -c listen_addresses="$STACK_HOST" -c port="$POSTGRES_PORT" \
    -c unix_socket_directories=/var/run/postgresql -c max_connections="$POSTGRES_MAX_CONNECTIONS"
