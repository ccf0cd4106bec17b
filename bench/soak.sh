#!/usr/bin/env bash
# A soak of the service: RUNS mixed runs through a real `sandboxd serve` on SQLite that this
# script starts (and stops) in a temporary directory, from CLIENTS clients at once. The runs
# take turns: quick (/bin/true), output-heavy (4 MB of stdout), OOM (`tail /dev/zero` under
# 64 MiB), timeout (sleep past a 1 s limit), cancel (cancelled as soon as it is submitted) and
# workspace (a copy-on-write workspace written to). After every CHECK runs, once the daemon is
# idle, it records the daemon's fds, threads and RSS, the cgroups below its cgroup parent, the
# mounts below its data directory, the network namespaces its processes hold, the data directory's
# size, and leftovers of finished runs (mnt/ or cow/ directories); the first checkpoint is the
# baseline. It fails when fds, threads, cgroups, mounts, network namespaces or the heap in use
# (sandboxd_heap_in_use_bytes, within HEAP_SLACK_KB, default 2 MiB) have not returned to the
# baseline, when the resident size exceeds the baseline's by more than RSS_SLACK_KB (default
# 16 MiB), when a run ends other than its kind should, or when a run is left over.
# One JSON line per checkpoint goes to $BENCH_OUT/soak.jsonl (default docs/bench).
# Usage: bench/soak.sh [BUILD_DIR] [RUNS] [CLIENTS] [CHECK]
set -euo pipefail
build=${1:-build}
runs=${2:-10000}
clients=${3:-4}
check=${4:-1000}
out=${BENCH_OUT:-docs/bench}
heap_slack=${HEAP_SLACK_KB:-2048}
rss_slack=${RSS_SLACK_KB:-16384}
mkdir -p "$out"
server="$build/supervisor/sandboxd-server"
for tool in curl jq; do
  command -v "$tool" > /dev/null || { echo "soak: $tool is missing" >&2; exit 2; }
done

# shellcheck source=bench/daemon.sh
. "$(dirname "$0")/daemon.sh"
bench_daemon_dir soak
mkdir -p "$dir/roots/ws"
echo "one" > "$dir/roots/ws/a.txt"
chown -R 1234:1234 "$dir/roots/ws"
printf 'rules:\n  "*": allow\n' > "$dir/policies/commands.yaml"
extra_yaml="max_concurrent_runs: 4
max_queue: 10000
workspace_roots: [$dir/roots]"
bench_daemon_start "$server"
hdr=(-H "x-api-key: $key")

# Kind of run i, its body, and the state/reason it must end with.
kinds=(quick output oom timeout cancel workspace)
body() {
  case $1 in
    quick) echo '{"argv": ["/bin/true"]}' ;;
    output) echo '{"argv": ["/bin/sh", "-c", "head -c 4000000 /dev/zero | tr \"\\\\0\" x"]}' ;;
    oom) echo '{"argv": ["/usr/bin/tail", "/dev/zero"], "limits": {"memory": "64m"}}' ;;
    timeout) echo '{"argv": ["/bin/sleep", "30"], "limits": {"timeout_s": 1}}' ;;
    cancel) echo '{"argv": ["/bin/sleep", "30"]}' ;;
    workspace) jq -cn --arg ws "$dir/roots/ws" \
      '{argv: ["/bin/sh", "-c", "echo two >> /workspace/a.txt; mkdir /workspace/d; echo n > /workspace/d/n"], workspace: {path: $ws, mode: "cow"}}' ;;
  esac
}

