#!/usr/bin/env bash
# What the host allows, side by side in one run: /bin/true started one at a time and from 16
# clients at once, each way measured the same (bench_spawn_floor: clone3 and execve from a
# small threaded process; latency from clone to reaped, the whole host's busy CPU per run):
#   - /bin/true alone, no sandbox at all;
#   - /bin/true in new user, pid, mount, network, ipc, uts and cgroup namespaces and nothing
#     else (no mounts, cgroups, seccomp, daemon, store or logs): the floor under any sandbox
#     of sandboxd's isolation;
#   - bwrap --unshare-all with read-only binds (bench/startup.sh's command);
#   - sandboxd exec -- /bin/true (every layer);
# then `sandboxd serve` on SQLite (bench/service.sh): the auto-approved /bin/true run, POST to
# run.completed, one at a time and from 16 clients.
# Usage: bench/host_floor.sh [BUILD_DIR] [RUNS]    (as root; results in $BENCH_OUT/host_floor.jsonl)
set -euo pipefail
build=${1:-build}
runs=${2:-600}
out=${BENCH_OUT:-docs/bench}
mkdir -p "$out"
floor="$build/bench/bench_spawn_floor"
sbx="$build/supervisor/sandboxd"

. "$(dirname "$0")/bwrap_true.sh"  # bwrap_true: bench/startup.sh's bwrap command

: > "$out/host_floor.jsonl"
measure() {  # NAME CLIENTS [--namespaces] PROGRAM...
  local name=$1 clients=$2
  shift 2
  local ns=()
  if [ "$1" = --namespaces ]; then ns=(--namespaces); shift; fi
  "$floor" "${ns[@]}" "$clients" "$runs" "$@" |
    jq -c --arg name "$name" '{name: $name} + .' | tee -a "$out/host_floor.jsonl"
}
for clients in 1 16; do
  measure "/bin/true" "$clients" /bin/true
  measure "/bin/true in new namespaces" "$clients" --namespaces /bin/true
  measure "bwrap --unshare-all" "$clients" "${bwrap_true[@]}"
  measure "sandboxd exec" "$clients" "$sbx" exec -- /bin/true
done

tmp=$(mktemp -d /tmp/sbx-host-floor-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
BENCH_PARTS="latency rate" BENCH_OUT="$tmp" bash "$(dirname "$0")/service.sh" "$build" "$runs" \
  > /dev/null
jq -c 'select(.bench == "latency" or .bench == "rate") |
       {name: "sandboxd serve, POST to run.completed", clients: (.clients // 1)} + .' \
  "$tmp/service.jsonl" | tee -a "$out/host_floor.jsonl"

jq -r '[.name, .clients, (.p50_ms // "-"), (.runs_per_s // "-"), .host_cpu_ms_per_run] | @tsv' \
  "$out/host_floor.jsonl" |
  awk -F'\t' 'BEGIN { printf "%-40s %7s %8s %8s %16s\n", "what", "clients", "p50 ms", "runs/s",
                       "host CPU ms/run" }
               { printf "%-40s %7s %8s %8s %16s\n", $1, $2, $3 == "-" ? "-" : sprintf("%.2f", $3),
                        $4 == "-" ? "-" : sprintf("%.1f", $4), sprintf("%.1f", $5) }'
