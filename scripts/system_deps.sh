#!/usr/bin/env bash
# Idempotent installer of the Debian packages the test beds need.
#
# Each need is one function that only *records* what is missing (a dpkg or `command -v`
# check, no network); install_missing then runs `apt-get update` + `apt-get install` once,
# and only when something is missing. Silent and fast (well under a second) when all is there.
#
# To add a need: write a `need_<what>` function using need_pkgs / need_cmd, and add it to NEEDS.
set -euo pipefail

MISSING=()

# --- helpers ------------------------------------------------------------------------------

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# need_pkgs PKG...: every package not installed is recorded as missing.
need_pkgs() {
    local p
    for p in "$@"; do
        have_pkg "$p" || MISSING+=("$p")
    done
}

# need_cmd CMD PKG...: if CMD is not on PATH, the packages are recorded as missing.
need_cmd() {
    local cmd=$1
    shift
    command -v "$cmd" >/dev/null 2>&1 || MISSING+=("$@")
}

# --- needs --------------------------------------------------------------------------------

# HDFS test bed: the NameNode/DataNode JVMs (Hadoop 2.7.3 runs on Java 17).
need_java() { need_cmd java openjdk-17-jre-headless; }

# HDFS test bed: the NameNode's WebHDFS needs Jersey 1 (Spark's jars only have Jersey 2);
# these pull in libjersey1-core-java and libjsr311-api-java (/usr/share/java/*.jar).
need_jersey1() { need_pkgs libjersey1-server-java libjersey1-servlet-java; }

# HDFS test bed: daemons run under `setpriv --pdeathsig` so they die with their starter.
need_setpriv() { need_cmd setpriv util-linux; }

# Kerberos extras (gssapi / krb5 wheels may build from source): krb5-config and headers.
need_krb5_dev() { need_pkgs libkrb5-dev; }

# The mysql extra: the mysql provider depends on mysqlclient, which has no Linux wheel; pip builds it
# with a C compiler against the MariaDB client library, found through pkg-config.
need_mysqlclient_build() {
    need_pkgs libmariadb-dev pkg-config
    need_cmd gcc gcc
}

# Docker test bed: the engine (dockerd + CLI + containerd + runc); scripts/dockerd.sh starts it.
need_docker() { need_cmd dockerd docker.io; }
# Compose stack test (tests/integration/test_compose_stack.py): Debian's docker-compose 1.29.
need_compose() { need_cmd docker-compose docker-compose; }

# Docker test bed: builds the Debian root filesystem of the base image (no registry here).
need_mmdebstrap() { need_cmd mmdebstrap mmdebstrap; }

# Browser test bed (scripts/testbed/browser.py): Debian's Chromium, driven headless by Playwright
# through executable_path=/usr/bin/chromium (no `playwright install`, no browser download).
need_chromium() { need_pkgs chromium; }

NEEDS=(
    need_java
    need_jersey1
    need_setpriv
    need_krb5_dev
    need_mysqlclient_build
    need_docker
    need_compose
    need_mmdebstrap
    need_chromium
)

# --- install ------------------------------------------------------------------------------

install_missing() {
    ((${#MISSING[@]})) || return 0
    local pkgs sudo=()
    mapfile -t pkgs < <(printf '%s\n' "${MISSING[@]}" | awk '!seen[$0]++')
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "system_deps: missing ${pkgs[*]} and not root (no sudo)" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    echo "system_deps: installing ${pkgs[*]}" >&2
    # Slim images drop man dirs, which breaks the openjdk postinst.
    "${sudo[@]}" mkdir -p /usr/share/man/man1
    local log
    log=$(mktemp)
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${pkgs[@]}"; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        echo "system_deps: apt-get failed" >&2
        exit 1
    fi
    rm -f "$log"
}

main() {
    local need
    for need in "${NEEDS[@]}"; do
        "$need"
    done
    install_missing
}

main "$@"
