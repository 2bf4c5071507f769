#!/usr/bin/env bash
# `npm run demo`: on a fresh Debian 12 machine (as root), install what is missing, make a small
# busybox base image, load it into kiln, build examples/hello with kiln in embedded mode (no daemon,
# no registry, no Docker) and run the result in runc, printing its output.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1mdemo: %s\033[0m\n' "$*"; }

need_pkgs=()
for p in runc busybox-static jq skopeo; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi
say "compiling kiln"
npm run build --silent

say "making a busybox base image from Debian's busybox-static"
base_dir=$(bash testdata/make-base-images.sh --busybox-only | tail -n 1)

# The demo keeps its own state root, so it never mixes with a kiln you use otherwise.
root="${KILN_DEMO_ROOT:-$PWD/.kiln-demo}"
kiln() { dist/bin/kiln --root "$root" "$@"; }

say "kiln load -i $base_dir/busybox -t busybox:latest"
kiln load -i "$base_dir/busybox" -t busybox:latest

say "kiln build --progress plain -t kiln-demo/hello examples/hello"
cat examples/hello/Dockerfile
kiln build --progress plain -t kiln-demo/hello examples/hello

say "kiln images"
kiln images

say "kiln run kiln-demo/hello"
kiln run kiln-demo/hello
