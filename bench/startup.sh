#!/usr/bin/env bash
# Startup latency of a fully isolated sandbox: `sandboxd exec -- /bin/true` (every layer on)
# against `bwrap --unshare-all` with equivalent read-only binds, side by side in one hyperfine
# run. Usage: bench/startup.sh [PATH/TO/sandboxd] [RUNS]
set -euo pipefail
sbx=${1:-build/supervisor/sandboxd}
runs=${2:-200}
out=${BENCH_OUT:-docs/bench}
mkdir -p "$out"

. "$(dirname "$0")/bwrap_true.sh"  # bwrap_true: the same binds as a sandboxd run

hyperfine -N --warmup 20 --runs "$runs" \
  --export-json "$out/startup.json" --export-markdown "$out/startup.md" \
  -n "sandboxd exec (all layers)" "$sbx exec -- /bin/true" \
  -n "sandboxd exec seccomp=unconfined" "$sbx exec --security-opt seccomp=unconfined -- /bin/true" \
  -n "bwrap --unshare-all" "${bwrap_true[*]}"

python3 - "$out/startup.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
sbx, bw = r["sandboxd exec (all layers)"], r["bwrap --unshare-all"]
print(f"median: sandboxd {sbx['median']*1e3:.2f} ms, bwrap {bw['median']*1e3:.2f} ms, "
      f"ratio {sbx['median']/bw['median']:.2f}")
PY
