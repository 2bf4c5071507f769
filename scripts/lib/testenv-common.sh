# Shared settings and helpers for scripts/testenv.sh and scripts/test.sh (sourced, not run).
# The values here are the contract the tests read through test/helpers/env.ts.

KILN_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

KILN_REGISTRY_ADDR=127.0.0.1:5055
KILN_STATE_DIR=/var/lib/kiln-test            # registry storage, dockerd data root, logs
KILN_RUN_DIR=/run/kiln-test                  # sockets, pid files, holders, the lock
KILN_LOG_DIR="$KILN_STATE_DIR/logs"
KILN_DOCKER_SOCK="$KILN_RUN_DIR/docker.sock"
KILN_DOCKER_HOST="unix://$KILN_DOCKER_SOCK"
# Debian's 20.10 client, matching the daemon; /usr/local/bin/docker is someone else's.
KILN_DOCKER_BIN=/usr/bin/docker
KILN_REGISTRY_PID="$KILN_RUN_DIR/registry.pid"
KILN_DOCKERD_PID="$KILN_RUN_DIR/dockerd.pid"
KILN_HOLDERS_DIR="$KILN_RUN_DIR/holders"
# (Not "lock": daemons started by an early version of testenv.sh inherited that one and hold it.)
KILN_LOCK="$KILN_RUN_DIR/testenv.lock"

kiln_log() { echo "testenv: $*" >&2; }
kiln_die() { echo "testenv: error: $*" >&2; exit 1; }

# True when PID is alive and its command line contains WORD: a pid file that survived a reboot
# (/run is not always tmpfs) must not make us signal an unrelated process.
kiln_pid_is() {
  local pid="$1" word="$2"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$word"
}

kiln_pidfile_pid() { [ -s "$1" ] && tr -dc '0-9' <"$1" || true; }

kiln_registry_up() { curl -fsS -o /dev/null --max-time 2 "http://$KILN_REGISTRY_ADDR/v2/" 2>/dev/null; }

kiln_dockerd_up() {
  [ -S "$KILN_DOCKER_SOCK" ] && timeout 10 "$KILN_DOCKER_BIN" -H "$KILN_DOCKER_HOST" info >/dev/null 2>&1
}
