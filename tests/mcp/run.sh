#!/usr/bin/env bash
# Runs the MCP end-to-end tests (tests/mcp/*.test.mjs) against the daemon that
# tests/support/with_daemon.py started:
#
#   /usr/bin/python3 tests/support/with_daemon.py --server BUILD/supervisor/sandboxd-server \
#     --extra-config tests/mcp/config.yaml --policy tests/mcp/commands.yaml -- bash tests/mcp/run.sh
#
# Installs the pinned MCP SDK (package-lock.json) first when node_modules is missing or older
# than the lock file. The stdio tests use $SANDBOXD_BIN_DIR/sandboxd, else the sandboxd beside
# $SANDBOXD_SERVER.
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
exec node --test --test-concurrency=1 --test-timeout=120000 ./*.test.mjs
