#!/bin/sh
# Entry point of the compose stack's Redis image (scripts/images/redis/Dockerfile): redis-server with
# a password, on $STACK_HOST:$REDIS_PORT, nothing saved to disk.
#
# Environment: REDIS_PASSWORD (required; letters, digits and . _ ~ - only: it goes into the broker
# URL), STACK_HOST (127.0.0.1), REDIS_PORT (6380). The configuration, password included, reaches
# the server on its standard input (`redis-server -`), never a command line.
set -eu

STACK_HOST=${STACK_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6380}

. /usr/local/lib/stack-secret.sh
require_secret redis.sh REDIS_PASSWORD

exec redis-server - <<CONF
bind $STACK_HOST
port $REDIS_PORT
protected-mode yes
requirepass $REDIS_PASSWORD
save ""
appendonly no
dir /var/lib/redis
loglevel notice
CONF
