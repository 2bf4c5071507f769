#!/usr/bin/env bash
# kiln's real test environment: packages, base images, a registry and a Docker daemon.
#
#   scripts/testenv.sh up [--holder PID]     install/build/start what is missing; reuse what answers
#   scripts/testenv.sh down [--holder PID] [--force|--keep]
#                                            stop what `up` started (by pid file), unless another
#                                            live holder (a concurrent `npm test`) still uses it;
#                                            --keep only drops the holder, --force ignores holders
#   scripts/testenv.sh status                what runs, what is cached
#   scripts/testenv.sh env                   `export K=V` lines for the tests (see test/helpers/env.ts)
#
# Everything is idempotent and serialised with a lock, because several developers share a machine
# and may run `npm test` at the same time: the first `up` starts the services, later ones reuse them,
# and the last `down` stops them.
set -euo pipefail
umask 022
# shellcheck source=lib/testenv-common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/testenv-common.sh"

[ "$(id -u)" = 0 ] || kiln_die "must run as root (runc, dockerd and apt need it)"

# --- 1. packages -------------------------------------------------------------------------------

# Debian packages the tests and this script use. Installed without recommends, so anything we
# rely on is named here (e.g. debian-archive-keyring + gpgv for debootstrap's signature check).
KILN_PACKAGES=(
  runc containerd docker.io tini docker-registry busybox-static debootstrap skopeo umoci buildah
  debian-archive-keyring gpgv wget curl ca-certificates jq tar gzip xz-utils iptables util-linux
  # tools the tests call: ADD archives (bzip2, zstd), registry auth (htpasswd, openssl), tty progress (tmux),
  # SSH agent forwarding (ssh-agent, ssh-add, ssh-keygen), ADD of git repositories (git daemon,
  # git http-backend, sshd for ssh remotes)
  bzip2 zstd apache2-utils openssl tmux openssh-client git openssh-server
)

ensure_packages() {
  # One dpkg-query for all (a warm run should cost nothing); "Package:arch" names are trimmed.
  local -A ok=() ; local name status missing="" p
  while read -r name status; do
    [ "$status" = "install ok installed" ] && ok["${name%%:*}"]=1
  done < <(dpkg-query -W -f='${Package} ${Status}\n' "${KILN_PACKAGES[@]}" 2>/dev/null || true)
  for p in "${KILN_PACKAGES[@]}"; do [ -n "${ok[$p]:-}" ] || missing+="$p "; done
  [ -z "$missing" ] && return
  kiln_log "installing Debian packages: $missing"
  export DEBIAN_FRONTEND=noninteractive
  # Keep maintainer scripts from starting Debian's own dockerd (which would create the docker0
  # bridge and NAT rules) or registry: we run ours, on our terms. 101 = "action forbidden".
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && added_policy=1
  fi
  local rc=0
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null || rc=$?
  [ "$added_policy" = 1 ] && rm -f "$policy"
  [ "$rc" = 0 ] || kiln_die "apt-get install $missing failed"
}

# node_modules is stale when the lock file names a package version that the installed tree
# (npm's own node_modules/.package-lock.json) does not have.
node_modules_stale() {
  [ -d "$KILN_REPO/node_modules" ] || return 0
  [ -f "$KILN_REPO/package-lock.json" ] || return 1
  [ -f "$KILN_REPO/node_modules/.package-lock.json" ] || return 0
  node -e '
    const fs = require("fs");
    const want = JSON.parse(fs.readFileSync(process.argv[1], "utf8")).packages ?? {};
    const have = JSON.parse(fs.readFileSync(process.argv[2], "utf8")).packages ?? {};
    for (const [k, v] of Object.entries(want)) {
      if (k === "") continue;
      if (v.optional && !have[k]) continue;   // platform-specific optional deps are skipped by npm
      if (!have[k] || have[k].version !== v.version) { console.error("stale: " + k); process.exit(0); }
    }
    process.exit(1);
  ' "$KILN_REPO/package-lock.json" "$KILN_REPO/node_modules/.package-lock.json"
}

ensure_node_modules() {
  command -v npm >/dev/null || kiln_die "npm is missing: this machine should have Node 20"
  if node_modules_stale; then
    kiln_log "node_modules missing or stale: installing"
    # Same lock as the developers' `npm install`, so we never race one.
    if [ -f "$KILN_REPO/package-lock.json" ]; then
      (cd "$KILN_REPO" && flock /tmp/kiln-npm.lock npm ci --no-audit --no-fund >&2)
    else
      (cd "$KILN_REPO" && flock /tmp/kiln-npm.lock npm install --no-audit --no-fund >&2)
    fi
  fi
}

