#!/usr/bin/env bash
# Builds the TypeScript SDK and runs its tests against a real daemon. Run it under the harness,
# which starts one and exports SANDBOXD_URL, the four keys and SANDBOXD_HARNESS:
#
#   python3 tests/support/with_daemon.py --server build/sandboxd-server -- bash sdk/typescript/scripts/test.sh
set -euo pipefail
# The daemon's binary, for a suite that starts a second daemon (test/lib/workspaces.mjs), named
# from where the harness was started.
if [ -n "${SANDBOXD_SERVER:-}" ]; then export SANDBOXD_SERVER="$(realpath "$SANDBOXD_SERVER")"; fi
cd "$(dirname "$0")/.."

# npm ci when node_modules is missing or was installed from another package-lock.json.
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -d node_modules ] || [ "$(cat node_modules/.lock-sha256 2>/dev/null)" != "$lock_sum" ]; then
  npm ci --no-audit --no-fund
  echo "$lock_sum" > node_modules/.lock-sha256
fi

rm -rf dist
./node_modules/.bin/tsc -p .

if [ -z "${SANDBOXD_URL:-}" ]; then
  echo "test.sh: SANDBOXD_URL is not set; run it under tests/support/with_daemon.py" >&2
  exit 2
fi

node --test test/*.test.mjs
# Restarts the daemon (which ends every sandbox): alone, after the rest.
if [ -n "${SANDBOXD_HARNESS:-}" ]; then
  node --test test/restart.serial.mjs
else
  echo "test.sh: SANDBOXD_HARNESS is not set; the restart test is skipped" >&2
fi
