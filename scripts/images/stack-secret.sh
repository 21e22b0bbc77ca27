# Sourced by the entry points of the compose stack's images (postgres.sh, mariadb.sh, redis.sh,
# mlflow-server.sh; each Dockerfile copies this file to /usr/local/lib/stack-secret.sh).
#
#   require_secret SCRIPT NAME...   exit 2 naming NAME when it is empty, or holds anything but letters,
#                                   digits and . _ ~ - (database and broker passwords also go into URLs
#                                   unescaped); SCRIPT prefixes the message.

require_secret() {
    script=$1
    shift
    for name in "$@"; do
        eval "value=\${$name:-}"
        # shellcheck disable=SC2154  # set by the eval
        if [ -z "$value" ]; then
            echo "$script: $name is not set (see .env.example)" >&2
            exit 2
        fi
        case "$value" in
        *[!A-Za-z0-9._~-]*)
            echo "$script: $name may hold only letters, digits and . _ ~ - (it also goes into URLs)" >&2
            exit 2
            ;;
        esac
    done
}