# tsc output (dist/) is used by the CLI and demo tests. A type error somewhere must not stop the
# whole suite from running: the tests themselves report what is broken.
build_dist() {
  if ! (cd "$KILN_REPO" && npm run -s build >"$KILN_LOG_DIR/build.log" 2>&1); then
    kiln_log "warning: npm run build failed (see $KILN_LOG_DIR/build.log); tests continue"
    tail -n 15 "$KILN_LOG_DIR/build.log" >&2 || true
  fi
}

# --- 2. base images ----------------------------------------------------------------------------

IMAGES_DIR=""
ensure_images() {
  IMAGES_DIR="$(bash "$KILN_REPO/testdata/make-base-images.sh" | tail -n 1)"
  [ -f "$IMAGES_DIR/busybox/.complete" ] && [ -f "$IMAGES_DIR/debian/.complete" ] \
    || kiln_die "make-base-images.sh did not produce both layouts in '$IMAGES_DIR'"
  echo "$IMAGES_DIR" >"$KILN_STATE_DIR/images-dir"
}

# --- 3. registry -------------------------------------------------------------------------------

start_registry() {
  if kiln_registry_up; then
    kiln_log "registry: reusing the one answering on $KILN_REGISTRY_ADDR"
    return
  fi
  local pid; pid="$(kiln_pidfile_pid "$KILN_REGISTRY_PID")"
  if kiln_pid_is "$pid" docker-registry; then
    kiln_log "registry: pid $pid does not answer; restarting it"
    stop_pid "$pid" registry
  fi
  mkdir -p "$KILN_STATE_DIR/registry"
  kiln_log "registry: starting on $KILN_REGISTRY_ADDR (log $KILN_LOG_DIR/registry.log)"
  # 9>&-: the daemon must not inherit our lock, or it would hold it for its whole life.
  # setsid: its own session, so a Ctrl-C in the test run does not take it down half-way.
  setsid docker-registry serve "$KILN_REPO/testdata/registry-config.yml" \
    >>"$KILN_LOG_DIR/registry.log" 2>&1 </dev/null 9>&- &
  echo $! >"$KILN_REGISTRY_PID"
  local i
  for i in $(seq 1 100); do
    kiln_registry_up && return
    kill -0 "$(cat "$KILN_REGISTRY_PID")" 2>/dev/null \
      || { tail -n 20 "$KILN_LOG_DIR/registry.log" >&2; kiln_die "registry exited at start"; }
    sleep 0.2
  done
  kiln_die "registry did not answer on http://$KILN_REGISTRY_ADDR/v2/ within 20 s"
}

# The digest the registry holds for REPO:TAG, or nothing.
registry_digest() {
  curl -fsS --max-time 5 -o /dev/null -D - \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.index.v1+json' \
    "http://$KILN_REGISTRY_ADDR/v2/$1/manifests/$2" 2>/dev/null \
    | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }'
}

