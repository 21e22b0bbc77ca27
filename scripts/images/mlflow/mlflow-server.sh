#!/bin/sh
# Entry point of the compose stack's MLflow image (scripts/images/mlflow/Dockerfile): `mlflow server`
# with its backend store in the stack's PostgreSQL (database and role `mlflow`) and proxied artifacts
# under /mlflow/artifacts.
#
# Environment: MLFLOW_DB_PASSWORD (required; letters, digits and . _ ~ - only), STACK_HOST (127.0.0.1:
# the address to listen on, and PostgreSQL's), POSTGRES_PORT (5433), MLFLOW_PORT (5000),
# MLFLOW_ALLOWED_HOSTS (optional: Host headers to accept besides localhost, 127.0.0.1 and private
# addresses, e.g. `mlflow.corp,mlflow.corp:5000`; MLflow 3 answers 403 to any other).
# The store's URI (with the password) goes to the server as MLFLOW_BACKEND_STORE_URI, not on its
# command line. Like the test bed (scripts/testbed/mlflow_bed.py): one uvicorn worker and no job
# runner, about 0.5 GB instead of 2.5 GB.
set -eu

STACK_HOST=${STACK_HOST:-127.0.0.1}
POSTGRES_PORT=${POSTGRES_PORT:-5433}
MLFLOW_PORT=${MLFLOW_PORT:-5000}

. /usr/local/lib/stack-secret.sh
require_secret mlflow-server.sh MLFLOW_DB_PASSWORD

export MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://mlflow:${MLFLOW_DB_PASSWORD}@${STACK_HOST}:${POSTGRES_PORT}/mlflow"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
unset MLFLOW_DB_PASSWORD

set -- --host "$STACK_HOST" --port "$MLFLOW_PORT" --workers 1 \
    --serve-artifacts --artifacts-destination /mlflow/artifacts
if [ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]; then
    set -- "$@" --allowed-hosts "localhost,localhost:$MLFLOW_PORT,127.0.0.1,127.0.0.1:$MLFLOW_PORT,$MLFLOW_ALLOWED_HOSTS"
fi
exec mlflow server "$@"
