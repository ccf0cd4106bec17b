#!/usr/bin/env bash
# The API under load while sandboxes spawn, against a real `sandboxd serve` on SQLite that this
# script starts (and stops) in a temporary directory: wrk holds CONNS keep-alive connections
# (default 200) reading GET /v1/runs/{id} of a finished run for SECONDS, while a second wrk
# submits auto-approved /bin/true runs on SUBMITTERS connections (default 16), so sandboxes start
# and end all along. It reports p50, p90 and p99 latency, requests per second, and every error
# (non-2xx answers, connect/read/write errors, timeouts) of both, one JSON line each in
# $BENCH_OUT/load.jsonl (default docs/bench), and fails on any error: both loads stay below the
# daemon's connection cap (1024) and run queue (max_queue, set above what SECONDS can fill).
# Usage: bench/load.sh [BUILD_DIR] [SECONDS] [CONNS] [SUBMITTERS]
set -euo pipefail
build=${1:-build}
seconds=${2:-30}
conns=${3:-200}
submitters=${4:-16}
out=${BENCH_OUT:-docs/bench}
mkdir -p "$out"
server="$build/supervisor/sandboxd-server"
for tool in wrk curl jq; do
  command -v "$tool" > /dev/null || { echo "load: $tool is missing (apt-get install $tool)" >&2; exit 2; }
done
ulimit -n 65536 2>/dev/null || true

# shellcheck source=bench/daemon.sh
. "$(dirname "$0")/daemon.sh"
bench_daemon_dir load
printf 'rules:\n  "*": review\n  "/bin/true": allow\n' > "$dir/policies/commands.yaml"
extra_yaml="max_concurrent_runs: 4
max_queue: 1000000"
bench_daemon_start "$server"

# One finished run to read.
id=$(curl -sf -H "x-api-key: $key" -d '{"argv": ["/bin/true"]}' "$api/v1/runs" | jq -r .id)
curl -sf -H "x-api-key: $key" "$api/v1/runs/$id/logs?follow=true" > /dev/null

# wrk reports the latency distribution; the scripts add the key and count non-2xx answers.
cat > "$dir/get.lua" <<LUA
wrk.headers["x-api-key"] = "$key"
LUA
cat > "$dir/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"argv": ["/bin/true"]}'
wrk.headers["x-api-key"] = "$key"
wrk.headers["Content-Type"] = "application/json"
LUA
summary='done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f %d %d %d %d %d %d\n",
    summary.requests, summary.duration, latency:percentile(50) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    e.connect, e.read, e.write, e.status, e.timeout, latency.max / 1000))
end'
echo "$summary" >> "$dir/get.lua"
echo "$summary" >> "$dir/post.lua"

threads=$(( $(nproc) < 4 ? $(nproc) : 4 ))
wrk -t "$threads" -c "$submitters" -d "${seconds}s" --timeout 10s -s "$dir/post.lua" \
  "$api/v1/runs" > "$dir/post.out" 2>&1 &
post=$!
wrk -t "$threads" -c "$conns" -d "${seconds}s" --timeout 10s -s "$dir/get.lua" \
  "$api/v1/runs/$id" > "$dir/get.out" 2>&1
wait "$post"
failed=0
for what in get post; do
  read -r _ n dur p50 p90 p99 ec er ew es et max < <(grep '^RESULT' "$dir/$what.out")
  c=$([ "$what" = get ] && echo "$conns" || echo "$submitters")
  route=$([ "$what" = get ] && echo "GET /v1/runs/{id}" || echo "POST /v1/runs")
  errors=$((ec + er + ew + es + et))
  [ "$errors" -eq 0 ] || failed=1
  jq -cn --arg route "$route" --argjson conns "$c" --argjson requests "$n" \
    --argjson rps "$(awk -v n="$n" -v d="$dur" 'BEGIN { printf "%.1f", n / (d / 1e6) }')" \
    --argjson p50 "$p50" --argjson p90 "$p90" --argjson p99 "$p99" --argjson max "$max" \
    --argjson connect "$ec" --argjson read "$er" --argjson write "$ew" --argjson status "$es" \
    --argjson timeout "$et" \
    '{bench: "load", route: $route, connections: $conns, requests: $requests, per_s: $rps,
      p50_ms: $p50, p90_ms: $p90, p99_ms: $p99, max_ms: $max,
      errors: {connect: $connect, read: $read, write: $write, non_2xx: $status,
               timeout: $timeout}}' | tee -a "$out/load.jsonl"
done
runs=$(curl -sf -H "x-api-key: $key" "$api/v1/runs?limit=1000&state=SUCCEEDED" | jq '.runs | length')
echo "load: $runs runs succeeded during the load (the first page, at most 1000)"
exit $failed
