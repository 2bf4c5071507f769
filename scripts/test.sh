#!/usr/bin/env bash
# `npm test`: bring the real test environment up, run vitest against it, bring it down.
#
#   npm test [-- VITEST ARGS]        e.g. npm test -- test/frontend
#   KILN_TEST_KEEP=1 npm test        leave the registry and dockerd running afterwards
#
# Exits with vitest's status (or 1 when the environment cannot be set up).
set -uo pipefail
here="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
cd "$here/.."

release() {
  if [ "${KILN_TEST_KEEP:-0}" = 1 ]; then
    echo "testenv: KILN_TEST_KEEP=1: leaving the environment up (scripts/testenv.sh down stops it)" >&2
    # Still drop our claim, so a later `down` by anyone may stop the services.
    bash "$here/testenv.sh" down --holder $$ --keep >/dev/null 2>&1 || true
  else
    bash "$here/testenv.sh" down --holder $$ || true
  fi
}
trap release EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$here/testenv.sh" up --holder $$ || { echo "testenv: set-up failed" >&2; exit 1; }
env_lines="$(bash "$here/testenv.sh" env)" || exit 1
eval "$env_lines"

# The tests are type-checked too (the build checks only src/): a test calling an API that changed
# fails here, by name, rather than at run time or never.
npx tsc -p test/tsconfig.json || { echo "test: the tests do not type-check" >&2; exit 1; }
# Lint and formatting (Biome; `npm run format` fixes the formatting, `npm run lint` shows the rest).
npx biome ci . || { echo "test: biome found lint or formatting problems (npm run lint)" >&2; exit 1; }

npx vitest run "$@"
