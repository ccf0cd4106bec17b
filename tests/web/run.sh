#!/usr/bin/env bash
# Runs the browser tests (tests/web/*.test.mjs): headless Chromium (Debian's chromium) driven by
# playwright-core, against a real daemon that tests/support/with_daemon.py starts and that
# serves the web page built here:
#
#   bash tests/web/run.sh [SANDBOXD_SERVER]     (default: build/supervisor/sandboxd-server)
#
# Installs the pinned packages (package-lock.json) of api/web and tests/web when node_modules is
# missing or older than the lock file, builds the page into $SANDBOXD_WEB_ROOT (else a temporary
# directory), and starts the daemon with `web_root` and a workspace root for copy-on-write runs.
# Screenshots go to $SCREENSHOT_DIR (else tests/web/screenshots); measured figures to stdout and
# $BENCH_OUT/web.jsonl when set. With SANDBOXD_WEB_DEV_SERVER=1 the daemon gets no web_root and
# tests/web/dev-server.mjs serves the page in front of it (for a daemon built without it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
server="${1:-${SANDBOXD_SERVER:-$repo/build/supervisor/sandboxd-server}}"
[[ -x "$server" ]] || { echo "run.sh: no sandboxd-server at $server" >&2; exit 1; }
command -v chromium >/dev/null || [[ -n "${CHROMIUM:-}" ]] || { echo "run.sh: chromium is missing (apt-get install -y chromium)" >&2; exit 1; }

for dir in "$repo/api/web" "$here"; do
  if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
done

tmp="$(mktemp -d /tmp/sbx-web-test-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
chmod 711 "$tmp"
web_root="${SANDBOXD_WEB_ROOT:-$tmp/web}"
(cd "$repo/api/web" && node build.mjs --out "$web_root")

# Workspaces of copy-on-write runs live under this root (its directories are made by the tests).
mkdir -p "$tmp/workspaces"
chmod 755 "$tmp/workspaces"
{
  echo "workspace_roots: [$tmp/workspaces]"
  echo "workspace_cow_root_owned: true"
  [[ "${SANDBOXD_WEB_DEV_SERVER:-0}" == 1 ]] || echo "web_root: $web_root"
} > "$tmp/extra.yaml"

export SANDBOXD_WEB_WORKSPACE_ROOT="$tmp/workspaces" SANDBOXD_WEB_BUILD="$web_root"
cd "$here"
tests=(./*.test.mjs)
if [[ "${SANDBOXD_WEB_DEV_SERVER:-0}" == 1 ]]; then
  runner=(node ./dev-server.mjs --root "$web_root" --exec node --test --test-concurrency=1 --test-timeout=300000 "${tests[@]}")
else
  runner=(node --test --test-concurrency=1 --test-timeout=300000 "${tests[@]}")
fi
/usr/bin/python3 "$repo/tests/support/with_daemon.py" --server "$server" --policy "$here/commands.yaml" \
  --extra-config "$tmp/extra.yaml" -- "${runner[@]}"
