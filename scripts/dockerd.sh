#!/usr/bin/env bash
# Docker engine of the test bed.
#
#   scripts/dockerd.sh start   idempotent: if the API on /var/run/docker.sock answers, do nothing;
#                              else start dockerd in the background (log + pid file under
#                              .testbed/dockerd/) and wait until its API answers.
#   scripts/dockerd.sh stop    stop the dockerd that *this script* started (pid file); never another.
#   scripts/dockerd.sh swarm   idempotent `docker swarm init --advertise-addr 127.0.0.1`.
#   scripts/dockerd.sh status  print whether the API answers and the swarm state.
#
# This machine has no bridge/iptables for containers and no IPVS: dockerd runs with
# --iptables=false --bridge=none, containers use --network=host or none, and swarm services
# must not rely on VIPs or published ports. overlay2 falls back to vfs (with a warning) when the
# filesystem under /var/lib/docker cannot hold it. DOCKERD_STORAGE_DRIVER forces a driver.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR="$ROOT/.testbed/dockerd"
LOG="$STATE_DIR/dockerd.log"
PIDFILE="$STATE_DIR/dockerd.pid"
SOCK=/var/run/docker.sock
START_TIMEOUT=${DOCKERD_START_TIMEOUT:-60}

# The distribution's CLI matches the distribution's engine (20.10, API 1.41); any other on PATH works too.
if [[ -x /usr/bin/docker ]]; then
    DOCKER=/usr/bin/docker
else
    DOCKER=$(command -v docker || true)
fi
export DOCKER_HOST="unix://$SOCK"

log() { echo "dockerd.sh: $*" >&2; }

api_up() {
    [[ -n $DOCKER && -S $SOCK ]] || return 1
    timeout 10 "$DOCKER" info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

our_pid() {
    # Prints the pid of the dockerd this script started, if it still runs.
    [[ -f $PIDFILE ]] || return 1
    local pid
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]] || return 1
    echo "$pid"
}

dockerd_bin() {
    command -v dockerd 2>/dev/null || { [[ -x /usr/sbin/dockerd ]] && echo /usr/sbin/dockerd; } || true
}

# launch DRIVER: start dockerd in the background (own session, detached from our stdio); prints its pid.
launch() {
    local driver=$1 bin
    bin=$(dockerd_bin)
    [[ -n $bin ]] || {
        log "dockerd not found (run scripts/system_deps.sh: package docker.io)"
        return 1
    }
    {
        echo "=== $(date -Is) starting $bin --storage-driver=$driver --iptables=false --bridge=none"
    } >>"$LOG"
    setsid "$bin" --storage-driver="$driver" --iptables=false --bridge=none \
        --host="unix://$SOCK" </dev/null >>"$LOG" 2>&1 &
    echo $!
}

# wait_up PID: 0 once the API answers; 1 if the daemon died; 2 on timeout.
wait_up() {
    local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        api_up && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.3
    done
    return 2
}

fail_with_log() {
    log "$1"
    log "last lines of $LOG:"
    tail -n 40 "$LOG" >&2 || true
    exit 1
}

cmd_start() {
    if api_up; then
        return 0
    fi
    [[ -n $DOCKER ]] || fail_with_log "no docker CLI found (run scripts/system_deps.sh: package docker.io)"
    if [[ $(id -u) -ne 0 ]]; then
        log "the Docker API on $SOCK does not answer and only root can start dockerd here"
        exit 1
    fi
    mkdir -p "$STATE_DIR"
    local pid
    if pid=$(our_pid); then
        # Ours, but not answering yet (still starting?): give it the usual time.
        log "dockerd (pid $pid) started earlier is not answering yet; waiting"
        if wait_up "$pid"; then return 0; fi
        fail_with_log "dockerd (pid $pid) does not answer on $SOCK"
    fi
    local driver=${DOCKERD_STORAGE_DRIVER:-overlay2} rc=0 mark
    touch "$LOG"
    mark=$(wc -l <"$LOG")
    pid=$(launch "$driver")
    echo "$pid" >"$PIDFILE"
    wait_up "$pid" || rc=$?
    if ((rc == 1)) && [[ $driver == overlay2 && -z ${DOCKERD_STORAGE_DRIVER:-} ]] &&
        tail -n +"$((mark + 1))" "$LOG" | grep -qiE 'graphdriver|overlay|storage.driver|driver not supported'; then
        log "WARNING: overlay2 does not work on this filesystem; falling back to the (slow, big) vfs driver"
        driver=vfs
        pid=$(launch "$driver")
        echo "$pid" >"$PIDFILE"
        rc=0
        wait_up "$pid" || rc=$?
    fi
    case $rc in
        0) log "dockerd up (pid $pid, storage driver $driver, log $LOG)" ;;
        1)
            rm -f "$PIDFILE"
            fail_with_log "dockerd exited before its API answered"
            ;;
        *) fail_with_log "dockerd's API did not answer within ${START_TIMEOUT}s (pid $pid still runs; '$0 stop' ends it)" ;;
    esac
}

cmd_stop() {
    local pid
    if ! pid=$(our_pid); then
        rm -f "$PIDFILE"
        log "no dockerd started by this script is running; nothing to stop"
        return 0
    fi
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.3; done
    if kill -0 "$pid" 2>/dev/null; then
        log "dockerd (pid $pid) did not stop within 30s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    log "dockerd (pid $pid) stopped"
}

swarm_state() {
    "$DOCKER" info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null
}

cmd_swarm() {
    api_up || fail_with_log "the Docker API does not answer; run '$0 start' first"
    local state="" control=""
    read -r state control < <(swarm_state) || true
    if [[ $state == active ]]; then
        [[ $control == true ]] && return 0
        log "this node is an active swarm *worker*, not a manager; leave that swarm first (docker swarm leave)"
        exit 1
    fi
    if [[ $state != inactive ]]; then
        # pending / error / locked: a half-made swarm of an earlier run; start over.
        log "swarm state is '$state'; leaving it and initialising a new single-node swarm"
        "$DOCKER" swarm leave --force >/dev/null 2>&1 || true
    fi
    local out
    if ! out=$("$DOCKER" swarm init --advertise-addr 127.0.0.1 2>&1); then
        # A concurrent caller may have won the race.
        read -r state control < <(swarm_state) || true
        [[ $state == active && $control == true ]] && return 0
        log "docker swarm init failed: $out"
        exit 1
    fi
    log "single-node swarm initialised (manager at 127.0.0.1)"
}

cmd_status() {
    if api_up; then
        echo "api: up ($("$DOCKER" info --format '{{.ServerVersion}} {{.Driver}}'))"
        echo "swarm: $(swarm_state)"
    else
        echo "api: down"
    fi
    local pid
    if pid=$(our_pid); then echo "ours: pid $pid"; else echo "ours: none"; fi
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    swarm) cmd_swarm ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 start|stop|swarm|status" >&2
        exit 2
        ;;
esac