# push_image LAYOUT TAG REPO:TAG... — skopeo copies the layout byte for byte (OCI manifest kept),
# so the registry digest equals the layout's; skipped when it is already there.
push_image() {
  local layout="$1" tag="$2" want; shift 2
  want="$(jq -r '.manifests[0].digest' "$layout/index.json")"
  local ref
  for ref in "$@"; do
    if [ "$(registry_digest "${ref%%:*}" "${ref#*:}")" = "$want" ]; then continue; fi
    kiln_log "registry: pushing $ref ($want)"
    skopeo copy -q --dest-tls-verify=false "oci:$layout:$tag" "docker://$KILN_REGISTRY_ADDR/$ref" >&2
    [ "$(registry_digest "${ref%%:*}" "${ref#*:}")" = "$want" ] \
      || kiln_die "registry has another digest for $ref than the layout's $want"
  done
}

push_images() {
  # library/... too: a daemon using this registry as its mirror asks for library/busybox
  # when a Dockerfile says plain `FROM busybox`.
  push_image "$IMAGES_DIR/busybox" latest busybox:latest library/busybox:latest
  push_image "$IMAGES_DIR/debian" bookworm debian:bookworm library/debian:bookworm
}

# --- 4. dockerd --------------------------------------------------------------------------------

start_dockerd() {
  if kiln_dockerd_up; then
    kiln_log "dockerd: reusing the one answering on $KILN_DOCKER_HOST"
    return
  fi
  local pid; pid="$(kiln_pidfile_pid "$KILN_DOCKERD_PID")"
  if kiln_pid_is "$pid" dockerd; then
    kiln_log "dockerd: pid $pid does not answer; restarting it"
    stop_pid "$pid" dockerd
  fi
  # A pid file or socket left by a dead daemon makes dockerd refuse to start.
  rm -f "$KILN_DOCKERD_PID" "$KILN_DOCKER_SOCK"
  mkdir -p "$KILN_STATE_DIR/docker" "$KILN_RUN_DIR/docker-exec"
  kiln_log "dockerd: starting on $KILN_DOCKER_HOST (log $KILN_LOG_DIR/dockerd.log)"
  # No bridge, no iptables: this machine must not get new network interfaces or NAT rules; builds
  # use --network host (loopback reaches the registry) and runs use --network none.
  # The mirror makes `FROM busybox` resolve to our registry's library/busybox, for the classic
  # builder and BuildKit alike; 127.0.0.0/8 is insecure (plain HTTP) by default, named for clarity.
  # An empty config of our own, so a host /etc/docker/daemon.json cannot change this daemon.
  printf '{}\n' >"$KILN_RUN_DIR/daemon.json"
  setsid dockerd \
    --config-file "$KILN_RUN_DIR/daemon.json" \
    --host "$KILN_DOCKER_HOST" \
    --data-root "$KILN_STATE_DIR/docker" \
    --exec-root "$KILN_RUN_DIR/docker-exec" \
    --pidfile "$KILN_DOCKERD_PID" \
    --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
    --storage-driver overlay2 \
    --registry-mirror "http://$KILN_REGISTRY_ADDR" \
    --insecure-registry "$KILN_REGISTRY_ADDR" \
    >>"$KILN_LOG_DIR/dockerd.log" 2>&1 </dev/null 9>&- &
  local launcher=$!
  local i
  for i in $(seq 1 120); do
    kiln_dockerd_up && return
    kill -0 "$launcher" 2>/dev/null \
      || { tail -n 30 "$KILN_LOG_DIR/dockerd.log" >&2; kiln_die "dockerd exited at start"; }
    sleep 0.5
  done
  tail -n 30 "$KILN_LOG_DIR/dockerd.log" >&2
  kiln_die "dockerd did not answer on $KILN_DOCKER_HOST within 60 s"
}

# --- stopping ----------------------------------------------------------------------------------

stop_pid() {
  local pid="$1" name="$2" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  kiln_log "$name (pid $pid) ignored SIGTERM for 30 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# stop_service PIDFILE WORD NAME — only a process whose pid file we wrote, and that still is WORD.
stop_service() {
  local pidfile="$1" word="$2" name="$3" pid
  pid="$(kiln_pidfile_pid "$pidfile")"
  if kiln_pid_is "$pid" "$word"; then
    kiln_log "$name: stopping pid $pid"
    stop_pid "$pid" "$name"
  elif [ -n "$pid" ]; then
    kiln_log "$name: pid file names $pid, which is not running $word: nothing to stop"
  fi
  # Only the pid file we acted on: one rewritten meanwhile names a new daemon.
  [ "$(kiln_pidfile_pid "$pidfile")" = "$pid" ] && rm -f "$pidfile"
  return 0
}

# --- holders -----------------------------------------------------------------------------------

# Live holders other than EXCEPT (pids of test runs that called `up --holder` and not yet `down`).
other_holders() {
  local except="$1" f pid
  [ -d "$KILN_HOLDERS_DIR" ] || return 0
  for f in "$KILN_HOLDERS_DIR"/*; do
    [ -e "$f" ] || continue
    pid="${f##*/}"
    if [ "$pid" = "$except" ]; then continue; fi
    if kill -0 "$pid" 2>/dev/null; then echo "$pid"; else rm -f "$f"; fi
  done
}

# Serialise up/down between concurrent test runs. The wait is bounded: a first `up` on a fresh
# machine (packages, debootstrap) takes minutes, a warm one seconds.
take_lock() {
  exec 9>"$KILN_LOCK"
  if ! flock -n 9; then
    kiln_log "waiting for another testenv.sh (lock $KILN_LOCK)"
    flock -w 1200 9 || kiln_die "$KILN_LOCK still held after 20 min: is a testenv.sh hung?"
  fi
}

# --- commands ----------------------------------------------------------------------------------

print_env() {
  local images="${IMAGES_DIR:-$(cat "$KILN_STATE_DIR/images-dir" 2>/dev/null || true)}"
  [ -n "$images" ] || kiln_die "no images yet: run scripts/testenv.sh up"
  cat <<EOF
export KILN_TEST_REGISTRY=$KILN_REGISTRY_ADDR
export KILN_TEST_BUSYBOX=$KILN_REGISTRY_ADDR/busybox:latest
export KILN_TEST_DEBIAN=$KILN_REGISTRY_ADDR/debian:bookworm
export KILN_TEST_BUSYBOX_OCI=$images/busybox
export KILN_TEST_DEBIAN_OCI=$images/debian
export KILN_TEST_DOCKER_HOST=$KILN_DOCKER_HOST
export KILN_TEST_DOCKER=$KILN_DOCKER_BIN
EOF
}

cmd_up() {
  local holder="$1" t0=$SECONDS
  mkdir -p "$KILN_STATE_DIR" "$KILN_LOG_DIR" "$KILN_RUN_DIR" "$KILN_HOLDERS_DIR"
  take_lock
  ensure_packages
  [ -n "$holder" ] && : >"$KILN_HOLDERS_DIR/$holder"
  ensure_node_modules
  build_dist
  ensure_images
  start_registry
  push_images
  start_dockerd
  exec 9>&-
  kiln_log "up in $((SECONDS - t0)) s: registry $KILN_REGISTRY_ADDR, dockerd $KILN_DOCKER_HOST, images $IMAGES_DIR"
}

cmd_down() {
  local holder="$1" force="$2"
  mkdir -p "$KILN_RUN_DIR"
  take_lock
  [ -n "$holder" ] && rm -f "$KILN_HOLDERS_DIR/$holder"
  [ "$force" = keep ] && return
  local others; others="$(other_holders "$holder" | tr '\n' ' ')"
  if [ -n "$others" ] && [ "$force" != 1 ]; then
    kiln_log "down: still in use by test runs $others- leaving registry and dockerd running"
    return
  fi
  stop_service "$KILN_DOCKERD_PID" dockerd dockerd
  release_exec_root
  stop_service "$KILN_REGISTRY_PID" docker-registry registry
  exec 9>&-
}

# dockerd bind-mounts its network namespace under its exec root (netns/default) and leaves the
# mount behind when it stops. Unmounted here, deepest first, once our dockerd is gone: the exec
# root is this script's alone, and nothing of ours should stay mounted after `down`.
release_exec_root() {
  local m
  for m in $(awk -v root="$KILN_RUN_DIR/docker-exec/" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || kiln_log "could not unmount $m"
  done
}

cmd_status() {
  local pid images
  images="$(cat "$KILN_STATE_DIR/images-dir" 2>/dev/null || true)"
  echo "images:   ${images:-none built yet}"
  for name in busybox debian; do
    [ -n "$images" ] && [ -f "$images/$name/.complete" ] \
      && echo "  $name: $(jq -r '.manifests[0].digest' "$images/$name/index.json")"
  done
  pid="$(kiln_pidfile_pid "$KILN_REGISTRY_PID")"
  if kiln_registry_up; then
    echo "registry: up on $KILN_REGISTRY_ADDR$(kiln_pid_is "$pid" docker-registry && echo " (ours, pid $pid)" || echo " (not started by testenv.sh)")"
  else
    echo "registry: down"
  fi
  pid="$(kiln_pidfile_pid "$KILN_DOCKERD_PID")"
  if kiln_dockerd_up; then
    echo "dockerd:  up on $KILN_DOCKER_HOST$(kiln_pid_is "$pid" dockerd && echo " (pid $pid)")"
  else
    echo "dockerd:  down"
  fi
  local others; others="$(other_holders "" | tr '\n' ' ')"
  echo "holders:  ${others:-none}"
}

main() {
  local cmd="${1:-}"; shift || true
  local holder="" force=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --holder) holder="$2"; shift ;;
      --force) force=1 ;;
      --keep) force=keep ;;
      *) kiln_die "unknown argument: $1" ;;
    esac
    shift
  done
  case "$cmd" in
    up) cmd_up "$holder" ;;
    down) cmd_down "$holder" "$force" ;;
    status) cmd_status ;;
    env) print_env ;;
    *) echo "usage: $0 up|down|status|env [--holder PID] [--force|--keep]" >&2; exit 2 ;;
  esac
}

main "$@"
