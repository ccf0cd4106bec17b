#!/usr/bin/env bash
# Long-lived sandboxes against their floors, side by side in one run on this host:
#   - time to first command: POST /v1/sandboxes, then /bin/true in it (POST …/processes?
#     wait=true) until its result; one client at a time and 10 at once; next to `docker run`
#     and `docker create` + `start` + `exec` of /bin/true (hyperfine, busybox image imported
#     locally) when docker is installed;
#   - a process in a live sandbox: /bin/true through the API, next to a bare fork and exec of
#     /bin/true (bench_spawn_floor) and `docker exec`; and through MCP (process_run on
#     /mcp/executor) interleaved with the API's, for what MCP adds;
#   - memory: the daemon's RSS per idle sandbox, and a sandbox init's RSS.
# Usage: bench/sandbox.sh [BUILD_DIR] [N]   (N: samples per figure, default 200)
# Figures go to $BENCH_OUT/sandbox.jsonl (default docs/bench).
set -euo pipefail
build=${1:-build}
n=${2:-200}
out=${BENCH_OUT:-docs/bench}
mkdir -p "$out"
server="$build/supervisor/sandboxd-server"
client="$build/bench/bench_sandbox"
floor="$build/bench/bench_spawn_floor"
for b in "$server" "$client" "$floor"; do
  [ -x "$b" ] || { echo "sandbox.sh: $b is missing (make build)" >&2; exit 2; }
done

# shellcheck source=bench/daemon.sh
. "$(dirname "$0")/daemon.sh"
bench_daemon_dir bench
cat > "$dir/policies/commands.yaml" <<'YAML'
rules:
  "*": review
  "/bin/true": allow
sandboxes:
  allow_within: {cpus: 1, memory: 512MiB, pids: 256, timeout_s: 3600, idle_timeout_s: 600}
  otherwise: review
YAML
extra_yaml="sandboxes: {max: 128}"
bench_daemon_start "$server"

jsonl="$out/sandbox.jsonl"
: > "$jsonl"
"$client" first "$port" "$key" 20 1 > /dev/null  # warm-up
"$client" first "$port" "$key" "$n" 1 | tee -a "$jsonl"
"$client" first "$port" "$key" "$n" 10 | tee -a "$jsonl"
"$client" exec "$port" "$key" "$n" | tee -a "$jsonl"
"$client" mcp "$port" "$key" "$n" | tee -a "$jsonl"
"$floor" 1 "$n" /bin/true | tee -a "$jsonl"
"$client" idle "$port" "$key" 50 "$pid" | tee -a "$jsonl"

# shellcheck source=bench/dockerd.sh
. "$(dirname "$0")/dockerd.sh"
trap 'bench_dockerd_stop; bench_daemon_stop' EXIT
if command -v docker > /dev/null && bench_dockerd_start "$dir"; then
  bench_busybox_image
  runs=$(( n < 50 ? n : 50 ))
  hyperfine -N --warmup 3 --runs "$runs" --export-json "$dir/docker.json" \
    -n "docker run" "docker run --rm --network none $image /bin/true" \
    -n "docker create+start+exec" \
       "sh -c 'c=\$(docker create --network none $image sleep 60) && docker start \$c >/dev/null && docker exec \$c /bin/true && docker rm -f \$c >/dev/null'" \
    > /dev/null
  c=$(docker create --network none "$image" sleep 3600)
  docker start "$c" > /dev/null
  hyperfine -N --warmup 3 --runs "$runs" --export-json "$dir/docker-exec.json" \
    -n "docker exec" "docker exec $c /bin/true" > /dev/null
  docker rm -f "$c" > /dev/null
  python3 - "$dir/docker.json" "$dir/docker-exec.json" <<'PY' | tee -a "$jsonl"
import json, sys
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        t = sorted(r["times"])
        print(json.dumps({"bench": r["command"], "samples": len(t),
                          "p50_ms": t[len(t) // 2] * 1e3, "p99_ms": t[int(len(t) * 0.99)] * 1e3}))
PY
else
  echo '{"bench": "docker", "skipped": "docker is not installed or dockerd is not running"}' \
    | tee -a "$jsonl"
fi
