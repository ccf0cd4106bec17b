#!/usr/bin/env bash
# Startup latency of a fully isolated sandbox: `sandboxd exec -- /bin/true` (every layer on)
# against `bwrap --unshare-all` with equivalent read-only binds, side by side in one hyperfine
# run. Usage: bench/startup.sh [PATH/TO/sandboxd] [RUNS]
set -euo pipefail
sbx=${1:-build/supervisor/sandboxd}
runs=${2:-200}
out=${BENCH_OUT:-docs/bench}
mkdir -p "$out"

# The same view of the host for both: /usr read-only, merged-/usr symlinks, /etc/ld.so.cache,
# fresh /proc, minimal /dev, tmpfs /tmp, new user/pid/mount/net/ipc/uts/cgroup namespaces.
bwrap_cmd="bwrap --unshare-all --die-with-parent --new-session --cap-drop ALL \
  --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/sbin /sbin \
  --symlink usr/lib /lib --symlink usr/lib64 /lib64 --ro-bind /etc/ld.so.cache /etc/ld.so.cache \
  --proc /proc --dev /dev --tmpfs /tmp --hostname sandbox /bin/true"

hyperfine -N --warmup 20 --runs "$runs" \
  --export-json "$out/startup.json" --export-markdown "$out/startup.md" \
  -n "sandboxd exec (all layers)" "$sbx exec -- /bin/true" \
  -n "sandboxd exec seccomp=unconfined" "$sbx exec --security-opt seccomp=unconfined -- /bin/true" \
  -n "bwrap --unshare-all" "$bwrap_cmd"

python3 - "$out/startup.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
sbx, bw = r["sandboxd exec (all layers)"], r["bwrap --unshare-all"]
print(f"median: sandboxd {sbx['median']*1e3:.2f} ms, bwrap {bw['median']*1e3:.2f} ms, "
      f"ratio {sbx['median']/bw['median']:.2f}")
PY
