#!/bin/sh
# The `kiln` command (package.json "bin"; `npm run build` copies this file to dist/bin/kiln): it
# runs the launcher, dist/bin/kiln.js, with Node, after one change to the environment.
#
# Why: Node 20 (OpenSSL 3) reads and parses the file NODE_EXTRA_CA_CERTS names, and with it every
# certificate of its own bundled store, at start, before any JavaScript runs: 35-40 ms of every
# `kiln` command on a machine that sets it (common where a company CA is trusted), though most
# commands never open a TLS connection (nodejs/node#40524). So the variable reaches kiln as
# KILN_EXTRA_CA_CERTS instead, and kiln adds those certificates to the bundled ones itself, on its
# first TLS connection (src/util/extra-ca.ts): the same certificates are trusted, read when needed.
# `node dist/bin/kiln.js` still works; Node then loads the file itself, as before.
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ]; then
  KILN_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS
  export KILN_EXTRA_CA_CERTS
  unset NODE_EXTRA_CA_CERTS
fi
self=$0
# npm installs the command as a symbolic link to this file; the launcher sits beside the file.
if [ -L "$self" ]; then self=$(readlink -f -- "$self") || exit 1; fi
exec node "${self%/*}/kiln.js" "$@"