# One client: runs FIRST, FIRST+CLIENTS, … below LAST; prints "i kind state reason" per run.
client() {
  local first=$1 last=$2 i kind id state reason
  for ((i = first; i < last; i += clients)); do
    kind=${kinds[i % ${#kinds[@]}]}
    id=$(curl -sf "${hdr[@]}" -d "$(body "$kind")" "$api/v1/runs" | jq -r .id)
    if [ "$kind" = cancel ]; then
      curl -sf "${hdr[@]}" -X POST "$api/v1/runs/$id:cancel" > /dev/null || true
    fi
    # Streams until run.completed: no polling.
    curl -sf "${hdr[@]}" "$api/v1/runs/$id/logs?follow=true" > /dev/null || true
    read -r state reason < <(curl -sf "${hdr[@]}" "$api/v1/runs/$id" |
                             jq -r '[.state, (.result.reason // "")] | join(" ")')
    echo "$i $kind $state $reason"
  done
}

count_cgroups() {
  local n=0 root
  for root in /sys/fs/cgroup/unified /sys/fs/cgroup/*/; do
    [ -d "$root/$parent" ] && n=$((n + $(find "$root/$parent" -mindepth 1 -type d | wc -l)))
  done
  [ -d "/sys/fs/cgroup/$parent" ] && n=$((n + $(find "/sys/fs/cgroup/$parent" -mindepth 1 -type d | wc -l)))
  echo "$n"
}
measure() {  # fds threads rss_kb cgroups mounts netns data_kb leftovers heap_kb
  local - fds threads rss cg mnt netns data left heap
  set +e +o pipefail  # a hierarchy or directory that does not exist counts 0
  fds=$(ls "/proc/$pid/fd" | wc -l)
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  cg=$(count_cgroups)
  mnt=$(grep -c " $dir/data/runs/" /proc/self/mountinfo || true)
  # Network namespaces held by processes in the daemon's cgroups (the warm sandboxes' inits
  # when idle); the host's own come and go with whatever else runs on it.
  netns=$(find /sys/fs/cgroup/unified/"$parent" /sys/fs/cgroup/"$parent" -name cgroup.procs \
            -exec cat {} + 2>/dev/null | while read -r p; do readlink "/proc/$p/ns/net"; done |
          sort -u | wc -l)
  data=$( (du -sk "$dir/data" 2>/dev/null || echo 0) | cut -f1)
  left=$(find "$dir/data/runs" -mindepth 2 -maxdepth 2 \( -name mnt -o -name cow \) 2>/dev/null |
         wc -l)
  heap=$(curl -sf "${hdr[@]}" "$api/metrics" | awk '/^sandboxd_heap_in_use_bytes / {printf "%d", $2 / 1024}')
  echo "$fds $threads $rss $cg $mnt $netns $data $left ${heap:-0}"
}
# The daemon is idle when no run is queued or running.
wait_idle() {
  local busy
  for _ in $(seq 1 600); do
    busy=$(curl -sf "${hdr[@]}" "$api/v1/runs?state=QUEUED&state=RUNNING&state=PENDING&state=PLANNED&limit=1" |
           jq '.runs | length')
    [ "$busy" = 0 ] && return 0
    sleep 0.1  # only between batches, never in a run's path
  done
  echo "soak: the daemon did not go idle" >&2
  return 1
}

: > "$dir/results"
started=$(date +%s)
read -r b_fds b_threads b_rss b_cg b_mnt b_netns b_data b_left b_heap < <(measure)
failed=0
for ((done = 0; done < runs; done += check)); do
  last=$((done + check < runs ? done + check : runs))
  pids=()
  for ((c = 0; c < clients; c++)); do
    client $((done + c)) "$last" >> "$dir/results" &
    pids+=($!)
  done
  wait "${pids[@]}"
  wait_idle || failed=1
  read -r fds threads rss cg mnt netns data left heap < <(measure)
  if [ "$done" -eq 0 ]; then
    # The first batch's end is the baseline: warm pools, connections and caches exist by then.
    b_fds=$fds b_threads=$threads b_rss=$rss b_cg=$cg b_mnt=$mnt b_netns=$netns b_heap=$heap
  fi
  # How each kind must end: anything else is a wrong ending.
  wrong=$(awk '{
      want = "SUCCEEDED exited"
      if ($2 == "oom") want = "FAILED oom_killed"
      if ($2 == "timeout") want = "FAILED timed_out"
      if ($2 == "cancel") want = "CANCELLED cancelled"
      got = $3
      if ($4 != "") got = got " " $4
      if (got != want) n++
    } END { print n + 0 }' "$dir/results")
  ok=true
  # Memory: the heap in use returns to the baseline's (within HEAP_SLACK_KB); the resident size
  # also holds what the allocator keeps for reuse, so it may exceed the baseline's by
  # RSS_SLACK_KB and no more.
  [ "$fds" -le "$b_fds" ] && [ "$threads" -le "$b_threads" ] && [ "$cg" -le "$b_cg" ] &&
    [ "$mnt" -le "$b_mnt" ] && [ "$netns" -le "$b_netns" ] && [ "$left" -eq 0 ] &&
    [ "$wrong" -eq 0 ] && [ "$heap" -le $((b_heap + heap_slack)) ] &&
    [ "$rss" -le $((b_rss + rss_slack)) ] || ok=false
  $ok || failed=1
  jq -cn --argjson runs "$last" --argjson fds "$fds" --argjson threads "$threads" \
    --argjson rss_kb "$rss" --argjson heap_kb "$heap" --argjson cgroups "$cg" --argjson mounts "$mnt" \
    --argjson netns "$netns" --argjson data_kb "$data" --argjson leftovers "$left" \
    --argjson wrong_endings "$wrong" --argjson elapsed_s "$(( $(date +%s) - started ))" \
    --argjson at_baseline "$ok" \
    '{bench: "soak", runs: $runs, daemon_fds: $fds, daemon_threads: $threads,
      daemon_rss_kb: $rss_kb, daemon_heap_kb: $heap_kb, cgroups: $cgroups, run_mounts: $mounts, host_netns: $netns,
      data_kb: $data_kb, run_leftovers: $leftovers, wrong_endings: $wrong_endings,
      elapsed_s: $elapsed_s, at_baseline: $at_baseline}' | tee -a "$out/soak.jsonl"
done
awk '{ n[$2 " -> " $3 ($4 == "" ? "" : " " $4)]++ } END { for (k in n) print n[k], k }' \
  "$dir/results" | sort -k2
exit $failed
