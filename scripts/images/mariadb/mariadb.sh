#!/bin/sh
# Entry point of the compose stack's MariaDB image (scripts/images/mariadb/Dockerfile).
#
# On the first start (an empty data volume): mariadb-install-db (root and the OS user `mysql` log in
# through the unix socket only: no root password exists), then the database $SOURCE_DB_NAME and the user of the same name
# with $SOURCE_DB_PASSWORD and every privilege on it. The SQL runs on a server with networking off,
# so the health check (mariadb-admin ping over TCP) stays red until it is done. Later starts keep the
# data as it is.
#
# Environment: SOURCE_DB_PASSWORD (required; letters, digits and . _ ~ - only: it is written into SQL
# and connection URLs), SOURCE_DB_NAME (shop), STACK_HOST (127.0.0.1: the address to listen on),
# MARIADB_PORT (3307). The password reaches the client on its standard input, never a command line.
set -eu

STACK_HOST=${STACK_HOST:-127.0.0.1}
MARIADB_PORT=${MARIADB_PORT:-3307}
SOURCE_DB_NAME=${SOURCE_DB_NAME:-shop}
DATADIR=${MARIADB_DATADIR:-/var/lib/mariadb-data}
SOCKET=/run/mysqld/mysqld.sock

. /usr/local/lib/stack-secret.sh
require_secret mariadb.sh SOURCE_DB_PASSWORD
case "$SOURCE_DB_NAME" in
"" | *[!A-Za-z0-9_]*)
    echo "mariadb.sh: SOURCE_DB_NAME must be letters, digits and _ (got '$SOURCE_DB_NAME')" >&2
    exit 2
    ;;
esac

if [ ! -d "$DATADIR/mysql" ]; then
    echo "mariadb.sh: initialising $DATADIR" >&2
    mariadb-install-db --datadir="$DATADIR" --user=mysql --auth-root-authentication-method=socket \
        --auth-root-socket-user=mysql --skip-test-db --skip-name-resolve >/dev/null
    mariadbd --datadir="$DATADIR" --skip-networking --socket="$SOCKET" &
    pid=$!
    tries=0
    until mariadb-admin --socket="$SOCKET" --user=mysql --silent ping >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -ge 120 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "mariadb.sh: the initialising server did not start" >&2
            exit 1
        fi
        sleep 0.5
    done
    mariadb --socket="$SOCKET" --user=mysql <<SQL
CREATE DATABASE \`$SOURCE_DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER '$SOURCE_DB_NAME'@'%' IDENTIFIED BY '$SOURCE_DB_PASSWORD';
GRANT ALL PRIVILEGES ON \`$SOURCE_DB_NAME\`.* TO '$SOURCE_DB_NAME'@'%';
FLUSH PRIVILEGES;
SQL
    mariadb-admin --socket="$SOCKET" --user=mysql shutdown
    wait "$pid" || true
    echo "mariadb.sh: database $SOURCE_DB_NAME and its user created" >&2
fi

exec mariadbd --datadir="$DATADIR" --socket="$SOCKET" --bind-address="$STACK_HOST" --port="$MARIADB_PORT" \
    --skip-name-resolve --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci
