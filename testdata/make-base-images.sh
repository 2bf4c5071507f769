#!/usr/bin/env bash
# Build kiln's test base images as OCI image layouts, reproducibly and once per machine.
#
#   testdata/make-base-images.sh [--busybox-only] [--out DIR] [--print-dir]
#
# Images (each an OCI image layout directory, verified with `skopeo inspect`):
#   DIR/busybox  tag "latest"    Debian's busybox-static, one symlink per applet, a small /etc/passwd
#                                and /etc/group with a test user kiln (1000:1000, also in group staff)
#   DIR/debian   tag "bookworm"  debootstrap --variant=minbase bookworm
#
# DIR defaults to /var/cache/kiln-testdata/<first 16 hex of this script's sha256>: editing this script
# changes the key, so a stale cache is never reused. A finished image has a `.complete` marker; an
# interrupted build leaves none and is redone. The last line of stdout is DIR.
#
# Why by hand and not `umoci`/`buildah commit`: we want byte-identical output for identical input
# (tar sorted by name, mtime 0, numeric ids, `gzip -n`, fixed JSON), so the digests in the tests are
# stable across runs and machines of the same architecture.
set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC

busybox_only=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --busybox-only) busybox_only=1 ;;
    --out) out="$2"; shift ;;
    --out=*) out="${1#--out=}" ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "make-base-images.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

self="$(readlink -f "${BASH_SOURCE[0]}")"
key="$(sha256sum "$self" | cut -c1-16)"
cache_root=/var/cache/kiln-testdata
if [ -z "$out" ]; then
  out="$cache_root/$key"
  mkdir -p "$out"
  touch "$out"   # mtime = last use, for the pruning below
  # Layouts made by other versions of this script and unused for 3 days are dead weight (~150 MB).
  # Only our own key-named directories: others may keep things under the same root.
  hex16="$(printf '[0-9a-f]%.0s' $(seq 16))"
  find "$cache_root" -mindepth 1 -maxdepth 1 -type d -name "$hex16" ! -name "$key" -mtime +3 \
    -exec rm -rf {} + 2>/dev/null || true
fi
mkdir -p "$out"
# One builder per output directory (scripts/testenv.sh and `npm run demo` may run at once).
exec 8>"$out/.lock"
flock 8

# Work directories to remove however we exit.
cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

log() { echo "make-base-images: $*" >&2; }
die() { echo "make-base-images: error: $*" >&2; exit 1; }

for tool in jq skopeo sha256sum gzip tar; do
  command -v "$tool" >/dev/null || die "missing $tool (scripts/testenv.sh up installs it)"
done

ARCH="$(dpkg --print-architecture)"
# Docker's default PATH, so `RUN` lines resolve the same as in a Docker-built image.
IMAGE_PATH="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EPOCH="1970-01-01T00:00:00Z"

# sha256 of a file, hex only.
sha() { sha256sum "$1" | cut -d' ' -f1; }
fsize() { stat -c %s "$1"; }

# Move a file into the layout's blob store under its digest; prints the hex digest.
put_blob() {
  local layout="$1" file="$2" hex
  hex="$(sha "$file")"
  mv -f "$file" "$layout/blobs/sha256/$hex"
  echo "$hex"
}

# pack_layout ROOTFS LAYOUT TAG CMD_JSON CREATED_BY
# Writes a one-layer OCI image layout for ROOTFS.
pack_layout() {
  local rootfs="$1" layout="$2" tag="$3" cmd="$4" created_by="$5"
  local tmp="$layout.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp/blobs/sha256"

  # Top-level names sorted ourselves so the archive has no "./" prefix (like Docker's layers) and a
  # fixed order; --sort=name orders everything below. Ownership is kept numerically as it is in the
  # rootfs (all root, except what the image wants owned otherwise, e.g. /home/kiln, Debian's
  # /var/mail), so no --owner=0 override here.
  local names
  mapfile -t names < <(cd "$rootfs" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | sort)
  tar -C "$rootfs" --create --file="$tmp/layer.tar" --format=gnu --sort=name --mtime=@0 \
      --numeric-owner --no-acls --no-xattrs --no-selinux -- "${names[@]}"
  local diff_id; diff_id="$(sha "$tmp/layer.tar")"
  gzip -n -9 <"$tmp/layer.tar" >"$tmp/layer.tar.gz"
  rm -f "$tmp/layer.tar"
  local layer_size; layer_size="$(fsize "$tmp/layer.tar.gz")"
  local layer; layer="$(put_blob "$tmp" "$tmp/layer.tar.gz")"

  jq -cnj --arg arch "$ARCH" --arg path "$IMAGE_PATH" --argjson cmd "$cmd" \
      --arg diff "sha256:$diff_id" --arg created "$EPOCH" --arg by "$created_by" '{
    architecture: $arch, os: "linux", created: $created,
    config: { Env: [$path], Cmd: $cmd },
    rootfs: { type: "layers", diff_ids: [$diff] },
    history: [ { created: $created, created_by: $by } ]
  }' >"$tmp/config.json"
  local config_size; config_size="$(fsize "$tmp/config.json")"
  local config; config="$(put_blob "$tmp" "$tmp/config.json")"

  jq -cnj --arg c "sha256:$config" --argjson cs "$config_size" \
      --arg l "sha256:$layer" --argjson ls "$layer_size" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs },
    layers: [ { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $l, size: $ls } ]
  }' >"$tmp/manifest.json"
  local manifest_size; manifest_size="$(fsize "$tmp/manifest.json")"
  local manifest; manifest="$(put_blob "$tmp" "$tmp/manifest.json")"

  jq -cnj --arg m "sha256:$manifest" --argjson ms "$manifest_size" --arg tag "$tag" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [ { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
                   annotations: { "org.opencontainers.image.ref.name": $tag } } ]
  }' >"$tmp/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci-layout"

  # Check with an independent reader before publishing the layout.
  skopeo inspect "oci:$tmp:$tag" >/dev/null || die "skopeo cannot read the layout built in $tmp"
  rm -rf "$layout" && mv "$tmp" "$layout"
  log "$layout: manifest sha256:$manifest, layer sha256:$layer ($layer_size bytes)"
}

make_busybox() {
  local layout="$out/busybox"
  [ -f "$layout/.complete" ] && { log "busybox: cached in $layout"; return; }
  local bb=/bin/busybox
  [ -x "$bb" ] || die "$bb missing (install busybox-static)"
  # Debian's dynamic busybox is not usable in a rootfs without libc: insist on the static one.
  if ldd "$bb" >/dev/null 2>&1; then
    die "$bb is dynamically linked (install busybox-static, not busybox)"
  fi
  local work; work="$(mktemp -d /var/tmp/kiln-busybox.XXXXXX)"
  cleanup+=("$work")
  local r="$work/rootfs"
  mkdir -p "$r"/{bin,sbin,etc,dev,proc,sys,root,tmp,var/tmp,usr/bin,usr/sbin,home/kiln}
  install -m 0755 "$bb" "$r/bin/busybox"
  local applet
  # Every applet in /bin (busybox runs any of them by its argv[0]), whatever path the list gives.
  while read -r applet; do
    applet="${applet##*/}"
    [ -n "$applet" ] && [ "$applet" != busybox ] && ln -sf busybox "$r/bin/$applet"
  done < <("$bb" --list | sort -u)
  cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
kiln:x:1000:1000:kiln test user:/home/kiln:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  cat >"$r/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
staff:x:50:kiln
kiln:x:1000:
nogroup:x:65534:
EOF
  chmod 0644 "$r/etc/passwd" "$r/etc/group"
  chmod 1777 "$r/tmp" "$r/var/tmp"
  chmod 0700 "$r/root"
  chown 1000:1000 "$r/home/kiln"
  chmod 0755 "$r/home/kiln"
  pack_layout "$r" "$layout" latest '["sh"]' \
    "kiln testdata: busybox-static $(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)"
  touch "$layout/.complete"
}

# The Debian mirror apt uses here (deb822 sources first, then the classic list).
debian_mirror() {
  local m=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    m="$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m="$(awk '$1 == "deb" && $2 !~ /security/ && $2 ~ /^http/ { print $2; exit }' /etc/apt/sources.list)"
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

make_debian() {
  local layout="$out/debian"
  [ -f "$layout/.complete" ] && { log "debian: cached in $layout"; return; }
  command -v debootstrap >/dev/null || die "missing debootstrap"
  local work; work="$(mktemp -d /var/tmp/kiln-debian.XXXXXX)"
  cleanup+=("$work")
  local r="$work/rootfs" mirror; mirror="$(debian_mirror)"
  log "debian: debootstrap --variant=minbase bookworm from $mirror (takes a few minutes)"
  # Reuse the host's downloaded .debs where they match: saves the network and much of the time.
  debootstrap --variant=minbase --arch="$ARCH" --cache-dir=/var/cache/apt/archives \
    bookworm "$r" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  # Make the tree an image, not a machine: nothing run-time, nothing that varies between builds.
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
         "$r"/var/log/* "$r"/tmp/* "$r"/var/tmp/* "$r"/run/* "$r"/root/.bash_history \
         "$r"/var/cache/ldconfig/aux-cache "$r"/var/lib/dpkg/*-old "$r"/etc/*- "$r"/dev/* \
         "$r"/proc/* "$r"/sys/*
  mkdir -p "$r/var/lib/apt/lists/partial" "$r/var/cache/apt/archives/partial"
  : >"$r/etc/machine-id"
  [ -f "$r/etc/hostname" ] && rm -f "$r/etc/hostname"
  [ -f "$r/etc/resolv.conf" ] && rm -f "$r/etc/resolv.conf"
  rm -f "$r/etc/hosts"
  # The mirror the image's apt talks to, like the official image (one line, classic format).
  echo "deb $mirror bookworm main" >"$r/etc/apt/sources.list"
  [ -x "$r/usr/bin/apt-get" ] || die "debootstrap produced no /usr/bin/apt-get"
  pack_layout "$r" "$layout" bookworm '["bash"]' \
    "kiln testdata: debootstrap --variant=minbase bookworm"
  touch "$layout/.complete"
}

make_busybox
[ "$busybox_only" = 1 ] || make_debian
echo "$out"
