#!/usr/bin/env bash
# Where a run's time goes: RUNS auto-approved /bin/true runs through a real `sandboxd serve` on
# SQLite (started and stopped here), one at a time and then from CLIENTS clients at once; each
# run's phases are read back with GET /v1/runs/{id}?timeline=true, and the p50 and p90 of each
# phase printed (and written as JSON lines to $BENCH_OUT/phases.jsonl, default docs/bench).
# Usage: bench/phases.sh [BUILD_DIR] [RUNS] [CLIENTS]
set -euo pipefail
build=${1:-build}
runs=${2:-300}
clients=${3:-16}
out=${BENCH_OUT:-docs/bench}
mkdir -p "$out"
for tool in curl jq; do
  command -v "$tool" > /dev/null || { echo "phases: $tool is missing" >&2; exit 2; }
done

# shellcheck source=bench/daemon.sh
. "$(dirname "$0")/daemon.sh"
bench_daemon_dir phases
printf 'rules:\n  "*": review\n  "/bin/true": allow\n' > "$dir/policies/commands.yaml"
extra_yaml="max_concurrent_runs: 8
max_queue: 10000"
bench_daemon_start "$(pwd)/$build/supervisor/sandboxd-server"
hdr=(-H "x-api-key: $key")

# One run: submitted, followed to its end (the logs stream closes at run.completed), its id out.
one() {
  local id
  id=$(curl -sf "${hdr[@]}" -d '{"argv": ["/bin/true"]}' "$api/v1/runs" | jq -r .id)
  curl -sf "${hdr[@]}" "$api/v1/runs/$id/logs?follow=true" > /dev/null
  echo "$id"
}
# p50 and p90 of each phase over the runs listed in $1, as JSON lines tagged with mode $2.
summarize() {
  local ids=$1 mode=$2
  while read -r id; do
    curl -sf "${hdr[@]}" "$api/v1/runs/$id?timeline=true" | jq -c '.result.timeline[]'
  done < "$ids" |
    jq -s -c --arg mode "$mode" --argjson runs "$(wc -l < "$ids")" '
      group_by(.phase) | map({phase: .[0].phase, us: (map(.us) | sort)}) |
      map({bench: "phases", mode: $mode, runs: $runs, phase,
           p50_us: .us[(.us | length) / 2 | floor], p90_us: .us[(.us | length) * 9 / 10 | floor]}) |
      .[]' | tee -a "$out/phases.jsonl"
}

one > /dev/null  # the first run pays for what is built once
: > "$dir/serial"
for ((i = 0; i < runs; i++)); do one >> "$dir/serial"; done
summarize "$dir/serial" serial

: > "$dir/parallel"
pids=()
for ((c = 0; c < clients; c++)); do
  (for ((i = c; i < runs; i += clients)); do one; done) >> "$dir/parallel" &
  pids+=($!)
done
wait "${pids[@]}"  # not the daemon's output reader, which lives as long as the daemon
summarize "$dir/parallel" "clients_$clients"
