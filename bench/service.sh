#!/usr/bin/env bash
# The service's figures, measured against a real `sandboxd serve` on SQLite that this script
# starts (and stops) in a temporary directory:
#   - end-to-end latency of an auto-approved /bin/true run (POST /v1/runs to run.completed on the
#     run's WebSocket), one run after another;
#   - runs per second with 16 clients in parallel;
#   - log throughput of one run writing 1 GiB to stdout, followed on a WebSocket (binary
#     step.log messages of `head -c 1G /dev/zero`, then of text from `yes | head`, then JSON
#     events of the same text; each after a sync, so none pays for the writeback of the one
#     before), next to the raw pipe
#     `head -c 1G /dev/zero | cat >/dev/null` measured in the same run;
#   - the daemon's RSS idle and its peak during the 1 GiB stream.
# Usage: bench/service.sh [BUILD_DIR] [RUNS]
# BENCH_PARTS (default "latency rate logs") picks the measurements; BENCH_OUT the directory of
# service.jsonl (default docs/bench).
set -euo pipefail
build=${1:-build}
runs=${2:-500}
parts=" ${BENCH_PARTS:-latency rate logs} "
out=${BENCH_OUT:-docs/bench}
mkdir -p "$out"
server="$build/supervisor/sandboxd-server"
client="$build/bench/bench_service"

# shellcheck source=bench/daemon.sh
. "$(dirname "$0")/daemon.sh"
bench_daemon_dir bench
cat > "$dir/policies/commands.yaml" <<'YAML'
rules:
  "*": review
  "/bin/true": allow
  "/bin/sh -c *": allow
YAML
extra_yaml="max_concurrent_runs: 8
max_queue: 10000
limits:
  maxima: {output_bytes: 2g}"
bench_daemon_start "$server"

idle_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
echo "{\"bench\": \"idle\", \"daemon_rss_kb\": $idle_kb}" | tee "$out/service.jsonl"
"$client" latency "$port" "$key" 20 > /dev/null  # warm-up
if [[ $parts == *" latency "* ]]; then
  "$client" latency "$port" "$key" "$runs" | tee -a "$out/service.jsonl"
fi
if [[ $parts == *" rate "* ]]; then
  "$client" rate "$port" "$key" 16 "$runs" | tee -a "$out/service.jsonl" || true
fi
[[ $parts == *" logs "* ]] || exit 0
# Each stream starts with the earlier streams' log files written back (sync): a stream is not
# charged for the writeback of the gigabyte before it. The stream the target is about (binary
# messages of `head -c 1G /dev/zero`) goes first: on the development VM, writing a file slows
# down after the first few GiB (`head -c 1G /dev/zero | cat > FILE` four times in a row, with a
# sync before each: 0.67 s, 0.92 s, 2.56 s, 2.65 s), and every stream writes its log file.
for stream in "binary zero" "binary text" "json text"; do
  sync
  # shellcheck disable=SC2086  # the format and the source, as two words
  "$client" logs "$port" "$key" $((1 << 30)) "$pid" $stream | tee -a "$out/service.jsonl"
done
hyperfine --runs 5 --export-json "$dir/pipe.json" \
  -n "raw pipe" "head -c 1G /dev/zero | cat >/dev/null" \
  -n "raw pipe, same text" "yes 'sandboxd log throughput: 0123456789abcdefghijklmnopqrstuvwxyz' | head -c 1G | cat >/dev/null" \
  > /dev/null
jq -c '.results[] | {bench: "pipe", command: .command, median_s: .median,
       mb_per_s: (1073741824 / .median / 1e6)}' "$dir/pipe.json" | tee -a "$out/service.jsonl"
