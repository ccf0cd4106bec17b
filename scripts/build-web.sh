#!/usr/bin/env bash
# Builds the web page: scripts/build-web.sh SOURCE_DIR OUT_DIR (CMake's `web` target runs it).
# Installs the pinned packages of SOURCE_DIR/package-lock.json when node_modules is missing or
# older than the lock file, then bundles with esbuild into OUT_DIR (index.html, assets/).
set -euo pipefail
src=$1
out=$2
cd "$src"
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node build.mjs --out "$out"
