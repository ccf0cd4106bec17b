#!/usr/bin/env bash
# The README's install works offline: `pip install ./sdk/python` into a fresh virtual
# environment that sees the system's packages (Debian's setuptools and python3-websockets),
# with no package index at all, then the installed package imports from outside the tree.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d /tmp/sbx-pyinstall-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 -m venv --system-site-packages "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --no-index --no-cache-dir "$src"
cd "$tmp"
"$tmp/venv/bin/python" - <<'PY'
import sandboxd, os
assert "site-packages" in sandboxd.__file__, sandboxd.__file__
assert hasattr(sandboxd, "Client"), dir(sandboxd)
print("installed", sandboxd.__file__)
PY
