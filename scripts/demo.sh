#!/usr/bin/env bash
# `npm run demo`: on a fresh Debian 12 machine (as root), install what is missing, make a small base
# image, and build examples/hello with kiln in embedded mode (no daemon).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
for p in runc busybox-static; do dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p"); done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "demo: installing ${need_pkgs[*]}"
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then npm ci --no-audit --no-fund >/dev/null; fi
npm run build --silent

base_dir=$(bash testdata/make-base-images.sh --busybox-only)
echo "demo: busybox base image at $base_dir"

echo "demo: kiln build --dry-run examples/hello"
node dist/cli/main.js build --dry-run examples/hello
echo "demo: building and running images lands with the end-to-end issue; the step graph above is what kiln will run."
